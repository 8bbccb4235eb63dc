"""Pick the right reader for a path, apply --skip/--frames, and make stdin re-readable."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

from vcmtool.errors import InputError, UsageError
from vcmtool.io.frame import PIX_FMTS, Frame, VideoInfo

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class FrameSource(Protocol):
    info: VideoInfo

    def frames(self) -> Iterator[Frame]: ...


class ImageSource:
    """A still image as a one-frame clip. Odd dimensions are cropped by one pixel (4:2:0)."""

    def __init__(self, path: str) -> None:
        import cv2

        self.path = path
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{path}: cannot decode image (corrupt or unsupported format)")
        self._frame = Frame.from_bgr(img)
        self.info = VideoInfo(self._frame.width, self._frame.height, Fraction(1), "yuv420p", 1)

    def frames(self) -> Iterator[Frame]:
        yield self._frame


@dataclass
class Clip:
    """A re-iterable window (skip, limit) over a source; every pass streams from disk."""

    path: str
    source: FrameSource
    skip: int = 0
    limit: int | None = None
    notes: list[str] = field(default_factory=list)  # where the input is read unlike its header says

    @property
    def info(self) -> VideoInfo:
        n = self.source.info.frame_count
        if n is not None:
            n = max(0, n - self.skip)
            if self.limit is not None:
                n = min(n, self.limit)
        return self.source.info.with_count(n)

    def frames(self) -> Iterator[Frame]:
        stop = None if self.limit is None else self.skip + self.limit
        produced = 0
        for fr in itertools.islice(self.source.frames(), self.skip, stop):
            fr.index -= self.skip
            produced += 1
            yield fr
        if produced == 0:
            raise InputError(f"{self.path}: no frames left after --skip {self.skip}")

    def count(self) -> int:
        """Frame count, decoding once when the container does not store it."""
        n = self.info.frame_count
        if n is None:
            n = sum(1 for _ in self.frames())
            self.source.info = self.source.info.with_count(n + self.skip)
        return n


def _spool_stdin() -> str:
    fd, path = tempfile.mkstemp(prefix="vcmtool-stdin-")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return path


def _sniff(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(16)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def open_video(
    path: str,
    size: str | tuple[int, int] | None = None,
    fps: float | Fraction | None = None,
    pix_fmt: str | None = None,
    skip: int = 0,
    frames: int | None = None,
) -> Clip:
    """Open YUV/Y4M/container/image input. ``-`` reads stdin (Y4M or raw with --size)."""
    from vcmtool.io.container import ContainerSource
    from vcmtool.io.rawyuv import RawYUVSource
    from vcmtool.io.y4m import Y4MSource

    if skip < 0 or (frames is not None and frames <= 0):
        raise UsageError("--skip must be >= 0 and --frames > 0")
    if pix_fmt is not None and pix_fmt not in PIX_FMTS:
        raise UsageError(f"--pix-fmt {pix_fmt!r} unsupported; use one of {', '.join(PIX_FMTS)}")
    label = path
    if path == "-":
        path = _spool_stdin()
        label = "<stdin>"
    if not os.path.exists(path):
        raise InputError(f"{label}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{label}: is a directory, not a video")
    head = _sniff(path)
    if not head:
        raise InputError(f"{label}: file is empty")
    ext = os.path.splitext(label)[1].lower()
    src: FrameSource
    if head.startswith(b"YUV4MPEG2"):
        src = Y4MSource(path, name=label)
    elif ext == ".yuv" or (label == "<stdin>" and size is not None):
        if size is None:
            raise UsageError(f"{label}: raw YUV needs --size WxH (and --fps, --pix-fmt)")
        w, h = parse_size(size)
        src = RawYUVSource(path, VideoInfo(w, h, Fraction(fps or 30), pix_fmt or "yuv420p"), label)
    elif ext in IMAGE_EXTS:
        src = ImageSource(path)
    else:
        src = ContainerSource(path, label)
    notes: list[str] = []
    if not isinstance(src, RawYUVSource):
        # Self-describing inputs: geometry and sample format come from the file; a flag that
        # disagrees would be silently ignored, so it is refused. --fps overrides, with a note.
        info = src.info
        if size is not None and parse_size(size) != (info.width, info.height):
            raise UsageError(
                f"{label}: --size applies to raw YUV; this file says {info.width}x{info.height} (drop --size)"
            )
        if pix_fmt is not None and pix_fmt != info.pix_fmt:
            raise UsageError(
                f"{label}: --pix-fmt applies to raw YUV; this file is {info.pix_fmt} (drop --pix-fmt)"
            )
        if fps is not None and Fraction(fps) != info.fps:
            notes.append(f"--fps {float(fps):g} overrides the input's {float(info.fps):g} fps")
            src.info = VideoInfo(info.width, info.height, Fraction(fps), info.pix_fmt, info.frame_count)
    return Clip(label, src, skip, frames, notes)


def parse_size(size: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, tuple):
        return size
    try:
        w, h = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {size!r} is not WxH (e.g. 1920x1080)") from None
    return w, h
