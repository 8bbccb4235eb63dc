"""``vcmtool encode``: one or more inputs through a QP-map source and an encoder."""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import (
    collect_map_options,
    emit_json,
    input_options,
    map_options,
    parse_params,
)
from vcmtool.cli.summary import print_encode_summary
from vcmtool.errors import UsageError
from vcmtool.pipeline import EncodeJob, run_encode


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="bitstream path (one input only; default: <stem>.<codec>.<ext>)")
@click.option("-c", "--codec", default="kvazaar", show_default=True,
              help="encoder backend: kvazaar, x265, x264, vvenc, vtm, svtav1")
@map_options
@click.option("--qp-offset", type=int, default=0, show_default=True,
              help="add K to every map QP (the JRD paper's rate protocol), then clamp")
@click.option("--target-kbps", type=float, help="hit this bitrate (+-5%) by MFIBA allocation over "
              "the map's classes and closed-loop passes (replaces --qp-offset)")
@click.option("--target-bpp", type=float, help="like --target-kbps, in bits per pixel")
@input_options
@click.option("--preset", default="medium", show_default=True)
@click.option("--intra-period", type=click.IntRange(min=0), default=0, show_default=True,
              help="0: one I frame then P frames; 1: all intra; N: I frame every N")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="encoder threads (1 gives bit-exact reproducible output)")
@click.option("--allow-frame-qp", is_flag=True,
              help="let frame-QP-only encoders (vvenc, vtm) use one QP per frame from the map")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="extra encoder parameter (repeatable)")
@click.option("--overlay", type=click.Path(dir_okay=False),
              help="write a QP-map overlay PNG (the frame whose map varies most)")
@click.option("--qpm-out", type=click.Path(dir_okay=False), help="write the applied maps (.qpm)")
@click.option("--side-stream", default="none", show_default=True, metavar="none|cdre[:fd|joint|DIR]",
              help="post-encode side stream: cdre = CDRE distortion bits, one SEI per frame "
              "(cdre:joint = the joint fine-tuning model, cdre:DIR = an export directory)")
@click.option("--side-stream-out", type=click.Path(dir_okay=False),
              help="write the side stream to this file instead of SEI in the bitstream")
@click.option("--no-overlap", is_flag=True,
              help="predict every map before encoding starts instead of while encoding (same maps "
              "and bytes; for debugging and timing comparisons)")
@click.option("--no-measure", is_flag=True, help="skip decoding and PSNR")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON on stdout")
@click.option("--record", type=click.Path(dir_okay=False),
              help="append a golden entry to this JSON file for `vcmtool verify` (forces --threads 1)")
def encode(inputs: tuple[str, ...], output: str | None, as_json: bool, params: tuple[str, ...],
           no_measure: bool, no_overlap: bool, record: str | None, **kw) -> None:
    """Encode INPUTS (.yuv, .y4m, any container, '-' for stdin) with a per-CTU QP map."""
    if output and len(inputs) > 1:
        raise UsageError("-o/--output names one file; drop it to encode several inputs")
    map_opts = collect_map_options(kw)
    kw["ctu"] = int(kw["ctu"])
    if record:
        from vcmtool.golden import RECORD_THREADS

        kw["threads"] = RECORD_THREADS  # bytes reproducible across runs and machines
    if record:
        from vcmtool.outputs import Output, check_outputs

        named = [(record, "--record"), (output, "-o/--output"), (kw.get("qpm_out"), "--qpm-out"),
                 (kw.get("overlay"), "--overlay"), (kw.get("side_stream_out"), "--side-stream-out")]
        check_outputs([Output(p, o) for p, o in named if p], inputs)
    for path in inputs:
        job = EncodeJob(input=path, output=output, map_options=map_opts,
                        encoder_params=parse_params(params), measure=not no_measure,
                        overlap=not no_overlap, **kw)
        report = run_encode(job)
        if record:
            from vcmtool.golden import record as record_golden

            record_golden(record, job, report)
        if as_json:
            emit_json(report)
        else:
            print_encode_summary(report)
