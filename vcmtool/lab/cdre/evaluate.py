"""Rate-task evaluation of CDRE vs the plain codec on held-out development frames.

For each (segment, QP) coded by the data builder: the detector's mAP on the decoded frames
without and with the CDRE embedding, against pseudo ground truth (the same detector on the
originals), and the rates: bitstream bits alone vs bitstream + the side stream as actually
carried (SEI NAL units inserted into a copy of the bitstream; the growth is what is counted).
BD-rate with :func:`vcmtool.eval.bdrate.bd_rate` (bjontegaard, pchip). Resumable through
:func:`vcmtool.runner.run_items`; results are cached per item in ``state``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from vcmtool.runner import Item, run_items

_CACHE: dict[str, object] = {}


def _detector(decoder: str):
    from vcmtool.eval.coco import EVAL_MIN_SCORE
    from vcmtool.sidestreams.cdre_receiver import CdreDetector

    if decoder not in _CACHE:
        _CACHE[decoder] = CdreDetector(decoder, score_threshold=EVAL_MIN_SCORE)
    return _CACHE[decoder]


def _eval_item(p: dict) -> dict:
    from vcmtool.sidestreams.cdre import (
        CdreSideEncoder,
        bits_by_frame,
        extract_from_bitstream,
        make_payload,
    )
    from vcmtool.sidestreams.transport import embed_in_bitstream

    det = _detector(p["decoder"])
    d = np.load(p["npz"])
    frames = d["orig"] if p["method"] == "gt" else d["dec"]
    out: dict = {"frames": []}
    if p["method"] == "cdre":
        enc = CdreSideEncoder(p["encoder"])
        payloads = [
            make_payload(i, enc.process(o, c))
            for i, (o, c) in enumerate(zip(d["orig"], d["dec"], strict=True))
        ]
        with tempfile.TemporaryDirectory() as tmp:
            bs = Path(tmp) / "x.hevc"
            shutil.copyfile(p["bitstream"], bs)
            out["side_bits"] = 8 * embed_in_bitstream(bs, payloads, "hevc")
            bits = bits_by_frame(extract_from_bitstream(bs, "hevc"))  # what a receiver gets
        out["payload_bits"] = 8 * sum(len(x) for x in payloads)
        arrs = [bits[i] for i in range(len(frames))]
    else:
        arrs = None
    for s in range(0, len(frames), 4):
        dets = det.process(list(frames[s : s + 4]), None if arrs is None else arrs[s : s + 4])
        out["frames"] += [x.rows() for x in dets]
    return out


def _key(method: str, tag: str, it: dict) -> str:
    # the plain detector's results do not depend on the CDRE model: cached once for all models
    return f"{method}-{tag if method == 'cdre' else 'base'}-{it['segment']}-qp{it['qp']}"


def evaluate(items: list[dict], state: str | Path, encoder: str, decoder: str, tag: str) -> dict:
    """``items``: data-builder results of the eval segments (all QPs). Returns the summary."""
    from vcmtool.eval.bdrate import bd_rate
    from vcmtool.eval.coco import GroundTruth

    segs = {it["segment"]: it for it in items}
    work = [Item(f"gt-{s}", {"method": "gt", "npz": it["npz"], "decoder": decoder}) for s, it in segs.items()]
    work += [
        Item(
            _key(m, tag, it),
            {
                "method": m,
                "npz": it["npz"],
                "bitstream": it["bitstream"],
                "decoder": decoder,
                "encoder": encoder,
            },
        )
        for it in items
        for m in ("plain", "cdre")
    ]
    res = {}
    for o in run_items(_eval_item, work, Path(state), desc="cdre eval"):
        if not o.ok:
            raise RuntimeError(f"{o.item.key}: {o.error}")
        res[o.item.key] = o.result
    gt_frames = {(s, i): r for s in segs for i, r in enumerate(res[f"gt-{s}"]["frames"])}
    sizes = {s: (it["width"], it["height"]) for s, it in segs.items()}
    gt = GroundTruth.from_detections(gt_frames, sizes)
    qps = sorted({it["qp"] for it in items})
    points = []
    for qp in qps:
        at = [it for it in items if it["qp"] == qp]
        pixels = sum(it["width"] * it["height"] * it["frames"] for it in at)
        main_bits = sum(it["bits"] for it in at)
        row = {"qp": qp, "bpp_plain": main_bits / pixels}
        for m in ("plain", "cdre"):
            frames = {
                (it["segment"], i): r for it in at for i, r in enumerate(res[_key(m, tag, it)]["frames"])
            }
            sc = gt.match(frames).scores()
            row[f"map50_{m}"], row[f"map_{m}"] = sc.map50, sc.map
            if m == "cdre":
                side = sum(res[_key(m, tag, it)]["side_bits"] for it in at)
                row["side_bits"] = side
                row["side_payload_bits"] = sum(res[_key(m, tag, it)]["payload_bits"] for it in at)
                row["bpp_cdre"] = (main_bits + side) / pixels
                row["side_share"] = side / (main_bits + side)
        points.append(row)
    summary = {
        "points": points,
        "frames": sum(it["frames"] for it in items) // len(qps),
        "segments": sorted(segs),
        "model": tag,
    }
    for q in ("map50", "map"):
        r = bd_rate(
            [p["bpp_plain"] for p in points],
            [p[f"{q}_plain"] for p in points],
            [p["bpp_cdre"] for p in points],
            [p[f"{q}_cdre"] for p in points],
            f"BD-rate {q}",
        )
        summary[f"bd_rate_{q}"] = {"value": r.value, "overlap": r.overlap, "warnings": r.warnings}
    return summary
