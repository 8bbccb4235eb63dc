"""``vcmtool doctor``: which backends, models and native paths this machine has."""

from __future__ import annotations

import click
from rich.table import Table

from vcmtool import native
from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import result


def collect() -> dict:
    from vcmtool.encoders import ENCODERS

    enc = {}
    for name in ENCODERS.names():
        cls = ENCODERS.get(name)
        p = cls.probe()
        enc[name] = {
            "available": p.available,
            "version": p.version,
            "detail": p.detail,
            **cls.capabilities().to_json(),
        }
    return {
        "encoders": enc,
        "native": native.native_status(),
    }


@main.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Report encoders (found, version, block-QP granularity, QP range) and native support."""
    d = collect()
    if as_json:
        emit_json(d)
        return
    t = Table(title="encoders")
    for col in ("name", "found", "codec", "block QP", "QP range", "bit depth", "detail"):
        t.add_column(col)
    for name, e in d["encoders"].items():
        t.add_row(
            name,
            "yes" if e["available"] else "no",
            e["codec"],
            f"{e['block_qp']}x{e['block_qp']}" if e["block_qp"] else "frame only",
            f"{e['qp_range'][0]}-{e['qp_range'][1]}",
            ",".join(map(str, e["bit_depths"])),
            (e["version"] + " " + e["detail"]).strip(),
        )
    result.print(t)
    n = d["native"]
    fallback = "no (numpy fallback): " + n["native_error"]
    result.print(f"native extension: {'yes' if n['native'] else fallback}")
    for drv in ("x265", "x264"):
        result.print(f"  per-CTU {drv} driver: {'yes' if n[drv]['available'] else 'no'}, {n[drv]['detail']}")
