"""The in-memory frame: three planar 4:2:0 numpy planes and the stream geometry."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

PIX_FMTS = {"yuv420p": 8, "yuv420p10le": 10}


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    pix_fmt: str = "yuv420p"
    frame_count: int | None = None  # None when the container does not say

    @property
    def bit_depth(self) -> int:
        return PIX_FMTS[self.pix_fmt]

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.bit_depth == 8 else 2

    @property
    def frame_bytes(self) -> int:
        luma = self.width * self.height
        return (luma + 2 * (self.width // 2) * (self.height // 2)) * self.bytes_per_sample

    def with_count(self, n: int | None) -> VideoInfo:
        return VideoInfo(self.width, self.height, self.fps, self.pix_fmt, n)


@dataclass
class Frame:
    """One picture. Planes are uint8 (8-bit) or uint16 (10-bit, little-endian samples)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    index: int
    bit_depth: int = 8

    @property
    def height(self) -> int:
        return self.y.shape[0]

    @property
    def width(self) -> int:
        return self.y.shape[1]

    def to_bytes(self) -> bytes:
        """Planar yuv420p / yuv420p10le bytes, as encoders read them from a pipe."""
        dt = np.dtype("<u2") if self.bit_depth > 8 else np.uint8
        return b"".join(np.ascontiguousarray(p, dtype=dt).tobytes() for p in (self.y, self.u, self.v))

    def to_bit_depth(self, bits: int) -> Frame:
        if bits == self.bit_depth:
            return self
        shift = bits - self.bit_depth

        def conv(p: np.ndarray) -> np.ndarray:
            if shift > 0:
                return (p.astype(np.uint16) << shift).astype(np.uint16)
            rnd = 1 << (-shift - 1)
            return np.minimum((p.astype(np.uint32) + rnd) >> -shift, (1 << bits) - 1).astype(
                np.uint8 if bits == 8 else np.uint16
            )

        return Frame(conv(self.y), conv(self.u), conv(self.v), self.index, bits)

    def to_bgr(self) -> np.ndarray:
        """8-bit BGR image for task models (OpenCV's channel order)."""
        import cv2

        f8 = self.to_bit_depth(8)
        i420 = np.concatenate([f8.y.reshape(-1), f8.u.reshape(-1), f8.v.reshape(-1)]).reshape(
            self.height * 3 // 2, self.width
        )
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)

    @classmethod
    def from_bgr(cls, bgr: np.ndarray, index: int = 0) -> Frame:
        import cv2

        h, w = bgr.shape[:2]
        if h % 2 or w % 2:
            bgr = bgr[: h - h % 2, : w - w % 2]
            h, w = bgr.shape[:2]
        i420 = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420).reshape(-1)
        y = i420[: h * w].reshape(h, w)
        u = i420[h * w : h * w + (h // 2) * (w // 2)].reshape(h // 2, w // 2)
        v = i420[h * w + (h // 2) * (w // 2) :].reshape(h // 2, w // 2)
        return cls(y.copy(), u.copy(), v.copy(), index, 8)
