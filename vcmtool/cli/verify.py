"""``vcmtool verify golden.json``: re-run recorded encodes and compare their md5s (exit 1 on any change)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table
from tqdm import tqdm

from vcmtool import golden
from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import console

_STYLE = {"match": "green", "mismatch": "red", "input-changed": "yellow", "error": "red"}


@main.command()
@click.argument("golden_file", metavar="GOLDEN", type=click.Path(dir_okay=False))
@click.option(
    "--files",
    "files_only",
    is_flag=True,
    help="check the recorded output files on disk instead of re-encoding",
)
@click.option("--json", "as_json", is_flag=True, help="print the checks as JSON on stdout")
def verify(golden_file: str, files_only: bool, as_json: bool) -> None:
    """Re-encode every entry of GOLDEN (written by `vcmtool encode --record`) and compare the md5
    of the bitstream and of the decoded frames. Exit 1 on any mismatch or error."""
    path = Path(golden_file)
    n = len(golden.load(path)["entries"])
    with tqdm(total=n, desc="verify", unit="entry", disable=None) as bar:
        checks = golden.verify(path, reencode=not files_only, progress=bar.update)
    if as_json:
        emit_json(
            {"golden": golden_file, "ok": all(c.ok for c in checks), "checks": [c.to_json() for c in checks]}
        )
    _table(golden_file, checks)
    if not all(c.ok for c in checks):
        sys.exit(1)


def _table(name: str, checks: list[golden.Check]) -> None:
    bad = sum(not c.ok for c in checks)
    t = Table(title=f"{name}: {len(checks) - bad} match, {bad} not", title_justify="left")
    for col in ("#", "entry", "bitstream", "decoded", "status", "detail"):
        t.add_column(col)
    for i, c in enumerate(checks, 1):
        detail = "; ".join(filter(None, [c.detail, *c.versions]))
        t.add_row(
            str(i), c.name, c.bitstream or "-", c.decoded or "-", f"[{_STYLE[c.status]}]{c.status}[/]", detail
        )
    console.print(t)
