"""Build the fine-grained JRD dataset (the SNN-JRD paper, sec. 3): one independent work item per image.

Per image: the task model on the original gives the reference instances; the image is intra
coded once at every QP of the codec through the encoder backend, decoded, and detected again;
each instance's distance curve gives its l_max (eq. 1), and the instance regions give the pixel
and CTU label maps. Images run on :func:`vcmtool.runner.run_items` (process pool or Ray,
resumable, failures isolated). Per-QP detections are kept in ``DIR/.work/<id>/`` until the
image is finished, so a run killed mid-image never encodes that image at a QP twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool.atomic import atomic_path, write_text_atomic
from vcmtool.errors import EncoderError, UsageError
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.open import Clip
from vcmtool.lab.jrd import format as fmt
from vcmtool.lab.jrd.labels import (
    MATCH_IOU,
    REF_MIN_SCORE,
    Instance,
    Thresholds,
    distances,
    first_failure,
    l_max,
    pixel_label,
    reference_instances,
    size_class,
)
from vcmtool.lab.jrd.sources import FrameRef, expand, is_video, load_frame
from vcmtool.qpmap.raster import pool_ctu
from vcmtool.runner import Item, Outcome, run_items

# Fastest preset of each backend that keeps its intra tools (measured: kvazaar ultrafast is 2x
# veryfast per 720p intra frame at the same bits within 0.1 %).
DEFAULT_PRESETS = {"kvazaar": "ultrafast", "x265": "ultrafast", "vvenc": "faster"}
WORK = ".work"
STATE = ".state"


@dataclass(frozen=True)
class BuildConfig:
    """Everything a label depends on; a dataset directory is only resumed with the same config."""

    encoder: str = "kvazaar"
    preset: str = ""  # "" = DEFAULT_PRESETS[encoder]
    qps: tuple[int, ...] = ()  # () = every QP 0..qp_max
    thresholds: Thresholds = field(default_factory=Thresholds)
    task_model: str = "yolov3-tiny"
    det_score: float = 0.1  # detector threshold on the decoded images (so curves show drops)
    ref_min_score: float = REF_MIN_SCORE
    match_iou: float = MATCH_IOU
    ctu: int = 64
    split_chunk: int = 25  # video frames per split group (no near-duplicates across splits)
    split_seed: int = 0

    def resolved(self) -> BuildConfig:
        from vcmtool.encoders import get_encoder

        enc = get_encoder(self.encoder)
        lo, hi = enc.capabilities().qp_range
        qps = tuple(sorted(set(self.qps))) if self.qps else tuple(range(lo, hi + 1))
        if qps[0] < lo or qps[-1] > hi:
            raise UsageError(f"--qps must lie in {lo}..{hi} for {self.encoder}")
        preset = self.preset or DEFAULT_PRESETS.get(self.encoder, "medium")
        return replace(self, qps=qps, preset=preset)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["qps"] = list(self.qps)
        d["thresholds"] = self.thresholds.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BuildConfig:
        d = dict(d)
        d["qps"] = tuple(d.get("qps", ()))
        d["thresholds"] = Thresholds.from_json(d.get("thresholds", {}))
        return cls(**d)


class _OneFrame:
    """A frame already in memory as a one-frame clip source (what the encoders take)."""

    def __init__(self, frame: Frame) -> None:
        self._frame = frame
        self.info = VideoInfo(frame.width, frame.height, Fraction(1), "yuv420p", 1)

    def frames(self) -> Iterator[Frame]:
        yield self._frame


def image_id(ref: FrameRef) -> str:
    name = ref.source.rsplit(":", 1)[-1].rstrip("/")
    stem = re.sub(r"[^A-Za-z0-9]+", "_", Path(name).stem).strip("_")[:40] or "img"
    return f"{stem}-{hashlib.md5(ref.source.encode()).hexdigest()[:6]}-{ref.frame:05d}"


def split_of(ref: FrameRef, chunk: int, seed: int = 0) -> str:
    """8:1:1 by hashing the split group: a video's chunk of ``chunk`` frames, or the image.

    Hashing single frames would put near-identical neighbouring frames in train and test.
    """
    group = f"{ref.source}#{ref.frame // max(1, chunk)}" if ref.video else ref.source
    bucket = int(hashlib.md5(f"{seed}:{group}".encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


# ---------------------------------------------------------------------------- per-image worker


def _instances_of(det) -> list[Instance]:
    return [
        Instance(
            tuple(float(v) for v in det.boxes[i]),
            float(det.scores[i]),
            int(det.classes[i]),
            None if det.masks is None else det.masks[i],
        )
        for i in range(len(det))
    ]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


class _QPDetector:
    """Encode-decode-detect at one QP, memoised on disk so a resumed image never re-encodes."""

    def __init__(self, cfg: BuildConfig, frame: Frame, model, work: Path) -> None:
        from vcmtool.encoders import EncodeSettings, get_encoder

        self.cfg, self.frame, self.model, self.work = cfg, frame, model, work
        self.enc = get_encoder(cfg.encoder)
        self.settings = EncodeSettings(preset=cfg.preset, intra_period=1, threads=1)
        self.clip = Clip("<jrd>", _OneFrame(frame))
        self.encoded = 0  # QPs coded by this call (the rest came from the resume cache)

    def process(self, qp: int) -> tuple[list[Instance], int]:
        from vcmtool.qpmap.maps import QPMaps

        cache = self.work / f"qp{qp:02d}.npz"
        if cache.exists():
            try:
                with np.load(cache) as z:
                    return self._from_arrays(z), int(z["bits"])
            except (OSError, ValueError, KeyError):
                pass  # damaged by a kill: recompute
        h, w = self.frame.height, self.frame.width
        maps = self.enc.prepare_maps(QPMaps.uniform(qp, 1, h, w, self.cfg.ctu), self.settings)
        if int(maps.data.min()) != qp or int(maps.data.max()) != qp:
            raise EncoderError(f"{self.cfg.encoder} cannot code QP {qp} uniformly")
        with tempfile.TemporaryDirectory(prefix="vcmtool-jrd-") as tmp:
            out = Path(tmp) / f"q{qp}{self.enc.capabilities().extension}"
            self.enc.encode(self.clip, maps, self.settings, out)
            self.encoded += 1
            bits = out.stat().st_size * 8
            from vcmtool.decode import decoded_frames

            dec = next(iter(decoded_frames(out, 8)), None)
        if dec is None:
            raise EncoderError(f"{self.cfg.encoder} QP {qp}: bitstream decoded to no frame")
        dec = Frame(dec.y[:h, :w], dec.u[: h // 2, : w // 2], dec.v[: h // 2, : w // 2], 0, 8)
        det = self.model.detect(dec.to_bgr())
        arrays = {"boxes": det.boxes, "scores": det.scores, "classes": det.classes, "bits": np.int64(bits)}
        if det.masks is not None:
            arrays["masks"] = np.packbits(det.masks, axis=-1)
            arrays["width"] = np.int64(w)
        _save_npz(cache, **arrays)
        return _instances_of(det), bits

    @staticmethod
    def _from_arrays(z) -> list[Instance]:
        from vcmtool.tasks import Detections

        masks = None
        if "masks" in z:
            masks = np.unpackbits(z["masks"], axis=-1, count=int(z["width"])).astype(bool)
        return _instances_of(Detections(z["boxes"], z["scores"], z["classes"], masks=masks))


def label_image(payload: dict[str, Any]) -> dict[str, Any]:
    """Runner work item: label one image and write its files; returns a small summary."""
    import cv2

    from vcmtool.tasks import get_task_model

    t0 = time.perf_counter()
    cfg = BuildConfig.from_json(payload["config"])
    root, iid = Path(payload["root"]), payload["id"]
    frame = load_frame(payload["source"], int(payload["frame"]))
    h, w = frame.height, frame.width
    bgr = frame.to_bgr()
    model = get_task_model(cfg.task_model, score_threshold=min(cfg.det_score, cfg.ref_min_score))
    cv2.setNumThreads(int(payload.get("threads", 1)))
    refs = reference_instances(*_det_arrays(model.detect(bgr)), min_score=cfg.ref_min_score)

    qps = list(cfg.qps) if refs else []  # nothing to protect: all background, no encode needed
    work = root / WORK / iid
    detector = _QPDetector(cfg, frame, model, work)
    per_qp = [detector.process(qp) for qp in qps]
    thr = cfg.thresholds
    records, regions = [], []
    for t, ref in enumerate(refs):
        curve = [distances(ref, cands, h, w, cfg.match_iou) for cands, _ in per_qp]
        passed = [d.within(thr) for d in curve]
        lm = l_max(qps, passed, thr.c)
        region = ref.region(h, w)
        area = int(np.count_nonzero(region))
        regions.append((region, lm))
        records.append(
            {
                "index": t,
                "class_id": ref.cls,
                "class": model.class_names[ref.cls]
                if 0 <= ref.cls < len(model.class_names)
                else f"class{ref.cls}",
                "score": round(ref.score, 6),
                "box": [round(v, 2) for v in ref.box],
                "area": area,
                "size": size_class(area),
                "l_max": lm,
                "first_failure": first_failure(qps, passed),
                "curve": {
                    k: [d.to_json()[k] for d in curve] for k in ("mask", "box", "score", "cls", "matched")
                }
                | {"passed": passed},
            }
        )
    qp_max = get_qp_max(cfg.encoder)
    px = pixel_label(h, w, regions, qp_max)
    grid = pool_ctu(px, cfg.ctu, "min")

    if payload.get("write_image", True):
        with atomic_path(root / fmt.image_rel(iid)) as tmp:
            cv2.imwrite(str(tmp), bgr)
    with atomic_path(root / fmt.pixel_label_rel(iid)) as tmp:
        cv2.imwrite(str(tmp), px)
    with atomic_path(root / fmt.label_rel(iid)) as tmp:
        np.save(tmp, grid)
    doc = {
        "id": iid,
        "source": payload["source"],
        "frame": int(payload["frame"]),
        "width": w,
        "height": h,
        "encoder": cfg.encoder,
        "preset": cfg.preset,
        "qps": qps,
        "bits": [b for _, b in per_qp],
        "task_model": model.version,
        "instances": records,
    }
    write_text_atomic(root / fmt.instances_rel(iid), json.dumps(doc, separators=(",", ":")))
    shutil.rmtree(work, ignore_errors=True)
    return {
        "id": iid,
        "width": w,
        "height": h,
        "instances": len(records),
        "encodes": detector.encoded,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _det_arrays(det) -> tuple:
    return det.boxes, det.scores, det.classes, det.masks


def get_qp_max(encoder: str) -> int:
    from vcmtool.encoders import get_encoder

    return int(get_encoder(encoder).capabilities().qp_range[1])


# ---------------------------------------------------------------------------- the whole build


@dataclass
class BuildReport:
    root: Path
    images: int = 0
    failed: int = 0
    fresh: int = 0  # labelled by this run
    cached: int = 0  # finished by an earlier run of the same item list
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_minute(self) -> float:
        return 60.0 * self.fresh / self.seconds if self.seconds > 0 and self.fresh else 0.0


def _manifest_head(cfg: BuildConfig) -> dict[str, Any]:
    from vcmtool.encoders import get_encoder
    from vcmtool.tasks import get_task_model

    enc = get_encoder(cfg.encoder)
    probe = enc.probe()
    if not probe.available:
        raise EncoderError(f"{cfg.encoder} is not available: {probe.detail}")
    caps = enc.capabilities()
    model = get_task_model(cfg.task_model, score_threshold=min(cfg.det_score, cfg.ref_min_score))
    return {
        "version": fmt.VERSION,
        "codec": caps.codec,
        "encoder": f"{cfg.encoder} ({probe.version})",
        "preset": cfg.preset,
        "qp_max": int(caps.qp_range[1]),
        "ctu": cfg.ctu,
        "thresholds": cfg.thresholds.to_json(),
        "task_model": model.version,
        "mask_distance": "mask 1-IoU"
        if _has_masks(model)
        else "n/a: task model has no masks "
        "(box-region masks used, so it equals the box distance at pixel precision)",
        "build": cfg.to_json(),
    }


def _has_masks(model) -> bool:
    return getattr(model, "has_masks", False)


def _previous(root: Path, head: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest already in ``root`` (None if none); refuses one built with other settings."""
    path = root / fmt.MANIFEST
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if (
        _label_settings(old.get("build", {})) != _label_settings(head["build"])
        or old.get("task_model") != head["task_model"]
    ):
        raise UsageError(
            f"{root} holds a dataset built with other settings; use a new -o DIR "
            "or the same options to resume it"
        )
    return old


def _label_settings(build: dict[str, Any]) -> dict[str, Any]:
    # Splits are assigned by the main process from ids alone; changing them relabels nothing.
    return {k: v for k, v in build.items() if k not in ("split_chunk", "split_seed")}


def build_dataset(
    sources: list[str],
    root: str | Path,
    cfg: BuildConfig,
    every: int = 1,
    max_frames: int | None = None,
    workers: int = 1,
    engine: str = "process",
    address: str | None = None,
    write_images: bool = True,
) -> BuildReport:
    """Label every frame of ``sources`` into ``root``; re-running resumes and retries failures."""
    from vcmtool.tasks.base import cpu_cores

    root = Path(root)
    cfg = cfg.resolved()
    refs = expand(sources, every, max_frames)
    if not refs:
        raise UsageError("no images to label")
    head = _manifest_head(cfg)
    previous = _previous(root, head)
    root.mkdir(parents=True, exist_ok=True)
    threads = max(1, cpu_cores() // max(1, workers))
    by_id: dict[str, FrameRef] = {}
    for r in _round_robin(refs):
        by_id.setdefault(image_id(r), r)
    items = [
        Item(
            iid,
            {
                "root": str(root.resolve()),
                "config": cfg.to_json(),
                "id": iid,
                "source": r.source,
                "frame": r.frame,
                "threads": threads,
                "write_image": write_images,
            },
        )
        for iid, r in by_id.items()
    ]
    report = BuildReport(root)
    # A directory accumulates: images labelled by earlier runs (other sources or sampling)
    # stay in the manifest, re-split with the current split settings.
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for e in (previous or {}).get("images", []):
        if e["id"] not in by_id and (root / e["label"]).exists() and (root / e["instances"]).exists():
            ref = FrameRef(e["source"], int(e["frame"]), is_video(e["source"]))
            done[e["id"]] = {**e, "split": split_of(ref, cfg.split_chunk, cfg.split_seed)}
    for f in (previous or {}).get("failed", []):
        if f.get("id") not in by_id:
            failed[f["id"]] = f
    t0 = time.perf_counter()
    outcomes: Iterator[Outcome] = run_items(
        label_image, items, root / STATE, workers, engine, address, desc="images"
    )
    for oc in outcomes:
        iid = oc.item.key
        ref = by_id[iid]
        if oc.ok:
            res = oc.result or {}
            done[iid] = fmt.image_entry(
                iid,
                ref.source,
                ref.frame,
                res["width"],
                res["height"],
                split_of(ref, cfg.split_chunk, cfg.split_seed),
            )
            report.cached += oc.cached
            report.fresh += not oc.cached
        else:
            failed[iid] = {"source": ref.source, "frame": ref.frame, "id": iid, "error": oc.error}
        report.manifest = _write_manifest(root, head, done, failed)  # progressive: usable early
    report.seconds = time.perf_counter() - t0
    report.images, report.failed = len(done), len(report.manifest.get("failed", []))
    return report


def _round_robin(refs: list[FrameRef]) -> list[FrameRef]:
    # Interleave sources so a partial (still running) build already covers all of them.
    groups: dict[str, list[FrameRef]] = {}
    for r in refs:
        groups.setdefault(r.source, []).append(r)
    lists = list(groups.values())
    return [g[i] for i in range(max(map(len, lists))) for g in lists if i < len(g)]


def _write_manifest(root: Path, head: dict[str, Any], done: dict, failed: dict) -> dict[str, Any]:
    manifest = dict(head)
    manifest["images"] = [done[k] for k in sorted(done)]
    manifest["failed"] = [failed[k] for k in sorted(failed) if k not in done]
    write_text_atomic(root / fmt.MANIFEST, json.dumps(manifest, indent=1))
    return manifest
