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
    LABEL_RULES,
    MATCH_IOU,
    REF_MIN_SCORE,
    Instance,
    Thresholds,
    curve_passes,
    distances,
    first_failure,
    l_max,
    label_of,
    pixel_label,
    reference_instances,
    size_class,
)
from vcmtool.lab.jrd.sources import FrameRef, expand, is_video, load_frame, load_frames
from vcmtool.qpmap.raster import pool_ctu
from vcmtool.runner import Item, Outcome, run_items

# Fastest preset of each backend that keeps its intra tools (measured: kvazaar ultrafast is 2x
# veryfast per 720p intra frame at the same bits within 0.1 %).
DEFAULT_PRESETS = {"kvazaar": "ultrafast", "x265": "ultrafast", "vvenc": "faster"}
WORK = ".work"
STATE = ".state"
STATE_LOWDELAY = ".state-lowdelay"
CODINGS = ("intra", "lowdelay")
CURVE_KEYS = ("mask", "box", "score", "cls", "matched")  # the stored distances of a curve


def stored_curve(curve: list, thr: Thresholds) -> dict[str, list]:
    """An instance's per-QP distances as the instances JSON keeps them, with the strict passes
    (``passed``) that relabel.py and labels.curve_passes read back."""
    rows = [d.to_json() for d in curve]
    return {k: [r[k] for r in rows] for k in CURVE_KEYS} | {"passed": [d.within(thr) for d in curve]}


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
    # How labels are derived from the stored curves (recomputable without encoding: relabel.py)
    label: str = "monotone"  # or "eq1", "detected"
    track_percentile: float = 20.0  # 0: no track smoothing
    # "intra": per-frame intra labels; "lowdelay": also low-delay P labels of clip chunks
    coding: str = "intra"

    def resolved(self) -> BuildConfig:
        from vcmtool.encoders import get_encoder

        enc = get_encoder(self.encoder)
        lo, hi = enc.capabilities().qp_range
        qps = tuple(sorted(set(self.qps))) if self.qps else tuple(range(lo, hi + 1))
        if qps[0] < lo or qps[-1] > hi:
            raise UsageError(f"--qps must lie in {lo}..{hi} for {self.encoder}")
        if self.label not in LABEL_RULES:
            raise UsageError(f"--label {self.label}: use one of {', '.join(LABEL_RULES)}")
        if self.coding not in CODINGS:
            raise UsageError(f"--coding {self.coding}: use one of {', '.join(CODINGS)}")
        if not 0 <= self.track_percentile <= 100:
            raise UsageError("--track-percentile must lie in 0..100")
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
        stored = stored_curve(curve, thr)
        passed = stored["passed"]
        lm = l_max(qps, passed, thr.c)
        lab = label_of(cfg.label, qps, curve_passes(cfg.label, stored, round(ref.score, 6)), thr.c)
        region = ref.region(h, w)
        area = int(np.count_nonzero(region))
        regions.append((region, lab))
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
                "label": lab,  # by cfg.label; relabel.py smooths it along tracks afterwards
                "curve": stored,
            }
        )
    if refs and refs[0].mask is not None:  # the regions a relabel needs (boxes are in the JSON)
        _save_npz(
            root / fmt.masks_rel(iid),
            masks=np.packbits(np.stack([r.mask for r in refs]), axis=-1),
            width=np.int64(w),
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


# ---------------------------------------------------------------------------- low-delay chunks


class _ChunkDetector:
    """Low-delay P coding (gop 0: one I frame, then P, as ``vcmtool encode`` codes by default)
    of a chunk's frames at one QP, decoded and detected on the sampled frames; memoised on disk
    like :class:`_QPDetector`."""

    def __init__(self, cfg: BuildConfig, frames: list[Frame], picks: list[int], model, work: Path) -> None:
        from vcmtool.encoders import EncodeSettings, get_encoder

        self.cfg, self.frames, self.picks, self.model, self.work = cfg, frames, picks, model, work
        self.enc = get_encoder(cfg.encoder)
        self.settings = EncodeSettings(preset=cfg.preset, intra_period=0, threads=1)
        self.encoded = 0

    def process(self, qp: int) -> tuple[list[list[Instance]], int]:
        from vcmtool.qpmap.maps import QPMaps
        from vcmtool.tasks import Detections

        cache = self.work / f"ld_qp{qp:02d}.npz"
        if cache.exists():
            try:
                with np.load(cache) as z:
                    out = []
                    for k in range(len(self.picks)):
                        sel = z["pick"] == k
                        out.append(
                            _instances_of(Detections(z["boxes"][sel], z["scores"][sel], z["classes"][sel]))
                        )
                    return out, int(z["bits"])
            except (OSError, ValueError, KeyError):
                pass
        h, w = self.frames[0].height, self.frames[0].width
        n = self.picks[-1] + 1  # low delay is causal: frames after the last sampled one change nothing
        maps = self.enc.prepare_maps(QPMaps.uniform(qp, n, h, w, self.cfg.ctu), self.settings)
        if int(maps.data.min()) != qp or int(maps.data.max()) != qp:
            raise EncoderError(f"{self.cfg.encoder} cannot code QP {qp} uniformly")
        from vcmtool.decode import decoded_frames

        want = set(self.picks)
        decs: dict[int, Frame] = {}
        with tempfile.TemporaryDirectory(prefix="vcmtool-jrd-ld-") as tmp:
            out_path = Path(tmp) / f"q{qp}{self.enc.capabilities().extension}"
            self.enc.encode(Clip("<jrd-lowdelay>", _Frames(self.frames[:n])), maps, self.settings, out_path)
            self.encoded += 1
            bits = out_path.stat().st_size * 8
            for i, dec in enumerate(decoded_frames(out_path, 8)):
                if i in want:
                    decs[i] = Frame(dec.y[:h, :w], dec.u[: h // 2, : w // 2], dec.v[: h // 2, : w // 2], 0, 8)
        if len(decs) != len(want):
            raise EncoderError(f"{self.cfg.encoder} QP {qp}: low-delay stream decoded to too few frames")
        dets = [self.model.detect(decs[i].to_bgr()) for i in self.picks]
        arrays = {
            "boxes": np.concatenate([d.boxes.reshape(-1, 4) for d in dets]).astype(np.float32),
            "scores": np.concatenate([d.scores for d in dets]).astype(np.float32),
            "classes": np.concatenate([d.classes for d in dets]).astype(np.int64),
            "pick": np.concatenate([np.full(len(d), k, np.int64) for k, d in enumerate(dets)]),
            "bits": np.int64(bits),
        }
        if all(d.masks is None for d in dets):  # masks are not memoised: recomputed on resume
            _save_npz(cache, **arrays)
        return [_instances_of(d) for d in dets], bits


class _Frames(_OneFrame):
    def __init__(self, frames: list[Frame]) -> None:
        f0 = frames[0]
        self._list = frames
        self.info = VideoInfo(f0.width, f0.height, Fraction(1), "yuv420p", len(frames))

    def frames(self) -> Iterator[Frame]:
        yield from self._list


def label_chunk(payload: dict[str, Any]) -> dict[str, Any]:
    """Runner work item: low-delay curves of the sampled frames of one clip chunk.

    Codes the chunk's frames from its first one up to its last sampled one at every QP, reads
    pass/fail per sampled frame against the same reference instances as the intra labels, and
    adds ``lowdelay`` to each frame's instances JSON (labels come from relabel.py).
    """
    import cv2

    from vcmtool.tasks import get_task_model

    t0 = time.perf_counter()
    cfg = BuildConfig.from_json(payload["config"])
    root = Path(payload["root"])
    start, ids, frames_idx = int(payload["start"]), payload["ids"], payload["frames"]
    picks = [f - start for f in frames_idx]
    frames = load_frames(payload["source"], start, picks[-1] + 1)
    h, w = frames[0].height, frames[0].width
    model = get_task_model(cfg.task_model, score_threshold=min(cfg.det_score, cfg.ref_min_score))
    cv2.setNumThreads(int(payload.get("threads", 1)))
    refs = [
        reference_instances(*_det_arrays(model.detect(frames[p].to_bgr())), min_score=cfg.ref_min_score)
        for p in picks
    ]
    docs = [json.loads((root / fmt.instances_rel(i)).read_text()) for i in ids]
    for iid, doc, r in zip(ids, docs, refs, strict=True):
        if len(doc["instances"]) != len(r):
            raise EncoderError(f"{iid}: reference instances differ from the intra build's; rebuild")
    qps = list(cfg.qps) if any(refs) else []
    detector = _ChunkDetector(cfg, frames, picks, model, root / WORK / payload["key"])
    per_qp = [detector.process(qp) for qp in qps]
    thr = cfg.thresholds
    for k, (iid, doc) in enumerate(zip(ids, docs, strict=True)):
        for ref, rec in zip(refs[k], doc["instances"], strict=True):
            curve = [distances(ref, cands[k], h, w, cfg.match_iou) for cands, _ in per_qp]
            stored = stored_curve(curve, thr)
            passed = stored["passed"]
            rec["lowdelay"] = {
                "l_max": l_max(qps, passed, thr.c),
                "first_failure": first_failure(qps, passed),
                "label": label_of(cfg.label, qps, curve_passes(cfg.label, stored, rec["score"]), thr.c),
                "curve": stored,
            }
        doc["lowdelay"] = {
            "qps": qps,
            "bits": [b for _, b in per_qp],  # the whole coded stream (frames first..last sampled)
            "frames": [start, start + picks[-1]],
            "gop": 0,
        }
        write_text_atomic(root / fmt.instances_rel(iid), json.dumps(doc, separators=(",", ":")))
    shutil.rmtree(root / WORK / payload["key"], ignore_errors=True)
    return {
        "key": payload["key"],
        "frames": len(ids),
        "encodes": detector.encoded,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def chunk_key(source: str, chunk: int) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "_", Path(source.rsplit(":", 1)[-1]).stem).strip("_")[:40] or "clip"
    return f"ld-{name}-{hashlib.md5(source.encode()).hexdigest()[:6]}-c{chunk:04d}"


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
    lowdelay_failed: list[dict[str, Any]] = field(default_factory=list)
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
        # provisional while items run (per-frame labels by the rule, not yet smoothed); the
        # relabel pass at the end of the build rewrites it
        "labels": fmt.label_info(cfg.label, 0.0, ["intra"]),
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
    # The label rule and track smoothing are recomputed from the stored curves (relabel.py), and
    # --coding lowdelay only adds work: none of them invalidates what is already measured.
    skip = ("split_chunk", "split_seed", "label", "track_percentile", "coding")
    return {k: v for k, v in build.items() if k not in skip}


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
    fresh_ids: set[str] = set()
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
            if not oc.cached:
                fresh_ids.add(iid)
        else:
            failed[iid] = {"source": ref.source, "frame": ref.frame, "id": iid, "error": oc.error}
        report.manifest = _write_manifest(root, head, done, failed)  # progressive: usable early
    if cfg.coding == "lowdelay":
        _lowdelay_phase(root, cfg, done, fresh_ids, workers, engine, address, threads, report)
    from vcmtool.lab.jrd.relabel import relabel

    report.manifest = relabel(root, cfg.label, cfg.track_percentile)["manifest"]
    if report.lowdelay_failed:
        report.manifest["lowdelay_failed"] = report.lowdelay_failed
        write_text_atomic(root / fmt.MANIFEST, json.dumps(report.manifest, indent=1))
    report.seconds = time.perf_counter() - t0
    report.images, report.failed = len(done), len(report.manifest.get("failed", []))
    return report


def _lowdelay_phase(
    root: Path,
    cfg: BuildConfig,
    done: dict[str, dict[str, Any]],
    fresh_ids: set[str],
    workers: int,
    engine: str,
    address: str | None,
    threads: int,
    report: BuildReport,
) -> None:
    """One work item per clip chunk holding labelled frames (stills keep their intra labels:
    a picture coded alone is an intra picture)."""
    chunks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in done.values():
        if is_video(e["source"]):
            chunks.setdefault((e["source"], int(e["frame"]) // cfg.split_chunk), []).append(e)
    items = []
    state = root / STATE_LOWDELAY
    for (source, c), entries in sorted(chunks.items()):
        entries.sort(key=lambda e: int(e["frame"]))
        key = chunk_key(source, c)
        # a frame re-labelled intra by this run lost its lowdelay curves: code its chunk again
        if any(e["id"] in fresh_ids for e in entries):
            (state / f"{key}.json").unlink(missing_ok=True)
        items.append(
            Item(
                key,
                {
                    "root": str(root.resolve()),
                    "config": cfg.to_json(),
                    "key": key,
                    "source": source,
                    "start": c * cfg.split_chunk,
                    "ids": [e["id"] for e in entries],
                    "frames": [int(e["frame"]) for e in entries],
                    "threads": threads,
                },
            )
        )
    failed = []
    for oc in run_items(label_chunk, items, state, workers, engine, address, desc="low-delay chunks"):
        if not oc.ok:
            failed.append({"chunk": oc.item.key, "error": oc.error})
    report.lowdelay_failed = failed


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
