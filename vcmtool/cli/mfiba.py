"""``vcmtool mfiba``: fit and show the MFIBA models (task loss-rate, importance, rate-QP) and run
their experiments. The experiments themselves are :mod:`vcmtool.lab.mfiba.experiments`; this
module only parses options and prints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import console


@main.group()
def mfiba() -> None:
    """MFIBA bit allocation models (the MFIBA paper): fit them from multi-pass coding, or print them."""


@mfiba.command("fit")
@click.option(
    "-o",
    "--output",
    default="vcmtool/models/mfiba_params.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="parameter JSON to write (default: the shipped file, relative to a checkout)",
)
@click.option("--plots", "plot_dir", type=click.Path(file_okay=False), help="write PNG plots here")
@click.option(
    "--state",
    "state_dir",
    default=".cache/mfiba-fit",
    show_default=True,
    type=click.Path(file_okay=False),
    help="resumable per-image results",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--encoders",
    default="kvazaar,x265",
    show_default=True,
    help="encoders to fit rate-QP priors for (unavailable ones are skipped)",
)
@click.option("--json", "as_json", is_flag=True, help="print the parameters as JSON on stdout")
def fit(
    output: str, plot_dir: str | None, state_dir: str, workers: int, encoders: str, as_json: bool
) -> None:
    """Fit the task loss-rate models, class importance and rate-QP priors on development media."""
    from vcmtool.lab.mfiba.experiments import run_fit

    doc = run_fit(output, plot_dir, state_dir, workers, encoders)
    if as_json:
        emit_json(doc)
    else:
        _print(doc, output)


def _print(doc: dict, path: str) -> None:
    from rich.table import Table

    t = Table(title=f"MFIBA task loss-rate fits ({path})")
    for c in ("metric", "model", "params", "r", "RMSE"):
        t.add_column(c)
    for metric, f in doc["loss_rate_fits"].items():
        for name, m in f.items():
            params = ", ".join(f"{k}={v:.4g}" for k, v in m.items() if k not in ("r", "rmse", "n"))
            t.add_row(metric, name, params, f"{m['r']:.4f}", f"{m['rmse']:.4f}")
    console.print(t)
    imp = doc["importance"]
    console.print(f"importance density: {imp['density']} (instance area share {imp['instance_area_share']})")
    for enc, d in doc.get("rate_qp", {}).items():
        console.print(
            f"rate-QP {enc}: log bpp = {d['a']:.4f} + ({d['b']:.5f})*QP, r={d['r']:.4f}, "
            f"RMSE(log)={d['rmse']:.4f}"
        )


@mfiba.command("show")
@click.option("--params", type=click.Path(dir_okay=False), help="parameter JSON (default: shipped)")
@click.option("--json", "as_json", is_flag=True)
def show(params: str | None, as_json: bool) -> None:
    """Print the fitted MFIBA parameters."""
    from vcmtool.ratecontrol.params import default_params_path, load_params

    p = Path(params) if params else default_params_path()
    load_params(p)  # validates, with a one-line error if missing or malformed
    doc = json.loads(p.read_text())
    if as_json:
        emit_json(doc)
    else:
        _print(doc, str(p))


@mfiba.command("eval")
@click.option(
    "--clip",
    "clips",
    multiple=True,
    default=("carphone:30", "bikes:20", "bigbuckbunny:8"),
    show_default=True,
    help="development clip NAME:FRAMES[:SKIP] (repeatable)",
)
@click.option("--codecs", default="kvazaar", show_default=True)
@click.option(
    "--qpmaps",
    default="none,roi",
    show_default=True,
    help="QP-map sources; 'none' is uniform allocation, others give MFIBA classes",
)
@click.option(
    "--targets-bpp",
    default="0.02,0.05,0.1,0.2",
    show_default=True,
    help="targets in bpp, turned into --target-kbps per clip",
)
@click.option("--preset", default="medium", show_default=True)
@click.option(
    "--task/--no-task",
    default=True,
    show_default=True,
    help="decode, detect and score mAP vs pseudo-GT (for BD-rate)",
)
@click.option("-o", "--out-dir", default="docs/mfiba", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--state", "state_dir", default=".cache/mfiba-eval", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def evaluate(clips, codecs, qpmaps, targets_bpp, preset, task, out_dir, state_dir, workers, as_json) -> None:
    """Target-rate accuracy table and MFIBA-vs-uniform BD-rate on development media."""
    from vcmtool.lab.mfiba.experiments import run_eval

    targets = [float(t) for t in targets_bpp.split(",")]
    doc, md = run_eval(clips, codecs, qpmaps, targets, preset, task, out_dir, state_dir, workers)
    if as_json:
        emit_json(doc)
    else:
        console.print("\n".join(md))
        for e in doc["errors"]:
            console.print(f"[red]{e}[/red]")


@mfiba.command("features")
@click.option(
    "--images",
    "n_images",
    type=click.IntRange(min=2),
    default=16,
    show_default=True,
    help="development images to use (those with detections, in DEV_IMAGES order)",
)
@click.option("-o", "--out-dir", default="docs/mfiba", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--state", "state_dir", default=".cache/mfiba-fcm", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def features(n_images: int, out_dir: str, state_dir: str, workers: int, as_json: bool) -> None:
    """Feature coding for machines: YOLOv3-tiny split features in a kvazaar atlas, MFIBA vs uniform QP."""
    from vcmtool.lab.mfiba.experiments import run_features

    doc, cm, cs, qs = run_features(n_images, out_dir, state_dir, workers)
    if as_json:
        emit_json(doc)
    else:
        console.print(
            f"FCM on {len(doc['images'])} images: mean MFIP weights {doc['mean_weights']}; "
            f"Cauchy alpha={cm.alpha:.4g} beta={cm.beta:.4g} r={cs.r:.4f} RMSE={cs.rmse:.3f}; "
            f"quadratic r={qs.r:.4f} RMSE={qs.rmse:.3f}"
        )
        for a, b in zip(doc["uniform"], doc["mfiba"], strict=True):
            console.print(
                f"QP {a['qp']}: uniform bpp {a['bpp']:.4f} mAP {a['map50_95']:.2f} | MFIBA bpp "
                f"{b['bpp']:.4f} mAP {b['map50_95']:.2f}"
            )
        console.print(f"BD-rate MFIBA vs uniform: {doc['bd_rate_mfiba_vs_uniform']}")
