"""``vcmtool encode``: one or more inputs through a QP-map source and an encoder."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import click

from vcmtool.atomic import write_text_atomic
from vcmtool.cli import main
from vcmtool.cli.options import (
    MapSourceCommand,
    collect_map_options,
    emit_json,
    input_options,
    map_options,
    parse_params,
)
from vcmtool.cli.summary import print_encode_summary
from vcmtool.errors import UsageError
from vcmtool.outputs import Output, check_outputs, refuse_existing
from vcmtool.pipeline import EncodeJob, crf_base, default_output, job_outputs, run_encode


@main.command(cls=MapSourceCommand)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="bitstream path (one input only; default: <stem>.<codec>.<ext>)")
@click.option(
    "-c",
    "--codec",
    default="kvazaar",
    show_default=True,
    help="encoder backend: kvazaar, x265, x264, vvenc, vtm, svtav1",
)
@map_options
@click.option(
    "--qp-offset",
    type=int,
    default=0,
    show_default=True,
    help="add K to every map QP (the JRD paper's rate protocol), then clamp",
)
@click.option(
    "--target-kbps",
    type=float,
    help="hit this bitrate (+-5%) by MFIBA allocation over "
    "the map's classes and closed-loop passes (replaces --qp-offset)",
)
@click.option("--target-bpp", type=float, help="like --target-kbps, in bits per pixel")
@click.option(
    "--crf",
    type=click.FloatRange(0, 51),
    help="x264/x265 constant rate factor: the encoder picks each frame's QP and the map's "
    "deviations from its base (--qp, default: the CRF rounded) ride on it as offsets",
)
@click.option(
    "--scale",
    default="1",
    show_default=True,
    metavar="F|auto",
    help="code at F (0 < F <= 1, e.g. 0.75) of the size, the original size signalled in an SEI "
    "for `vcmtool decode` to upsample; auto: chosen from the base QP and the task model's object "
    "sizes. bpp and PSNR/SSIM refer to the original size",
)
@click.option(
    "--scale-filter",
    type=click.Choice(["area", "lanczos", "bicubic", "bilinear"]),
    help="downscaling filter for --scale [default: area]",
)
@input_options
@click.option("--preset", default="medium", show_default=True)
@click.option(
    "--intra-period",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="0: one I frame then P frames; 1: all intra; N: I frame every N",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="encoder threads (1 gives bit-exact reproducible output)",
)
@click.option(
    "--allow-frame-qp",
    is_flag=True,
    help="let encoders without block QPs use the map's mean QP: per frame (vtm), per clip "
    "(vvenc through ffmpeg)",
)
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="extra encoder parameter (repeatable)"
)
@click.option(
    "--overlay",
    type=click.Path(dir_okay=False),
    help="write a QP-map overlay PNG (the frame whose map varies most)",
)
@click.option("--qpm-out", type=click.Path(dir_okay=False), help="write the applied maps (.qpm)")
@click.option(
    "--side-stream",
    default="none",
    show_default=True,
    metavar="none|cdre[:fd|joint|distill|DIR]|vcs[:DIR]",
    help="post-encode side stream, one SEI per frame: cdre = CDRE distortion bits (cdre:joint, "
    "cdre:distill = other shipped models, cdre:DIR = an export directory); vcs = the VCS "
    "semantic stream for `vcmtool vcs receive`",
)
@click.option(
    "--side-stream-out",
    type=click.Path(dir_okay=False),
    help="write the side stream to this file instead of SEI in the bitstream",
)
@click.option(
    "--side-stream-budget",
    metavar="PCT%|Nkbps",
    help="cap the side stream: PCT% of each frame's video bits or a constant Nkbps; a frame "
    "whose payload does not fit is sent without one (the receiver falls back to the plain model)",
)
@click.option(
    "--no-overlap",
    is_flag=True,
    help="predict every map before encoding starts instead of while encoding (same maps "
    "and bytes; for debugging and timing comparisons)",
)
@click.option("--no-measure", is_flag=True, help="skip decoding and PSNR/SSIM/VMAF")
@click.option(
    "--vmaf",
    is_flag=True,
    help="also measure VMAF (ffmpeg libvmaf, model vmaf_v0.6.1; ~50 ms per 720p frame)",
)
@click.option(
    "--csv",
    type=click.Path(dir_okay=False),
    help="write per-frame bits, PSNR Y/U/V, SSIM, [VMAF] and QP-map mean/min/max as CSV",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="print the report as JSON on stdout (on stderr when -o - puts the bitstream there)",
)
@click.option("--json-out", type=click.Path(dir_okay=False), help="write the JSON report to this file")
@click.option("-y", "--overwrite", is_flag=True, help="replace output files that already exist")
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    help="append a golden entry to this JSON file for `vcmtool verify` (forces --threads 1)",
)
def encode(
    inputs: tuple[str, ...],
    output: str | None,
    as_json: bool,
    json_out: str | None,
    overwrite: bool,
    params: tuple[str, ...],
    no_measure: bool,
    no_overlap: bool,
    record: str | None,
    **kw,
) -> None:
    """Encode INPUTS (.yuv, .y4m, any container, '-' for stdin) with a per-CTU QP map.

    `-o -` (or `-o pipe:`) writes the bitstream to stdout; the report then goes to stderr
    (--json) or to --json-out FILE.
    """
    to_stdout = output in ("-", "pipe:")
    per_input = [
        ("-o/--output", output),
        ("--qpm-out", kw.get("qpm_out")),
        ("--overlay", kw.get("overlay")),
        ("--side-stream-out", kw.get("side_stream_out")),
        ("--json-out", json_out),
        ("--csv", kw.get("csv")),
    ]
    if no_measure and (kw.get("vmaf") or kw.get("csv")):
        raise UsageError(
            f"{'--vmaf' if kw.get('vmaf') else '--csv'} needs the measurement; drop --no-measure"
        )
    if len(inputs) > 1 and any(v for _, v in per_input):
        names = ", ".join(o for o, v in per_input if v)
        raise UsageError(f"{names} name one file; drop them to encode several inputs")
    if to_stdout and record:
        raise UsageError("--record needs the bitstream in a file; use -o FILE")
    map_opts = collect_map_options(kw, [kw["qpmap"]])
    kw["ctu"] = int(kw["ctu"])
    if click.get_current_context().get_parameter_source("qp") is not click.core.ParameterSource.COMMANDLINE:
        del kw["qp"]  # EncodeJob's default, or the CRF's (crf_base)
    kw = crf_base(kw)
    if record:
        from vcmtool.golden import RECORD_THREADS

        kw["threads"] = RECORD_THREADS  # bytes reproducible across runs and machines
    extra = [Output(record, "--record")] if record else []
    if json_out:
        extra.append(Output(json_out, "--json-out"))
    for path in inputs:
        job = EncodeJob(
            input=path,
            output=None if to_stdout else output,
            map_options=map_opts,
            encoder_params=parse_params(params),
            measure=not no_measure,
            overlap=not no_overlap,
            **kw,
        )
        outs = job_outputs(job, job.output or default_output(job, _extension(job.codec)))
        if to_stdout:
            outs = outs[1:]
        check_outputs(outs + extra, [path])
        if not overwrite:
            refuse_existing(outs + [o for o in extra if o.option != "--record"])
        report = _encode_to_stdout(job) if to_stdout else run_encode(job)
        if record:
            from vcmtool.golden import record as record_golden

            record_golden(record, job, report)
        if json_out:
            write_text_atomic(json_out, json.dumps(report) + "\n")
        if as_json:
            if to_stdout:
                click.echo(json.dumps(report), err=True)
            else:
                emit_json(report)
        else:
            print_encode_summary(report)


def _extension(codec: str) -> str:
    from vcmtool.encoders import ENCODERS

    return ENCODERS.get(codec).capabilities().extension


def _encode_to_stdout(job: EncodeJob) -> dict:
    """Encode into a private temp file, then copy it to stdout: the bytes are those of a file
    encode (muxers and SEI insertion need a seekable file), and nothing reaches the pipe unless
    the whole encode succeeded."""
    ext = _extension(job.codec)
    with tempfile.TemporaryDirectory(prefix="vcmtool-stdout-") as tmp:
        job.output = str(Path(tmp) / f"stdout{ext}")
        report = run_encode(job)
        with open(job.output, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
    report["md5"]["-"] = report["md5"].pop(job.output)
    report["output"] = job.output = "-"
    return report
