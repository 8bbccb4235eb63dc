"""Raw planar YUV 4:2:0 (8 or 10 bit), from a file or a pipe."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from vcmtool.errors import InputError
from vcmtool.io.frame import Frame, VideoInfo


def check_geometry(width: int, height: int, where: str) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{where}: frame size {width}x{height} is not positive")
    if width % 2 or height % 2:
        raise InputError(
            f"{where}: {width}x{height} has an odd dimension; 4:2:0 needs even width and height "
            "(crop or pad the source first)"
        )


def read_planes(buf: bytes, info: VideoInfo, index: int, where: str, fix: str = "check --pix-fmt") -> Frame:
    """One frame from its planar bytes. High-bit-depth samples are range-checked: 16-bit words
    above 1023 mean the data is not 10-bit little-endian (8-bit or big-endian data, a wrong
    --pix-fmt), and coding them would wrap them into garbage; ``fix`` says what to check."""
    dt = np.dtype("<u2") if info.bit_depth > 8 else np.uint8
    arr = np.frombuffer(buf, dtype=dt)
    w, h = info.width, info.height
    n_y = w * h
    n_c = (w // 2) * (h // 2)
    y = arr[:n_y].reshape(h, w)
    u = arr[n_y : n_y + n_c].reshape(h // 2, w // 2)
    v = arr[n_y + n_c : n_y + 2 * n_c].reshape(h // 2, w // 2)
    if dt != np.uint8:
        hi = (1 << info.bit_depth) - 1
        top = max(int(p.max()) for p in (y, u, v))
        if top > hi:
            raise InputError(
                f"sample value {top} above {hi} in frame {index} of {where}: not "
                f"{info.bit_depth}-bit little-endian; {fix}"
            )
        y, u, v = (p.astype(np.uint16) for p in (y, u, v))
    return Frame(y, u, v, index, info.bit_depth)


def looks_10bit(buf: bytes) -> bool:
    """Whether 8-bit frame bytes are really 10-bit little-endian samples: every high byte (odd
    offset) is 0..3 while some low byte is not. Real 8-bit pictures never look like that (their
    chroma sits near 128 at odd offsets too); an all-zero frame does not count."""
    a = np.frombuffer(buf, dtype=np.uint8)
    return bool(a[1::2].max() <= 3 and a[0::2].max() > 3)


def read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    got = 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


class RawYUVSource:
    """Frames from a headerless .yuv file; its length must be a whole number of frames."""

    def __init__(self, path: str, info: VideoInfo, name: str | None = None) -> None:
        """``name``: what messages call the input (``<stdin>`` for a spooled pipe)."""
        self.name = name or path
        check_geometry(info.width, info.height, self.name)
        self.path = path
        fb = info.frame_bytes
        count = None
        if path != "-":
            try:
                size = os.path.getsize(path)
            except OSError as e:
                raise InputError(f"{self.name}: cannot read ({e.strerror})") from None
            if size == 0:
                raise InputError(f"{self.name}: file is empty")
            if size % fb:
                raise InputError(
                    f"{self.name}: {size} bytes is not a whole number of {info.width}x{info.height} "
                    f"{info.pix_fmt} frames ({fb} bytes each): {size % fb} bytes extra; "
                    "check --size and --pix-fmt"
                )
            count = size // fb
        self.info = info.with_count(count)

    def frames(self, stream: BinaryIO | None = None) -> Iterator[Frame]:
        fb = self.info.frame_bytes
        own = stream is None
        f = open(self.path, "rb") if own else stream  # noqa: SIM115 - closed below
        try:
            i = 0
            while True:
                buf = read_exact(f, fb)
                if not buf:
                    if i == 0:
                        raise InputError(f"{self.name}: no frames in input")
                    return
                if len(buf) < fb:
                    raise InputError(
                        f"{self.name}: truncated frame {i}: {len(buf)} of {fb} bytes "
                        f"({len(buf)} bytes extra after {i} whole frames)"
                    )
                if i == 0 and self.info.bit_depth == 8 and looks_10bit(buf):
                    # A 10-bit file is a whole number of 8-bit frames too (twice as many), so
                    # the size check cannot catch a missing --pix-fmt; the first frame can.
                    raise InputError(
                        f"{self.name}: frame 0 holds 10-bit little-endian samples (every high "
                        "byte 0..3), not 8-bit ones; pass --pix-fmt yuv420p10le"
                    )
                yield read_planes(buf, self.info, i, self.name)
                i += 1
        finally:
            if own:
                f.close()
