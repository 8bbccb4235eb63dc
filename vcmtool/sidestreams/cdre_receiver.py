"""Receiver side: YOLOv3-tiny (PyTorch) on decoded frames, with or without the CDRE embedding.

Runtime only: loading an exported decoder and running it; training lives in
:mod:`vcmtool.lab.cdre.train`, which this module never imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from vcmtool.sidestreams.cdre import DECODER_PT, DEFAULT_MISSING
from vcmtool.sidestreams.cdre_model import CdreConfig, CdreReceiver, Placement
from vcmtool.tasks.base import Detections
from vcmtool.tasks.darknet_torch import DarknetYolo
from vcmtool.tasks.postprocess import Letterbox
from vcmtool.tasks.yolov3_tiny import DEFAULT_INPUT, pipeline_for


def placements(lbs: Sequence[Letterbox]) -> list[Placement]:
    return [
        Placement(lb.new_w, lb.new_h, lb.pad_x, lb.pad_y, lb.dst_w, lb.dst_h, lb.src_w, lb.src_h)
        for lb in lbs
    ]


def tuned_detector(blob: dict) -> DarknetYolo | None:
    """The receiver's detector from an exported decoder blob; None when it is darknet's own."""
    if "detector" not in blob and "detector_delta" not in blob:
        return None
    det = DarknetYolo.from_darknet()
    if "detector" in blob:
        det.load_state_dict(blob["detector"])
    else:
        state = det.state_dict()
        for k, d in blob["detector_delta"].items():
            state[k] = state[k] + d.float()
        det.load_state_dict(state)
    det.eval()
    return det


def load_receiver(path: str | Path) -> tuple[CdreReceiver, dict]:
    """The decoder-side modules of an exported ``cdre_decoder.pt`` (and the blob, for "detector")."""
    from vcmtool.errors import ModelError

    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        rec = CdreReceiver(CdreConfig.from_dict(blob["config"]))
        rec.load_state_dict(blob["receiver"])
    except (OSError, KeyError, RuntimeError) as e:
        raise ModelError(f"{path}: cannot load the CDRE decoder ({e}); run 'vcmtool cdre export'") from None
    rec.eval()
    return rec, blob


class CdreDetector:
    """``process(decoded_bgrs, bits)`` -> Detections; ``bits=None`` runs the plain detector.

    The "joint" variant ships its fine-tuned detector weights in the decoder file; the plain
    path always uses the original darknet weights (that is the anchor).
    """

    def __init__(
        self, decoder: str | Path = DECODER_PT, score_threshold: float = 0.25, threads: int = 2
    ) -> None:
        torch.set_num_threads(threads)
        self.plain = DarknetYolo.from_darknet()
        self.receiver, blob = load_receiver(decoder)
        self.tuned = tuned_detector(blob) or self.plain
        self.variant = blob.get("variant", "fd")
        loss = (blob.get("loss") or {}).get("loss", "yolo")  # models before distillation: yolo
        tag = f"{self.variant}-{loss}" if loss != "yolo" else self.variant
        self.version = f"yolov3-tiny-torch+cdre-{tag}-s{blob.get('steps', '?')}"
        self.pipeline = pipeline_for(self.plain.net_spec, DEFAULT_INPUT, score_threshold, 0.45, True, 300)

    def process(
        self, decoded_bgrs: Sequence[np.ndarray], bits: Sequence[np.ndarray] | None
    ) -> list[Detections]:
        blob, lbs = self.pipeline.preprocess(list(decoded_bgrs))
        x = torch.from_numpy(blob)
        with torch.inference_mode():
            if bits is None:
                heads = self.plain(x)
            else:
                b = torch.from_numpy(np.stack(bits).astype(np.float32))
                heads = self.receiver.run_detector(self.tuned, x, b, placements(lbs))
        return self.pipeline.postprocess([h.numpy() for h in heads], lbs)


def detect_with_side_stream(
    detector: CdreDetector,
    bitstream: Path,
    codec: str,
    decoded_bgrs: Sequence[np.ndarray],
    batch: int = 4,
    missing: str = DEFAULT_MISSING,
) -> list[Detections]:
    """What a receiver does: the CDRE bits from ``bitstream``'s SEI messages (display order),
    then the embedded detector on the decoded frames; frames without a payload follow the
    ``missing`` policy (:data:`MISSING_POLICIES`)."""
    from vcmtool.sidestreams.cdre import bits_by_frame, extract_from_bitstream, fill_missing

    bits = bits_by_frame(extract_from_bitstream(Path(bitstream), codec))
    return detect_frames(detector, decoded_bgrs, fill_missing(bits, len(decoded_bgrs), missing), batch)


def detect_frames(
    detector: CdreDetector, decoded_bgrs: Sequence[np.ndarray], bits: Mapping[int, np.ndarray], batch: int = 4
) -> list[Detections]:
    """Detections per frame: with the embedding where ``bits`` has the frame's bits, plain
    otherwise; consecutive frames of one kind are batched together."""
    out: list[Detections] = []
    s, n = 0, len(decoded_bgrs)
    while s < n:
        has = s in bits
        e = s + 1
        while e < n and e - s < batch and (e in bits) == has:
            e += 1
        chunk = list(decoded_bgrs[s:e])
        out += detector.process(chunk, [bits[i] for i in range(s, e)] if has else None)
        s = e
    return out
