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


def read_planes(buf: bytes, info: VideoInfo, index: int) -> Frame:
    dt = np.dtype("<u2") if info.bit_depth > 8 else np.uint8
    arr = np.frombuffer(buf, dtype=dt)
    w, h = info.width, info.height
    n_y = w * h
    n_c = (w // 2) * (h // 2)
    y = arr[:n_y].reshape(h, w)
    u = arr[n_y : n_y + n_c].reshape(h // 2, w // 2)
    v = arr[n_y + n_c : n_y + 2 * n_c].reshape(h // 2, w // 2)
    if dt != np.uint8:
        y, u, v = (p.astype(np.uint16) for p in (y, u, v))
    return Frame(y, u, v, index, info.bit_depth)


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

    def __init__(self, path: str, info: VideoInfo) -> None:
        check_geometry(info.width, info.height, path)
        self.path = path
        fb = info.frame_bytes
        count = None
        if path != "-":
            try:
                size = os.path.getsize(path)
            except OSError as e:
                raise InputError(f"{path}: cannot read ({e.strerror})") from None
            if size == 0:
                raise InputError(f"{path}: file is empty")
            if size % fb:
                raise InputError(
                    f"{path}: {size} bytes is not a whole number of {info.width}x{info.height} "
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
                        raise InputError(f"{self.path}: no frames in input")
                    return
                if len(buf) < fb:
                    raise InputError(
                        f"{self.path}: truncated frame {i}: {len(buf)} of {fb} bytes "
                        f"({len(buf)} bytes extra after {i} whole frames)"
                    )
                yield read_planes(buf, self.info, i)
                i += 1
        finally:
            if own:
                f.close()
