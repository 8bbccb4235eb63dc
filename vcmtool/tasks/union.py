"""``union:A+B[+C]``: several COCO-80 detectors as one task model, for a sender that must not
starve what any of them sees.

A map steered by one detector protects that detector's objects and starves the rest; a second
detector judging the same bitstream then pays for it (``docs/design.md``, "A second detector").
A sender that does not know the receiver's task model can steer with the union of several:
``vcmtool encode --qpmap roi --task-model union:yolov3-tiny+nanodet``. Each member detects on the
frame; the detections are pooled and class-aware NMS (IoU 0.5) keeps, of overlapping boxes of
one class, the highest-scoring one. Members must name their classes alike (the built-in
detectors share darknet's COCO-80 names); ids are taken from the first member's list.

Cost: the members' detection times add up. Judge such a sender with a detector that is not a
member (``vcmtool bench --judges ...,centernet``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vcmtool.errors import UsageError
from vcmtool.tasks.base import TASK_MODELS, Detections, TaskModel, get_task_model
from vcmtool.tasks.postprocess import nms

UNION_IOU = 0.5


class UnionModel(TaskModel):
    """The pooled, NMS-merged detections of ``members``; see the module docstring."""

    name = "union"

    def __init__(self, members: Sequence[TaskModel]) -> None:
        if len(members) < 2:
            raise UsageError("task model 'union' needs two or more members (union:A+B)")
        names = list(members[0].class_names)
        for m in members[1:]:
            if list(m.class_names) != names:
                raise UsageError(
                    f"task model 'union': {m.name} names its classes unlike {members[0].name}; "
                    "members must share one class list"
                )
        self.members = list(members)
        self.class_names = names

    @property
    def version(self) -> str:
        return "union(" + ",".join(m.version for m in self.members) + ")"

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        per_member = [m.detect_batch(images) for m in self.members]
        out = []
        for dets in zip(*per_member, strict=True):
            boxes = np.concatenate([d.boxes.reshape(-1, 4) for d in dets]).astype(np.float32)
            scores = np.concatenate([d.scores for d in dets]).astype(np.float32)
            classes = np.concatenate([d.classes for d in dets]).astype(np.int64)
            keep = nms(boxes, scores, classes, UNION_IOU)
            out.append(Detections(boxes[keep], scores[keep], classes[keep], list(self.class_names)))
        return out


@TASK_MODELS.register("union")
def _union(arg: str = "", **options: Any) -> TaskModel:
    parts = [p.strip() for p in arg.split("+")]
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"task model 'union' takes two or more names joined by '+' (got {arg!r})")
    if len(set(parts)) != len(parts):
        raise UsageError(f"task model 'union:{arg}' names a member twice")
    if any(p.partition(":")[0] == "union" for p in parts):
        raise UsageError("task model 'union' cannot contain another union")
    return UnionModel([get_task_model(p, **options) for p in parts])
