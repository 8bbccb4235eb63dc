"""``vcmtool qpmap``: compute maps without encoding; optional overlay PNG."""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import (
    MapSourceCommand,
    collect_map_options,
    emit_json,
    input_options,
    map_options,
)
from vcmtool.cli.summary import console
from vcmtool.outputs import Output, refuse_existing
from vcmtool.pipeline import EncodeJob, run_qpmap


@main.command("qpmap", cls=MapSourceCommand)
@click.argument("input")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="maps file (.qpm)")
@click.option(
    "-c",
    "--codec",
    default="kvazaar",
    show_default=True,
    help="target encoder (sets the QP range and constraints)",
)
@map_options
@click.option("--qp-offset", type=int, default=0, show_default=True)
@input_options
@click.option(
    "--overlay",
    type=click.Path(dir_okay=False),
    help="PNG of the map with the widest QP spread over its frame",
)
@click.option("--json", "as_json", is_flag=True, help="print map statistics as JSON")
@click.option("-y", "--overwrite", is_flag=True, help="replace output files that already exist")
def qpmap_cmd(input: str, output: str, overlay: str | None, as_json: bool, overwrite: bool, **kw) -> None:
    """Compute per-CTU QP maps for INPUT and write them as .qpm."""
    map_opts = collect_map_options(kw, [kw["qpmap"]])
    kw["ctu"] = int(kw["ctu"])
    job = EncodeJob(input=input, map_options=map_opts, **kw)
    if not overwrite:
        refuse_existing([Output(output, "-o/--output"), Output(overlay or "", "--overlay")])
    _, stats = run_qpmap(job, output, overlay)
    if as_json:
        emit_json(stats)
    else:
        console.print(
            f"[bold]{output}[/]: {stats['frames']} maps, QP {stats['min']}..{stats['max']}"
            f" mean {stats['mean']:.2f} ({stats['map_s']:.2f}s)"
        )
