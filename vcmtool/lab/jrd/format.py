"""The on-disk JRD dataset format (version 1) and its loader.

::

    DIR/manifest.json   {"version": 1, "codec": "hevc"|"vvc", "encoder": str, "qp_max": 51|63,
                         "ctu": 64, "thresholds": {...}, "task_model": str, ...,
                         "images": [{"id", "source", "frame", "width", "height",
                                     "split": "train"|"val"|"test",
                                     "image": "images/<id>.png", "label": "labels/<id>.npy",
                                     "pixel_label": "labels/<id>_px.png",
                                     "instances": "instances/<id>.json"}],
                         "failed": [{"source", "frame", "id", "error"}]}
    DIR/images/<id>.png       the original frame (8-bit 4:2:0 as the encoder saw it, lossless)
    DIR/labels/<id>.npy       uint8 (ceil(H/64), ceil(W/64)) l_max QPs, min-pooled, bg = qp_max
    DIR/labels/<id>_px.png    uint8 (H, W) pixel label map before pooling
    DIR/instances/<id>.json   per-instance class, box, size, per-QP distance curves, l_max

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

VERSION = 1
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

    def entries(self, split: str | None = None) -> list[dict[str, Any]]:
        if split is not None and split not in SPLITS:
            raise UsageError(f"split {split!r}: use one of {', '.join(SPLITS)}")
        return [e for e in self.manifest["images"] if split is None or e["split"] == split]

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

    def label(self, entry: dict[str, Any]) -> np.ndarray:
        return np.load(self.root / entry["label"])

    def pixel_label(self, entry: dict[str, Any]) -> np.ndarray:
        import cv2

        return cv2.imread(str(self.root / entry["pixel_label"]), cv2.IMREAD_UNCHANGED)

    def instances(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        return json.loads((self.root / entry["instances"]).read_text())["instances"]

    def items(
        self, split: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]]:
        """(BGR image, uint8 CTU label grid, instances) for each image of ``split`` (all: None)."""
        for e in self.entries(split):
            yield self.image(e), self.label(e), self.instances(e)


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
    if manifest.get("version") != VERSION:
        raise InputError(
            f"{path}: dataset format version {manifest.get('version')!r}, "
            f"this vcmtool reads version {VERSION}"
        )
    return Dataset(root, manifest, Path(image_cache) if image_cache else None)
