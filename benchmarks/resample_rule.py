"""Where does downscaling pay? Per clip and base QP, the mAP a scaled encode gains over the
full-size curve at the same rate: the measured basis of ``--scale auto`` (vcmtool/resample.py).

    python benchmarks/resample_rule.py BENCH_DIR/results.json

Reads a ``vcmtool bench --scales 1,0.75,0.5[,auto]`` result. For each group, method ``none@F``
and QP, the full-size ``none`` curve is interpolated (linear in log bpp, within its range only) at
the scaled point's rate; the table gives mAP(scaled) - mAP(full size) in points, per judge and
metric (positive: scaling wins at that rate), and the task model's median box height of the group
(full size, score >= 0.3, detected again on the inputs as ``--scale auto`` does; n/a for an input
that is not on this machine), the input to the auto rule.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    res = json.loads(Path(sys.argv[1]).read_text())
    curves = res["curves"]
    judges = list(res["protocol"]["judges"])
    heights = _heights(res)
    groups = dict.fromkeys(c["group"] for c in curves)
    methods = sorted({c["method"] for c in curves if c["method"] != "none"})
    print("gain of METHOD over full size at equal rate, mAP points (judge: mAP@.5 / mAP@[.5:.95])")
    for g in groups:
        full = sorted(
            (c for c in curves if c["group"] == g and c["method"] == "none"), key=lambda c: c["bpp"]
        )
        print(f"\n{g}  (median object height, task model, full size: {heights.get(g, 'n/a')} px)")
        for m in methods:
            for c in sorted(
                (c for c in curves if c["group"] == g and c["method"] == m), key=lambda c: c["qp"]
            ):
                cells = []
                for j in judges:
                    for k in ("map50", "map"):
                        ref = _interp(full, c["bpp"], j, k)
                        mine = (c["judges"].get(j) or {}).get(k)
                        cells.append("  n/a" if ref is None or mine is None else f"{mine - ref:+5.1f}")
                print(
                    f"  {m:12s} QP{c['qp']} scale {c.get('scale')!s:5s} bpp {c['bpp']:.5f}  "
                    + "  ".join(cells)
                )


def _interp(full: list[dict], bpp: float, judge: str, key: str) -> float | None:
    x = np.log([c["bpp"] for c in full])
    y = [(c["judges"].get(judge) or {}).get(key) for c in full]
    if any(v is None for v in y) or not x[0] <= np.log(bpp) <= x[-1]:
        return None
    return float(np.interp(np.log(bpp), x, y))


def _heights(res: dict) -> dict[str, float]:
    """Median box height per group from the results' points (the encode reports keep no
    detections), so: reopen the inputs and detect, as --scale auto does."""
    from vcmtool.io.open import open_video
    from vcmtool.resample import object_heights

    cfg = res["config"]
    out = {}
    for inp in cfg["inputs"]:
        path = _local(inp)
        if path is None:
            print(f"note: {inp} is not on this machine; its median object height is n/a", file=sys.stderr)
            continue
        clip = open_video(path, cfg["size"], cfg["fps"], cfg["pix_fmt"], cfg["skip"], cfg["frames"])
        h = object_heights(clip, cfg["task_model"])
        name = inp.rsplit("/", 1)[-1]
        out[name] = round(float(np.median(h)), 1) if h else None
    return out


def _local(inp: str) -> str | None:
    """The input's path on this machine (results.json writes machine paths portably), or None
    when it is not here."""
    from vcmtool.bench.report import local_path

    path = local_path(inp)
    return path if Path(path).is_file() else None


if __name__ == "__main__":
    main()
