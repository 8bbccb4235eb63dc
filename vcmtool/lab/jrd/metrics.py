"""JRD predictor inputs and validation errors (E_s / E_m / E_l / E_total); no torch.

Inputs: each dataset image becomes the PIA input F_p (from the task model's detections on the
original, :mod:`vcmtool.qpmap.prior`) and its CTU label grid, cached as ``CACHE/<id>.npz``.

Errors (the paper's Table 1), in QP units of the dataset's codec:

* for every labelled instance, its CTUs are the CTU cells its box overlaps; the error of a CTU
  is |predicted QP - label QP| (the label is the CTU's min-pooled l_max, so overlapping instances
  share it);
* E_s / E_m / E_l: mean of those errors over all CTUs of all instances of that size class
  (COCO areas: small < 32^2 <= medium < 96^2 <= large), i.e. a CTU-weighted mean;
* E_total: the same mean over the CTUs of all instances (a CTU counted once per instance);
* E_bg (extra): mean error over the CTUs no instance touches (label = qp_max there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vcmtool.atomic import atomic_path
from vcmtool.errors import InputError
from vcmtool.qpmap.prior import MIN_SCORE, model_input

SIZES = ("small", "medium", "large")


def default_cache(task_model: str) -> Path:
    from vcmtool.media import cache_dir

    return cache_dir().parent / "jrd-inputs" / task_model.replace("/", "_").replace(":", "_")


@dataclass
class Sample:
    id: str
    x: np.ndarray  # (1, 3, H', W') float32, H', W' multiples of 64
    label: np.ndarray  # (gh, gw) float32
    instances: list[dict[str, Any]]


def load_samples(
    dataset_dir: str | Path,
    split: str,
    task_model: str,
    cache: Path,
    limit: int | None = None,
    coding: str = "intra",
) -> list[Sample]:
    """Inputs and labels of ``split``; ``coding`` picks the label set (intra or lowdelay)."""
    from vcmtool.lab.jrd.format import load_dataset
    from vcmtool.tasks import get_task_model

    ds = load_dataset(dataset_dir)
    entries = ds.entries(split, coding)[:limit]
    cache.mkdir(parents=True, exist_ok=True)
    model = None
    out: list[Sample] = []
    for e in tqdm(entries, desc=f"inputs {split}", unit="img", leave=False, disable=None):
        path = cache / f"{e['id']}.npz"
        label = ds.label(e, coding).astype(np.float32)
        inst = [{"box": i["box"], "size": i["size"]} for i in ds.instances(e)]
        if path.exists():
            x = np.load(path)["x"]
        else:
            model = model or get_task_model(task_model, score_threshold=MIN_SCORE)
            bgr = ds.image(e)
            x = model_input(bgr, model.detect(bgr)).astype(np.float16)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, x=x)
        if x.shape[2] // 64 != label.shape[0] or x.shape[3] // 64 != label.shape[1]:
            raise InputError(
                f"{dataset_dir}: label of {e['id']} is {label.shape}, image needs "
                f"{(x.shape[2] // 64, x.shape[3] // 64)}; rebuild the dataset"
            )
        out.append(Sample(e["id"], x, label, inst))
    return out


def instance_cells(box: list[float], grid: tuple[int, int], ctu: int = 64) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    c0, r0 = max(0, int(x0 // ctu)), max(0, int(y0 // ctu))
    c1 = min(grid[1], int(np.ceil(x1 / ctu)))
    r1 = min(grid[0], int(np.ceil(y1 / ctu)))
    return slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1))


@dataclass
class ErrorMeter:
    """Accumulates |pred - label| per instance size class (see the module docstring)."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys((*SIZES, "bg"), 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*SIZES, "bg"), 0))

    def add(self, pred: np.ndarray, label: np.ndarray, instances: list[dict[str, Any]]) -> None:
        err = np.abs(pred.astype(np.float64) - label)
        touched = np.zeros(label.shape, bool)
        for inst in instances:
            rs, cs = instance_cells(inst["box"], label.shape)
            self.sums[inst["size"]] += float(err[rs, cs].sum())
            self.counts[inst["size"]] += int(err[rs, cs].size)
            touched[rs, cs] = True
        self.sums["bg"] += float(err[~touched].sum())
        self.counts["bg"] += int((~touched).sum())

    def result(self) -> dict[str, float | int | None]:
        def mean(keys: tuple[str, ...]) -> float | None:
            n = sum(self.counts[k] for k in keys)
            return round(sum(self.sums[k] for k in keys) / n, 3) if n else None

        return {
            "E_s": mean(("small",)),
            "E_m": mean(("medium",)),
            "E_l": mean(("large",)),
            "E_total": mean(SIZES),
            "E_bg": mean(("bg",)),
            "ctus": {k: self.counts[k] for k in (*SIZES, "bg")},
        }


def evaluate(predict: Callable[[np.ndarray], np.ndarray], samples: list[Sample]) -> dict:
    meter = ErrorMeter()
    for s in samples:
        meter.add(predict(s.x), s.label, s.instances)
    return meter.result()
