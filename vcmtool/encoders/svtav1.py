"""SVT-AV1 ``SvtAv1EncApp`` >= 1.6 with a superblock ROI map (qindex offsets).

ffmpeg's libsvtav1 silently ignores ROI options and Debian's 1.4.1 lacks them (docs/design.md,
"SVT-AV1"), so only the app is used, and only when its version is new enough. Map values are AV1 "QP"s
on SVT's 0..63 scale; offsets are converted to qindex (x4) and quantised to at most 8 levels
because the ROI map allows no more distinct values per frame.
"""

from __future__ import annotations

import operator
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool import native
from vcmtool.encoders.base import (
    ENCODERS,
    Capabilities,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    ProgressFn,
)
from vcmtool.errors import EncoderError
from vcmtool.io.open import Clip
from vcmtool.io.y4m import write_y4m
from vcmtool.qpmap.maps import QPMaps

MIN_VERSION = (1, 6)
MAX_LEVELS = 8


def _version(exe: str) -> tuple[int, ...]:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def quantise_levels(offsets: np.ndarray, levels: int = MAX_LEVELS) -> np.ndarray:
    vals = np.unique(offsets)
    if len(vals) <= levels:
        return offsets
    grid = np.rint(np.linspace(offsets.min(), offsets.max(), levels))
    return grid[np.abs(offsets[..., None] - grid).argmin(axis=-1)].astype(offsets.dtype)


def _roi_args(offsets: Any, frame_numbers: Any) -> tuple[np.ndarray, np.ndarray]:
    o = native.int_maps(offsets, "SVT-AV1 ROI offsets")
    if frame_numbers is None:
        return o, np.arange(len(o), dtype=np.int64)
    raw = np.asarray(frame_numbers).reshape(-1)
    if len(raw) != len(o):
        raise ValueError(f"{len(o)} maps but {len(raw)} frame numbers")
    # Integers within int64 only: a float would be truncated and a huge number wrapped (or an
    # OverflowError), silently naming the wrong frame. One per frame, so a Python loop is cheap.
    try:
        vals = [operator.index(x) for x in raw.tolist()]
    except TypeError:
        raise ValueError("SVT-AV1 frame numbers must be integers") from None
    if any(not -(2**63) <= v <= native.INT64_MAX for v in vals):
        raise ValueError("SVT-AV1 frame number does not fit in 64 bits")
    return o, np.array(vals, dtype=np.int64)


def _roi_text_numpy(o: np.ndarray, fn: np.ndarray) -> str:
    lines = []
    for i, (m, n) in enumerate(zip(o, fn, strict=True)):
        flat = m.reshape(-1)
        if flat.size and (flat.min() < -255 or flat.max() > 255):
            bad = flat[(flat < -255) | (flat > 255)][0]
            raise ValueError(f"SVT-AV1 ROI offset {int(bad)} (frame {i}) outside -255..255")
        if len(np.unique(flat)) > MAX_LEVELS:
            raise ValueError(
                f"SVT-AV1 ROI map of frame {i} has more than 8 distinct offsets (AV1 has 8 segments)"
            )
        lines.append(" ".join([str(int(n)), *map(str, flat.tolist())]) + "\n")
    return "".join(lines)


def svtav1_roi_text(offsets: np.ndarray, frame_numbers: Sequence[int] | None = None) -> str:
    """SvtAv1EncApp ``--roi-map-file`` text: per frame ``"<frame> <off> <off> ...\\n"``.

    ``offsets`` are qindex offsets (-255..255) per 64x64 superblock in raster order, at most 8
    distinct values per frame (AV1 segments). ``frame_numbers`` default to 0, 1, 2, ...
    """
    o, fn = _roi_args(offsets, frame_numbers)
    if native.has("svtav1_roi") and native.fits_int32(o):
        return native._native.svtav1_roi(o, fn)
    return _roi_text_numpy(o, fn)


def roi_map_text(maps: QPMaps, base: int) -> str:
    """The ROI file of absolute QP maps around the frame QP ``base``: QP deltas x 4 as qindex
    offsets, quantised to at most 8 levels per frame."""
    return svtav1_roi_text(np.stack([quantise_levels((m.astype(np.int32) - base) * 4) for m in maps.data]))


@ENCODERS.register("svtav1")
class SvtAv1(Encoder):
    name = "svtav1"
    # SvtAv1EncApp options passed as --KEY VALUE; names from its --help (the app is not
    # installable on these machines, so these are not exercised here).
    param_keys = frozenset(
        {
            "enable-cdef",
            "enable-restoration",
            "tile-rows",
            "tile-columns",
            "enable-tf",
            "enable-overlays",
            "scm",
            "film-grain",
        }
    )
    owned_params = {
        "qp": "--qp / --qpmap",
        "rc": "--qpmap",
        "aq-mode": "--qpmap",
        "roi-map-file": "--qpmap",
        "keyint": "--intra-period",
        "input": "INPUT",
        "i": "INPUT",
        "b": "-o",
        "preset": "--preset",
        "lp": "--threads",
    }

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities("av1", 64, (1, 63), (8, 10), ".ivf")

    @classmethod
    def probe(cls) -> Probe:
        exe = shutil.which("SvtAv1EncApp")
        if not exe:
            return Probe(False, detail="SvtAv1EncApp >= 1.6 not on PATH")
        v = _version(exe)
        if v[:2] < MIN_VERSION:
            return Probe(False, ".".join(map(str, v)), f"{exe} is older than 1.6 (no --roi-map-file)")
        return Probe(True, ".".join(map(str, v)), exe)

    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        p = self.probe()
        if not p.available:
            raise EncoderError(f"svtav1: {p.detail}")
        if maps.ctu != 64:
            raise EncoderError("svtav1: ROI maps are per 64x64 superblock; use --ctu 64")
        base = int(np.rint(np.median(maps.data)))
        with tempfile.TemporaryDirectory(prefix="vcmtool-svt-") as tmp:
            y4m = Path(tmp) / "in.y4m"
            with y4m.open("wb") as f:
                write_y4m(f, clip.info, clip.frames())
            roi = Path(tmp) / "roi.txt"
            roi.write_text(roi_map_text(maps, base))
            cmd = [
                shutil.which("SvtAv1EncApp") or "SvtAv1EncApp",
                "-i",
                str(y4m),
                "-b",
                str(out_path),
                "--rc",
                "0",
                "--aq-mode",
                "0",
                "--qp",
                str(base),
                "--roi-map-file",
                str(roi),
                "--keyint",
                str(settings.intra_period or -1),
                *(x for k, v in settings.params.items() for x in (f"--{k}", v)),
            ]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise EncoderError(f"svtav1 failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
            if progress:
                progress(len(maps))
        return EncodeResult(out_path, maps, list(maps.notes), cmd)
