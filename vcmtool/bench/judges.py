"""Judges: the detectors that score every rate point, each against its own pseudo ground truth.

A QP map steered by a detector and scored by the same detector overstates the gain (measured:
ROI maps from YOLOv3-tiny looked 5-12% better than a uniform QP to YOLOv3-tiny, and needed about
twice the bits under NanoDet-g). So the bench reports with several judges. The bench task model
(``--task-model``: the detector the maps are computed with, and the one whose detections the
encode step stores) is always the first judge; its figures are the top-level ones of every row,
as before judges existed. Each further judge

* runs on the uncompressed frames once per input (its own pseudo ground truth: score >= 0.3), and
* re-decodes each finished rate point's bitstream and detects on it (a work item of its own,
  keyed by the point's key, the stream's md5 and the judge's model file): adding a judge to a
  finished bench scores the stored streams and never re-encodes.

Default (``--judges`` not given): the task model plus every built-in COCO-80 judge of another
family, i.e. YOLOv3-tiny and NanoDet-g. ``centernet`` (CenterNet-MobileNetV3) is a third,
opt-in judge (``--judges yolov3-tiny,nanodet,centernet``): the one that judges a sender steered
or tuned with both of the others. ``yolov3-tiny``, ``yolov3-tiny-ort`` and
``yolov3-tiny-torch`` are one family (same weights). Methods with their own receiver (``cdre``)
are scored by that receiver only: a further judge would ignore the side stream the method sends,
so their rows carry no figure for it (n/a).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from vcmtool.bench.grid import BenchConfig, PointSpec, _key, source_item
from vcmtool.bench.methods import file_fingerprint
from vcmtool.errors import UsageError
from vcmtool.runner import Item

BUILTIN_JUDGES = ("yolov3-tiny", "nanodet")
# judges whose model file ships with vcmtool (its fingerprint keys their scores): module -> model_file()
SHIPPED_JUDGES = {"nanodet": "vcmtool.tasks.nanodet", "centernet": "vcmtool.tasks.centernet"}
_FAMILY = {"yolov3-tiny-ort": "yolov3-tiny", "yolov3-tiny-torch": "yolov3-tiny"}


def family(spec: str) -> str:
    return _FAMILY.get(spec, spec)


def resolve_judges(task_model: str, judges: list[str] | None) -> list[str]:
    """The judges of a bench: the task model first, then the others (default: see module doc)."""
    from vcmtool.tasks import TASK_MODELS

    if judges is None:
        extra = [j for j in BUILTIN_JUDGES if family(j) != family(task_model)]
    else:
        extra = [j.strip() for j in judges if j.strip() and j.strip() != task_model]
    out = [task_model]
    for j in extra:
        if j in out:
            raise UsageError(f"--judges names {j} twice")
        TASK_MODELS.get(j.partition(":")[0])  # unknown names fail here, with the list of known ones
        out.append(j)
    return out


def identity(judge: str) -> str:
    """A fingerprint of the judge's model file (nanodet, centernet, onnx:PATH): a new model
    re-scores."""
    import importlib

    name, _, arg = judge.partition(":")
    path: Path | None = None
    if name in SHIPPED_JUDGES:
        path = importlib.import_module(SHIPPED_JUDGES[name]).model_file()
    elif name == "onnx" and arg:
        path = Path(arg)
    try:
        return file_fingerprint(path) if path is not None else ""
    except OSError:
        return ""  # missing: the judge fails when it is built, with its own message


def judge_source_item(cfg: BenchConfig, judge: str, inp: str) -> Item:
    """The judge on one uncompressed input (its pseudo ground truth); runs ``source_point``."""
    return source_item(replace(cfg, task_model=judge), inp, identity(judge))


def judge_item(spec: PointSpec, point_key: str, result: dict, judge: str) -> Item:
    """The judge on one finished rate point's decoded frames; runs :func:`judge_point`."""
    stream_md5 = next(iter(result.get("md5", {}).values()), "")
    readable = f"{Path(spec.input).stem}_{spec.codec}_{spec.qpmap}_{spec.rate_label}_{judge}"
    hidden = f"judge|{point_key}|{stream_md5}|{judge}|{identity(judge)}"
    payload = {
        "judge": judge,
        "method": spec.qpmap,  # what the judge sees: decoded frames, or a receiver's (vcs)
        "codec": result["codec"],
        "stream": result["stream"],
        "width": result["width"],
        "height": result["height"],
        "frames": result["frames"],
    }
    return Item(_key(readable, hidden), payload)


def judge_point(payload: dict) -> dict:
    from vcmtool.bench.methods import present_frames, resolve
    from vcmtool.bench.points import _model, detect_frames

    stream = Path(payload["stream"])
    if not stream.is_file():
        raise FileNotFoundError(
            f"{stream}: the point's bitstream is gone; delete its state file to re-encode it"
        )
    model = _model(payload["judge"])
    t0 = time.perf_counter()
    # as for the task model (points.py): scaled points upsampled to the original size first,
    # task-decoupled receivers' (vcs) enhanced frames
    frames = present_frames(resolve(payload.get("method", "none")), stream, payload.get("codec", "hevc"))
    dets = detect_frames(model, frames, payload["width"], payload["height"])
    if len(dets) != payload["frames"]:
        raise RuntimeError(f"{stream}: decoded {len(dets)} frames, encoded {payload['frames']}")
    return {
        "judge": payload["judge"],
        "task_model": model.version,
        "detections": dets,
        "eval_s": round(time.perf_counter() - t0, 4),
    }
