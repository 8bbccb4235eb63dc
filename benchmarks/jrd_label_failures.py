"""What fails a JRD instance first: coding damage or the detector's flicker.

    python benchmarks/jrd_label_failures.py DATASET [--upto 36]     (prints JSON)

Reads the per-QP curves a dataset built with ``--coding lowdelay`` stores for each clip instance
(no encoding, no model) and compares the two label sets on the same instances: the mean label,
the median first failing QP and the share failing at QP 20 or below; which distance crossed its
threshold at the first failure (score, box, region, class, or no match; the dataset's own
thresholds, in that order of precedence: a lost detection first, then class, score, box,
region); how many of the QPs between the first failure and ``--upto`` (36) pass again, i.e. how
non-monotone the curves are; and whether fragile objects (reference score below 0.4) fail
earlier than robust ones. docs/results.md, "Labels from low-delay coding", quotes its output on
the grown dataset.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from vcmtool.lab.jrd.format import load_dataset
from vcmtool.lab.jrd.labels import Thresholds

FRAGILE_SCORE = 0.4  # reference scores in [0.3, 0.4): the objects "Do not chase fragile objects" means


def failure_reason(curve: dict[str, list], k: int, thr: Thresholds) -> str:
    """The distance that failed ``curve`` at level index ``k``."""
    if not curve["matched"][k]:
        return "lost"
    for name in ("cls", "score", "box", "mask"):
        if curve[name][k] > getattr(thr, name):
            return {"cls": "class", "mask": "region"}.get(name, name)
    return "none"


def passes_after(curve: dict[str, list], qps: list[int], first: int | None, upto: int) -> float | None:
    """Share of the levels in (first, upto] that pass; None when there are none."""
    ks = [k for k, q in enumerate(qps) if first is not None and first < q <= upto]
    return float(np.mean([curve["passed"][k] for k in ks])) if ks else None


def summarise(dataset: str, upto: int = 36) -> dict:
    ds = load_dataset(dataset)
    ds.check_coding("lowdelay")
    thr = Thresholds.from_json(ds.manifest.get("thresholds", {}))
    top = ds.qp_max + 1  # "never fails" counts as failing just above the range
    rows: dict[str, dict[str, list]] = {
        c: {"label": [], "first": [], "reason": [], "again": []} for c in ("intra", "lowdelay")
    }
    scores = []
    for e in ds.entries():
        doc = json.loads((ds.root / e["instances"]).read_text())
        if not isinstance(doc.get("lowdelay"), dict):
            continue  # a still: its low-delay label is its intra label
        for inst in doc["instances"]:
            if "lowdelay" not in inst:
                continue
            scores.append(inst["score"])
            for coding, rec, qps in (
                ("intra", inst, doc["qps"]),
                ("lowdelay", inst["lowdelay"], doc["lowdelay"]["qps"]),
            ):
                first = rec["first_failure"]
                r = rows[coding]
                r["label"].append(rec["label"])
                r["first"].append(top if first is None else first)
                r["reason"].append(
                    "none" if first is None else failure_reason(rec["curve"], qps.index(first), thr)
                )
                r["again"].append(passes_after(rec["curve"], qps, first, upto))
    fragile = np.array(scores) < FRAGILE_SCORE
    out: dict = {
        "instances": len(scores),
        "fragile_share": round(float(fragile.mean()), 3) if scores else None,
    }
    for coding, r in rows.items():
        first = np.array(r["first"])
        again = [a for a in r["again"] if a is not None]
        n = max(len(r["reason"]), 1)
        out[coding] = {
            "mean_label": round(float(np.mean(r["label"])), 2) if r["label"] else None,
            "median_first_failure": float(np.median(first)) if len(first) else None,
            "share_failing_at_20_or_below": round(float((first <= 20).mean()), 3) if len(first) else None,
            "first_failure_reason": {k: round(v / n, 3) for k, v in Counter(r["reason"]).most_common()},
            f"passing_again_up_to_{upto}": round(float(np.mean(again)), 3) if again else None,
            "median_first_failure_fragile_robust": [
                float(np.median(first[fragile])) if fragile.any() else None,
                float(np.median(first[~fragile])) if (~fragile).any() else None,
            ],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--upto", type=int, default=36, help="last QP counted for 'passing again'")
    a = ap.parse_args()
    print(json.dumps(summarise(a.dataset, a.upto), indent=1))


if __name__ == "__main__":
    main()
