"""Detections, the task-model interface and the task-model registry."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vcmtool.errors import UsageError
from vcmtool.registry import Registry, parse_spec


@dataclass
class Detections:
    """Detections on one image, in pixels of the image given to ``detect``.

    boxes float32 (N, 4) x0, y0, x1, y1; scores float32 (N,); classes int32 (N,) indexing
    ``class_names``; masks bool (N, H, W) at the image's size, or None for box-only models.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_names: list[str] = field(default_factory=list)
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, np.int32).reshape(-1)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.classes) != n:
            raise ValueError(
                f"detections disagree: {n} boxes, {len(self.scores)} scores, {len(self.classes)} classes"
            )
        if self.masks is not None:
            self.masks = np.asarray(self.masks, bool)
            if self.masks.ndim != 3 or self.masks.shape[0] != n:
                raise ValueError(f"masks must be (N, H, W) with N={n}, got {self.masks.shape}")

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> Detections:
        z = np.zeros(0, np.float32)
        return cls(z.reshape(0, 4), z, np.zeros(0, np.int32), list(class_names))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Detections:
        """Subset by integer array, bool mask or slice (always returns Detections)."""
        if isinstance(index, int | np.integer):
            index = [index]
        return Detections(
            self.boxes[index],
            self.scores[index],
            self.classes[index],
            list(self.class_names),
            None if self.masks is None else self.masks[index],
        )

    def rows(self) -> list[list[float]]:
        """JSON-friendly rows ``[x0, y0, x1, y1, score, class_id]``: how results, caches and the
        mAP scorer (:class:`vcmtool.eval.coco.GroundTruth`) exchange detections."""
        return [
            [*map(float, b), float(s), int(c)]
            for b, s, c in zip(self.boxes, self.scores, self.classes, strict=True)
        ]

    def class_name(self, class_id: int) -> str:
        if 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return f"class{class_id}"

    def filter(self, min_score: float = 0.0, classes: Iterable[int | str] | None = None) -> Detections:
        """Keep detections with score >= ``min_score`` and (optionally) in ``classes``.

        ``classes`` may mix class ids and names; an unknown name is a usage error rather than
        an empty result, since that is almost always a typo.
        """
        keep = self.scores >= min_score
        if classes is not None:
            ids: set[int] = set()
            for c in classes:
                if isinstance(c, str):
                    if c not in self.class_names:
                        raise UsageError(f"unknown class name {c!r}")
                    ids.add(self.class_names.index(c))
                else:
                    ids.add(int(c))
            keep &= np.isin(self.classes, list(ids))
        return self[keep]

    def to_json(self) -> list[dict[str, Any]]:
        """Plain-JSON list, one dict per detection (masks as COCO RLE)."""
        rles: list[dict[str, Any]] | None = None
        if self.masks is not None and len(self):
            from pycocotools import mask as mask_utils  # lazy: only mask models need it

            encoded = mask_utils.encode(np.asfortranarray(self.masks.transpose(1, 2, 0)))
            rles = [{"size": list(r["size"]), "counts": r["counts"].decode()} for r in encoded]
        out = []
        for i in range(len(self)):
            cid = int(self.classes[i])
            item: dict[str, Any] = {
                "box": [float(v) for v in self.boxes[i]],
                "score": float(self.scores[i]),
                "class_id": cid,
                "class": self.class_name(cid),
            }
            if rles is not None:
                item["mask"] = rles[i]
            out.append(item)
        return out


def cpu_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ort_session_options(threads: int | None = None) -> Any:
    """onnxruntime session options for every model vcmtool runs (task models, the JRD
    predictors): ``threads`` intra-op threads (default: the cores this process may use), one
    inter-op thread, sequential execution, all graph optimisations, and **no spinning**: idle
    intra-op threads sleep instead of busy-waiting. Measured on 2 cores while a 1-thread kvazaar
    encode ran beside it (benchmarks/bench_predict.py --contended, docs/results.md "Throughput"):
    spinning threads took the encoder's core and made both slower."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # keep onnxruntime's warnings off the user's terminal
    return so


class TaskModel(ABC):
    """A machine-vision model whose accuracy a coding choice is judged by.

    Implementations are thread-compatible but not re-entrant across threads; detections are
    deterministic for a given model version and input.
    """

    name: str = ""
    class_names: list[str]

    @property
    @abstractmethod
    def version(self) -> str:
        """Identifies the exact model and runtime (goes into reports), incl. a weights md5."""

    @abstractmethod
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect on several uint8 BGR (H, W, 3) images; sizes may differ."""

    def detect(self, bgr: np.ndarray) -> Detections:
        """Detect on one uint8 BGR (H, W, 3) image."""
        return self.detect_batch([bgr])[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.version}>"


# Entries are factories ``(arg: str = "", **options) -> TaskModel``; ``arg`` is what follows
# the ':' in a spec (a file for "onnx:PATH"), so factories can refuse one they do not take.
TASK_MODELS: Registry[Callable[..., TaskModel]] = Registry("task model")
DEFAULT_TASK_MODEL = "yolov3-tiny"

_cache: dict[tuple[str, tuple[tuple[str, Any], ...]], TaskModel] = {}
_cache_lock = threading.RLock()  # re-entrant: a factory may build its members (union:A+B)


def get_task_model(spec: str = DEFAULT_TASK_MODEL, **options: Any) -> TaskModel:
    """Build (or reuse) a task model from ``"name"`` or ``"name:argument"``.

    ``"yolov3-tiny"`` is the default; ``"onnx:PATH"`` loads a user ONNX detector. Keyword
    options go to the model's constructor (e.g. ``score_threshold=0.05``). Instances are
    cached per process by spec and options because loading costs a noticeable fraction of a
    second; treat returned models as shared and do not mutate them.
    """
    parsed = parse_spec(spec, TASK_MODELS.kind)
    TASK_MODELS.get(parsed.name)  # an unknown name fails here, with the list of known ones
    try:
        key: tuple[str, tuple[tuple[str, Any], ...]] | None = (spec, tuple(sorted(options.items())))
        hash(key)
    except TypeError:  # unhashable option values: build a fresh instance
        key = None
    with _cache_lock:
        if key is not None and key in _cache:
            return _cache[key]
        model = TASK_MODELS.build(parsed, **options)
        if key is not None:
            _cache[key] = model
        return model


def clear_task_model_cache() -> None:
    with _cache_lock:
        _cache.clear()
