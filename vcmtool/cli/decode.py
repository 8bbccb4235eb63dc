"""``vcmtool decode``: the receiver of scaled encodes: decode, read the original size from the
SEI, upsample to it, write Y4M (:func:`vcmtool.resample.receive`)."""

from __future__ import annotations

import sys

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import console
from vcmtool.outputs import Output, check_outputs, refuse_existing


@main.command()
@click.argument("bitstream")
@click.option("-o", "--output", required=True, help="Y4M output ('-' for stdout)")
@click.option(
    "--filter",
    "filt",
    type=click.Choice(["lanczos", "bicubic", "bilinear"]),
    default="lanczos",
    show_default=True,
    help="upsampling filter",
)
@click.option(
    "--size",
    help="original WxH for streams that do not carry it (AV1/IVF); overrides the SEI's",
)
@click.option("--fps", type=float, help="frame rate of the Y4M (default: the SEI's, else the stream's)")
@click.option(
    "--bit-depth", type=click.Choice(["8", "10"]), default="8", show_default=True, help="output bit depth"
)
@click.option("--json", "as_json", is_flag=True, help="print what was done as JSON (stderr with -o -)")
@click.option("-y", "--overwrite", is_flag=True, help="replace the output if it exists")
def decode(
    bitstream: str,
    output: str,
    filt: str,
    size: str | None,
    fps: float | None,
    bit_depth: str,
    as_json: bool,
    overwrite: bool,
) -> None:
    """Decode BITSTREAM and upsample it to the original size its SEI names (`vcmtool encode
    --scale`); a stream without one is written as decoded."""
    from vcmtool.errors import UsageError
    from vcmtool.resample import receive

    if fps is not None and not (0 < fps <= 1000):
        raise UsageError(f"--fps {fps}: use a number in (0, 1000]")
    to_stdout = output in ("-", "pipe:")
    if not to_stdout:
        outs = [Output(output, "-o/--output")]
        check_outputs(outs, [bitstream])
        if not overwrite:
            refuse_existing(outs)
    target = sys.stdout.buffer if to_stdout else output
    res = receive(bitstream, target, filt, size, fps, int(bit_depth))
    if as_json:
        if to_stdout:
            import json

            click.echo(json.dumps(res), err=True)
        else:
            emit_json(res)
    else:
        how = (
            f"upsampled {res['resample']['coded_width']}x{res['resample']['coded_height']} -> "
            if res["upsampled"]
            else "no resampling metadata; as decoded: "
        )
        console.print(
            f"{res['frames']} frames, {how}{res['width']}x{res['height']} ({res['filter']}) -> {output}"
        )
