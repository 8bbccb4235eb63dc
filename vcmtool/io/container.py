"""Any container/codec PyAV can decode (mp4, mkv, avi, raw bitstreams, images)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from vcmtool.errors import InputError
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.rawyuv import check_geometry


def _planes(vf, bit_depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fmt = "yuv420p10le" if bit_depth == 10 else "yuv420p"
    if vf.format.name != fmt:
        vf = vf.reformat(format=fmt)
    out = []
    for i, plane in enumerate(vf.planes):
        w = vf.width if i == 0 else vf.width // 2
        h = vf.height if i == 0 else vf.height // 2
        dt = np.dtype("<u2") if bit_depth == 10 else np.dtype(np.uint8)
        bpl = plane.line_size
        arr = np.frombuffer(plane, dtype=np.uint8).reshape(-1, bpl)[:h]
        arr = arr[:, : w * dt.itemsize].copy().view(dt).reshape(h, w)
        out.append(arr.astype(np.uint16) if bit_depth == 10 else arr)
    return out[0], out[1], out[2]


class ContainerSource:
    def __init__(self, path: str, name: str | None = None) -> None:
        """``name``: what messages call the input (``<stdin>`` for a spooled pipe)."""
        import av

        self.path = path
        self.name = name = name or path
        try:
            with av.open(path) as c:
                if not c.streams.video:
                    raise InputError(f"{name}: no video stream")
                s = c.streams.video[0]
                w, h = s.codec_context.width, s.codec_context.height
                rate = s.average_rate or s.guessed_rate or Fraction(25)
                pf = s.codec_context.pix_fmt or "yuv420p"
                n = s.frames or None
        except av.error.FFmpegError as e:
            raise InputError(f"{name}: cannot decode ({e.strerror or e})") from None
        if not w or not h:
            raise InputError(f"{name}: cannot decode (no frame size)")
        check_geometry(w, h, name)
        high = any(t in pf for t in ("10", "12", "16"))
        self.info = VideoInfo(w, h, Fraction(rate), "yuv420p10le" if high else "yuv420p", n)

    def frames(self) -> Iterator[Frame]:
        import av

        try:
            with av.open(self.path) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                for i, vf in enumerate(c.decode(s)):
                    y, u, v = _planes(vf, self.info.bit_depth)
                    yield Frame(y, u, v, i, self.info.bit_depth)
        except av.error.FFmpegError as e:
            raise InputError(f"{self.name}: decode failed ({e.strerror or e})") from None
