"""Training and evaluation of the JRD predictors (SNN-JRD and the EL-JRD baseline). Imports torch.

Data: a JRD dataset (:mod:`vcmtool.lab.jrd.format`); each image becomes the PIA input F_p (from the
task model's detections on the original, :mod:`vcmtool.qpmap.prior`) and its CTU label grid.
Inputs are cached under ``OUT/cache`` so a resumed run does not re-detect.

Validation errors: :mod:`vcmtool.lab.jrd.metrics`.

Optimisation as section 5.4: Adam, lr 4e-4, batch 1, full-resolution (un-resized) inputs; loss
eq. 5 (alpha 0.3, theta 3) for SNN-JRD, class-balanced BCE for EL-JRD. A checkpoint
(``last.pt``, plus ``best.pt`` by validation E_total) is written atomically after every epoch;
``resume`` continues from ``last.pt`` with the optimizer and RNG state.

Stabilisers (off by default, the paper names none): with batch 1 and lr 4e-4 the validation
E_total of consecutive epochs jumped between 7 and 21 QP, so "best epoch" picked noise. ``ema``
keeps an exponential moving average of the weights (evaluated and checkpointed instead of the
raw weights), ``schedule="cosine"`` decays the learning rate to zero over the run, ``augment``
mirrors image and label grid left-right (the grid is whole 64-CTUs wide, so columns map to
columns), ``clip`` bounds the gradient norm.

``instance_weight`` w weighs the CTUs of labelled instances 1 + w in the loss (eq. 5 or BCE become
weighted means). Why: E_s/E_m/E_l/E_total are measured on instance CTUs only, but ~80% of the
CTUs are background (label = qp_max, easy), so the paper's unweighted loss spends most of its
signal where the metric does not look. w = 0 is the paper's loss.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vcmtool.atomic import atomic_path
from vcmtool.errors import InputError, UsageError
from vcmtool.lab.jrd.eljrd import LEVELS, ElJrd, balanced_bce, level_targets
from vcmtool.lab.jrd.metrics import Sample, default_cache, evaluate, instance_cells, load_samples
from vcmtool.lab.jrd.snn import SnnConfig, SnnJrd, jrd_loss

# --- the two model kinds: how to build one, its loss, its config --------------------------------


def _pos_weight(samples: list[Sample]) -> torch.Tensor:
    labels = np.concatenate([s.label.ravel() for s in samples])
    pos = np.array([(labels >= lv).sum() for lv in LEVELS], np.float64)
    neg = labels.size - pos
    return torch.tensor(
        np.where(pos > 0, neg / np.maximum(pos, 1), 1.0).clip(0.05, 20.0), dtype=torch.float32
    )


class SnnKind:
    name = "snn"

    def build(self, config: dict, samples: list[Sample]) -> torch.nn.Module:
        return SnnJrd(SnnConfig.from_json(config))

    def default_config(self, qp_max: int, samples: list[Sample]) -> dict:
        return SnnConfig(qp_max=qp_max).to_json()

    def loss(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return jrd_loss(model(x), y, weight=weight)


class ElJrdKind:
    name = "eljrd"

    def build(self, config: dict, samples: list[Sample]) -> torch.nn.Module:
        m = ElJrd(stem=config["stem"], fallback=config["fallback"])
        m.pos_weight = torch.tensor(config["pos_weight"])
        return m

    def default_config(self, qp_max: int, samples: list[Sample]) -> dict:
        labels = np.concatenate([s.label.ravel() for s in samples])
        low = labels[labels < LEVELS[0]]
        return {
            "stem": 8,
            "fallback": float(np.median(low)) if low.size else 26.0,
            "pos_weight": _pos_weight(samples).tolist(),
            "levels": list(LEVELS),
        }

    def loss(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return balanced_bce(model.forward_logits(x), y, model.pos_weight, weight)


KINDS: dict[str, Any] = {"snn": SnnKind(), "eljrd": ElJrdKind()}
_ = level_targets  # re-exported for tests


def predictor(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x.astype(np.float32)))[0].numpy()

    return predict


def _save(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint; train one with `vcmtool jrd train`")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        kind = KINDS[ck["kind"]]
        model = kind.build(ck["config"], [])
        model.load_state_dict(ck["state"])
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's file problem
        raise InputError(
            f"{path}: not a readable JRD checkpoint ({type(e).__name__}); re-run `vcmtool jrd train`"
        ) from None
    model.eval()
    return model, ck


@dataclass
class TrainOptions:
    kind: str = "snn"
    epochs: int = 10
    lr: float = 4e-4
    seed: int = 0
    resume: bool = False
    max_minutes: float | None = None  # stop after the epoch that crosses this
    config: dict = field(default_factory=dict)  # overrides of the model config
    threads: int = 1
    cache: str | None = None  # PIA inputs cache (default .cache/jrd-inputs/<task model>)
    ema: float = 0.0  # weight EMA decay per step (0 = off), e.g. 0.995
    schedule: str = "constant"  # or "cosine" (to zero over ``epochs``)
    augment: bool = False  # random left-right mirror of input and labels
    clip: float | None = None  # max gradient norm
    instance_weight: float = 0.0  # extra loss weight of CTUs inside labelled instances
    coding: str = "intra"  # which label set to train on: intra or lowdelay


class WeightEma:
    """Exponential moving average of a model's floating-point state (parameters and buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                self.state[k].copy_(v)


def _lr_at(opts: TrainOptions, step: int, total: int) -> float:
    if opts.schedule == "cosine":
        return 0.5 * opts.lr * (1.0 + np.cos(np.pi * min(step, total) / max(1, total)))
    return opts.lr


def _mirror(*grids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(torch.flip(g, dims=[-1]) for g in grids)


def instance_weights(sample: Sample, extra: float) -> np.ndarray:
    """Per-CTU loss weight: 1, plus ``extra`` on every CTU a labelled instance covers."""
    w = np.ones(sample.label.shape, np.float32)
    for inst in sample.instances:
        rs, cs = instance_cells(inst["box"], sample.label.shape)
        w[rs, cs] = 1.0 + extra
    return w


def train(
    dataset_dir: str | Path,
    out_dir: str | Path,
    opts: TrainOptions,
    task_model: str = "yolov3-tiny",
    log: Callable[[str], None] = print,
) -> dict:
    if opts.kind not in KINDS:
        raise UsageError(f"--model {opts.kind}: use one of {', '.join(KINDS)}")
    if opts.schedule not in ("constant", "cosine"):
        raise UsageError(f"--schedule {opts.schedule}: use constant or cosine")
    if not 0.0 <= opts.ema < 1.0:
        raise UsageError(f"--ema {opts.ema}: use a decay in [0, 1)")
    # One thread: on a few shared cores, intra-op threads spin against each other (measured 20x
    # slower with 2 threads under load); a GPU is used when present.
    torch.set_num_threads(max(1, opts.threads))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from vcmtool.lab.jrd.format import load_dataset

    ds = load_dataset(dataset_dir)
    qp_max, codec = ds.qp_max, ds.manifest.get("codec", "hevc")
    cache = Path(opts.cache) if opts.cache else default_cache(task_model)
    ds.check_coding(opts.coding)
    labels = {**ds.labels, "coding": opts.coding}  # what the model learns: recorded in checkpoints
    train_s = load_samples(dataset_dir, "train", task_model, cache, coding=opts.coding)
    val_s = load_samples(dataset_dir, "val", task_model, cache, coding=opts.coding)
    if not train_s:
        raise InputError(f"{dataset_dir}: no training images; build the dataset first")
    kind = KINDS[opts.kind]
    last = out / "last.pt"
    if opts.resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        config, start, history, best = ck["config"], ck["epoch"], ck["history"], ck["best"]
        model = kind.build(config, train_s)
        model.load_state_dict(ck["state"])
        ema = WeightEma(model, opts.ema) if opts.ema else None
        if ck.get("raw_state") is not None:
            model.load_state_dict(ck["raw_state"])
        optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
        optim.load_state_dict(ck["optim"])
        random.setstate(ck["rng"]["py"])
        torch.set_rng_state(ck["rng"]["torch"])
        log(f"resumed {last} at epoch {start}")
    else:
        config = {**kind.default_config(qp_max, train_s), **opts.config}
        torch.manual_seed(opts.seed)
        random.seed(opts.seed)
        model = kind.build(config, train_s)
        optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
        start, history, best = 0, [], None
        ema = WeightEma(model, opts.ema) if opts.ema else None
    model.to(device)
    if ema is not None:
        ema.state = {k: v.to(device) for k, v in ema.state.items()}
    total_steps = opts.epochs * len(train_s)
    if hasattr(model, "pos_weight"):
        model.pos_weight = model.pos_weight.to(device)
    t0 = time.perf_counter()
    for epoch in range(start, opts.epochs):
        model.train()
        order = list(range(len(train_s)))
        random.shuffle(order)
        total = 0.0
        bar = tqdm(
            order, desc=f"{opts.kind} epoch {epoch + 1}/{opts.epochs}", unit="img", leave=False, disable=None
        )
        for n, i in enumerate(bar):
            s = train_s[i]
            x = torch.from_numpy(s.x.astype(np.float32)).to(device)
            y = torch.from_numpy(s.label)[None].to(device)
            w = (
                torch.from_numpy(instance_weights(s, opts.instance_weight))[None].to(device)
                if opts.instance_weight
                else None
            )
            if opts.augment and random.random() < 0.5:
                x, y, *rest = _mirror(x, y, *([w] if w is not None else []))
                w = rest[0] if rest else None
            for g in optim.param_groups:
                g["lr"] = _lr_at(opts, epoch * len(train_s) + n, total_steps)
            loss = kind.loss(model, x, y, w)
            optim.zero_grad()
            loss.backward()
            if opts.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip)
            optim.step()
            if ema is not None:
                ema.update(model)
            total += float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.2f}")
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()} if ema else None
        if ema is not None:  # validate and ship the averaged weights
            model.load_state_dict(ema.state)
        model.eval().cpu()
        val = evaluate(predictor(model), val_s) if val_s else {}
        model.to(device)
        rec = {
            "epoch": epoch + 1,
            "loss": round(total / len(train_s), 4),
            "val": val,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        history.append(rec)
        log(json.dumps(rec))
        # clone: on CPU .cpu() aliases the live parameters, which the raw weights overwrite next
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if raw is not None:  # keep optimising the raw weights
            model.load_state_dict(raw)
        ck = {
            "kind": opts.kind,
            "config": config,
            "state": state,
            "optim": optim.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best": best,
            "qp_max": qp_max,
            "codec": codec,
            "dataset": str(dataset_dir),
            "labels": labels,
            "lr": opts.lr,
            "train_images": len(train_s),
            "val_images": len(val_s),
            "rng": {"py": random.getstate(), "torch": torch.get_rng_state()},
            "recipe": {
                "ema": opts.ema,
                "schedule": opts.schedule,
                "augment": opts.augment,
                "clip": opts.clip,
                "instance_weight": opts.instance_weight,
                "epochs": opts.epochs,
                "seed": opts.seed,
            },
            # with EMA, "state" is the averaged model; the optimiser's weights resume from here
            "raw_state": None if raw is None else {k: v.detach().cpu() for k, v in raw.items()},
        }
        score = val.get("E_total") if val else rec["loss"]
        if best is None or (score is not None and score <= best["score"]):
            best = {"epoch": epoch + 1, "score": score}
            ck["best"] = best
            _save(out / "best.pt", ck)
        _save(last, ck)
        if opts.max_minutes and time.perf_counter() - t0 > 60 * opts.max_minutes:
            log(f"stopping after epoch {epoch + 1}: --max-minutes {opts.max_minutes} reached")
            break
    return {"history": history, "best": best, "out": str(out)}
