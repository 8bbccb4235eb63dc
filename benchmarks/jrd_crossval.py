"""K-fold cross-validation of JRD predictors (SNN-JRD, EL-JRD, a plain CNN) over the JRD
dataset's video chunks, against a constant.

    python benchmarks/jrd_crossval.py OUT [--folds 4] [--snn-epochs 15] [--el-epochs 60] [--jobs 2]
        [--models snn,eljrd,plain|ablation] [--label monotone|eq1|detected] [--track-percentile P]
        [--coding intra|lowdelay] [--references]

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

``--references`` adds predictors that need no training (``--models none`` runs them alone): the
training folds' median per COCO size class, and oracles that know the held-out chunk's, frame's
or instance's median label. They bound what any predictor of that granularity can reach, and so
tell a model that learned too little from labels that hold too little.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jrd_runs import train_run

MODULES = ("tfd", "mrr", "taa")
# predictor -> (jrd train --model, extra options); "plain" is SNN-JRD with its three spiking
# modules replaced by plain convolutions / concat attention (the ablation's all-off row). The
# other six rows of the TFD/MRR/TAA ablation are named by the modules they keep ("tfd+taa");
# ``--models ablation`` asks for all eight.
KINDS = {
    "snn": ("snn", ["--stem", "16"]),
    "eljrd": ("eljrd", []),
    "plain": ("snn", ["--stem", "16", *(f"--no-{m}" for m in MODULES)]),
}
NAMES = {"snn": "SNN-JRD", "eljrd": "EL-JRD", "plain": "plain CNN (no TFD/MRR/TAA)"}
for _on in itertools.chain(itertools.combinations(MODULES, 2), itertools.combinations(MODULES, 1)):
    _key = "+".join(_on)
    KINDS[_key] = ("snn", ["--stem", "16", *(f"--no-{m}" for m in MODULES if m not in _on)])
    NAMES[_key] = "SNN-JRD with " + " + ".join(m.upper() for m in _on) + " only"
ABLATION = ["snn", *list(KINDS)[3:], "plain"]
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


REFERENCES = {
    "size": "size-class median (train folds)",
    "source": "the same source's median (train folds)",
    "chunk_oracle": "oracle: the held-out chunk's median",
    "frame_oracle": "oracle: the held-out frame's median",
    "instance_oracle": "oracle: each instance's own median",
}


def evaluate(
    data: Path, folds_dir: Path, kinds: list[str], coding: str = "intra", references: bool = False
) -> list[dict]:
    """Per held-out image: its chunk and, for each predictor, the summed |error| over its
    instance CTUs (as E_total counts them) and the CTU count. ``constant`` predicts the median
    instance-CTU label of the fold's training images everywhere (the floor a model must beat).

    ``references`` adds predictors that need no model, to tell how much of the label is
    predictable at all: ``size`` (the training folds' median per COCO size class, on each
    instance's CTUs), ``source`` (their median over the same source clip or still, which a
    deployed predictor cannot know: it tells how far recognising the scene would go) and three
    oracles that read the held-out labels themselves: one QP per chunk, per frame, or per
    instance (the median of that chunk's / frame's / instance's CTU labels). What an oracle
    leaves is spread no predictor of that granularity can remove."""
    import numpy as np
    import torch

    from vcmtool.lab.jrd.metrics import default_cache, instance_cells, load_samples
    from vcmtool.lab.jrd.train import load_checkpoint, predictor

    torch.set_num_threads(1)
    cache = default_cache("yolov3-tiny")
    manifest = json.loads((data / "manifest.json").read_text())
    chunk = int(manifest.get("build", {}).get("split_chunk", 25))
    chunks = {e["id"]: chunk_of(e, chunk) for e in manifest["images"]}

    train = load_samples(data, "train", "yolov3-tiny", cache, coding=coding)
    held_out = load_samples(data, "val", "yolov3-tiny", cache, coding=coding)
    # each instance's CTU labels, per image (E_total's cells; every reference below reads them)
    cell_labels = {
        s.id: [s.label[instance_cells(i["box"], s.label.shape)].ravel() for i in s.instances]
        for s in (*train, *held_out)
    }

    def medians(groups: dict[str, list[np.ndarray]]) -> dict[str, float]:
        return {k: float(np.median(np.concatenate(v))) for k, v in groups.items() if v}

    median = float(np.median(np.concatenate([v for s in train for v in cell_labels[s.id]])))
    sources = {e["id"]: e["source"] for e in manifest["images"]}
    sized: dict[str, list[np.ndarray]] = {}
    per_source: dict[str, list[np.ndarray]] = {}
    for s in train:
        for inst, labels in zip(s.instances, cell_labels[s.id], strict=True):
            sized.setdefault(inst["size"], []).append(labels)
        per_source.setdefault(sources[s.id], []).extend(cell_labels[s.id])
    per_chunk: dict[str, list[np.ndarray]] = {}
    for s in held_out:
        per_chunk.setdefault(chunks[s.id], []).extend(cell_labels[s.id])
    by_size, by_source, chunk_median = medians(sized), medians(per_source), medians(per_chunk)
    models = {kind: predictor(load_checkpoint(folds_dir / kind / "last.pt")[0]) for kind in kinds}

    def per_instance(s, value) -> np.ndarray:
        """A grid with each instance's CTUs at ``value(instance, its labels)``, min-pooled where
        instances overlap (as the labels are)."""
        grid = np.full(s.label.shape, np.inf, np.float32)
        for inst, labels in zip(s.instances, cell_labels[s.id], strict=True):
            cells = instance_cells(inst["box"], s.label.shape)
            grid[cells] = np.minimum(grid[cells], value(inst, labels))
        return grid

    out = []
    for s in held_out:
        preds = {kind: m(s.x) for kind, m in models.items()}
        preds["constant"] = np.full(s.label.shape, median, np.float32)
        if references and s.instances:
            preds["size"] = per_instance(s, lambda i, _: by_size.get(i["size"], median))
            preds["source"] = np.full(s.label.shape, by_source.get(sources[s.id], median), np.float32)
            preds["chunk_oracle"] = np.full(s.label.shape, chunk_median[chunks[s.id]], np.float32)
            frame = float(np.median(np.concatenate(cell_labels[s.id])))
            preds["frame_oracle"] = np.full(s.label.shape, frame, np.float32)
            preds["instance_oracle"] = per_instance(s, lambda _, v: float(np.median(v)))
        elif references:
            preds.update(dict.fromkeys(REFERENCES, preds["constant"]))  # no instance CTU to score
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

    names = [k for k in (*KINDS, "constant", *REFERENCES) if k in rows[0]]
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
    ap.add_argument(
        "--models",
        default="snn,eljrd",
        help=f"comma-separated, of {', '.join(KINDS)}; 'ablation' = the eight TFD/MRR/TAA rows",
    )
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (one core each)")
    ap.add_argument("--label", choices=["monotone", "eq1", "detected"], help="relabel by this rule first")
    ap.add_argument("--track-percentile", type=float, help="relabel with this track smoothing first")
    ap.add_argument(
        "--references", action="store_true", help="add the size-class and oracle references (no training)"
    )
    ap.add_argument("--coding", choices=["intra", "lowdelay"], default="intra", help="label set")
    a = ap.parse_args()
    from vcmtool.lab.jrd.format import load_dataset

    source = relabelled(a.dataset, a.out / "data", a.label, a.track_percentile)
    ds = load_dataset(source)
    ds.check_coding(a.coding)
    labels = {**ds.labels, "coding": a.coding}
    datas = [make_fold(source, a.out / f"fold{k}" / "data", k, a.folds) for k in range(a.folds)]
    kinds = [k.strip() for k in a.models.split(",") if k.strip()]
    kinds = list(
        dict.fromkeys(itertools.chain.from_iterable(ABLATION if k == "ablation" else [k] for k in kinds))
    )
    kinds = [k for k in kinds if k != "none"]
    if set(kinds) - set(KINDS) or not (kinds or a.references):
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
    rows = [
        r | {"fold": k}
        for k, d in enumerate(datas)
        for r in evaluate(d, d.parent, kinds, a.coding, a.references)
    ]
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
    names |= REFERENCES if a.references else {}
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
