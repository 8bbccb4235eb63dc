"""SNN-JRD ablation (the paper's Table 1 rows): TFD / MRR / TAA on or off, same recipe and budget.

    python benchmarks/jrd_ablation.py OUT [--epochs 12] [--dataset data/jrd-hevc] [-- TRAIN ARGS]

Each of the eight combinations is trained with ``vcmtool jrd train`` (resumable: a finished run
is skipped, an interrupted one resumes) into ``OUT/<name>``; the checkpoint with the best
*validation* E_total is then evaluated on val and test, and ``OUT/ablation.json`` and
``OUT/ablation.md`` get the table. Off means: TFD -> 3x3 convolutions, MRR -> a 3x3
convolution, TAA -> concat attention (``--no-tfd/--no-mrr/--no-taa``). Extra arguments after
``--`` go to every ``vcmtool jrd train`` (the recipe, e.g. ``--ema 0.995 --schedule cosine``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from jrd_runs import train_run


def runs() -> list[tuple[str, dict[str, bool]]]:
    out = []
    for tfd, mrr, taa in itertools.product((True, False), repeat=3):
        name = "_".join(f"{k}{'+' if v else '-'}" for k, v in (("tfd", tfd), ("mrr", mrr), ("taa", taa)))
        out.append((name, {"tfd": tfd, "mrr": mrr, "taa": taa}))
    return out


def evaluate(dataset: str, ckpt: Path) -> dict:
    import torch

    from vcmtool.lab.jrd.metrics import default_cache, evaluate, load_samples
    from vcmtool.lab.jrd.train import load_checkpoint, predictor

    torch.set_num_threads(1)
    model, ck = load_checkpoint(ckpt)
    cache = default_cache("yolov3-tiny")
    row = {
        "best_epoch": ck["best"]["epoch"],
        "epochs": ck["recipe"]["epochs"] if "recipe" in ck else None,
        "params": sum(p.numel() for p in model.parameters()),
    }
    for split in ("val", "test"):
        row[split] = evaluate(predictor(model), load_samples(dataset, split, "yolov3-tiny", cache))
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| TFD | MRR | TAA | params | best epoch | val E_total "
        "| test E_s | test E_m | test E_l | test E_total |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["test"]
        lines.append(
            f"| {'on' if r['tfd'] else 'off'} | {'on' if r['mrr'] else 'off'} | "
            f"{'on' if r['taa'] else 'off'} | {r['params']:,} | {r['best_epoch']}/{r['epochs']} | "
            f"{r['val']['E_total']} | {t['E_s']} | {t['E_m']} | {t['E_l']} | {t['E_total']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--dataset", default="data/jrd-hevc")
    ap.add_argument("--only", help="comma-separated run names (default: all eight)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a, extra = ap.parse_args(argv[:cut]), argv[cut + 1 :]  # after "--": for `vcmtool jrd train`
    wanted = set(a.only.split(",")) if a.only else None
    rows = []
    for name, sw in runs():
        if wanted and name not in wanted:
            continue
        train_run(
            a.dataset,
            a.out / name,
            "snn",
            a.epochs,
            ["--stem", "16", *extra, *(f"--no-{k}" for k, on in sw.items() if not on)],
        )
        rows.append({"run": name, **sw, **evaluate(a.dataset, a.out / name / "best.pt")})
        r = rows[-1]
        print(
            json.dumps(
                {
                    "run": name,
                    "best_epoch": r["best_epoch"],
                    "val": r["val"]["E_total"],
                    "test": r["test"]["E_total"],
                }
            ),
            flush=True,
        )
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ablation.json").write_text(
        json.dumps({"epochs": a.epochs, "train_args": extra, "rows": rows}, indent=1)
    )
    (a.out / "ablation.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
