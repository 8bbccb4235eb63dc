"""Task-model speed on this machine: ms per image at 416x416 for each runtime.

    python benchmarks/bench_tasks.py [--runs 20] [--batch 8] [--json]

Columns: ``forward`` is the network alone on a prepared blob (batch 1 and batch B, per
image); ``detect`` is the whole ``TaskModel.detect`` (letterbox, forward, decode, NMS) on
real images of mixed sizes. Medians over ``--runs``, after two warm-up runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcmtool.tasks import get_task_model  # noqa: E402
from vcmtool.tasks.base import cpu_cores  # noqa: E402
from vcmtool.tasks.postprocess import make_blob  # noqa: E402


def dev_images() -> list[np.ndarray]:
    """Development images only (never the reserved opencv-doc media)."""
    from skimage import data

    return [
        cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR),
        cv2.cvtColor(data.stereo_motorcycle()[0], cv2.COLOR_RGB2BGR),
        cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
    ]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument(
        "--models",
        default="yolov3-tiny,yolov3-tiny-ort,yolov3-tiny-torch",
        help="comma-separated task model specs",
    )
    args = ap.parse_args()
    imgs = dev_images()
    blob1, _ = make_blob(imgs[:1], (416, 416))
    blob_b, _ = make_blob([imgs[i % len(imgs)] for i in range(args.batch)], (416, 416))
    rows = []
    for spec in args.models.split(","):
        t0 = time.perf_counter()
        model = get_task_model(spec)
        load_s = time.perf_counter() - t0
        raw = model.raw_outputs  # type: ignore[attr-defined]
        rows.append(
            {
                "model": spec,
                "runtime": model.version.split("/", 1)[1],
                "load_s": round(load_s, 2),
                "forward_b1_ms": round(median_ms(lambda raw=raw: raw(blob1), args.runs), 1),
                f"forward_b{args.batch}_ms_per_img": round(
                    median_ms(lambda raw=raw: raw(blob_b), max(3, args.runs // 4)) / args.batch, 1
                ),
                "detect_ms": round(
                    median_ms(lambda m=model: [m.detect(i) for i in imgs], args.runs) / len(imgs), 1
                ),
            }
        )
    info = {"cpu": platform.processor() or platform.machine(), "cores": cpu_cores()}
    if args.json:
        print(json.dumps({"machine": info, "results": rows}, indent=2))
        return
    keys = list(rows[0])
    print(f"# task models, 416x416 input, {info['cores']} cores ({info['cpu']})")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
