"""``vcmtool bench``: RD curves, task mAP and BD figures over a grid of encodes.

``grid`` (point specs), ``points`` (the work per point), ``evaluate`` (pycocotools mAP, bootstrap),
``bdrate`` (Bjontegaard deltas), ``run`` (orchestration), ``report`` (CSV/JSON/Markdown/PNG).
"""

from vcmtool.bench.grid import BenchConfig
from vcmtool.bench.run import BenchResult, run_bench

__all__ = ["BenchConfig", "BenchResult", "run_bench"]
