"""Decode a bitstream with PyAV: decoded frames, bits per frame, and the PSNR of one plane.

The report's measurement built on these (PSNR Y/U/V, SSIM, VMAF) is :mod:`vcmtool.quality`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vcmtool.errors import InputError
from vcmtool.io.container import _planes
from vcmtool.io.frame import Frame

_FORMATS = {
    ".hevc": "hevc",
    ".265": "hevc",
    ".h265": "hevc",
    ".h264": "h264",
    ".264": "h264",
    ".266": "vvc",
    ".vvc": "vvc",
    ".ivf": "ivf",
    ".obu": "obu",
}


def decoded_frames(path: Path, bit_depth: int = 8) -> Iterator[Frame]:
    import av

    fmt = _FORMATS.get(path.suffix.lower())
    try:
        with av.open(str(path), format=fmt) as c:
            for i, vf in enumerate(c.decode(video=0)):
                y, u, v = _planes(vf, 10 if "10" in vf.format.name else 8)
                fr = Frame(y, u, v, i, 10 if "10" in vf.format.name else 8)
                yield fr.to_bit_depth(bit_depth)
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: cannot decode bitstream ({e})") from None


def packet_bits(path: Path) -> list[int]:
    """Bits of each access unit in decode order (what the frame cost on the wire)."""
    import av

    fmt = _FORMATS.get(path.suffix.lower())
    with av.open(str(path), format=fmt) as c:
        return [p.size * 8 for p in c.demux(video=0) if p.size]


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """PSNR of one plane in dB (100 for identical planes), the definition of every PSNR in the
    report (:mod:`vcmtool.quality`)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * float(np.log10(peak * peak / mse))
