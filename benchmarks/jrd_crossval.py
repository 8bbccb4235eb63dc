"""K-fold cross-validation of JRD predictors (SNN-JRD, EL-JRD, a plain CNN) over the JRD
dataset's video chunks, against a constant.

    python benchmarks/jrd_crossval.py OUT [--folds 4] [--snn-epochs 15] [--el-epochs 60] [--jobs 2]
        [--models snn,eljrd,plain] [--label monotone|eq1] [--track-percentile P]
        [--coding intra|lowdelay]

This is the acceptance test of a JRD predictor (docs/design.md "Accepting a predictor"). The
builder's fixed 8:1:1 test split is not used for acceptance: in data/jrd-hevc it is 13 frames,
essentially one 25-frame bikes chunk, where a constant QP beats every model; it cannot rank two
predictors. Here every image, the test split's included, is held out once: images are grouped
in the same chunks the dataset builder splits by (25 frames of one video; each still alone),
chunks are dealt to folds by a hash, and for each fold every model is trained on the other
folds with the same recipe and evaluated on it. No checkpoint is selected
on the held-out fold: the *last* epoch is evaluated (cosine schedule + weight EMA make it a
well-defined model). Errors are pooled over all held-out CTUs (E_total as ``vcmtool jrd eval``);
each model minus the constant, and SNN-JRD minus EL-JRD, get a bootstrap CI over chunks.

Labels: ``--coding`` picks the label set (intra, or lowdelay for a dataset built with
``--coding lowdelay``); ``--label`` / ``--track-percentile`` relabel a copy of the dataset's
label files from the stored curves first (OUT/data; no encoding), otherwise the dataset's own
labels are used. The label kind is written into crossval.json and the table.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jrd_runs import train_run

# predictor -> (jrd train --model, extra options); "plain" is SNN-JRD with its three spiking
# modules replaced by plain convolutions / concat attention (the ablation's all-off row)
KINDS = {
    "snn": ("snn", ["--stem", "16"]),
    "eljrd": ("eljrd", []),
    "plain": ("snn", ["--stem", "16", "--no-tfd", "--no-mrr", "--no-taa"]),
}
NAMES = {"snn": "SNN-JRD", "eljrd": "EL-JRD", "plain": "plain CNN (no TFD/MRR/TAA)"}
RECIPE = ["--ema", "0.995", "--schedule", "cosine", "--augment", "--clip", "5"]


@functools.cache
def _is_video(source: str) -> bool:
    from vcmtool.lab.jrd.sources import is_video

    return is_video(source)


def chunk_of(entry: dict, chunk: int) -> str:
    """The builder's split group: ``chunk`` frames of one clip (frame 0 included), or the still."""
    if _is_video(entry["source"]):
        return f"{entry['source']}#{entry['frame'] // chunk}"
    return f"{entry['source']}#still"


def deal(keys: set[str], folds: int) -> dict[str, int]:
    """Chunks in md5 order dealt round-robin: a fixed shuffle with equal chunk counts per fold."""
    order = sorted(keys, key=lambda k: hashlib.md5(k.encode()).hexdigest())
    return {k: i % folds for i, k in enumerate(order)}


def relabelled(dataset: Path, out: Path, label: str | None, pct: float | None) -> Path:
    """``dataset`` itself, or a copy of its labels relabelled by ``label`` / ``pct``."""
    if label is None and pct is None:
        return dataset
    import shutil

    from vcmtool.lab.jrd.relabel import relabel

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("labels", "labels_lowdelay", "instances"):
        if (dataset / sub).is_dir() and not (out / sub).exists():
            shutil.copytree(dataset / sub, out / sub)
    shutil.copy(dataset / "manifest.json", out / "manifest.json")
    relabel(out, label, pct)
    return out


def make_fold(dataset: Path, out: Path, k: int, folds: int) -> Path:
    """A dataset view whose ``val`` split is fold k and ``train`` the rest (labels symlinked)."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    chunk = int(manifest.get("build", {}).get("split_chunk", 25))
    fold = deal({chunk_of(e, chunk) for e in manifest["images"]}, folds)
    for e in manifest["images"]:
        e["split"] = "val" if fold[chunk_of(e, chunk)] == k else "train"
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("labels", "labels_lowdelay", "instances"):
        link = out / sub
        if (dataset / sub).is_dir() and not link.exists():
            link.symlink_to((dataset / sub).resolve())
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def evaluate(data: Path, folds_dir: Path, kinds: list[str], coding: str = "intra") -> list[dict]:
    """Per held-out image: its chunk and, for each predictor, the summed |error| over its
    instance CTUs (as E_total counts them) and the CTU count. ``constant`` predicts the median
    instance-CTU label of the fold's training images everywhere (the floor a model must beat)."""
    import numpy as np
    import torch

    from vcmtool.lab.jrd.metrics import default_cache, instance_cells, load_samples
    from vcmtool.lab.jrd.train import load_checkpoint, predictor

    torch.set_num_threads(1)
    cache = default_cache("yolov3-tiny")
    manifest = json.loads((data / "manifest.json").read_text())
    chunk = int(manifest.get("build", {}).get("split_chunk", 25))
    chunks = {e["id"]: chunk_of(e, chunk) for e in manifest["images"]}
    train_labels = [
        s.label[instance_cells(i["box"], s.label.shape)].ravel()
        for s in load_samples(data, "train", "yolov3-tiny", cache, coding=coding)
        for i in s.instances
    ]
    median = float(np.median(np.concatenate(train_labels)))
    models = {kind: predictor(load_checkpoint(folds_dir / kind / "last.pt")[0]) for kind in kinds}
    out = []
    for s in load_samples(data, "val", "yolov3-tiny", cache, coding=coding):
        preds = {kind: m(s.x) for kind, m in models.items()}
        preds["constant"] = np.full(s.label.shape, median, np.float32)
        row = {"id": s.id, "chunk": chunks[s.id], "ctus": 0, **dict.fromkeys(preds, 0.0)}
        for inst in s.instances:
            cells = instance_cells(inst["box"], s.label.shape)
            for name, pred in preds.items():
                row[name] += float(np.abs(pred[cells] - s.label[cells]).sum())
            row["ctus"] += int(s.label[cells].size)
        out.append(row)
    return out


def summarise(rows: list[dict], boot: int = 2000) -> dict:
    """Pooled E_total per predictor; each model minus the constant, and SNN - EL, with 95%
    bootstrap CIs over chunks."""
    import numpy as np

    names = [k for k in (*KINDS, "constant") if k in rows[0]]
    chunks = sorted({r["chunk"] for r in rows})
    sums = np.zeros((len(chunks), len(names) + 1))
    for r in rows:
        sums[chunks.index(r["chunk"])] += [r[n] for n in names] + [r["ctus"]]
    total = sums.sum(0)
    pairs = [(m, "constant") for m in names if m != "constant"]
    if "snn" in names and "eljrd" in names:
        pairs.append(("snn", "eljrd"))
    rng = np.random.default_rng(0)
    draws = [sums[rng.integers(0, len(chunks), len(chunks))].sum(0) for _ in range(boot)]
    diffs = {}
    for x, y in pairs:
        i, j = names.index(x), names.index(y)
        d = [(b[i] - b[j]) / b[-1] for b in draws]
        lo, hi = np.percentile(d, [2.5, 97.5]) if d else (np.nan, np.nan)
        diffs[f"{x}-{y}"] = {
            "diff": round(float((total[i] - total[j]) / total[-1]), 3),
            "ci95": [round(float(lo), 3), round(float(hi), 3)],
        }
    return {
        "chunks": len(chunks),
        "ctus": int(total[-1]),
        "E_total": {n: round(float(total[i] / total[-1]), 3) for i, n in enumerate(names)},
        "differences": diffs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", type=Path, default=Path("data/jrd-hevc"))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--snn-epochs", type=int, default=15, help="also the plain model's")
    ap.add_argument("--el-epochs", type=int, default=60)
    ap.add_argument("--models", default="snn,eljrd", help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (one core each)")
    ap.add_argument("--label", choices=["monotone", "eq1"], help="relabel by this rule first")
    ap.add_argument("--track-percentile", type=float, help="relabel with this track smoothing first")
    ap.add_argument("--coding", choices=["intra", "lowdelay"], default="intra", help="label set")
    a = ap.parse_args()
    from vcmtool.lab.jrd.format import load_dataset

    source = relabelled(a.dataset, a.out / "data", a.label, a.track_percentile)
    ds = load_dataset(source)
    ds.check_coding(a.coding)
    labels = {**ds.labels, "coding": a.coding}
    datas = [make_fold(source, a.out / f"fold{k}" / "data", k, a.folds) for k in range(a.folds)]
    kinds = [k.strip() for k in a.models.split(",") if k.strip()]
    if not kinds or set(kinds) - set(KINDS):
        raise SystemExit(f"--models: choose from {', '.join(KINDS)}")
    jobs = [
        (
            d,
            d.parent / kind,
            KINDS[kind][0],
            a.el_epochs if kind == "eljrd" else a.snn_epochs,
            [*RECIPE, "--coding", a.coding, *KINDS[kind][1]],
        )
        for kind in kinds
        for d in datas
    ]
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda j: train_run(*j, quiet=True), jobs))
    rows = [r | {"fold": k} for k, d in enumerate(datas) for r in evaluate(d, d.parent, kinds, a.coding)]
    per_fold = [summarise([r for r in rows if r["fold"] == k], boot=0)["E_total"] for k in range(a.folds)]
    overall = summarise(rows)
    report = {
        "folds": a.folds,
        "snn_epochs": a.snn_epochs,
        "el_epochs": a.el_epochs,
        "recipe": RECIPE,
        "labels": labels,
        "per_fold_E_total": per_fold,
        "pooled": overall,
        "images": rows,
    }
    (a.out / "crossval.json").write_text(json.dumps(report, indent=1))
    names = {k: NAMES[k] for k in KINDS if k in kinds} | {"constant": "constant (train-fold median)"}
    lines = [
        f"labels: {labels['rule']}, track percentile {labels['track_percentile']:g}, {a.coding}\n",
        "| predictor | " + " | ".join(f"fold {k}" for k in range(a.folds)) + " | pooled E_total |",
        "|---|" + "---|" * (a.folds + 1),
    ]
    for key, name in names.items():
        lines.append(
            f"| {name} | " + " | ".join(str(f[key]) for f in per_fold) + f" | {overall['E_total'][key]} |"
        )
    lines.append(
        f"\n{overall['chunks']} chunks, {overall['ctus']} instance CTUs; "
        "differences in QP, 95% CI over chunks:\n"
    )
    for pair, d in overall["differences"].items():
        x, y = pair.split("-")
        lines.append(f"- {names[x]} - {names[y]}: {d['diff']:+.3f} {d['ci95']}")
    (a.out / "crossval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
