"""Objective quality of an encode: PSNR (Y, U, V), SSIM and optional VMAF, mean and per frame.

How it is measured
------------------
The bitstream is decoded once, with PyAV (:func:`vcmtool.decode.decoded_frames`), exactly as
before: each decoded picture is cropped to the source size (kvazaar pads the coded size to
multiples of 8) and brought to the source bit depth (a 10-bit source is compared at 10 bits, the
8-bit decode shifted up). On that pair of frames

- **PSNR** Y, U and V are computed in numpy with :func:`vcmtool.decode.psnr` (10 log10(peak^2 /
  MSE) per plane and frame, 100 dB for identical planes; the mean is the mean of the per-frame
  values). Luma PSNR is therefore the same number, to the bit, as before this module. ffmpeg's
  ``psnr`` filter gives the same per-frame values but writes only two decimals to its stats
  file (and its summary line averages MSEs, not PSNRs, so it reads a few 0.01 dB lower).
- **SSIM** comes from ffmpeg's ``ssim`` filter (the ffmpeg of imageio-ffmpeg, which the encoders
  use too). That is x264's definition: unweighted 8x8 windows on a 4-pixel grid (overlapping),
  K1 = 0.01, K2 = 0.03, scaled to the bit depth, averaged over the plane; ``All`` is the mean
  of Y, U and V weighted by their sample counts (4:2:0: 4/6, 1/6, 1/6). It differs slightly from
  Wang et al.'s reference SSIM (11x11 Gaussian window), so compare SSIMs only from one tool.
- **VMAF** (``--vmaf``) comes from ffmpeg's ``libvmaf`` filter with the built-in model
  :data:`VMAF_MODEL` (libvmaf's default; the report names it in ``vmaf_model``). The mean is
  the mean of the per-frame scores (libvmaf's pooled mean).

ffmpeg is fed the *same* frames that PSNR compares, not the bitstream (which would cost a second
decode, and a crop and 8-to-10-bit conversion of ffmpeg's own to keep in step): one pipe on
stdin carries each decoded picture stacked above its source picture (a frame of W x 2H; for
planar 4:2:0 that is just the six planes written one after another, no copy), and the filter
graph crops the two halves apart. So one decode serves every metric, the crop and bit-depth
handling cannot differ between metrics, and any source (raw YUV, Y4M, a container, stdin spooled
to a temp file, 10-bit) works, because the frames come from the clip the pipeline already reads.
Per-frame results come back through ``stats_file``/``log_path`` files in a private temp folder.

Cost
----
1280x720, 30 frames (bikes.mp4 scaled to 720p), kvazaar ultrafast QP 32, 8-bit, ``--threads 1``,
on the 2-core development machine while others used it (load 4-5, so wall times are about twice
the CPU times). CPU seconds (this process + ffmpeg), min of 5 runs:

=========================================================  ==========  =================
measurement                                                CPU         wall (measure_s)
=========================================================  ==========  =================
luma PSNR only (the implementation before this module)     0.57 s      0.6-1.1 s
PSNR Y/U/V (numpy)                                         0.72 s
PSNR Y/U/V + SSIM (ffmpeg): the default                    0.82 s      1.1 s
PSNR Y/U/V + SSIM + VMAF (``--vmaf``)                      1.96 s      2.4 s
=========================================================  ==========  =================

So SSIM through ffmpeg adds ~0.1 s CPU (~3 ms/frame), far less than the PyAV decode and numpy
PSNR it rides on (~19 ms/frame), and ffmpeg runs beside the decode on a second core: it is
always on. VMAF adds ~1.1 s CPU (~40 ms/frame, about the cost of the ultrafast encode itself,
1.4-1.7 s): opt-in. ``--no-measure`` skips all of it (encode total 2.1 s vs 3.0 s default,
4.1 s with ``--vmaf``, in one run each).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcmtool.decode import decoded_frames, psnr
from vcmtool.errors import UsageError, VcmError
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.open import Clip

VMAF_MODEL = "vmaf_v0.6.1"  # libvmaf's built-in default model (also in the imageio-ffmpeg build)


@dataclass
class Quality:
    """Per-frame scores, in display order. SSIM lists hold None where ffmpeg gave no number
    (planes smaller than its 8x8 window)."""

    psnr_y: list[float] = field(default_factory=list)
    psnr_u: list[float] = field(default_factory=list)
    psnr_v: list[float] = field(default_factory=list)
    ssim_y: list[float | None] = field(default_factory=list)
    ssim_u: list[float | None] = field(default_factory=list)
    ssim_v: list[float | None] = field(default_factory=list)
    ssim: list[float | None] = field(default_factory=list)  # ffmpeg's "All"
    vmaf: list[float] | None = None  # only when asked
    vmaf_model: str | None = None
    seconds: float = 0.0

    @property
    def mean_psnr_y(self) -> float:
        return float(np.mean(self.psnr_y)) if self.psnr_y else float("nan")

    @property
    def frames(self) -> int:
        return len(self.psnr_y)


def _mean(values: Sequence[float | None] | None, digits: int) -> float | None:
    vals = [v for v in values or () if v is not None]
    return round(float(np.mean(vals)), digits) if vals and len(vals) == len(values) else None


def _rounded(values: Sequence[float | None] | None, digits: int) -> list[float | None] | None:
    return None if values is None else [None if v is None else round(v, digits) for v in values]


# (report key = Quality attribute, decimals). psnr_y/psnr_y_per_frame stay in the pipeline as
# they were; these are the fields this module adds.
_FIELDS = (("psnr_u", 4), ("psnr_v", 4), ("ssim_y", 6), ("ssim", 6))


def report_fields(q: Quality | None, vmaf: bool = False) -> dict:
    """The report's quality fields besides ``psnr_y``: means and ``*_per_frame`` lists (None
    without measurement); ``vmaf*`` only when VMAF was asked for."""
    out: dict = {}
    for key, digits in _FIELDS:
        vals = None if q is None else getattr(q, key)
        out[key] = None if vals is None else _mean(vals, digits)
        out[f"{key}_per_frame"] = _rounded(vals, digits)
    if vmaf:
        vals = None if q is None else q.vmaf
        out["vmaf"] = None if vals is None else _mean(vals, 4)
        out["vmaf_per_frame"] = _rounded(vals, 4)
        out["vmaf_model"] = None if q is None else q.vmaf_model
    return out


# ---------------------------------------------------------------------------------------------
# ffmpeg


def _ffmpeg() -> str:
    from vcmtool.encoders.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


@functools.cache
def ffmpeg_filters() -> frozenset[str]:
    out = subprocess.run([_ffmpeg(), "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    return frozenset(m.group(1) for m in re.finditer(r"^\s*[T.][S.]\s+(\S+)", out, re.MULTILINE))


def check_vmaf() -> None:
    """One-line UsageError when this ffmpeg has no libvmaf filter."""
    if "libvmaf" not in ffmpeg_filters():
        raise UsageError(
            f"--vmaf: the ffmpeg in use ({_ffmpeg()}) has no libvmaf filter; use an "
            "ffmpeg built with --enable-libvmaf (imageio-ffmpeg's has it) or drop --vmaf"
        )


def _filter_graph(w: int, h: int, vmaf: bool, threads: int) -> str:
    """Input 0 is W x 2H: the decoded picture on top, the source below. ``ssim`` passes its
    first input (the decoded picture) through, so ``libvmaf`` can follow it in the chain."""
    g = f"[0:v]split=2[top][bot];[top]crop={w}:{h}:0:0[dec];[bot]crop={w}:{h}:0:{h}"
    if not vmaf:
        return g + "[ref];[dec][ref]ssim=stats_file=ssim.log"
    return g + (
        f",split=2[r1][r2];[dec][r1]ssim=stats_file=ssim.log[d2];"
        f"[d2][r2]libvmaf=model=version={VMAF_MODEL}:log_fmt=json:log_path=vmaf.json"
        f":n_threads={max(threads, 1)}"
    )


class _Metrics:
    """An ffmpeg process reading stacked (decoded, source) frames on stdin."""

    def __init__(self, info: VideoInfo, folder: Path, vmaf: bool, threads: int) -> None:
        from vcmtool.encoders.ffmpeg import raw_input_args

        stacked = VideoInfo(info.width, 2 * info.height, info.fps, info.pix_fmt)
        cmd = [
            _ffmpeg(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            *(["-filter_threads", str(threads)] if threads > 0 else []),
            *raw_input_args(stacked),
            "-filter_complex",
            _filter_graph(info.width, info.height, vmaf, threads),
            "-f",
            "null",
            "-",
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder
        )
        self._err: list[bytes] = []
        self._t = threading.Thread(target=lambda: self._err.append(self.proc.stderr.read()), daemon=True)
        self._t.start()
        self.alive = True

    def write(self, planes: Sequence[np.ndarray]) -> None:
        if not self.alive:
            return
        try:
            for p in planes:
                self.proc.stdin.write(memoryview(np.ascontiguousarray(p)).cast("B"))
        except BrokenPipeError:
            self.alive = False  # ffmpeg died; finish() reports its last words

    def finish(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        rc = self.proc.wait()
        self._t.join()
        if rc != 0:
            tail = b"".join(self._err).decode(errors="replace").strip().splitlines()[-3:]
            raise VcmError(
                f"quality measurement (ffmpeg ssim/libvmaf) failed (exit {rc}): " + " | ".join(tail)
            )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _number(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def parse_ssim_log(text: str) -> list[dict[str, float | None]]:
    """ffmpeg's ssim stats file (``n:1 Y:0.98 U:0.97 V:0.97 All:0.98 (17.2)``), one dict a line."""
    rows = []
    for line in text.splitlines():
        kv = dict(re.findall(r"(\w+):(\S+)", line))
        if "n" in kv:
            rows.append({k: _number(kv.get(k, "")) for k in ("Y", "U", "V", "All")})
    return rows


def parse_vmaf_log(text: str) -> list[float]:
    frames = json.loads(text)["frames"]
    return [float(f["metrics"]["vmaf"]) for f in sorted(frames, key=lambda f: f["frameNum"])]


def measure_quality(
    clip: Clip,
    bitstream: Path,
    vmaf: bool = False,
    threads: int = 1,
    decoded: Iterable[Frame] | None = None,
) -> Quality:
    """Per-frame PSNR (numpy) and SSIM / VMAF (ffmpeg) of the decoded ``bitstream`` against the
    source ``clip``, at the source bit depth. ``threads``: ffmpeg's filter threads (0: its own
    choice). ``decoded``: the receiver's pictures when they are not the decoded ones as they
    are (a scaled encode upsampled to the source size, :mod:`vcmtool.resample`), at the source
    bit depth."""
    t0 = time.perf_counter()
    if vmaf:
        check_vmaf()
    info = clip.info
    bd = info.bit_depth
    peak = float((1 << bd) - 1)
    q = Quality()
    with tempfile.TemporaryDirectory(prefix="vcmtool-quality-") as tmp:
        folder = Path(tmp)
        ff = _Metrics(info, folder, vmaf, threads)
        try:
            src = clip.frames()
            for dec in decoded if decoded is not None else decoded_frames(bitstream, bd):
                ref = next(src, None)
                if ref is None or not ff.alive:
                    break  # (ffmpeg gone: finish() says why)
                h, w = ref.height, ref.width
                dy, du, dv = dec.y[:h, :w], dec.u[: h // 2, : w // 2], dec.v[: h // 2, : w // 2]
                q.psnr_y.append(psnr(ref.y, dy, peak))
                q.psnr_u.append(psnr(ref.u, du, peak))
                q.psnr_v.append(psnr(ref.v, dv, peak))
                dt = np.dtype("<u2") if bd > 8 else np.dtype(np.uint8)
                ff.write([p.astype(dt, copy=False) for p in (dy, ref.y, du, ref.u, dv, ref.v)])
            ff.finish()
        except BaseException:
            ff.kill()
            raise
        rows = parse_ssim_log((folder / "ssim.log").read_text()) if q.frames else []
        if len(rows) != q.frames:
            raise VcmError(
                f"quality measurement: ffmpeg's ssim gave {len(rows)} frames for {q.frames} decoded"
            )
        q.ssim_y = [r["Y"] for r in rows]
        q.ssim_u = [r["U"] for r in rows]
        q.ssim_v = [r["V"] for r in rows]
        q.ssim = [r["All"] for r in rows]
        if vmaf:
            scores = parse_vmaf_log((folder / "vmaf.json").read_text()) if q.frames else []
            if len(scores) != q.frames:
                raise VcmError(
                    f"quality measurement: libvmaf gave {len(scores)} frames for {q.frames} decoded"
                )
            q.vmaf, q.vmaf_model = scores, VMAF_MODEL
    q.seconds = time.perf_counter() - t0
    return q


# ---------------------------------------------------------------------------------------------
# --csv


def frame_rows(
    q: Quality | None,
    bits: Sequence[int],
    maps=None,
    frames: int | None = None,
    vmaf: bool = False,
    side_bits: Sequence[int] | None = None,
) -> tuple[list[str], list[list]]:
    """Header and rows of the per-frame CSV: frame, bits, quality, QP-map mean/min/max.

    ``bits`` is in decode order, which is display order for the low-delay GOPs vcmtool sets up
    (no B frames); it is the report's ``bits_per_frame`` (a side stream written to its own file,
    ``--side-stream-out``, is not in it). The QP columns are those of the applied map (the same
    as ``--qpm-out``). With a side stream, a last column ``side_bits`` holds each frame's
    payload bits (0: none sent, e.g. skipped under ``--side-stream-budget``)."""
    header = ["frame", "bits", "psnr_y", "psnr_u", "psnr_v", "ssim_y", "ssim"]
    if vmaf:
        header.append("vmaf")
    if maps is not None:
        header += ["qp_mean", "qp_min", "qp_max"]
    if side_bits is not None:
        header.append("side_bits")
    n = q.frames if q is not None else (frames if frames is not None else len(bits))
    cols = (
        []
        if q is None
        else [(q.psnr_y, 4), (q.psnr_u, 4), (q.psnr_v, 4), (q.ssim_y, 6), (q.ssim, 6)]
        + ([(q.vmaf, 4)] if vmaf else [])
    )
    rows = []
    for i in range(n):
        row: list = [i, bits[i] if i < len(bits) else ""]
        if q is None:
            row += [""] * (5 + vmaf)
        else:
            row += ["" if vals is None or vals[i] is None else f"{vals[i]:.{d}f}" for vals, d in cols]
        if maps is not None:
            m = maps.frame(i)
            row += [f"{float(m.mean()):.4f}", int(m.min()), int(m.max())]
        if side_bits is not None:
            row.append(side_bits[i] if i < len(side_bits) else "")
        rows.append(row)
    return header, rows


def write_frame_csv(
    path: str | Path,
    q: Quality | None,
    bits: Sequence[int],
    maps=None,
    frames: int | None = None,
    vmaf: bool = False,
    side_bits: Sequence[int] | None = None,
) -> None:
    """Write the per-frame CSV to ``path`` (the caller's staged temp file)."""
    header, rows = frame_rows(q, bits, maps, frames, vmaf, side_bits)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


__all__ = [
    "VMAF_MODEL",
    "Quality",
    "check_vmaf",
    "frame_rows",
    "measure_quality",
    "parse_ssim_log",
    "parse_vmaf_log",
    "report_fields",
    "write_frame_csv",
]
