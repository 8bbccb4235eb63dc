"""The two kinds of bench work item, as top-level functions of a dict payload (for the runner).

``source_point``: the task model on the uncompressed frames of one input (pseudo ground truth
and the "uncompressed" reference row), once per input.
``encode_point``: one rate point: ``run_encode`` (the same encode as ``vcmtool encode``), then
the bitstream is decoded and the task model runs on the decoded frames. A scaled point
(``none@0.75``) is upsampled to the original size first, as its receiver would
(:func:`vcmtool.resample.upsampled_frames`): judges always see original-size frames, and its
bpp is against the original size, as in every report.

Both return plain JSON; the runner stores it per key, so a finished point is never redone.
"""

from __future__ import annotations

import time
from pathlib import Path

from vcmtool.decode import decoded_frames
from vcmtool.eval.coco import EVAL_MIN_SCORE
from vcmtool.io.frame import Frame
from vcmtool.io.open import open_video
from vcmtool.sidestreams.cdre import DEFAULT_MISSING


def _model(spec: str):
    from vcmtool.tasks import get_task_model

    return get_task_model(spec, score_threshold=EVAL_MIN_SCORE)


def _rows(det) -> list[list[float]]:
    """Compact JSON rows x0, y0, x1, y1, score, class_id."""
    return [
        [
            round(float(b[0]), 2),
            round(float(b[1]), 2),
            round(float(b[2]), 2),
            round(float(b[3]), 2),
            round(float(s), 5),
            int(c),
        ]
        for b, s, c in zip(det.boxes, det.scores, det.classes, strict=True)
    ]


def _crop(f: Frame, w: int, h: int) -> Frame:
    # decoders may hand back the coded size (multiple of 8) when no conformance window is set
    if f.width == w and f.height == h:
        return f
    return Frame(f.y[:h, :w], f.u[: h // 2, : w // 2], f.v[: h // 2, : w // 2], f.index, f.bit_depth)


def detect_frames(model, frames, w: int, h: int) -> list[list[list[float]]]:
    return [_rows(model.detect(_crop(fr, w, h).to_bit_depth(8).to_bgr())) for fr in frames]


def transmitted_bits(report: dict) -> int:
    """Everything transmitted: ``run_encode`` already counts side-stream bits in ``bits``."""
    return int(report["bits"])


def side_stream_bits(report: dict) -> int:
    """The part of ``transmitted_bits`` that the side stream adds (SEI NAL units or side file)."""
    return int((report.get("side_stream") or {}).get("bits", 0))


def source_point(payload: dict) -> dict:
    cfg = payload["config"]
    clip = open_video(payload["input"], cfg["size"], cfg["fps"], cfg["pix_fmt"], cfg["skip"], cfg["frames"])
    info = clip.info
    model = _model(cfg["task_model"])
    t0 = time.perf_counter()
    dets = detect_frames(model, clip.frames(), info.width, info.height)
    return {
        "input": payload["input"],
        "width": info.width,
        "height": info.height,
        "frames": len(dets),
        "fps": float(info.fps),
        "class_names": list(model.class_names),
        "task_model": model.version,
        "detections": dets,
        "detect_s": round(time.perf_counter() - t0, 4),
    }


def encode_point(payload: dict) -> dict:
    from vcmtool.bench.grid import BenchConfig
    from vcmtool.bench.methods import present_frames, resolve
    from vcmtool.encoders import get_encoder
    from vcmtool.pipeline import EncodeJob, run_encode

    spec, cfg = payload["spec"], payload["config"]
    grid = BenchConfig(**cfg)  # its per-encoder preset and options
    method = resolve(spec["qpmap"])
    ext = get_encoder(spec["codec"]).capabilities().extension
    out = Path(payload["stream_dir"]) / f"{payload['key']}{ext}"
    job = EncodeJob(
        input=spec["input"],
        output=str(out),
        codec=spec["codec"],
        qpmap=method.qpmap,
        qp=spec["qp"],
        qp_offset=spec["qp_offset"],
        crf=float(spec["qp"]) if spec.get("crf") else None,
        ctu=cfg["ctu"],
        size=cfg["size"],
        fps=cfg["fps"],
        pix_fmt=cfg["pix_fmt"],
        frames=cfg["frames"],
        skip=cfg["skip"],
        preset=grid.preset_for(spec["codec"]),
        intra_period=cfg["intra_period"],
        threads=cfg["threads"],
        allow_frame_qp=cfg["allow_frame_qp"],
        map_interval=cfg["map_interval"],
        task_model=cfg["task_model"],
        map_options=dict(cfg["map_options"]),
        encoder_params=grid.params_for(spec["codec"]),
        measure=True,
        side_stream=method.side_stream,
        side_stream_budget=cfg.get("side_stream_budget") if method.side_stream != "none" else None,
        scale=method.scale,
    )
    report = run_encode(job)
    t0 = time.perf_counter()
    w, h = report["width"], report["height"]
    if method.receiver is None:
        model = _model(cfg["task_model"])
        frames = present_frames(method, out, report["codec"])
        dets, task_version = detect_frames(model, frames, w, h), model.version
    else:
        bgrs = [_crop(fr, w, h).to_bit_depth(8).to_bgr() for fr in decoded_frames(out, 8)]
        missing = cfg.get("side_stream_missing", DEFAULT_MISSING)
        found, task_version = method.receiver(out, report["codec"], bgrs, EVAL_MIN_SCORE, missing)
        dets = [_rows(d) for d in found]
    t_eval = time.perf_counter() - t0
    if len(dets) != report["frames"]:
        raise RuntimeError(f"{out}: decoded {len(dets)} frames, encoded {report['frames']}")
    bits = transmitted_bits(report)
    pixels = report["width"] * report["height"] * report["frames"]
    keep = (
        "codec",
        "encoder",
        "width",
        "height",
        "fps",
        "frames",
        "bytes",
        "psnr_y",
        "psnr_y_per_frame",
        "bits_per_frame",
        "qpmap",
        "scale",
        "coded_width",
        "coded_height",
        "notes",
        "md5",
        "versions",
        "timing",
    )
    return {
        "spec": spec,
        **{k: report[k] for k in keep},
        "bits": bits,
        "side_bits": side_stream_bits(report),
        "bpp": bits / pixels,
        "stream": str(out),
        "task_model": task_version,
        "side_stream": report.get("side_stream"),
        "eval_s": round(t_eval, 4),
        "detections": dets,
    }
