"""Dataset statistics like the paper's Fig. 1: instances per QP bin by size, mean QP by size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool.atomic import atomic_path, write_text_atomic
from vcmtool.lab.jrd.format import SPLITS, load_dataset
from vcmtool.lab.jrd.labels import SIZE_CLASSES

BIN = 5


def dataset_stats(root: str | Path) -> dict[str, Any]:
    ds = load_dataset(root)
    qp_max = ds.qp_max
    lmax: dict[str, list[int]] = {s: [] for s in SIZE_CLASSES}
    classes: dict[str, int] = {}
    empty = 0
    for e in ds.entries():
        inst = ds.instances(e)
        empty += not inst
        for i in inst:
            lmax[i["size"]].append(int(i.get("label", i["l_max"])))  # version 1: eq. 1 labels
            classes[i["class"]] = classes.get(i["class"], 0) + 1
    edges = list(range(0, qp_max + 1, BIN))
    every = [v for s in SIZE_CLASSES for v in lmax[s]]

    def hist(vals: list[int]) -> list[int]:
        return [sum(lo <= v < lo + BIN for v in vals) for lo in edges]

    ld = [int(i["lowdelay"]["label"]) for e in ds.entries() for i in ds.instances(e) if "lowdelay" in i]
    return {
        "labels": ds.labels,
        "mean_label_lowdelay": round(float(np.mean(ld)), 2) if ld else None,
        "images": len(ds),
        "splits": {s: len(ds.entries(s)) for s in SPLITS},
        "failed": len(ds.manifest.get("failed", [])),
        "images_without_instances": empty,
        "instances": len(every),
        "instances_by_size": {s: len(lmax[s]) for s in SIZE_CLASSES},
        "instances_by_class": dict(sorted(classes.items(), key=lambda kv: -kv[1])),
        "mean_lmax_by_size": {s: round(float(np.mean(v)), 2) if v else None for s, v in lmax.items()},
        "mean_lmax": round(float(np.mean(every)), 2) if every else None,
        "median_lmax": float(np.median(every)) if every else None,
        "lmax_bins": [f"{lo}-{min(lo + BIN - 1, qp_max)}" for lo in edges],
        "lmax_hist": {**{s: hist(lmax[s]) for s in SIZE_CLASSES}, "total": hist(every)},
        "qp_max": qp_max,
    }


def plot_stats(stats: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2.2, 1]})
    x = np.arange(len(stats["lmax_bins"]))
    series = [*SIZE_CLASSES, "total"]
    w = 0.8 / len(series)
    for k, s in enumerate(series):
        a.bar(x + (k - 1.5) * w, stats["lmax_hist"][s], w, label=s)
    a.set_xticks(x, stats["lmax_bins"], rotation=45, fontsize=8)
    a.set_xlabel("l_max (QP)")
    a.set_ylabel("instances")
    a.set_title("(a) instances per compression level")
    a.legend()
    means = [stats["mean_lmax_by_size"][s] or 0 for s in SIZE_CLASSES]
    counts = [stats["instances_by_size"][s] for s in SIZE_CLASSES]
    bars = b.bar(SIZE_CLASSES, means, color=["C0", "C1", "C2"])
    for bar, n in zip(bars, counts, strict=True):
        b.annotate(
            f"n={n}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    b.set_ylabel("mean l_max (QP)")
    b.set_ylim(0, stats["qp_max"])
    b.set_title("(b) mean QP vs instance size")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_stats(root: str | Path, plots: bool = True) -> dict[str, Any]:
    """stats/stats.json (+ stats/fig1.png) for the dataset in ``root``."""
    root = Path(root)
    stats = dataset_stats(root)
    if plots:
        plot = root / "stats" / "fig1.png"
        plot_stats(stats, plot)
        stats["plot"] = str(plot)
    write_text_atomic(root / "stats" / "stats.json", json.dumps(stats, indent=1))
    return stats
