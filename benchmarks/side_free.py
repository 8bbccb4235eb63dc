"""Oracle for side-stream methods: their BD figures with the side stream's bits left out.

    python benchmarks/side_free.py RUN/results.json [--markdown | --json]

Run it from the directory the bench ran in (the inputs are named as they were given). It loads
the finished bench from ``RUN``'s state (nothing is encoded or detected again), subtracts each
point's side-stream bits from its rate and scores the run again with the bench's own code: the
BD-rate a side stream would give if its bits cost nothing. A method whose free-side CI does not
exclude zero cannot reach a CI below zero by coding its side stream more cheaply (entropy coding,
a budget): what limits it is what the receiver does with the bits, not what they cost.

Output: for each group, codec and side-stream method, the counted and free BD-rates on mAP@0.5
and mAP@[.5:.95] with their 95% bootstrap CIs, and the side stream's share of the rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vcmtool.bench.grid import BenchConfig
from vcmtool.bench.report import fmt_figure, local_path
from vcmtool.bench.run import gather, score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="results.json of a finished vcmtool bench")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", action="store_true", help="one JSON list of rows on stdout")
    a = ap.parse_args(argv)
    path = Path(a.results)
    cfg = BenchConfig(**json.loads(path.read_text())["config"])
    cfg.output = str(path.parent)
    cfg.inputs = [local_path(i) for i in cfg.inputs]  # as the run named them (report.portable)
    cfg.gt = local_path(cfg.gt) if cfg.gt else None
    g = gather(cfg)
    counted = score(cfg, g.sources, g.results, g.failures, list(g.notes), g.judged)
    share: dict[tuple[str, str], list[int]] = {}
    for spec, r in g.results.items():
        side = int(r.get("side_bits", 0))
        tot = share.setdefault((spec.codec, spec.qpmap), [0, 0])
        tot[0] += side
        tot[1] += int(r["bits"])
        r["bits"] -= side
        r["side_bits"] = 0
    free = score(cfg, g.sources, g.results, g.failures, list(g.notes), g.judged)
    before = {(b["group"], b["codec"], b["method"]): b for b in counted.bd}
    keys = ("bd_rate_map50", "bd_rate_map50_ci", "bd_rate_map", "bd_rate_map_ci")
    lines, rows = [], []
    if a.markdown:
        lines += [
            "| group | codec | method | judge | side share | BD-rate mAP@.5 counted | free "
            "| BD-rate mAP counted | free |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for b in free.bd:
        s = share.get((b["codec"], b["method"]), [0, 1])
        if not s[0]:
            continue  # no side stream: nothing to take out
        c = before[(b["group"], b["codec"], b["method"])]
        # every judge's figures (methods with their own receiver have the task model's only)
        for judge, fj in (b.get("judges") or {cfg.task_model: b}).items():
            if fj is None:
                continue  # a judge that does not score this method (cdre: its own receiver)
            cj = (c.get("judges") or {cfg.task_model: c}).get(judge) or {}
            rows.append(
                {
                    "group": b["group"],
                    "codec": b["codec"],
                    "method": b["method"],
                    "judge": judge,
                    "side_share": s[0] / s[1],
                    "counted": {k: cj.get(k) for k in keys},
                    "free": {k: fj.get(k) for k in keys},
                }
            )
            cells = [
                b["group"],
                b["codec"],
                b["method"],
                judge,
                f"{100 * s[0] / s[1]:.1f}%",
                fmt_figure(cj.get("bd_rate_map50"), cj.get("bd_rate_map50_ci"), "%"),
                fmt_figure(fj.get("bd_rate_map50"), fj.get("bd_rate_map50_ci"), "%"),
                fmt_figure(cj.get("bd_rate_map"), cj.get("bd_rate_map_ci"), "%"),
                fmt_figure(fj.get("bd_rate_map"), fj.get("bd_rate_map_ci"), "%"),
            ]
            lines.append("| " + " | ".join(cells) + " |" if a.markdown else "  ".join(cells))
    print(json.dumps(rows) if a.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
