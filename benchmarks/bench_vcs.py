"""VCS on held-out development frames: codec only vs LFN-only (semantic stream = zeros) vs VCS.

    python benchmarks/bench_vcs.py [--work .cache/vcs/data] [--model default|DIR]
        [--detector yolov3-tiny|nanodet] [--json out.json]

Data: the evaluation segments of :mod:`vcmtool.lab.vcs.data` (bikes 150..165, bigbuckbunny and
carphone 80..95, 640 px wide), coded by kvazaar at QPs 37/42/47, never trained on. Per QP:

* rate: codec only and LFN-only send the bitstream; VCS adds its semantic stream, counted as
  the SEI NAL units actually inserted into a copy of the bitstream (headers included);
* PSNR (RGB, 8-bit) of the frames each method hands to a task model;
* detector (YOLOv3-tiny via OpenCV by default; ``--detector nanodet`` for the second judge)
  mAP@0.5 and mAP@[.5:.95] against pseudo ground truth (the same detector on the originals,
  score >= 0.25; no detector steers VCS, which is label-free), with paired bootstrap 95% CIs
  (1000 resamples of the 48 frames) of VCS minus codec only and VCS minus LFN-only;
* BD-rate (pchip) of LFN-only and VCS against codec only, mAP@0.5 and mAP@[.5:.95].
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vcmtool.eval.bdrate import bd_rate
from vcmtool.eval.coco import EVAL_MIN_SCORE, GroundTruth, bootstrap_samples, percentile_ci
from vcmtool.lab.vcs import data
from vcmtool.sidestreams.transport import embed_in_bitstream
from vcmtool.sidestreams.vcs import (
    VcsSideEncoder,
    bits_by_frame,
    encode_payload,
    extract_from_bitstream,
    vcs_model,
)
from vcmtool.sidestreams.vcs_receiver import VcsReceiver
from vcmtool.tasks import TASK_MODELS

METHODS = ("codec", "lfn", "vcs")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-9)))


def run(work: str, model: str, reps: int = 1000, detector: str = "yolov3-tiny") -> dict:
    m = vcs_model(model)
    sender_path, rec = m.encoder, VcsReceiver(m.decoder, threads=1)
    det = TASK_MODELS.build(detector, score_threshold=EVAL_MIN_SCORE)
    items = data.build(data.EVAL_SEGMENTS, work, qps=data.QPS)
    segs = {it["segment"]: it for it in items}
    gt_frames, sizes = {}, {}
    for s, it in segs.items():
        orig = np.load(it["npz"])["orig"]
        sizes[s] = (it["width"], it["height"])
        for i, d in enumerate(det.detect_batch(list(orig))):
            gt_frames[(s, i)] = d.rows()
    gt = GroundTruth.from_detections(gt_frames, sizes)
    samples = bootstrap_samples(len(gt.keys), reps)
    points = []
    for qp in data.QPS:
        at = [it for it in items if it["qp"] == qp]
        pixels = sum(it["width"] * it["height"] * it["frames"] for it in at)
        main = sum(it["bits"] for it in at)
        side = 0
        frames = {k: {} for k in METHODS}
        ps = {k: [] for k in METHODS}
        for it in at:
            z = np.load(it["npz"])
            orig, dec = z["orig"], z["dec"]
            sender = VcsSideEncoder(sender_path, threads=1)
            payloads = [
                encode_payload(i, sender.process(o, c), sender.probs)
                for i, (o, c) in enumerate(zip(orig, dec, strict=True))
            ]
            with tempfile.TemporaryDirectory() as tmp:
                bs = Path(tmp) / "x.hevc"
                shutil.copyfile(it["bitstream"], bs)
                side += 8 * embed_in_bitstream(bs, payloads, "hevc")
                bits = bits_by_frame(extract_from_bitstream(bs, "hevc"), rec.probs)  # what a receiver gets
            outs = {
                "codec": list(dec),
                "lfn": list(rec.enhance(list(dec), None)),
                "vcs": list(rec.enhance(list(dec), bits)),
            }
            for k, fr in outs.items():
                ps[k] += [psnr(a, b) for a, b in zip(fr, orig, strict=True)]
                for i, d in enumerate(det.detect_batch(fr)):
                    frames[k][(it["segment"], i)] = d.rows()
        matched = {k: gt.match(frames[k]) for k in METHODS}
        row = {
            "qp": qp,
            "bpp_codec": main / pixels,
            "bpp_vcs": (main + side) / pixels,
            "side_bpp": side / pixels,
            "side_share": side / (main + side),
        }
        for k in METHODS:
            sc = matched[k].scores()
            row[f"psnr_{k}"] = float(np.mean(ps[k]))
            row[f"map50_{k}"], row[f"map_{k}"] = sc.map50, sc.map
        for other in ("codec", "lfn"):
            for q in ("map50", "map"):
                diffs = []
                for smp in samples:
                    a, b = matched["vcs"].scores(smp), matched[other].scores(smp)
                    diffs.append(getattr(a, q) - getattr(b, q))
                row[f"{q}_vcs_minus_{other}_ci95"] = percentile_ci(diffs)
        points.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "model": rec.version,
        "detector": det.version,
        "frames_per_qp": len(gt.keys),
        "segments": sorted(segs),
        "points": points,
    }
    for k, rate in (("lfn", "bpp_codec"), ("vcs", "bpp_vcs")):
        for q in ("map50", "map"):
            r = bd_rate(
                [p["bpp_codec"] for p in points],
                [p[f"{q}_codec"] for p in points],
                [p[rate] for p in points],
                [p[f"{q}_{k}"] for p in points],
                f"BD-rate {q} {k}",
            )
            summary[f"bd_rate_{q}_{k}"] = {"value": r.value, "overlap": r.overlap, "warnings": r.warnings}
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=".cache/vcs/data")
    ap.add_argument("--model", default="default")
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--detector", default="yolov3-tiny", help="a task model name (judge)")
    ap.add_argument("--json")
    a = ap.parse_args()
    s = run(a.work, a.model, a.reps, a.detector)
    text = json.dumps(s, indent=1)
    if a.json:
        Path(a.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
