"""``vcmtool bench``: RD curves, task mAP and BD figures over a grid of encodes.

``grid`` (point specs), ``methods`` (what a method name means), ``points`` (the work per point),
``judges`` (scoring by further detectors), ``run`` (orchestration), ``report``
(CSV/JSON/Markdown/PNG). mAP, bootstrap and BD-rate are :mod:`vcmtool.eval`, shared with the
experiments in :mod:`vcmtool.lab`.
"""

from vcmtool.bench.grid import BenchConfig
from vcmtool.bench.run import BenchResult, run_bench

__all__ = ["BenchConfig", "BenchResult", "run_bench"]
