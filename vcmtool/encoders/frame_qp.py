"""Helpers for encoders driven with frame-level QPs (x265/x264 zones through ffmpeg)."""

from __future__ import annotations

import numpy as np


def zones(frame_qps: np.ndarray) -> tuple[int, str]:
    """Base QP and an x264/x265 ``zones`` string giving each run of frames its own QP."""
    qps = [int(q) for q in frame_qps]
    base = qps[0]
    runs: list[str] = []
    start = 0
    for i in range(1, len(qps) + 1):
        if i == len(qps) or qps[i] != qps[start]:
            if qps[start] != base:
                runs.append(f"{start},{i - 1},q={qps[start]}")
            start = i
    return base, "/".join(runs)
