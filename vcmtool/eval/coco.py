"""Task accuracy with pycocotools: mAP@0.5 and mAP@[.5:.95] against pseudo or real ground truth,
and bootstrap confidence intervals over frames.

Detections travel as rows ``[x0, y0, x1, y1, score, class_id]`` per frame (class ids index the
task model's class names). Frames are keyed ``(input, frame_index)``.

Pseudo ground truth (docs/design.md, "Task models and pseudo ground truth") is the task model's
own detections on the uncompressed frames with score >= ``PSEUDO_GT_MIN_SCORE``; the detections
being scored come from the same model run with a low threshold (``EVAL_MIN_SCORE``) so that the
precision-recall curve is complete. With greedy NMS the >= 0.3 subset does not depend on the lower
threshold, so the uncompressed frames score exactly 1.0 against their own pseudo ground truth.

Only COCO's "all" area range and maxDets=100 are evaluated (the two headline numbers); the
per-image matching (``COCOeval.evaluate``) runs once per rate point and the bootstrap re-runs
only ``accumulate`` on resampled frames, which is what makes a few hundred replicates cheap.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcmtool.errors import InputError, UsageError
from vcmtool.eval.boxes import box_iou

EVAL_MIN_SCORE = 0.05
PSEUDO_GT_MIN_SCORE = 0.3

Key = tuple[str, int]
Row = Sequence[float]  # x0, y0, x1, y1, score, class_id


@contextlib.contextmanager
def _quiet():
    # pycocotools prints progress on stdout, which belongs to --json
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]):
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with _quiet():
        c.createIndex()
    return c


def _ann(i: int, image_id: int, box: Sequence[float], cat: int, score: float | None = None) -> dict:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    w, h = max(0.0, x1 - x0), max(0.0, y1 - y0)
    a = {
        "id": i,
        "image_id": image_id,
        "category_id": cat,
        "bbox": [x0, y0, w, h],
        "area": w * h,
        "iscrowd": 0,
    }
    if score is not None:
        a["score"] = float(score)
    return a


def _seen_around(frames: dict[Key, list[Row]], key: Key, row: Row, min_score: float, window: int) -> bool:
    """Is ``row`` (a detection on frame ``key``) detected again in each neighbouring frame within
    ``window`` that ``frames`` has (same class, score >= ``min_score``, box IoU >= 0.5)?"""
    inp, t = key
    for n in range(t - window, t + window + 1):
        near = frames.get((inp, n))
        if n == t or near is None:
            continue
        same = [o[:4] for o in near if o[5] == row[5] and o[4] >= min_score]
        if not same or box_iou(row, np.asarray(same)).max() < 0.5:
            return False
    return True


class GroundTruth:
    """Ground truth over an ordered set of frames, ready to score detections on the same frames."""

    def __init__(
        self,
        keys: list[Key],
        images: list[dict],
        categories: list[dict],
        annotations: list[dict],
        class_to_cat: dict[int, int],
    ) -> None:
        self.keys = keys
        self.image_ids = {k: im["id"] for k, im in zip(keys, images, strict=True)}
        self.class_to_cat = class_to_cat
        self.coco = _coco(images, categories, annotations)
        self.cat_ids = sorted({a["category_id"] for a in annotations})  # absent ones score -1 anyway
        self.images = images
        self.categories = categories
        self.person_cat: int | None = None  # category of "person", for the per-class AP@0.5

    def objects(self) -> int:
        """Annotations that count (not don't-care regions)."""
        return sum(1 for a in self.coco.dataset["annotations"] if not a.get("iscrowd"))

    def dont_care(self) -> int:
        return len(self.coco.dataset["annotations"]) - self.objects()

    def set_person(self, class_names: Sequence[str]) -> GroundTruth:
        """Name the task model's classes, so that scores also give person AP@0.5."""
        if "person" in class_names:
            self.person_cat = self.class_to_cat.get(list(class_names).index("person"))
        return self

    @classmethod
    def from_detections(
        cls,
        frames: dict[Key, list[Row]],
        sizes: dict[str, tuple[int, int]],
        min_score: float = PSEUDO_GT_MIN_SCORE,
        stable: int = 0,
    ) -> GroundTruth:
        """Pseudo ground truth: detections on uncompressed frames with score >= ``min_score``.

        ``stable`` > 0: an object must also be detected (same class, box IoU >= 0.5, score >=
        ``min_score``) in every frame up to ``stable`` frames before and after it (those the
        input has); one that flickers on the uncompressed video becomes a *don't care* region
        (COCO ``iscrowd``): missing it costs nothing and a detection on it is no false positive.
        Score flicker near the threshold is not what compression does, and with mAP's mean over
        classes a few flickering hallucinations (a "tie", a "toothbrush") weigh as much as every
        person in the clip."""
        keys = list(frames)
        images = [
            {"id": i + 1, "width": sizes[k[0]][0], "height": sizes[k[0]][1], "file_name": f"{k[0]}#{k[1]}"}
            for i, k in enumerate(keys)
        ]
        anns = []
        cats: set[int] = set()
        for i, k in enumerate(keys):
            for r in frames[k]:
                if r[4] >= min_score:
                    a = _ann(len(anns) + 1, i + 1, r, int(r[5]) + 1)
                    if stable and not _seen_around(frames, k, r, min_score, stable):
                        a["iscrowd"] = 1
                    anns.append(a)
                    cats.add(int(r[5]))
        categories = [{"id": c + 1, "name": str(c)} for c in sorted(cats)]
        return cls(keys, images, categories, anns, {c: c + 1 for c in cats})

    @classmethod
    def from_coco_file(cls, path: str | Path, frames: Iterable[Key], class_names: list[str]) -> GroundTruth:
        """Real COCO-format ground truth for the bench frames.

        An image entry belongs to input frame (stem, i) when it has ``"frame_index": i`` and its
        ``"video"`` (or ``file_name``) has that stem, or, without ``frame_index``, when its
        ``file_name`` stem is the input's stem (a still image, frame 0). Frames without an entry
        are not scored. Categories are matched to the task model's classes by name.
        """
        try:
            data = json.loads(Path(path).read_text())
            images, cats, anns = data["images"], data["categories"], data.get("annotations", [])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{path}: not a COCO ground-truth file ({e}); it needs images, categories and annotations"
            ) from None
        wanted = {(Path(k[0]).stem, k[1]): k for k in frames}
        by_image: dict[int, Key] = {}
        for im in images:
            if "frame_index" in im:
                key = (Path(str(im.get("video", im.get("file_name", "")))).stem, int(im["frame_index"]))
            else:
                key = (Path(str(im.get("file_name", ""))).stem, 0)
            if key in wanted:
                by_image[im["id"]] = wanted[key]
        if not by_image:
            raise UsageError(
                f"{path}: no image entry matches a bench frame; name images after the "
                "input file (file_name) or give video + frame_index"
            )
        name_to_class = {n: i for i, n in enumerate(class_names)}
        class_to_cat = {name_to_class[c["name"]]: c["id"] for c in cats if c["name"] in name_to_class}
        if not class_to_cat:
            raise UsageError(f"{path}: no category name matches the task model's classes")
        keep_cats = set(class_to_cat.values())
        keys = [by_image[i] for i in sorted(by_image)]
        ims = [im for im in images if im["id"] in by_image]
        ims.sort(key=lambda im: im["id"])
        kept = [a for a in anns if a["image_id"] in by_image and a["category_id"] in keep_cats]
        for a in kept:
            a.setdefault("iscrowd", 0)
            a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        categories = [c for c in cats if c["id"] in keep_cats]
        return cls(keys, ims, categories, kept, class_to_cat)

    def match(self, frames: dict[Key, list[Row]]) -> Matched:
        """Match one rate point's detections to the ground truth (COCOeval.evaluate, once)."""
        from pycocotools.cocoeval import COCOeval

        anns = []
        for k in self.keys:
            for r in frames.get(k, []):
                cat = self.class_to_cat.get(int(r[5]))
                if cat is not None:
                    anns.append(_ann(len(anns) + 1, self.image_ids[k], r, cat, r[4]))
        dt = _coco(self.images, self.categories, anns)
        ev = COCOeval(self.coco, dt, "bbox")
        p = ev.params
        p.imgIds = [self.image_ids[k] for k in self.keys]
        p.catIds = list(self.cat_ids)
        p.areaRng, p.areaRngLbl, p.maxDets = [[0, 1e10]], ["all"], [100]
        with _quiet():
            ev.evaluate()
        return Matched(ev, len(self.keys), self.person_cat)


@dataclass
class Scores:
    map50: float
    map: float  # mAP@[.5:.95]
    ap50_person: float = float("nan")  # AP@0.5 of class person (nan: no person in the ground truth)


class Matched:
    """Per-frame matches of one rate point; mAP on all frames or on a resample of them."""

    def __init__(self, ev, n_images: int, person_cat: int | None = None) -> None:
        self.ev = ev
        self.n = n_images
        self.k = len(ev.params.catIds)
        cats = list(ev.params.catIds)
        self._person = cats.index(person_cat) if person_cat in cats else None
        self._eval_imgs = list(ev.evalImgs)  # layout: category-major, then image
        self._base = copy.deepcopy(ev.params)

    def scores(self, sample: np.ndarray | None = None) -> Scores:
        """mAPs over all frames, or over ``sample`` (frame positions, repeats allowed)."""
        if self.k == 0:
            return Scores(float("nan"), float("nan"))
        ev = self.ev
        if sample is None:
            ev.evalImgs = self._eval_imgs
            ev.params = copy.deepcopy(self._base)
        else:
            n = len(sample)
            ev.evalImgs = [self._eval_imgs[c * self.n + int(s)] for c in range(self.k) for s in sample]
            ev.params = copy.deepcopy(self._base)
            ev.params.imgIds = list(range(n))
        ev._paramsEval = copy.deepcopy(ev.params)
        with _quiet():
            ev.accumulate()
        prec = ev.eval["precision"][:, :, :, 0, -1]  # T x R x K at area all, maxDets 100
        person = _mean_valid(prec[0, :, self._person]) if self._person is not None else float("nan")
        return Scores(_mean_valid(prec[0]), _mean_valid(prec), person)


def _mean_valid(a: np.ndarray) -> float:
    v = a[a > -1]
    return float(np.mean(v)) if v.size else float("nan")


def bootstrap_samples(n: int, reps: int, seed: int = 0) -> np.ndarray:
    """``reps`` resamples of ``n`` frame positions with replacement (fixed seed: reproducible)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(reps, n)) if n and reps else np.zeros((0, n), int)


def percentile_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if v.size < 10:
        return None
    lo = (1 - level) / 2 * 100
    return float(np.percentile(v, lo)), float(np.percentile(v, 100 - lo))
