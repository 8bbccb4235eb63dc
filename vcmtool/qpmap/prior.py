"""PIA (prior instance acquisition, the SNN-JRD paper, sec. 4.2): task-model detections -> F_p (3, H, W).

The paper max-reduces Mask R-CNN instance maps into one map and concatenates it to three
channels. Our task model (YOLOv3-tiny) has boxes, not masks, so an instance map is its box
region, and the three channels carry different views of the instances (our definition):

0. luma of the frame, /255 (so the network sees texture, which decides how fast a region
   degrades under quantisation),
1. detection score, max-reduced over the instances covering a pixel (0 = background),
2. smallness ``1 - min(1, sqrt(box area) / 256)``, max-reduced (so the smallest covering
   instance wins; small instances tolerate the least distortion).

Detections with score >= ``MIN_SCORE`` (the dataset builder's detection threshold) are used.
Pure numpy: inference never imports torch.
"""

from __future__ import annotations

import numpy as np

from vcmtool.tasks.base import Detections

MIN_SCORE = 0.1
SIZE_SCALE = 256.0
CTU = 64


def instance_prior(bgr: np.ndarray, det: Detections, min_score: float = MIN_SCORE) -> np.ndarray:
    """F_p: float32 (3, H, W) for one BGR uint8 frame and its detections."""
    h, w = bgr.shape[:2]
    b, g, r = (bgr[..., i].astype(np.float32) for i in range(3))
    out = np.zeros((3, h, w), np.float32)
    out[0] = (0.114 * b + 0.587 * g + 0.299 * r) / 255.0
    keep = det.scores >= min_score
    for (x0, y0, x1, y1), score in zip(det.boxes[keep], det.scores[keep], strict=True):
        c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        c1, r1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        if c1 <= c0 or r1 <= r0:
            continue
        small = 1.0 - min(1.0, float(np.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0))) / SIZE_SCALE)
        np.maximum(out[1, r0:r1, c0:c1], float(score), out=out[1, r0:r1, c0:c1])
        np.maximum(out[2, r0:r1, c0:c1], small, out=out[2, r0:r1, c0:c1])
    return out


def pad_to_ctu(fp: np.ndarray, ctu: int = CTU) -> np.ndarray:
    """Edge-replicate (C, H, W) to multiples of ``ctu``: the model sees whole CTUs only."""
    _, h, w = fp.shape
    ph, pw = (-h) % ctu, (-w) % ctu
    if not (ph or pw):
        return fp
    return np.pad(fp, ((0, 0), (0, ph), (0, pw)), mode="edge")


def model_input(bgr: np.ndarray, det: Detections) -> np.ndarray:
    """The network input (1, 3, H', W'), H', W' = H, W rounded up to 64."""
    return pad_to_ctu(instance_prior(bgr, det))[None]
