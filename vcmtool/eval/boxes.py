"""Box geometry shared by the evaluation, the map sources and the JRD labels: boxes are
``x0, y0, x1, y1`` in pixels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_iou(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of ``boxes`` (N, 4); 0 where the union is empty."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    iw = np.clip(np.minimum(x1, b[:, 2]) - np.maximum(x0, b[:, 0]), 0, None)
    ih = np.clip(np.minimum(y1, b[:, 3]) - np.maximum(y0, b[:, 1]), 0, None)
    inter = iw * ih
    union = (x1 - x0) * (y1 - y0) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
