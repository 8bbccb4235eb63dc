"""Training and evaluation of the JRD predictors (SNN-JRD and the EL-JRD baseline). Imports torch.

Data: a JRD dataset (:mod:`vcmtool.jrd.format`); each image becomes the PIA input F_p (from the
task model's detections on the original, :mod:`vcmtool.jrd.prior`) and its CTU label grid.
Inputs are cached under ``OUT/cache`` so a resumed run does not re-detect.

Validation errors: :mod:`vcmtool.jrd.metrics`.

Optimisation as section 5.4: Adam, lr 4e-4, batch 1, full-resolution (un-resized) inputs; loss
eq. 5 (alpha 0.3, theta 3) for SNN-JRD, class-balanced BCE for EL-JRD. A checkpoint
(``last.pt``, plus ``best.pt`` by validation E_total) is written atomically after every epoch;
``resume`` continues from ``last.pt`` with the optimizer and RNG state.
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
from vcmtool.jrd.eljrd import LEVELS, ElJrd, balanced_bce, level_targets
from vcmtool.jrd.metrics import Sample, default_cache, evaluate, load_samples
from vcmtool.jrd.snn import SnnConfig, SnnJrd, jrd_loss

# --- the two model kinds: how to build one, its loss, its config --------------------------------

def _pos_weight(samples: list[Sample]) -> torch.Tensor:
    labels = np.concatenate([s.label.ravel() for s in samples])
    pos = np.array([(labels >= lv).sum() for lv in LEVELS], np.float64)
    neg = labels.size - pos
    return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0).clip(0.05, 20.0),
                        dtype=torch.float32)


class SnnKind:
    name = "snn"

    def build(self, config: dict, samples: list[Sample]) -> torch.nn.Module:
        return SnnJrd(SnnConfig.from_json(config))

    def default_config(self, qp_max: int, samples: list[Sample]) -> dict:
        return SnnConfig(qp_max=qp_max).to_json()

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return jrd_loss(model(x), y)


class ElJrdKind:
    name = "eljrd"

    def build(self, config: dict, samples: list[Sample]) -> torch.nn.Module:
        m = ElJrd(stem=config["stem"], fallback=config["fallback"])
        m.pos_weight = torch.tensor(config["pos_weight"])
        return m

    def default_config(self, qp_max: int, samples: list[Sample]) -> dict:
        labels = np.concatenate([s.label.ravel() for s in samples])
        low = labels[labels < LEVELS[0]]
        return {"stem": 8, "fallback": float(np.median(low)) if low.size else 26.0,
                "pos_weight": _pos_weight(samples).tolist(), "levels": list(LEVELS)}

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return balanced_bce(model.forward_logits(x), y, model.pos_weight)


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
        raise InputError(f"{path}: not a readable JRD checkpoint ({type(e).__name__}); "
                         "re-run `vcmtool jrd train`") from None
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


def train(dataset_dir: str | Path, out_dir: str | Path, opts: TrainOptions,
          task_model: str = "yolov3-tiny", log: Callable[[str], None] = print) -> dict:
    if opts.kind not in KINDS:
        raise UsageError(f"--model {opts.kind}: use one of {', '.join(KINDS)}")
    # One thread: on a few shared cores, intra-op threads spin against each other (measured 20x
    # slower with 2 threads under load); a GPU is used when present.
    torch.set_num_threads(max(1, opts.threads))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from vcmtool.jrd.format import load_dataset

    ds = load_dataset(dataset_dir)
    qp_max, codec = ds.qp_max, ds.manifest.get("codec", "hevc")
    cache = Path(opts.cache) if opts.cache else default_cache(task_model)
    train_s = load_samples(dataset_dir, "train", task_model, cache)
    val_s = load_samples(dataset_dir, "val", task_model, cache)
    if not train_s:
        raise InputError(f"{dataset_dir}: no training images; build the dataset first")
    kind = KINDS[opts.kind]
    last = out / "last.pt"
    if opts.resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        config, start, history, best = ck["config"], ck["epoch"], ck["history"], ck["best"]
        model = kind.build(config, train_s)
        model.load_state_dict(ck["state"])
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
    model.to(device)
    if hasattr(model, "pos_weight"):
        model.pos_weight = model.pos_weight.to(device)
    t0 = time.perf_counter()
    for epoch in range(start, opts.epochs):
        model.train()
        order = list(range(len(train_s)))
        random.shuffle(order)
        total = 0.0
        bar = tqdm(order, desc=f"{opts.kind} epoch {epoch + 1}/{opts.epochs}", unit="img",
                   leave=False, disable=None)
        for i in bar:
            s = train_s[i]
            x = torch.from_numpy(s.x.astype(np.float32)).to(device)
            y = torch.from_numpy(s.label)[None].to(device)
            loss = kind.loss(model, x, y)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.2f}")
        model.eval().cpu()
        val = evaluate(predictor(model), val_s) if val_s else {}
        model.to(device)
        rec = {"epoch": epoch + 1, "loss": round(total / len(train_s), 4), "val": val,
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(rec)
        log(json.dumps(rec))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        ck = {"kind": opts.kind, "config": config, "state": state, "optim": optim.state_dict(),
              "epoch": epoch + 1, "history": history, "best": best, "qp_max": qp_max,
              "codec": codec, "dataset": str(dataset_dir), "lr": opts.lr,
              "train_images": len(train_s), "val_images": len(val_s),
              "rng": {"py": random.getstate(), "torch": torch.get_rng_state()}}
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
