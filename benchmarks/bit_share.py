"""Where the bits go: the share of a clip's bits spent on objects and on the background.

Encoders do not report bits per CTU, so the shares are measured by knock-out: the clip is coded
with a method's maps (A), again with every object CTU raised to the codec's maximum QP (B), and
again with every background CTU raised to it (C). ``A - B`` is what the objects cost at the
method's QPs, ``A - C`` what the background costs, both above what the region would cost at
the maximum QP. The clip coded at the maximum QP everywhere (D) is the floor no map can go
below; ``A - D`` minus the two region figures is the interaction (in low-delay coding a block is
predicted from its neighbours, so each region's cost depends on the other's QP). The first
(intra) frame's share of A is printed too: in a short low-delay clip it is much of the floor. An
object CTU is one that a box of the task model's detections on the uncompressed frame touches
(score >= 0.3, the benches' pseudo ground truth), so the split is the same for every method.

    python benchmarks/bit_share.py CLIP.y4m --codec kvazaar --method none@40 --method auto+16 \\
        --method roi@40

A method is ``SOURCE@QP`` (base QP ``QP``) or ``SOURCE+K`` (the JRD offset protocol: the map
predicted at ``--offset-base``, plus K). Prints a Markdown table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

import vcmtool
from vcmtool.encoders import ENCODERS
from vcmtool.eval.coco import PSEUDO_GT_MIN_SCORE
from vcmtool.qpmap.raster import boxes_cells
from vcmtool.tasks import get_task_model


def parse_method(text: str, offset_base: int) -> tuple[str, int, int]:
    """(source, base QP, offset) of ``SOURCE@QP`` or ``SOURCE+K`` / ``SOURCE-K``."""
    m = re.fullmatch(r"(.+?)(?:@(\d+)|([+-]\d+))", text)
    if not m:
        sys.exit(f"{text}: not SOURCE@QP or SOURCE+K")
    source, qp, offset = m.groups()
    return (source, int(qp), 0) if qp else (source, offset_base, int(offset))


def object_ctus(clip_path: str, ctu: int, task_model: str, frames: int | None) -> np.ndarray:
    """(frames, rows, cols) True where a pseudo-ground-truth box touches the CTU."""
    clip = vcmtool.open_video(clip_path, frames=frames)
    task = get_task_model(task_model, score_threshold=PSEUDO_GT_MIN_SCORE)
    out = []
    for fr in clip.frames():
        out.append(boxes_cells(fr.height, fr.width, ctu, task.detect(fr.to_bgr()).boxes))
    return np.stack(out)


def coded_bits(clip: str, maps: np.ndarray, tmp: Path, name: str, **job) -> tuple[int, int]:
    """Bits of ``clip`` coded with ``maps`` (absolute QPs) and the encode options ``job``, and
    the bits of its first (intra) frame."""
    path = tmp / f"{name}.npy"
    np.save(path, maps)
    ext = ENCODERS.get(job["codec"]).capabilities().extension
    rep = vcmtool.encode(clip, tmp / f"{name}{ext}", qpmap=f"file:{path}", overwrite=True, **job)
    return int(rep["bits"]), int(rep["bits_per_frame"][0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("--codec", default="kvazaar")
    ap.add_argument("--preset", default="ultrafast")
    ap.add_argument("--method", action="append", required=True, help="SOURCE@QP or SOURCE+K")
    ap.add_argument("--offset-base", type=int, default=32)
    ap.add_argument("--param", action="append", default=[], help="encoder parameter KEY=VALUE")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--ctu", type=int, default=64)
    ap.add_argument("--task-model", default="yolov3-tiny")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    top = ENCODERS.get(args.codec).capabilities().qp_range[1]
    obj = object_ctus(args.clip, args.ctu, args.task_model, args.frames)
    params = dict(p.split("=", 1) for p in args.param)
    job = {
        "codec": args.codec,
        "preset": args.preset,
        "frames": args.frames,
        "ctu": args.ctu,
        "params": params,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        floor, _ = coded_bits(args.clip, np.full(obj.shape, top, np.uint8), Path(tmp), "d", **job)
        for i, text in enumerate(args.method):
            source, qp, offset = parse_method(text, args.offset_base)
            maps, _ = vcmtool.qpmaps(
                args.clip,
                qpmap=source,
                qp=qp,
                qp_offset=offset,
                codec=args.codec,
                frames=args.frames,
                ctu=args.ctu,
            )
            grid = np.broadcast_to(maps.data, obj.shape).astype(np.uint8)  # a uniform map: one frame
            a, intra = coded_bits(args.clip, grid, Path(tmp), f"a{i}", **job)
            b, _ = coded_bits(args.clip, np.where(obj, top, grid), Path(tmp), f"b{i}", **job)
            c, _ = coded_bits(args.clip, np.where(obj, grid, top), Path(tmp), f"c{i}", **job)
            rows.append(
                {
                    "method": text,
                    "bits": a,
                    "floor_bits": floor,
                    "intra_frame_bits": intra,
                    "object_bits": a - b,
                    "background_bits": a - c,
                    "object_ctu_share": float(obj.mean()),
                    "object_qp_mean": float(grid[obj].mean()) if obj.any() else None,
                    "background_qp_mean": float(grid[~obj].mean()) if (~obj).any() else None,
                }
            )
    print(f"{args.clip}, {args.codec} {args.preset}, {obj.shape[0]} frames, object CTUs {obj.mean():.0%}")
    print("| method | kbit | floor (max QP) | objects | background | interaction | I frame | QP obj. / bg |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rest = r["bits"] - r["floor_bits"] - r["object_bits"] - r["background_bits"]
        qo, qb = r["object_qp_mean"], r["background_qp_mean"]
        print(
            f"| {r['method']} | {r['bits'] / 1000:.1f} | {r['floor_bits'] / r['bits']:.0%} "
            f"| {r['object_bits'] / r['bits']:.0%} | {r['background_bits'] / r['bits']:.0%} "
            f"| {rest / r['bits']:.0%} | {r['intra_frame_bits'] / r['bits']:.0%} "
            f"| {qo if qo is None else round(qo, 1)} / {qb if qb is None else round(qb, 1)} |"
        )
    if args.json:
        from vcmtool.atomic import write_text_atomic

        write_text_atomic(
            args.json, json.dumps({"clip": args.clip, "codec": args.codec, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
