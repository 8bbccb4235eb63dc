"""The on-disk JRD dataset format (version 2; version 1 is still read) and its loader.

::

    DIR/manifest.json   {"version": 2, "codec": "hevc"|"vvc", "encoder": str, "qp_max": 51|63,
                         "ctu": 64, "thresholds": {...}, "task_model": str, ...,
                         "labels": {"rule": "monotone"|"eq1", "track_percentile": P,
                                    "codings": ["intra"] or ["intra", "lowdelay"]},
                         "images": [{"id", "source", "frame", "width", "height",
                                     "split": "train"|"val"|"test",
                                     "image": "images/<id>.png", "label": "labels/<id>.npy",
                                     "pixel_label": "labels/<id>_px.png",
                                     "instances": "instances/<id>.json",
                                     "label_lowdelay": "labels_lowdelay/<id>.npy",
                                     "pixel_label_lowdelay": ...}],  (only with lowdelay)
                         "failed": [{"source", "frame", "id", "error"}]}
    DIR/images/<id>.png       the original frame (8-bit 4:2:0 as the encoder saw it, lossless)
    DIR/labels/<id>.npy       uint8 (ceil(H/64), ceil(W/64)) l_max QPs, min-pooled, bg = qp_max
    DIR/labels/<id>_px.png    uint8 (H, W) pixel label map before pooling
    DIR/instances/<id>.json   per-instance class, box, size, per-QP distance curves and pass/fail,
                              l_max (eq. 1), first_failure, label_raw (by the rule), track,
                              label (after track smoothing); "lowdelay": the same per instance
                              for low-delay P coding of the frame's chunk
    DIR/instances/<id>_masks.npz  instance masks (task models with masks only; for relabelling)
    DIR/labels_lowdelay/<id>.npy, <id>_px.png   the low-delay label set (clip frames; a still's
                              entry points at its intra label: a picture coded alone is intra)

Version 1 datasets carry eq. 1 labels in ``labels/`` (``label_info`` reports rule "eq1", no
smoothing, intra); ``vcmtool jrd relabel`` turns one into version 2 from its stored curves.
``images/`` may be absent (a shipped dataset keeps only labels): the loader then regenerates the
frame from (source, frame) and caches it outside the dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool.errors import InputError, UsageError

VERSION = 2
READS = (1, 2)
CODINGS = ("intra", "lowdelay")
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def image_rel(image_id: str) -> str:
    return f"images/{image_id}.png"


def label_rel(image_id: str) -> str:
    return f"labels/{image_id}.npy"


def pixel_label_rel(image_id: str) -> str:
    return f"labels/{image_id}_px.png"


def instances_rel(image_id: str) -> str:
    return f"instances/{image_id}.json"


def masks_rel(image_id: str) -> str:
    return f"instances/{image_id}_masks.npz"


def lowdelay_label_rel(image_id: str) -> str:
    return f"labels_lowdelay/{image_id}.npy"


def lowdelay_pixel_label_rel(image_id: str) -> str:
    return f"labels_lowdelay/{image_id}_px.png"


def label_info(rule: str, track_percentile: float, codings: list[str]) -> dict[str, Any]:
    return {"rule": rule, "track_percentile": float(track_percentile), "codings": list(codings)}


def manifest_labels(manifest: dict[str, Any]) -> dict[str, Any]:
    """Which labels a manifest's dataset carries (version 1: eq. 1, unsmoothed, intra)."""
    return manifest.get("labels") or label_info("eq1", 0.0, ["intra"])


def image_entry(
    image_id: str, source: str, frame: int, width: int, height: int, split: str
) -> dict[str, Any]:
    return {
        "id": image_id,
        "source": source,
        "frame": int(frame),
        "width": int(width),
        "height": int(height),
        "split": split,
        "image": image_rel(image_id),
        "label": label_rel(image_id),
        "pixel_label": pixel_label_rel(image_id),
        "instances": instances_rel(image_id),
    }


def image_cache_dir() -> Path:
    from vcmtool.media import cache_dir

    return cache_dir().parent / "jrd-images"


@dataclass
class Dataset:
    root: Path
    manifest: dict[str, Any]
    image_cache: Path | None = None  # where regenerated originals go (default .cache/jrd-images)

    @property
    def qp_max(self) -> int:
        return int(self.manifest["qp_max"])

    @property
    def ctu(self) -> int:
        return int(self.manifest["ctu"])

    @property
    def labels(self) -> dict[str, Any]:
        return manifest_labels(self.manifest)

    def check_coding(self, coding: str) -> None:
        if coding not in CODINGS:
            raise UsageError(f"--coding {coding}: use one of {', '.join(CODINGS)}")
        if coding not in self.labels["codings"]:
            raise UsageError(
                f"{self.root}: no {coding} labels; build them with "
                f"`vcmtool jrd build-dataset ... --coding {coding}`"
            )

    def entries(self, split: str | None = None, coding: str = "intra") -> list[dict[str, Any]]:
        """The images of ``split`` (all: None) that carry ``coding`` labels."""
        if split is not None and split not in SPLITS:
            raise UsageError(f"split {split!r}: use one of {', '.join(SPLITS)}")
        key = "label" if coding == "intra" else f"label_{coding}"
        if coding != "intra":
            self.check_coding(coding)
        return [e for e in self.manifest["images"] if (split is None or e["split"] == split) and key in e]

    def __len__(self) -> int:
        return len(self.manifest["images"])

    def image(self, entry: dict[str, Any]) -> np.ndarray:
        """The BGR original; regenerated from its source (and cached) when not in the dataset."""
        import cv2

        path = self.root / entry["image"]
        if not path.exists():
            path = (self.image_cache or image_cache_dir()) / f"{entry['id']}.png"
        if path.exists():
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                return img
        from vcmtool.atomic import atomic_path
        from vcmtool.lab.jrd.sources import load_frame

        bgr = load_frame(entry["source"], int(entry["frame"])).to_bgr()
        if bgr.shape[:2] != (entry["height"], entry["width"]):
            raise InputError(
                f"{entry['source']} frame {entry['frame']}: regenerated size "
                f"{bgr.shape[1]}x{bgr.shape[0]} differs from the manifest's"
            )
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), bgr)
        return bgr

    def label(self, entry: dict[str, Any], coding: str = "intra") -> np.ndarray:
        return np.load(self.root / entry["label" if coding == "intra" else f"label_{coding}"])

    def pixel_label(self, entry: dict[str, Any], coding: str = "intra") -> np.ndarray:
        import cv2

        key = "pixel_label" if coding == "intra" else f"pixel_label_{coding}"
        return cv2.imread(str(self.root / entry[key]), cv2.IMREAD_UNCHANGED)

    def instances(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        return json.loads((self.root / entry["instances"]).read_text())["instances"]

    def items(
        self, split: str | None = None, coding: str = "intra"
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]]:
        """(BGR image, uint8 CTU label grid, instances) for each image of ``split`` (all: None)."""
        for e in self.entries(split, coding):
            yield self.image(e), self.label(e, coding), self.instances(e)


def load_dataset(root: str | Path, image_cache: str | Path | None = None) -> Dataset:
    """Open a dataset (also one still being built: its manifest is rewritten per image)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(f"{root}: no {MANIFEST}; build one with `vcmtool jrd build-dataset`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg}); rebuild the dataset") from None
    if manifest.get("version") not in READS:
        raise InputError(
            f"{path}: dataset format version {manifest.get('version')!r}, "
            f"this vcmtool reads versions {', '.join(map(str, READS))}"
        )
    return Dataset(root, manifest, Path(image_cache) if image_cache else None)
