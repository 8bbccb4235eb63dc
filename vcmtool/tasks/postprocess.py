"""Pre/post-processing shared by every detector runtime.

One letterbox, one YOLO decoder and one NMS serve OpenCV DNN, onnxruntime and PyTorch, so
the runtimes can only differ in the network arithmetic itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vcmtool.errors import InputError, UsageError
from vcmtool.tasks.base import Detections

# Darknet fills its letterbox with 0.5 (127.5 in 8 bits); 127 is the nearest byte, and keeping
# the network's training-time padding avoids false detections in the borders.
LETTERBOX_PAD = 127


@dataclass(frozen=True)
class Letterbox:
    """How a source image was placed into the network input (for mapping boxes back)."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int  # size of the resized image inside the canvas
    new_h: int
    pad_x: int  # left / top offset of the resized image
    pad_y: int

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from network-input pixels to source pixels, clipped to the image."""
        out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        out[:, 0::2] = (out[:, 0::2] - self.pad_x) * (self.src_w / self.new_w)
        out[:, 1::2] = (out[:, 1::2] - self.pad_y) * (self.src_h / self.new_h)
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out

    def masks_to_source(self, masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Map (N, h, w) masks that cover the network canvas to bool (N, src_h, src_w).

        Masks at a lower resolution than the canvas (common for segmentation heads) are taken
        to cover the whole canvas proportionally.
        """
        masks = np.asarray(masks)
        n = masks.shape[0]
        out = np.zeros((n, self.src_h, self.src_w), bool)
        if n == 0:
            return out
        mh, mw = masks.shape[1:]
        sx, sy = mw / self.dst_w, mh / self.dst_h
        x0, y0 = self.pad_x * sx, self.pad_y * sy
        x1, y1 = (self.pad_x + self.new_w) * sx, (self.pad_y + self.new_h) * sy
        # Crop the region of the canvas that holds the image and resample it in one warp,
        # so masks of any resolution are handled the same way.
        ax, ay = (x1 - x0) / self.src_w, (y1 - y0) / self.src_h
        # pixel centres: source pixel x (centre x + 0.5) sits at mask coordinate
        # (x + 0.5) * ax + x0, i.e. at mask index that minus 0.5
        m = np.array([[ax, 0, x0 + 0.5 * ax - 0.5], [0, ay, y0 + 0.5 * ay - 0.5]], np.float64)
        for i in range(n):
            src = masks[i].astype(np.float32)
            warped = cv2.warpAffine(
                src,
                m,
                (self.src_w, self.src_h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            out[i] = warped > threshold
        return out


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Validate a frame: uint8 BGR (H, W, 3); grayscale (H, W) and BGRA are converted."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise InputError(f"task models take 8-bit images, got dtype {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"task models take (H, W, 3) BGR images, got shape {img.shape}")
    return img


def letterbox(
    bgr: np.ndarray, size: tuple[int, int], pad_value: int = LETTERBOX_PAD
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and centre on a ``size`` = (w, h) canvas of ``pad_value``.

    Bilinear resampling as in darknet's own ``letterbox_image`` (the weights were trained
    with it).
    """
    img = as_bgr(bgr)
    h, w = img.shape[:2]
    dw, dh = size
    scale = min(dw / w, dh / h)
    nw, nh = max(1, min(dw, round(w * scale))), max(1, min(dh, round(h * scale)))
    px, py = (dw - nw) // 2, (dh - nh) // 2
    canvas = np.full((dh, dw, 3), pad_value, np.uint8)
    resized = img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[py : py + nh, px : px + nw] = resized
    return canvas, Letterbox(w, h, dw, dh, nw, nh, px, py)


def make_blob(
    images: Sequence[np.ndarray],
    size: tuple[int, int],
    pad_value: int = LETTERBOX_PAD,
    scale: float = 1 / 255.0,
    swap_rb: bool = True,
    dtype: type = np.float32,
) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox a batch into an NCHW blob (RGB in [0, 1] by default)."""
    canvases, boxes = [], []
    for im in images:
        c, lb = letterbox(im, size, pad_value)
        canvases.append(c)
        boxes.append(lb)
    arr = np.stack(canvases)
    if swap_rb:
        arr = arr[..., ::-1]
    blob = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    if dtype is np.uint8:
        return blob, boxes
    return (blob.astype(np.float32) * np.float32(scale)).astype(dtype), boxes


@dataclass(frozen=True)
class YoloHead:
    """One YOLO output: anchors (w, h) in network-input pixels and class count."""

    anchors: tuple[tuple[float, float], ...]
    classes: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # float32 throughout; clipping keeps exp() finite for extreme logits
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def decode_yolo(
    outputs: Sequence[np.ndarray], heads: Sequence[YoloHead], input_size: tuple[int, int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode raw YOLO conv outputs (B, A*(5+C), h, w), one per head, darknet-style.

    Returns per image ``(boxes, probs)``: xyxy boxes in network-input pixels (M, 4) and
    per-class probabilities objectness*sigmoid(class) (M, C).
    """
    if len(outputs) != len(heads):
        raise ValueError(f"{len(outputs)} outputs for {len(heads)} yolo heads")
    in_w, in_h = input_size
    per_head_boxes, per_head_probs = [], []
    for out, head in zip(outputs, heads, strict=True):
        out = np.asarray(out, np.float32)
        b, ch, gh, gw = out.shape
        na, nc = len(head.anchors), head.classes
        if ch != na * (5 + nc):
            raise ValueError(f"yolo output has {ch} channels, expected {na * (5 + nc)}")
        # (B, A, 5+C, h, w) -> (B, h, w, A, 5+C): same cell-major order as darknet's output
        t = out.reshape(b, na, 5 + nc, gh, gw).transpose(0, 3, 4, 1, 2)
        gy, gx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
        anchors = np.asarray(head.anchors, np.float32)
        cx = (_sigmoid(t[..., 0]) + gx[None, :, :, None]) * (in_w / gw)
        cy = (_sigmoid(t[..., 1]) + gy[None, :, :, None]) * (in_h / gh)
        bw = np.exp(np.minimum(t[..., 2], 20)) * anchors[:, 0]
        bh = np.exp(np.minimum(t[..., 3], 20)) * anchors[:, 1]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        probs = _sigmoid(t[..., 4:5]) * _sigmoid(t[..., 5:])
        per_head_boxes.append(boxes.reshape(b, -1, 4))
        per_head_probs.append(probs.reshape(b, -1, nc))
    boxes_all = np.concatenate(per_head_boxes, 1)
    probs_all = np.concatenate(per_head_probs, 1)
    return [(boxes_all[i], probs_all[i]) for i in range(boxes_all.shape[0])]


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware greedy NMS; returns kept indices sorted by descending score.

    A box is suppressed when its IoU with a higher-scoring box of the same class exceeds
    ``iou_threshold``. Ties keep the earlier index (stable sort) for reproducible output.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    # Shift each class to its own region of the plane so one pass is class-aware.
    span = float(np.abs(boxes).max()) + 1.0
    shifted = boxes + (np.asarray(classes, np.float32) * 2 * span)[:, None]
    x0, y0, x1, y1 = shifted.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0)
        ih = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0)
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def select_and_nms(
    boxes: np.ndarray,
    probs: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    multi_label: bool = True,
    max_detections: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Threshold per-class probabilities, then class-aware NMS.

    ``multi_label`` keeps every (box, class) pair above the threshold, as darknet does and as
    mAP evaluation expects; otherwise only each box's best class is considered.
    """
    if multi_label:
        rows, cls = np.nonzero(probs > score_threshold)
        scores = probs[rows, cls]
    else:
        cls = probs.argmax(1) if probs.size else np.zeros(0, np.int64)
        scores = probs[np.arange(len(probs)), cls] if probs.size else np.zeros(0, np.float32)
        rows = np.nonzero(scores > score_threshold)[0]
        cls, scores = cls[rows], scores[rows]
    sel_boxes = boxes[rows]
    keep = nms(sel_boxes, scores, cls, iou_threshold)[:max_detections]
    return (
        sel_boxes[keep].astype(np.float32),
        scores[keep].astype(np.float32),
        cls[keep].astype(np.int32),
    )


class YoloPipeline:
    """Letterbox -> (any runtime) -> decode -> NMS -> source-pixel Detections.

    Runtimes only supply the raw head outputs; everything around them lives here once.
    """

    def __init__(
        self,
        heads: Sequence[YoloHead],
        input_size: tuple[int, int],
        class_names: Sequence[str],
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        multi_label: bool = True,
        max_detections: int = 300,
        pad_value: int = LETTERBOX_PAD,
    ) -> None:
        if not 0.0 <= score_threshold < 1.0:
            raise UsageError(f"score threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise UsageError(f"NMS IoU threshold must be in (0, 1], got {nms_threshold}")
        self.heads = list(heads)
        self.input_size = input_size
        self.class_names = list(class_names)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.multi_label = multi_label
        self.max_detections = max_detections
        self.pad_value = pad_value

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        return make_blob(images, self.input_size, self.pad_value)

    def postprocess(
        self, outputs: Sequence[np.ndarray], letterboxes: Sequence[Letterbox]
    ) -> list[Detections]:
        results = []
        for (boxes, probs), lb in zip(
            decode_yolo(outputs, self.heads, self.input_size), letterboxes, strict=True
        ):
            b, s, c = select_and_nms(
                boxes,
                probs,
                self.score_threshold,
                self.nms_threshold,
                self.multi_label,
                self.max_detections,
            )
            results.append(Detections(lb.boxes_to_source(b), s, c, list(self.class_names)))
        return results
