"""Task models: the machine-vision networks whose accuracy coding decisions are judged by.

``get_task_model("yolov3-tiny")`` (the default, OpenCV DNN) or ``get_task_model("onnx:PATH")``.
Also registered: ``yolov3-tiny-ort`` (onnxruntime) and ``yolov3-tiny-torch`` (PyTorch; torch
is imported only when that one is built), and ``nanodet`` (NanoDet-g, a second and independent
COCO-80 detector on onnxruntime, shipped in ``vcmtool/models/``; the bench's second judge) and
``centernet`` (CenterNet-MobileNetV3, a third one, for judging senders steered by the other two),
and ``union:A+B`` (several detectors pooled, for a sender that must not starve what any sees).
Importing this package never imports torch.
Installed distributions add task models (factories ``(arg: str = "", **options) -> TaskModel``)
through the ``vcmtool.task_models`` entry-point group (:mod:`vcmtool.plugins`).
"""

from vcmtool.tasks import centernet as _centernet  # noqa: F401  (registers "centernet")
from vcmtool.tasks import nanodet as _nanodet  # noqa: F401  (registers "nanodet")
from vcmtool.tasks import onnx_detector as _onnx_detector  # noqa: F401  (registers "onnx")
from vcmtool.tasks import union as _union  # noqa: F401  (registers "union")
from vcmtool.tasks import yolov3_tiny as _yolov3_tiny  # noqa: F401  (registers "yolov3-tiny")
from vcmtool.tasks.base import (
    DEFAULT_TASK_MODEL,
    TASK_MODELS,
    Detections,
    TaskModel,
    clear_task_model_cache,
    get_task_model,
)
from vcmtool.tasks.centernet import CenterNetMbv3
from vcmtool.tasks.nanodet import NanoDetG
from vcmtool.tasks.onnx_detector import OnnxDetector
from vcmtool.tasks.union import UnionModel
from vcmtool.tasks.yolov3_tiny import YoloV3Tiny

TASK_MODELS.enable_plugins("vcmtool.task_models", accepts=callable)

__all__ = [
    "DEFAULT_TASK_MODEL",
    "TASK_MODELS",
    "CenterNetMbv3",
    "Detections",
    "NanoDetG",
    "OnnxDetector",
    "TaskModel",
    "UnionModel",
    "YoloV3Tiny",
    "clear_task_model_cache",
    "get_task_model",
]
