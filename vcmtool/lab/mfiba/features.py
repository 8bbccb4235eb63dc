"""Feature coding for machines with MFIBA (the paper's own setting) on a standard codec.

YOLOv3-tiny is split after its trunk: the two maps its heads consume, stride 16 (256 x 26 x 26,
routed to the second head) and stride 32 (256 x 13 x 13), are the transmitted multi-scale
features. Each scale's channels are tiled into a 16 x 16 grid, min-max quantised to 8 bits, and
the two tiles are stacked into one luma "atlas" picture whose regions are padded to whole CTUs,
so a per-CTU QP map gives each scale its own QP. The decoded atlas is de-quantised and fed back
into the network at the split point (``feature_transform``), which then finishes inference.

Per image (the paper's online phase): each scale is pre-coded alone at several QPs, giving its
rate-QP model and, with the other scale left lossless, its MFIP task losses; the importance
weight of a scale is its mean task loss normalised over scales (w_i = d_i). MFIBA then splits
a bit budget over the scales with eq. 6 (size factor = region pixels) and the QPs come from the
per-scale rate-QP models. The uniform anchor codes the whole atlas at one QP.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCALES = (16, 32)  # strides of the split-point features
GRID = 16  # 16 x 16 channel tiles (256 channels)
CTU = 64


def _pad(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class Region:
    stride: int
    channels: int
    h: int
    w: int
    top: int  # first atlas row (CTU-aligned)

    @property
    def tile_h(self) -> int:
        return self.h * (-(-self.channels // GRID))

    @property
    def rows(self) -> int:
        return _pad(self.tile_h, CTU)


class Atlas:
    """Layout of the multi-scale features in one luma picture; ``pack``/``unpack`` are inverses up
    to 8-bit quantisation."""

    def __init__(self, shapes: dict[int, tuple[int, int, int]]) -> None:
        top, self.regions = 0, []
        for s in SCALES:
            c, h, w = shapes[s]
            r = Region(s, c, h, w, top)
            self.regions.append(r)
            top += r.rows
        self.height = top
        self.width = _pad(max(GRID * r.w for r in self.regions), CTU)

    def pack(self, feats: dict[int, np.ndarray]) -> tuple[np.ndarray, dict[int, tuple[float, float]]]:
        y = np.zeros((self.height, self.width), np.uint8)
        ranges = {}
        for r in self.regions:
            f = feats[r.stride]
            lo, hi = float(f.min()), float(f.max())
            ranges[r.stride] = (lo, hi)
            q = np.rint((f - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
            tiles = np.zeros((GRID * GRID, r.h, r.w), np.uint8)
            tiles[: r.channels] = q
            tile = tiles.reshape(GRID, GRID, r.h, r.w).transpose(0, 2, 1, 3).reshape(GRID * r.h, GRID * r.w)
            block = np.pad(tile, ((0, r.rows - tile.shape[0]), (0, self.width - tile.shape[1])), mode="edge")
            y[r.top : r.top + r.rows] = block
        return y, ranges

    def unpack(self, y: np.ndarray, ranges: dict[int, tuple[float, float]]) -> dict[int, np.ndarray]:
        out = {}
        for r in self.regions:
            tile = y[r.top : r.top + GRID * r.h, : GRID * r.w].astype(np.float32)
            tiles = tile.reshape(GRID, r.h, GRID, r.w).transpose(0, 2, 1, 3).reshape(GRID * GRID, r.h, r.w)
            lo, hi = ranges[r.stride]
            out[r.stride] = tiles[: r.channels] / 255.0 * (hi - lo) + lo
        return out

    def qp_grid(self, qps: dict[int, int]) -> np.ndarray:
        """Per-CTU QP map giving each scale's region its QP."""
        g = np.zeros((self.height // CTU, self.width // CTU), np.int16)
        for r in self.regions:
            g[r.top // CTU : (r.top + r.rows) // CTU] = qps[r.stride]
        return g


def code_luma(
    y: np.ndarray, qp_grid: np.ndarray, encoder: str = "kvazaar", preset: str = "veryfast"
) -> tuple[int, np.ndarray]:
    """Intra-code one luma picture (neutral chroma) with a per-CTU QP map; (bits, decoded luma)."""
    from fractions import Fraction

    from vcmtool.decode import decoded_frames, packet_bits
    from vcmtool.encoders import EncodeSettings, get_encoder
    from vcmtool.io import open_video
    from vcmtool.io.frame import Frame, VideoInfo
    from vcmtool.io.y4m import write_y4m
    from vcmtool.qpmap.maps import QPMaps

    h, w = y.shape
    uv = np.full((h // 2, w // 2), 128, np.uint8)
    enc = get_encoder(encoder)
    settings = EncodeSettings(preset, 1, 1)
    with tempfile.TemporaryDirectory(prefix="vcmtool-fcm-") as td:
        src = Path(td) / "atlas.y4m"
        with open(src, "wb") as f:
            write_y4m(f, VideoInfo(w, h, Fraction(1), "yuv420p", 1), [Frame(y, uv, uv.copy(), 0, 8)])
        bs = Path(td) / f"atlas{enc.capabilities().extension}"
        enc.encode(open_video(str(src)), enc.prepare_maps(QPMaps(qp_grid, CTU), settings), settings, bs)
        dec = next(decoded_frames(bs)).y[:h, :w].copy()
        return sum(packet_bits(bs)), dec


class SplitDetector:
    """YOLOv3-tiny split at the trunk: ``features`` on the edge, ``finish`` on the server."""

    def __init__(self, score_threshold: float = 0.05) -> None:
        import torch

        from vcmtool.tasks.darknet_torch import TorchYoloV3Tiny

        torch.set_num_threads(2)
        self.task = TorchYoloV3Tiny(score_threshold=score_threshold)
        self.model = self.task.model

    def features(self, bgr: np.ndarray):
        import torch

        blob, boxes = self.task.pipeline.preprocess([bgr])
        with torch.inference_mode():
            _, feats = self.model(torch.from_numpy(np.ascontiguousarray(blob)), return_features=True)
        return blob, boxes, {s: feats[s][0].numpy().copy() for s in SCALES}

    def finish(self, blob, boxes, feats: dict[int, np.ndarray]):
        import torch

        def swap(stride, x):
            return torch.from_numpy(feats[stride])[None].to(x.dtype) if stride in feats else x

        with torch.inference_mode():
            outs = self.model(torch.from_numpy(np.ascontiguousarray(blob)), feature_transform=swap)
        return self.task.pipeline.postprocess([o.float().numpy() for o in outs], boxes)[0]


FCM_QPS = (12, 17, 22, 27, 32, 37)
_detector: SplitDetector | None = None


def _split() -> SplitDetector:
    global _detector  # one model per worker process
    if _detector is None:
        _detector = SplitDetector()
    return _detector


def _prepare(payload: dict):
    from vcmtool.lab.mfiba.fit import DevImage, load_bgr

    img = DevImage(**payload["image"])
    bgr = load_bgr(img)
    det = _split()
    blob, boxes, feats = det.features(bgr)
    atlas = Atlas({s: f.shape for s, f in feats.items()})
    y, ranges = atlas.pack(feats)
    return img, bgr, det, blob, boxes, feats, atlas, y, ranges


def precode_image(payload: dict) -> dict:
    """Phase 1 for one image: reference, per-scale pre-coding (rate-QP + MFIP), uniform points."""
    img, bgr, det, blob, boxes, feats, atlas, y, ranges = _prepare(payload)
    out = {
        "name": img.name,
        "width": bgr.shape[1],
        "height": bgr.shape[0],
        "reference": det.finish(blob, boxes, feats).rows(),
        "scales": {},
        "uniform": [],
    }
    if not any(r[4] >= 0.3 for r in out["reference"]):
        return out
    for r in atlas.regions:
        pts = []
        for q in FCM_QPS:
            region = y[r.top : r.top + r.rows]
            bits, dec = code_luma(region, np.full((r.rows // CTU, atlas.width // CTU), q, np.int16))
            full = y.copy()
            full[r.top : r.top + r.rows] = dec
            mixed = dict(feats)
            mixed[r.stride] = atlas.unpack(full, ranges)[r.stride]
            pts.append({"qp": q, "bits": bits, "detections": det.finish(blob, boxes, mixed).rows()})
        out["scales"][str(r.stride)] = {"pixels": r.rows * atlas.width, "points": pts}
    for q in FCM_QPS:
        bits, dec = code_luma(y, atlas.qp_grid({s: q for s in SCALES}))
        out["uniform"].append(
            {"qp": q, "bits": bits, "detections": det.finish(blob, boxes, atlas.unpack(dec, ranges)).rows()}
        )
    return out


def mfiba_image(payload: dict) -> dict:
    """Phase 2 for one image: code the atlas with the per-scale QPs MFIBA chose for each budget."""
    img, bgr, det, blob, boxes, feats, atlas, y, ranges = _prepare(payload)
    pts = []
    for qps in payload["qps"]:
        q = {int(k): int(v) for k, v in qps.items()}
        bits, dec = code_luma(y, atlas.qp_grid(q))
        pts.append(
            {
                "qps": qps,
                "bits": bits,
                "detections": det.finish(blob, boxes, atlas.unpack(dec, ranges)).rows(),
            }
        )
    return {"name": img.name, "points": pts}
