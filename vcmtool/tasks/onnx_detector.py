"""Run an ONNX detector with onnxruntime (CUDA provider when present, else CPU).

Two kinds of model are accepted:

(a) **vcmtool's own darknet-YOLO graphs** (exported by ``DarknetYolo.export_onnx`` or built
    by :func:`vcmtool.tasks.darknet_onnx.build_onnx`), recognised by the metadata key
    ``vcmtool.format``. Their raw head outputs go through exactly the decode/NMS of the
    OpenCV path (:class:`~vcmtool.tasks.postprocess.YoloPipeline`).

(b) **Any other detector**, if it follows this contract:

    - one image input (1, 3, H, W); H and W are read from the model (pass ``input_size``
      when they are dynamic); float inputs get RGB in [0, 1], uint8 inputs RGB in [0, 255];
      the image is letterboxed (aspect kept, centred, gray padding) to (W, H);
    - outputs named ``boxes`` (N, 4) x0, y0, x1, y1 in pixels of that input, ``scores`` (N,),
      ``classes`` (N,) and optionally ``masks`` (N, h, w) (probabilities or 0/1, covering the
      whole input canvas at any resolution). A leading batch dimension of 1 is allowed.
      Names are matched loosely (``*box*``, ``*score*``/``*conf*``, ``*class*``/``*label*``,
      ``*mask*``); without such names the outputs are taken in that order;
    - detections are final (post-NMS); vcmtool only applies ``score_threshold``
      (``nms=True`` adds class-aware NMS for models that skip it).

    Class names come from ``class_names`` (a list or a names file, one per line), else from
    the model metadata (``vcmtool.class_names`` JSON list, or ``names`` as written by
    ultralytics), else ``class<i>``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vcmtool.errors import ModelError, UsageError
from vcmtool.tasks.base import TASK_MODELS, Detections, TaskModel, ort_session_options
from vcmtool.tasks.darknet import ONNX_FORMAT, load_darknet
from vcmtool.tasks.postprocess import LETTERBOX_PAD, YoloHead, YoloPipeline, make_blob, nms


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def open_session(
    data: bytes, source: str, threads: int | None = None, providers: Sequence[str] | None = None
):
    """An onnxruntime session on the model bytes ``data`` with vcmtool's session options; a file
    onnxruntime cannot load is a :class:`ModelError` naming ``source``."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            data, ort_session_options(threads), providers=list(providers or default_providers())
        )
    except Exception as e:  # onnxruntime raises its own untyped errors on bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{source}: not a loadable ONNX model ({first})") from None


class ShippedDetector(TaskModel):
    """A COCO-80 detector whose ONNX file ships with vcmtool (NanoDet-g, CenterNet): the
    thresholds, the file, the session, the input and output checks and the version string,
    alike for each. A subclass names its ``label`` (version), ``what`` (errors), square
    ``input_size``, ``input_shape`` and ``outputs``, and ``model_name``, its file in
    ``vcmtool/models/``."""

    label: ClassVar[str] = ""
    what: ClassVar[str] = ""
    input_size: ClassVar[int] = 0
    input_shape: ClassVar[tuple[int, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    model_name: ClassVar[str] = ""

    def __init__(
        self,
        score_threshold: float,
        nms_threshold: float,
        max_detections: int,
        model: str | os.PathLike[str] | None,
        providers: Sequence[str] | None,
        threads: int | None,
    ) -> None:
        if not 0.0 <= score_threshold < 1.0:
            raise UsageError(f"score threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise UsageError(f"NMS IoU threshold must be in (0, 1], got {nms_threshold}")
        from vcmtool.modelfiles import model_path

        path = Path(model) if model is not None else model_path(self.model_name)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(
                f"{path}: cannot read the {self.what} model ({e.strerror or e}); reinstall vcmtool, "
                "or rebuild it with tools/tfjs_to_onnx.py"
            ) from None
        self.model_md5 = hashlib.md5(data).hexdigest()
        self._session = open_session(data, path.name, threads, providers)
        self.provider = self._session.get_providers()[0]
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        if tuple(inp.shape) != self.input_shape:
            raise ModelError(f"{path.name}: expected input {self.input_shape}, got {tuple(inp.shape)}")
        names = {o.name for o in self._session.get_outputs()}
        if not set(self.outputs) <= names:
            raise ModelError(f"{path.name}: outputs {sorted(names)}, expected {list(self.outputs)}")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        import onnxruntime as ort

        n, provider = self.input_size, self.provider.removesuffix("ExecutionProvider").lower()
        return f"{self.label}+{self.model_md5[:8]}@{n}x{n}/onnxruntime-{ort.__version__}-{provider}"

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The network's ``outputs`` for one input blob (sessions are not re-entrant)."""
        with self._lock:
            return self._session.run(list(self.outputs), {self._input: blob})


class OnnxDetector(TaskModel):
    """An ONNX detector on onnxruntime; see the module docstring for the model contract."""

    name = "onnx"

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        *,
        input_size: int | tuple[int, int] | None = None,
        class_names: Sequence[str] | str | os.PathLike[str] | None = None,
        providers: Sequence[str] | None = None,
        multi_label: bool = True,
        max_detections: int = 300,
        batch_size: int = 8,
        nms: bool = False,
        mask_threshold: float = 0.5,
        pad_value: int = LETTERBOX_PAD,
    ) -> None:

        if isinstance(model, bytes):
            data, self.source = model, "<memory>"
        else:
            path = Path(model)
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ModelError(f"{path}: cannot read ONNX model ({e.strerror or e})") from None
            self.source = path.name
        self.model_md5 = hashlib.md5(data).hexdigest()
        self._session = open_session(data, self.source, providers=providers)
        self.provider = self._session.get_providers()[0]
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._input_dtype = {
            "tensor(float)": np.float32,
            "tensor(float16)": np.float16,
            "tensor(uint8)": np.uint8,
        }.get(inp.type)
        if self._input_dtype is None:
            raise ModelError(f"{self.source}: input type {inp.type} not supported")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self.batch_size = max(1, batch_size)
        self.use_nms = nms
        self.mask_threshold = mask_threshold
        self.pad_value = pad_value
        self.is_darknet_yolo = meta.get("vcmtool.format") == ONNX_FORMAT
        size = self._input_size(inp.shape, input_size)
        self.input_size = size
        names = _class_names(class_names, meta)
        if self.is_darknet_yolo:
            heads = json.loads(meta["vcmtool.heads"])
            self._outputs = [h["output"] for h in heads]
            self.class_names = names
            self.weights_md5 = meta.get("vcmtool.weights_md5", "")
            self.model_name = meta.get("vcmtool.model", "darknet-yolo")
            self.pipeline: YoloPipeline | None = YoloPipeline(
                [YoloHead(tuple(tuple(a) for a in h["anchors"]), h["classes"]) for h in heads],
                size,
                names,
                score_threshold,
                nms_threshold,
                multi_label,
                max_detections,
                pad_value,
            )
            # a batch dimension fixed at 1 means one image per run
            self._batched = not isinstance(inp.shape[0], int) or inp.shape[0] != 1
        else:
            self.class_names = names
            self.pipeline = None
            self.model_name = Path(self.source).stem
            self._outputs, self._roles = _generic_outputs(
                [o.name for o in self._session.get_outputs()], self.source
            )
            self._batched = False

    def _input_size(self, shape: Sequence[Any], requested: int | tuple[int, int] | None) -> tuple[int, int]:
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ModelError(f"{self.source}: expected an (N, 3, H, W) input, got {shape}")
        req = (requested, requested) if isinstance(requested, int) else requested
        h, w = shape[2], shape[3]
        if isinstance(h, int) and isinstance(w, int):
            if req is not None and tuple(req) != (w, h):
                raise UsageError(f"{self.source}: the model's input is fixed at {w}x{h}")
            return (w, h)
        if req is None:
            raise UsageError(f"{self.source}: the model's input size is dynamic; give input_size")
        return (int(req[0]), int(req[1]))

    @property
    def version(self) -> str:
        import onnxruntime as ort

        w, h = self.input_size
        provider = self.provider.removesuffix("ExecutionProvider").lower()
        runtime = f"onnxruntime-{ort.__version__}-{provider}"
        if self.is_darknet_yolo:
            return f"{self.model_name}+{self.weights_md5[:8]}@{w}x{h}/{runtime}+onnx-{self.model_md5[:8]}"
        return f"onnx:{self.model_name}+{self.model_md5[:8]}@{w}x{h}/{runtime}"

    def raw_outputs(self, blob: np.ndarray) -> list[np.ndarray]:
        """Run the session on a prepared NCHW blob; outputs in the adapter's role order."""
        feed = {self._input_name: blob.astype(self._input_dtype, copy=False)}
        return list(self._session.run(self._outputs, feed))

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = []
        step = self.batch_size if self._batched else 1
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            if self.pipeline is not None:
                blob, boxes = self.pipeline.preprocess(chunk)
                results += self.pipeline.postprocess(self.raw_outputs(blob), boxes)
            else:
                results.append(self._detect_generic(chunk[0]))
        return results

    def _detect_generic(self, bgr: np.ndarray) -> Detections:
        uint8 = self._input_dtype is np.uint8
        blob, (lb,) = make_blob(
            [bgr], self.input_size, self.pad_value, dtype=np.uint8 if uint8 else np.float32
        )
        outs = dict(zip(self._roles, self.raw_outputs(blob), strict=True))
        boxes = _squeeze(outs["boxes"], 2)
        scores = _squeeze(outs["scores"], 1)
        classes = _squeeze(outs["classes"], 1)
        n = len(scores)
        if boxes.shape != (n, 4) or classes.shape != (n,):
            raise ModelError(
                f"{self.source}: outputs must be boxes (N, 4), scores (N,), classes (N,); got "
                f"{boxes.shape}, {scores.shape}, {classes.shape}"
            )
        masks = None
        if "masks" in outs:
            masks = _squeeze(outs["masks"], 3)
            if masks.shape[0] != n:
                raise ModelError(f"{self.source}: masks {masks.shape} for {n} detections")
        keep = np.nonzero(scores > self.score_threshold)[0]
        if self.use_nms:
            order = nms(boxes[keep], scores[keep], classes[keep], self.nms_threshold)
            keep = keep[order]
        else:
            keep = keep[np.argsort(-scores[keep], kind="stable")]
        keep = keep[: self.max_detections]
        src_masks = None
        if masks is not None:
            src_masks = lb.masks_to_source(masks[keep].astype(np.float32), self.mask_threshold)
        return Detections(
            lb.boxes_to_source(boxes[keep]),
            scores[keep],
            classes[keep].astype(np.int32),
            list(self.class_names),
            src_masks,
        )


def _squeeze(a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == ndim + 1 and a.shape[0] == 1:
        a = a[0]
    return a


def _generic_outputs(names: list[str], source: str) -> tuple[list[str], list[str]]:
    """Assign output names to roles boxes/scores/classes[/masks]."""
    patterns = {
        "boxes": ("box",),
        "scores": ("score", "conf"),
        "classes": ("class", "label"),
        "masks": ("mask",),
    }
    found: dict[str, str] = {}
    for role, keys in patterns.items():
        for n in names:
            if n not in found.values() and any(k in n.lower() for k in keys):
                found[role] = n
                break
    if not {"boxes", "scores", "classes"} <= found.keys():
        if len(names) not in (3, 4):
            raise ModelError(
                f"{source}: cannot tell which outputs are boxes/scores/classes (outputs: "
                f"{', '.join(names)}); name them boxes, scores, classes[, masks]"
            )
        found = dict(zip(["boxes", "scores", "classes", "masks"], names, strict=False))
    roles = list(found)
    return [found[r] for r in roles], roles


def _class_names(given: Sequence[str] | str | os.PathLike[str] | None, meta: dict[str, str]) -> list[str]:
    if isinstance(given, str | os.PathLike):
        path = Path(given)
        try:
            return [n.strip() for n in path.read_text().splitlines() if n.strip()]
        except OSError as e:
            raise UsageError(f"{path}: cannot read class names ({e.strerror or e})") from None
    if given is not None:
        return list(given)
    if "vcmtool.class_names" in meta:
        return list(json.loads(meta["vcmtool.class_names"]))
    if "names" in meta:  # ultralytics writes a Python dict literal {0: 'person', ...}
        try:
            parsed = ast.literal_eval(meta["names"])
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, dict):
            return [str(parsed[k]) for k in sorted(parsed)]
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return []


@TASK_MODELS.register("onnx")
def _onnx_model(path: str = "", **options: Any) -> TaskModel:
    if not path:
        raise UsageError("task model 'onnx' needs a file: onnx:PATH")
    return OnnxDetector(path, **options)


@TASK_MODELS.register("yolov3-tiny-ort")
def _yolov3_tiny_ort(
    arg: str = "",
    *,
    cfg: str | None = None,
    weights: str | None = None,
    names: str | None = None,
    input_size: int | tuple[int, int] = 416,
    **options: Any,
) -> TaskModel:
    """YOLOv3-tiny on onnxruntime from a graph built in memory from the darknet files."""
    if arg:
        raise UsageError(f"task model 'yolov3-tiny-ort' takes no ':' argument (got {arg!r})")
    from vcmtool.tasks.darknet_onnx import cached_onnx

    size = (input_size, input_size) if isinstance(input_size, int) else input_size
    net = load_darknet(cfg, weights, names)
    detector = OnnxDetector(cached_onnx(net, tuple(size)), **options)
    detector.name = "yolov3-tiny-ort"
    return detector
