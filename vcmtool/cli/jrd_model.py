"""``vcmtool jrd train | export | eval``: the SNN-JRD / EL-JRD predictors.

``train`` and ``export`` import torch (only when run); ``eval`` runs the ONNX file in
onnxruntime, as ``--qpmap auto`` does.
"""

from __future__ import annotations

from pathlib import Path

import click

from vcmtool.cli.jrd import jrd
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import console


def _print_errors(title: str, res: dict) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for k in ("E_s", "E_m", "E_l", "E_total", "E_bg"):
        t.add_column(k, justify="right")
    t.add_row(
        *("-" if res.get(k) is None else f"{res[k]:.2f}" for k in ("E_s", "E_m", "E_l", "E_total", "E_bg"))
    )
    console.print(t)


@jrd.command("train")
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="run directory (checkpoints last.pt / best.pt)",
)
@click.option("--model", "kind", type=click.Choice(["snn", "eljrd"]), default="snn", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lr", type=float, default=4e-4, show_default=True)
@click.option("--resume", is_flag=True, help="continue from OUTPUT/last.pt")
@click.option(
    "--max-minutes", type=click.FloatRange(min=0), help="stop after the epoch that crosses this wall time"
)
@click.option(
    "--stem",
    type=click.Choice(["4", "8", "16"]),
    default="8",
    show_default=True,
    help="working resolution 1/STEM inside the network",
)
@click.option("--no-tfd", is_flag=True, help="ablation: TFD -> 3x3 convolutions")
@click.option("--no-mrr", is_flag=True, help="ablation: MRR -> a 3x3 convolution")
@click.option("--no-taa", is_flag=True, help="ablation: TAA -> concat attention")
@click.option("--task-model", default="yolov3-tiny", show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads (1 is fastest on a busy machine)",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--ema",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="validate and ship an exponential moving average of the weights (decay per step)",
)
@click.option(
    "--schedule",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="learning-rate schedule over --epochs",
)
@click.option("--augment", is_flag=True, help="random left-right mirroring")
@click.option("--clip", type=click.FloatRange(min=0, min_open=True), help="max gradient norm")
@click.option(
    "--instance-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="extra loss weight on CTUs inside labelled instances (0 = the paper's loss)",
)
@click.option(
    "--coding",
    type=click.Choice(["intra", "lowdelay"]),
    default="intra",
    show_default=True,
    help="label set to train on (lowdelay: the dataset must be built with --coding lowdelay)",
)
@click.option("--json", "as_json", is_flag=True)
def train_cmd(
    dataset: str,
    output: str,
    kind: str,
    epochs: int,
    lr: float,
    resume: bool,
    max_minutes: float | None,
    stem: str,
    no_tfd: bool,
    no_mrr: bool,
    no_taa: bool,
    task_model: str,
    threads: int,
    seed: int,
    ema: float,
    schedule: str,
    augment: bool,
    clip: float | None,
    instance_weight: float,
    coding: str,
    as_json: bool,
) -> None:
    """Train SNN-JRD (or the EL-JRD baseline) on a JRD dataset's train split."""
    from vcmtool.lab.jrd.train import TrainOptions, train

    config: dict = {"stem": int(stem)}
    if kind == "snn":
        config.update(tfd=not no_tfd, mrr=not no_mrr, taa=not no_taa)
    opts = TrainOptions(
        kind=kind,
        epochs=epochs,
        lr=lr,
        seed=seed,
        resume=resume,
        max_minutes=max_minutes,
        config=config,
        threads=threads,
        ema=ema,
        schedule=schedule,
        augment=augment,
        clip=clip,
        instance_weight=instance_weight,
        coding=coding,
    )
    res = train(dataset, output, opts, task_model, log=lambda m: console.print(m, markup=False))
    if as_json:
        emit_json(res)
    else:
        console.print(
            f"best epoch {res['best']['epoch']} (val E_total {res['best']['score']}), checkpoints in {output}"
        )


@jrd.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="ONNX file")
@click.option("--unrolled", is_flag=True, help="export the literal T-step LIF recursion")
@click.option("--json", "as_json", is_flag=True)
def export_cmd(checkpoint: str, output: str, unrolled: bool, as_json: bool) -> None:
    """Export a trained checkpoint to ONNX (with kind/codec/qp_max metadata)."""
    from vcmtool.lab.jrd.export import export_onnx

    res = export_onnx(checkpoint, output, unrolled=unrolled)
    if as_json:
        emit_json(res)
    else:
        console.print(f"{output}: {res['bytes']} bytes ({res['kind']}, {res['codec']})")


@jrd.command("eval")
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    help="ONNX model [the shipped SNN-JRD trained on --coding's labels, intra by default]",
)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--task-model", default="yolov3-tiny", show_default=True)
@click.option(
    "--coding",
    type=click.Choice(["intra", "lowdelay"]),
    help="label set to score against [the one the model was trained on]",
)
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(
    dataset: str, model_path: str | None, split: str, task_model: str, coding: str | None, as_json: bool
) -> None:
    """Mean absolute QP error per instance size (E_s/E_m/E_l/E_total) of an ONNX model."""
    from vcmtool.errors import InputError
    from vcmtool.lab.jrd.metrics import default_cache, evaluate, load_samples
    from vcmtool.qpmap.jrd_model import SHIPPED_MODELS, JrdPredictor

    path = Path(model_path) if model_path else SHIPPED_MODELS[coding or "intra"]["snn"]
    pred = JrdPredictor(path)
    coding = coding or pred.meta.get("label_coding", "intra")
    samples = load_samples(dataset, split, task_model, default_cache(task_model), coding=coding)
    if not samples:
        raise InputError(f"{dataset}: no {split} images")
    res = {
        "model": str(path),
        "kind": pred.kind,
        "split": split,
        "coding": coding,
        "images": len(samples),
        **evaluate(pred.predict, samples),
    }
    if as_json:
        emit_json(res)
    else:
        _print_errors(f"{path.name} on {split} ({len(samples)} images)", res)
