"""``vcmtool batch MANIFEST``: many encodes, in parallel, resumable, failures isolated."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from vcmtool.batch import (
    default_state_dir,
    encode_item,
    outputs_of,
    prepare_state,
    read_manifest,
    state_lock,
    state_tag,
)
from vcmtool.cli import main
from vcmtool.cli.summary import console
from vcmtool.runner import ENGINES, run_items


@main.command()
@click.argument("manifest")
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="parallel encodes (default: CPU count; each encode uses --threads 1 unless its row says)",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="process",
    show_default=True,
    help="process: local process pool; ray: Ray tasks (local Ray unless --address)",
)
@click.option("--address", help="Ray cluster address (e.g. ray://head:10001 or auto); --engine ray only")
@click.option(
    "--state",
    "state",
    type=click.Path(file_okay=False),
    help="folder of per-item results for resuming (default: MANIFEST.state/)",
)
@click.option(
    "--outdir",
    type=click.Path(file_okay=False),
    help="output folder: rows without 'output' write here, relative outputs resolve "
    "here, and no row may write outside it (default: MANIFEST.out/)",
)
@click.option(
    "--allow-outside",
    is_flag=True,
    help="let rows write outside --outdir (absolute or ../ paths); only for trusted manifests",
)
def batch(
    manifest: str,
    workers: int | None,
    engine: str,
    address: str | None,
    state: str | None,
    outdir: str | None,
    allow_outside: bool,
) -> None:
    """Encode every row of MANIFEST (CSV or JSON lines of encode options; '-' reads stdin).

    Columns/keys are encode option names: input (required), output, codec, qpmap, qp, qp_offset,
    frames, preset, threads, ... Prints one JSON line per row on stdout
    ({"line", "key", "ok", "cached", "error", "report"}); a summary goes to stderr. A killed run
    resumes where it stopped when started again; failed rows are retried. Exit 1 if any row failed.
    """
    if address and engine != "ray":
        raise click.UsageError("--address needs --engine ray")
    rows, out_dir = read_manifest(manifest, Path(outdir) if outdir else None, allow_outside)
    state_dir = Path(state) if state else default_state_dir(manifest)
    workers = workers or os.cpu_count() or 1
    by_key = {r.key: r for r in rows}
    quiet = engine == "ray" or workers > 1
    t0 = time.perf_counter()
    counts = {"done": 0, "cached": 0, "failed": 0}
    failures: list[tuple[int, str, str]] = []
    with state_lock(state_dir):
        prepare_state(rows, state_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for r in rows:  # folders inside --outdir that rows name (checked by the output policy)
            for p in outputs_of(r.job):
                if p.parent.resolve().is_relative_to(out_dir):
                    p.parent.mkdir(parents=True, exist_ok=True)
        tag = state_tag(state_dir)
        items = [r.item(quiet, tag) for r in rows]
        for o in run_items(
            encode_item, items, state_dir, workers, engine, address, desc=f"batch {Path(manifest).name}"
        ):
            row = by_key[o.item.key]
            line = {
                "line": row.line,
                "key": o.item.key,
                "ok": o.ok,
                "cached": o.cached,
                "input": row.job.input,
                "output": row.job.output,
                "error": o.error,
                "report": o.result,
            }
            click.echo(json.dumps(line))
            sys.stdout.flush()  # a consumer (or a kill) sees each row the moment it is done
            if not o.ok:
                counts["failed"] += 1
                failures.append((row.line, row.job.input, o.error or ""))
            else:
                counts["cached" if o.cached else "done"] += 1
    _summary(manifest, len(rows), counts, failures, time.perf_counter() - t0, state_dir)
    if failures:
        sys.exit(1)


def _summary(manifest: str, n: int, counts: dict, failures: list, dt: float, state_dir: Path) -> None:
    new = counts["done"] + counts["failed"]
    rate = f", {counts['done'] / dt * 60:.1f} encodes/min" if counts["done"] and dt > 0 else ""
    console.print(
        f"[bold]batch {manifest}[/]: {n} rows: {counts['done']} encoded, "
        f"{counts['cached']} already done, {counts['failed']} failed "
        f"({new} run in {dt:.1f}s{rate}); state in {state_dir}"
    )
    for line, inp, err in sorted(failures):
        console.print(f"  [red]failed[/] line {line} ({inp}): {err}", highlight=False)
    if failures:
        console.print("  re-run the same command to retry the failed rows; finished rows are kept")
