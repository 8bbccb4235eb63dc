"""JRD annotation rules (the SNN-JRD paper, sec. 3.2-3.3) as pure functions.

* Reference instances: the task model's detections on the original image with score > 0.3
  (the paper's background rule; without human labels the original's detections are the
  reference, docs/design.md "Task models and pseudo ground truth").
* At each compression level the reference instance is matched to the compressed image's
  detections (box IoU > 0.75) and compared by the four distances of eq. 2-4: mask 1-IoU,
  box 1-IoU, |score difference|, class difference.
* l_max (eq. 1): the largest level l whose distances are all within the thresholds while
  level l+c is not.
* The monotone label (vcmtool's default, docs/design.md "Label decision"): the largest level l
  such that every level <= l passes (first failure - 1; the top level when nothing fails).
* The detected label (``--label detected``): the same monotone rule over a looser pass, "still
  detected" instead of "detection unchanged": matched (box IoU > the match IoU), same class, and
  a score that cannot have fallen below the reference threshold (0.3). It asks when the task
  model stops *recognising* the object, not when its score first moves by 0.05, which on
  YOLOv3-tiny is mostly flicker (docs/design.md, "What the labels cannot say").
* Track smoothing: in clips an instance is followed across the sampled frames of its chunk
  (box IoU > 0.75, same class, one-to-one) and every member of a track takes a low percentile
  of the track's labels, so one flickering frame does not set it.
* Label map (3.3): a pixel map initialised to the maximum QP, instance regions take their
  l_max (overlaps the minimum), min-pooled to the CTU grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from vcmtool.eval.boxes import box_iou

MATCH_IOU = 0.75
REF_MIN_SCORE = 0.3
# COCO's area ranges (pixels): small < 32^2 <= medium < 96^2 <= large.
SMALL_AREA = 32 * 32
MEDIUM_AREA = 96 * 96
SIZE_CLASSES = ("small", "medium", "large")


@dataclass(frozen=True)
class Thresholds:
    """epsilon of eq. 1 per distance, and the level step c (paper: 0.05, 0.1, 0.05, 0; c = 1)."""

    mask: float = 0.05
    box: float = 0.1
    score: float = 0.05
    cls: float = 0.0
    c: int = 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Thresholds:
        return cls(**{k: d[k] for k in ("mask", "box", "score", "cls", "c") if k in d})


@dataclass(frozen=True)
class Instance:
    """One prediction: box x0,y0,x1,y1 in pixels, score, class id, optional bool mask (H, W)."""

    box: tuple[float, float, float, float]
    score: float
    cls: int
    mask: np.ndarray | None = None

    def region(self, height: int, width: int) -> np.ndarray:
        """The pixels the instance covers: its mask, or its box when the model has no masks."""
        return self.mask if self.mask is not None else box_mask(self.box, height, width)


@dataclass(frozen=True)
class Distances:
    """Eq. 2-4 for one instance at one level; ``matched`` False when nothing overlapped enough."""

    mask: float
    box: float
    score: float
    cls: float
    matched: bool

    def within(self, thr: Thresholds) -> bool:
        return (
            self.matched
            and self.mask <= thr.mask
            and self.box <= thr.box
            and self.score <= thr.score
            and self.cls <= thr.cls
        )

    def to_json(self) -> dict:
        return {
            "mask": round(self.mask, 6),
            "box": round(self.box, 6),
            "score": round(self.score, 6),
            "cls": self.cls,
            "matched": self.matched,
        }


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Bool (H, W) mask of the pixels whose centres lie inside the box (clipped to the image)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, c1 = int(np.clip(np.ceil(x0 - 0.5), 0, width)), int(np.clip(np.ceil(x1 - 0.5), 0, width))
    r0, r1 = int(np.clip(np.ceil(y0 - 0.5), 0, height)), int(np.clip(np.ceil(y1 - 0.5), 0, height))
    m = np.zeros((height, width), bool)
    m[r0:r1, c0:c1] = True
    return m


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = int(np.count_nonzero(a & b))
    union = int(np.count_nonzero(a | b))
    return inter / union if union else 0.0


def reference_instances(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    masks: np.ndarray | None = None,
    min_score: float = REF_MIN_SCORE,
) -> list[Instance]:
    """The instance regions of an original image: detections with score > ``min_score``."""
    return [
        Instance(
            tuple(float(v) for v in boxes[i]),
            float(scores[i]),
            int(classes[i]),
            None if masks is None else np.asarray(masks[i], bool),
        )
        for i in range(len(scores))
        if float(scores[i]) > min_score
    ]


def match(ref: Instance, cands: Sequence[Instance], match_iou: float = MATCH_IOU) -> int | None:
    """Index of the candidate that is the reference instance in the compressed image.

    Candidates overlapping by IoU > ``match_iou``; the same class is preferred (a multi-label
    detector reports several classes on one box), then the highest IoU. None: no overlap.
    """
    if not cands:
        return None
    ious = box_iou(ref.box, np.array([c.box for c in cands]))
    ok = np.flatnonzero(ious > match_iou)
    if ok.size == 0:
        return None
    same = [i for i in ok if cands[i].cls == ref.cls]
    pool = same or list(ok)
    return int(max(pool, key=lambda i: (ious[i], cands[i].score)))


def distances(
    ref: Instance, cands: Sequence[Instance], height: int, width: int, match_iou: float = MATCH_IOU
) -> Distances:
    """Eq. 2-4 between a reference instance and its match among the compressed detections.

    Unmatched (the instance vanished or moved): box and mask distances 1, score distance the
    full reference score, class distance 1.
    """
    j = match(ref, cands, match_iou)
    if j is None:
        return Distances(1.0, 1.0, ref.score, 1.0, False)
    c = cands[j]
    d_box = 1.0 - float(box_iou(ref.box, np.array([c.box]))[0])
    d_mask = 1.0 - mask_iou(ref.region(height, width), c.region(height, width))
    return Distances(d_mask, d_box, abs(ref.score - c.score), float(ref.cls != c.cls), True)


def l_max(levels: Sequence[int], passed: Sequence[bool], c: int = 1) -> int:
    """Eq. 1: the largest level l that passes while level l+c (c steps on) fails.

    ``levels`` ascending. When every level passes the largest is returned (nothing fails);
    when none passes, the smallest (no level is safe, so the finest one is the label).
    """
    if len(levels) != len(passed) or not levels:
        raise ValueError("levels and passed must be non-empty and of equal length")
    if list(levels) != sorted(levels):
        raise ValueError("levels must be ascending")
    n = len(levels)
    for i in range(n - 1, -1, -1):
        if passed[i] and (i + c >= n or not passed[i + c]):
            return int(levels[i])
    return int(levels[0])


def first_failure(levels: Sequence[int], passed: Sequence[bool]) -> int | None:
    """The lowest failing level (an audit aid: eq. 1 can skip over a non-monotonic dip)."""
    return next((int(lv) for lv, p in zip(levels, passed, strict=True) if not p), None)


LABEL_RULES = ("monotone", "eq1", "detected")


def detected(curve: dict[str, list], ref_score: float, min_score: float = REF_MIN_SCORE) -> list[bool]:
    """Per level of a stored curve: is the reference instance still detected?

    Matched, same class, and ``ref_score - |score change| >= min_score``. The curves keep only
    the absolute score change, so a change larger than the margin counts as a loss whether the
    score fell or rose (conservative: a label can only come out lower than the exact rule's).
    """
    margin = ref_score - min_score
    return [
        bool(m) and c == 0 and d <= margin + 1e-9
        for m, c, d in zip(curve["matched"], curve["cls"], curve["score"], strict=True)
    ]


def curve_passes(rule: str, curve: dict[str, list], ref_score: float) -> list[bool]:
    """The per-level pass list ``rule`` reads from a stored curve (``detected`` recomputes it)."""
    return detected(curve, ref_score) if rule == "detected" else list(curve["passed"])


def monotone_label(levels: Sequence[int], passed: Sequence[bool]) -> int:
    """The largest level l such that the instance passes at every level <= l.

    ``levels`` ascending. The level just below the first failing one; the top level when
    nothing fails; the smallest level when even that fails (no level is safe, so the finest one
    is the label, as :func:`l_max` does).
    """
    if len(levels) != len(passed) or not levels:
        raise ValueError("levels and passed must be non-empty and of equal length")
    if list(levels) != sorted(levels):
        raise ValueError("levels must be ascending")
    last = None
    for lv, p in zip(levels, passed, strict=True):
        if not p:
            break
        last = int(lv)
    return int(levels[0]) if last is None else last


def label_of(rule: str, levels: Sequence[int], passed: Sequence[bool], c: int = 1) -> int:
    """An instance's label by ``rule``: "monotone" (default), "eq1" (the paper's eq. 1), or
    "detected" (monotone over :func:`detected`'s passes, which the caller gives)."""
    if rule in ("monotone", "detected"):
        return monotone_label(levels, passed)
    if rule == "eq1":
        return l_max(levels, passed, c)
    raise ValueError(f"label rule {rule!r}: use one of {', '.join(LABEL_RULES)}")


def link_tracks(
    frames: Sequence[Sequence[tuple[Sequence[float], int]]], match_iou: float = MATCH_IOU
) -> list[list[int]]:
    """Track ids for the instances of consecutive frames (each a list of (box, class)).

    An instance continues a track of the previous frame when their boxes overlap by IoU >
    ``match_iou`` and the class is the same (the JRD matching rule, class required); pairs are
    taken greedily by IoU, one-to-one; anything unmatched starts a new track. Returns one list of
    track ids per frame, parallel to the input.
    """
    ids: list[list[int]] = []
    nxt = 0
    prev: Sequence[tuple[Sequence[float], int]] = []
    for cur in frames:
        got = [-1] * len(cur)
        if prev and cur:
            pb = np.array([b for b, _ in prev], np.float64).reshape(-1, 4)
            pairs = []
            for j, (box, cls) in enumerate(cur):
                ious = box_iou(box, pb)
                for i in np.flatnonzero(ious > match_iou):
                    if prev[i][1] == cls:
                        pairs.append((float(ious[i]), j, int(i)))
            used: set[int] = set()
            for _, j, i in sorted(pairs, reverse=True):
                if got[j] < 0 and i not in used:
                    got[j] = ids[-1][i]
                    used.add(i)
        for j in range(len(cur)):
            if got[j] < 0:
                got[j], nxt = nxt, nxt + 1
        ids.append(got)
        prev = cur
    return ids


def smooth_track(labels: Sequence[int], levels: Sequence[int], percentile: float) -> int:
    """The label of a whole track: the ``percentile`` of its members' labels (linear
    interpolation), rounded down to a coded level (a label is always a level that was tested)."""
    if not labels:
        raise ValueError("empty track")
    v = float(np.percentile(np.asarray(labels, np.float64), percentile))
    below = [int(lv) for lv in levels if lv <= v + 1e-9]
    return below[-1] if below else int(min(levels))


def size_class(area: float) -> str:
    if area < SMALL_AREA:
        return "small"
    return "medium" if area < MEDIUM_AREA else "large"


def pixel_label(
    height: int, width: int, regions: Sequence[tuple[np.ndarray, int]], qp_max: int
) -> np.ndarray:
    """uint8 (H, W) map: ``qp_max`` background, each region its level, overlaps the minimum."""
    out = np.full((height, width), qp_max, np.uint8)
    for mask, level in regions:
        np.minimum(out, np.where(mask, np.uint8(level), np.uint8(qp_max)), out=out)
    return out
