"""``vcmtool qpmap``: compute maps without encoding; optional overlay PNG."""

from __future__ import annotations

import contextlib

import click

from vcmtool.atomic import atomic_path
from vcmtool.cli import main
from vcmtool.cli.options import collect_map_options, emit_json, input_options, map_options
from vcmtool.cli.summary import console
from vcmtool.encoders import get_encoder
from vcmtool.io.open import open_video
from vcmtool.jobcheck import check_job
from vcmtool.outputs import Output, check_outputs
from vcmtool.pipeline import EncodeJob, compute_maps, job_inputs
from vcmtool.qpmap.qpm import write_qpm


@main.command("qpmap")
@click.argument("input")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="maps file (.qpm)")
@click.option("-c", "--codec", default="kvazaar", show_default=True,
              help="target encoder (sets the QP range and constraints)")
@map_options
@click.option("--qp-offset", type=int, default=0, show_default=True)
@input_options
@click.option("--overlay", type=click.Path(dir_okay=False),
              help="PNG of the map with the widest QP spread over its frame")
@click.option("--json", "as_json", is_flag=True, help="print map statistics as JSON")
def qpmap_cmd(input: str, output: str, overlay: str | None, as_json: bool, **kw) -> None:
    """Compute per-CTU QP maps for INPUT and write them as .qpm."""
    from vcmtool.encoders import EncodeSettings

    map_opts = collect_map_options(kw)
    kw["ctu"] = int(kw["ctu"])
    job = EncodeJob(input=input, map_options=map_opts, **kw)
    check_job(job)
    check_outputs([Output(output, "-o/--output"), Output(overlay or "", "--overlay")], job_inputs(job))
    enc = get_encoder(job.codec)
    caps = enc.capabilities()
    clip = open_video(job.input, job.size, job.fps, job.pix_fmt, job.skip, job.frames)
    maps, info, dt = compute_maps(job, clip, caps.qp_range)
    if job.qp_offset:
        maps = maps.offset(job.qp_offset)
    maps = enc.prepare_maps(maps, EncodeSettings(allow_frame_qp=True))
    overlay_frame = None
    with contextlib.ExitStack() as staged:  # both files or neither
        write_qpm(staged.enter_context(atomic_path(output, parents=False)), maps)
        if overlay:
            from vcmtool.qpmap.overlay import write_clip_overlay

            tmp = staged.enter_context(atomic_path(overlay, parents=False))
            overlay_frame = write_clip_overlay(str(tmp), clip, maps, caps.qp_range)
    stats = {"input": input, "output": output, **info, **maps.stats(), "map_s": round(dt, 4),
             "overlay_frame": overlay_frame, "notes": maps.notes}
    if as_json:
        emit_json(stats)
    else:
        console.print(f"[bold]{output}[/]: {stats['frames']} maps, QP {stats['min']}..{stats['max']}"
                      f" mean {stats['mean']:.2f} ({dt:.2f}s)")
