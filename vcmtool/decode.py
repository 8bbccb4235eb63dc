"""Decode a bitstream with PyAV and compare it with the source: bits per frame, luma PSNR."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcmtool.errors import InputError
from vcmtool.io.container import _planes
from vcmtool.io.frame import Frame
from vcmtool.io.open import Clip

_FORMATS = {".hevc": "hevc", ".265": "hevc", ".h265": "hevc", ".h264": "h264", ".264": "h264",
            ".266": "vvc", ".vvc": "vvc", ".ivf": "ivf", ".obu": "obu"}


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
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * float(np.log10(peak * peak / mse))


@dataclass
class Quality:
    psnr_y: list[float] = field(default_factory=list)

    @property
    def mean_psnr_y(self) -> float:
        return float(np.mean(self.psnr_y)) if self.psnr_y else float("nan")


def measure_quality(clip: Clip, bitstream: Path) -> Quality:
    """Per-frame luma PSNR of the decoded bitstream against the source, at source bit depth."""
    bd = clip.info.bit_depth
    peak = float((1 << bd) - 1)
    q = Quality()
    src = clip.frames()
    for dec in decoded_frames(bitstream, bd):
        ref = next(src, None)
        if ref is None:
            break
        q.psnr_y.append(psnr(ref.y, dec.y[: ref.height, : ref.width], peak))
    return q
