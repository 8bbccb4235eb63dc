"""Paired difference of two bench runs' BD figures, with a bootstrap CI of the difference.

    python benchmarks/paired_delta.py A/results.json B/results.json [--method M] [--markdown]

Two runs of ``vcmtool bench`` over the same inputs and frames (e.g. ``--map-interval auto`` and
``--map-interval 1``, or two settings of a map source) each give, per group, codec, method and
judge, a BD-rate against the same uniform-QP anchor with a bootstrap CI over frames. Read side by
side, two CIs of +-20 points cannot tell whether the runs differ by 2 points. The bench resamples
frames with a seeded generator that depends only on the group's frame count and the number of
replicates, so replicate i of run A and replicate i of run B scored the *same* resampled frames:
the differences A_i - B_i give a paired CI, which removes the noise both runs share (which frames
happen to be hard for the judge).

Rows are matched on (group, codec, method, judge); with ``--method`` one method of A is compared
with another of B, e.g. ``--method loop=roi``. The runs must share each group's frame count and
the bootstrap size (checked). Output: one line per matched row and metric (``bd_rate_map50``,
``bd_rate_map`` in percent; ``bd_map50_low``, BD-mAP@0.5 over the cheaper half of the rates, in
mAP points): A, B, A - B and its 95% CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

METRICS = ("bd_rate_map50", "bd_rate_map", "bd_map50_low")
UNITS = {"bd_map50_low": " pts"}  # the others are BD-rates, in percent


def rows(results: dict) -> dict[tuple[str, str, str, str], dict]:
    out = {}
    for b in results["bd"]:
        for judge, jb in (b.get("judges") or {}).items():
            if jb:
                out[(b["group"], b["codec"], b["method"], judge)] = jb
    return out


def frames(results: dict) -> dict[str, int]:
    return {r["group"]: r["frames"] for r in results["reference"]}


def paired(a: dict, b: dict, metric: str) -> dict | None:
    va, vb = a.get(metric), b.get(metric)
    ba, bb = a.get(f"{metric}_boot"), b.get(f"{metric}_boot")
    if va is None or vb is None:
        return None
    out = {"a": va, "b": vb, "delta": va - vb, "ci": None, "replicates": 0}
    if ba and bb and len(ba) == len(bb):
        d = np.array([x - y for x, y in zip(ba, bb, strict=True) if x is not None and y is not None])
        if d.size >= 10:
            out["ci"] = (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)))
            out["replicates"] = int(d.size)
    return out


def compare(a: dict, b: dict, method_map: dict[str, str] | None = None) -> list[dict]:
    if a["config"]["bootstrap"] != b["config"]["bootstrap"]:
        raise SystemExit("the runs used different --bootstrap counts: their replicates do not pair")
    fa, fb = frames(a), frames(b)
    ra, rb = rows(a), rows(b)
    out = []
    for (group, codec, method, judge), x in ra.items():
        other = (method_map or {}).get(method, method)
        y = rb.get((group, codec, other, judge))
        if y is None:
            continue
        if fa.get(group) != fb.get(group):
            raise SystemExit(f"group {group}: {fa.get(group)} frames in A, {fb.get(group)} in B")
        for metric in METRICS:
            p = paired(x, y, metric)
            if p is not None:
                out.append(
                    {"group": group, "codec": codec, "method": method, "versus": other, "judge": judge}
                    | {"metric": metric}
                    | p
                )
    return out


def fmt_ci(r: dict) -> str:
    return f"[{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}]" if r["ci"] else "(no CI)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--method", action="append", default=[], help="A_METHOD=B_METHOD (repeatable)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    method_map = dict(m.split("=", 1) for m in args.method)
    res = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()), method_map)
    if not res:
        print("no rows in common (same groups, codecs, methods and judges?)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    if args.markdown:
        print("| group | codec | method (A vs B) | judge | metric | A | B | A - B [95% paired CI] |")
        print("|---|---|---|---|---|---|---|---|")
    for r in res:
        ci = fmt_ci(r)
        u = UNITS.get(r["metric"], "%")
        name = r["method"] if r["method"] == r["versus"] else f"{r['method']} vs {r['versus']}"
        if args.markdown:
            print(
                f"| {r['group']} | {r['codec']} | {name} | {r['judge']} | {r['metric']} | "
                f"{r['a']:+.1f}{u} | {r['b']:+.1f}{u} | {r['delta']:+.1f} {ci} |"
            )
        else:
            print(
                f"{r['group']:>12} {r['codec']:8} {name:16} {r['judge']:12} {r['metric']:14} "
                f"{r['a']:+.1f}{u} vs {r['b']:+.1f}{u}: {r['delta']:+.1f} {ci}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
