"""PNG figures of the MFIBA experiments (``vcmtool mfiba fit --plots``, ``vcmtool mfiba features``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from vcmtool.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def fit_plots(doc: dict, curve: list, cls_curves: dict, rq: dict, out_dir: Path) -> list[str]:
    """Loss-rate fits, class importance curves and rate-QP priors of ``mfiba fit``; the paths written."""
    from vcmtool.ratecontrol.models import CauchyLossRate, QuadraticLossRate, RateQPModel

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bpp = np.array([p[0] for p in curve])
    xs = np.linspace(bpp.min() * 0.9, bpp.max() * 1.05, 200)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (i, metric, label) in zip(
        axes, ((1, "map50_95", "mAP@[.5:.95]"), (2, "map50", "mAP@.5")), strict=True
    ):
        f = doc["loss_rate_fits"][metric]
        c, q = f["cauchy"], f["quadratic"]
        ax.plot(bpp, [p[i] for p in curve], "ko", label="measured (dev set, pooled)")
        ax.plot(
            xs,
            CauchyLossRate(c["alpha"], c["beta"]).predict(xs),
            "b-",
            label=f"Cauchy r={c['r']:.4f} RMSE={c['rmse']:.3f}",
        )
        ax.plot(
            xs,
            QuadraticLossRate(q["c0"], q["c1"], q["c2"]).predict(xs),
            "r--",
            label=f"quadratic r={q['r']:.4f} RMSE={q['rmse']:.3f}",
        )
        ax.set_xlabel("bpp")
        ax.set_ylabel(f"task loss: 100*(1-{label}) vs pseudo-GT")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("MFIBA task loss-rate models (kvazaar intra, YOLOv3-tiny)")
    fig.tight_layout()
    _save(fig, out_dir / "loss_rate.png")
    written.append(str(out_dir / "loss_rate.png"))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for cls, pts in cls_curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"only {cls} degraded")
    ax.set_xlabel(f"QP of the degraded class (other class at QP {doc['importance']['reference_qp']})")
    ax.set_ylabel("task loss 100*(1-mAP@[.5:.95])")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out_dir / "importance.png")
    written.append(str(out_dir / "importance.png"))
    plt.close(fig)
    if rq:
        fig, ax = plt.subplots(figsize=(5, 4))
        for enc, d in rq.items():
            q = np.array([p[0] for p in d["points"]])
            ax.semilogy(q, [p[1] for p in d["points"]], "o", label=f"{enc} measured")
            ax.semilogy(
                q,
                RateQPModel(d["a"], d["b"]).rate(q),
                "-",
                label=f"{enc}: log R = {d['a']:.2f} {d['b']:+.4f} QP (r={d['r']:.4f})",
            )
        ax.set_xlabel("QP")
        ax.set_ylabel("bpp")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _save(fig, out_dir / "rate_qp.png")
        written.append(str(out_dir / "rate_qp.png"))
        plt.close(fig)
    return written


def fcm_plot(doc: dict, path: Path, cm, qm) -> None:
    """Rate-accuracy of uniform vs MFIBA feature coding and the loss-rate fits (``mfiba features``)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for key, style, label in (("uniform", "o-", "uniform QP"), ("mfiba", "s-", "MFIBA per-scale QP")):
        ax.plot([p["bpp"] for p in doc[key]], [p["map50_95"] for p in doc[key]], style, label=label)
    ax.set_xlabel("feature bpp")
    ax.set_ylabel("mAP@[.5:.95] vs pseudo-GT (%)")
    bdv = doc["bd_rate_mfiba_vs_uniform"]["mAP@[.5:.95]"]["bd_rate_pct"]
    ax.set_title(f"BD-rate MFIBA vs uniform: {bdv} %")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    x = np.array([p["bpp"] for p in doc["uniform"]])
    xs = np.linspace(x.min() * 0.9, x.max() * 1.05, 200)
    ax.plot(x, [100 - p["map50_95"] for p in doc["uniform"]], "ko", label="measured (uniform)")
    c, q = doc["loss_rate"]["cauchy"], doc["loss_rate"]["quadratic"]
    ax.plot(xs, cm.predict(xs), "b-", label=f"Cauchy r={c['r']:.4f} RMSE={c['rmse']:.3f}")
    ax.plot(xs, qm.predict(xs), "r--", label=f"quadratic r={q['r']:.4f} RMSE={q['rmse']:.3f}")
    ax.set_xlabel("feature bpp")
    ax.set_ylabel("task loss 100 - mAP@[.5:.95]")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
