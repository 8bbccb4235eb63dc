"""VCS semantic stream: the sender (Sem-Enc, ONNX) on (original, decoded) frames -> one-bit maps
-> arithmetic-coded payloads, one per frame, in SEI or a side file.

Payload (SEI user_data_unregistered with ``VCMTOOL_UUID``, or a side file in the
``--side-stream-out`` format of :mod:`vcmtool.sidestreams.cdre`, ``b"VCMSIDE1"`` + length-prefixed
payloads), little-endian:

    b"VS", uint8 version, uint32 display-order frame index, uint8 channels, uint16 rows,
    uint16 cols, uint8 check, then the body

The body is the (channels, rows, cols) 0/1 map in channel-major raster order, range-coded
(``constriction.stream.queue.RangeEncoder``, uint32 words) under the factorized model: one
Bernoulli probability per channel, stored as integers out of 65536 in both model files
(``probs``), so sender and receiver code with identical numbers. ``check`` is the low byte of
the CRC-32 of the header (check byte zeroed) and the packed *decoded* bits: a range decoder turns
any bytes into some bits, so the check is what catches a corrupt body or a receiver holding
other probabilities than the sender (1 in 256 corruptions slip through). The header costs 104
bits per frame; the frame index makes a payload independent of the access unit that carries it.

The sender's 3D convolution is causal over ``window`` frames: frame i is coded from frames
i-window+1..i (the first frame repeated before the start), exactly as in training.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from vcmtool.errors import InputError, ModelError
from vcmtool.modelfiles import model_path
from vcmtool.sidestreams import transport
from vcmtool.sidestreams.budget import SideBudget, gate_for
from vcmtool.sidestreams.transport import (
    ModelPair,
    model_pair,
    onnx_sender,
    send_side_stream,
)

ENCODER_ONNX = model_path("vcs_encoder.onnx")
DECODER_PT = model_path("vcs_decoder.pt")
STRIDE = 16  # one bit per channel per 16x16 block (vcs_model.STRIDE; no torch import here)
MAGIC = b"VS"
VERSION = 1
PROB_SCALE = 1 << 16
_HEAD = struct.Struct("<2sBIBHHB")


def vcs_model(spec: str = "default") -> ModelPair:
    """The shipped model (``default``), an export directory (``vcmtool vcs export -o DIR``) or
    an exported ``PREFIX_decoder.pt`` with its ``PREFIX_encoder.onnx`` beside it."""
    return model_pair(spec, {"default": ModelPair("default", ENCODER_ONNX, DECODER_PT)}, "vcs")


def _probability_table(probs: Sequence[int], channels: int, n: int) -> np.ndarray:
    if len(probs) != channels:
        raise InputError(f"VCS payload has {channels} channels, the model {len(probs)}")
    p1 = np.repeat(np.asarray(probs, np.float64) / PROB_SCALE, n)
    return np.stack([1.0 - p1, p1], 1)


def _check(head: bytes, bits: np.ndarray) -> int:
    return zlib.crc32(head + np.packbits(bits.reshape(-1)).tobytes()) & 0xFF


def encode_payload(index: int, bits: np.ndarray, probs: Sequence[int]) -> bytes:
    """One frame's payload: ``bits`` uint8 0/1 (channels, rows, cols), ``probs`` P(1) out of 65536."""
    import constriction

    bits = np.asarray(bits, np.uint8)
    c, h, w = bits.shape
    head = _HEAD.pack(MAGIC, VERSION, index, c, h, w, 0)
    coder = constriction.stream.queue.RangeEncoder()
    if bits.size:
        model = constriction.stream.model.Categorical(perfect=False)
        coder.encode(bits.reshape(-1).astype(np.int32), model, _probability_table(probs, c, h * w))
    body = coder.get_compressed().astype("<u4").tobytes()
    return head[:-1] + bytes([_check(head, bits)]) + body


def decode_payload(data: bytes, probs: Sequence[int]) -> tuple[int, np.ndarray]:
    """(frame index, uint8 0/1 map (channels, rows, cols)) of one payload; InputError if corrupt."""
    import constriction

    data = bytes(data)
    if len(data) < _HEAD.size:
        raise InputError(f"VCS payload of {len(data)} bytes is too short")
    magic, version, index, c, h, w, check = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise InputError(f"not a VCS v{VERSION} payload (magic {magic!r}, version {version})")
    body = data[_HEAD.size :]
    if len(body) % 4 or c * h * w > (1 << 24):
        raise InputError(
            f"corrupt VCS payload for frame {index} (body of {len(body)} bytes, {c}x{h}x{w} bits)"
        )
    coder = constriction.stream.queue.RangeDecoder(np.frombuffer(body, "<u4").astype(np.uint32))
    bits = np.zeros((c, h, w), np.uint8)
    if bits.size:
        model = constriction.stream.model.Categorical(perfect=False)
        try:
            sym = coder.decode(model, _probability_table(probs, c, h * w))
        except (AssertionError, ValueError, RuntimeError):  # constriction's words for invalid data
            raise InputError(f"corrupt VCS payload for frame {index} (the body does not decode)") from None
        bits = sym.astype(np.uint8).reshape(c, h, w)
    if _check(_HEAD.pack(magic, version, index, c, h, w, 0), bits) != check:
        raise InputError(
            f"corrupt VCS payload for frame {index} (check byte mismatch, or another model's probabilities)"
        )
    return index, bits


def is_vcs_payload(data: bytes) -> bool:
    return len(data) >= _HEAD.size and bytes(data[:2]) == MAGIC


def bits_by_frame(payloads: Iterable[bytes], probs: Sequence[int]) -> dict[int, np.ndarray]:
    return dict(decode_payload(p, probs) for p in payloads if is_vcs_payload(p))


def pad_frame(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (H, W, 3) -> float32 (3, H', W') RGB in [0, 1], edge-padded to a multiple of 16."""
    h, w = bgr.shape[:2]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    a = np.pad(bgr, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else bgr
    return np.ascontiguousarray(a[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


class VcsSideEncoder:
    """The exported Sem-Enc under onnxruntime (CUDA provider when present, else CPU).

    :meth:`process` takes frames in display order and keeps the last ``window - 1`` of them, so
    each call sees the same causal window as training.
    """

    def __init__(self, path: str | Path = ENCODER_ONNX, threads: int = 2) -> None:
        self.session = onnx_sender(path, "vcs", threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.window = int(meta["window"])
            self.probs = [int(v) for v in meta["probs"].split(",")]
        except (KeyError, ValueError) as e:
            raise ModelError(f"{path}: not a VCS encoder (metadata {e})") from None
        self.version = meta.get("version", "unknown")
        self.provider = self.session.get_providers()[0]
        self._orig: list[np.ndarray] = []
        self._dec: list[np.ndarray] = []

    def process(self, original_bgr: np.ndarray, decoded_bgr: np.ndarray) -> np.ndarray:
        """Bits (channels, ceil(H/16), ceil(W/16)) uint8 of the next frame of the clip."""
        o, d = pad_frame(original_bgr), pad_frame(decoded_bgr)
        if not self._orig:  # the first frame stands in for the frames before the start
            self._orig, self._dec = [o] * (self.window - 1), [d] * (self.window - 1)
        self._orig = [*self._orig[-(self.window - 1) :], o] if self.window > 1 else [o]
        self._dec = [*self._dec[-(self.window - 1) :], d] if self.window > 1 else [d]
        feeds = {"original": np.stack(self._orig), "decoded": np.stack(self._dec)}
        return (self.session.run(None, feeds)[0] > 0.5).astype(np.uint8)


def encode_side_stream(
    clip,
    bitstream: Path,
    encoder: VcsSideEncoder,
    progress: Callable[[int], object] | None = None,
    budget: SideBudget | None = None,
) -> list[bytes | None]:
    """Payloads for every frame of ``clip`` vs the decoded ``bitstream`` (display order); None
    for a frame whose payload did not fit ``budget`` (payloads are independent of each other)."""
    from vcmtool.decode import decoded_frames

    gate = gate_for(budget, bitstream, clip)
    payloads: list[bytes | None] = []
    for i, (src, dec) in enumerate(zip(clip.frames(), decoded_frames(bitstream), strict=False)):
        p = encode_payload(i, encoder.process(src.to_bgr(), dec.to_bgr()), encoder.probs)
        payloads.append(None if gate is not None and not gate.admit(i, 8 * len(p)) else p)
        if progress:
            progress(1)
    return payloads


def extract_from_bitstream(bitstream: Path, codec: str) -> list[bytes]:
    """The VCS payloads among ``bitstream``'s vcmtool SEI messages."""
    return transport.extract_from_bitstream(bitstream, codec, is_vcs_payload)


def run_vcs(
    clip,
    bitstream: Path,
    codec: str,
    out_file: str | None,
    model: ModelPair | None = None,
    budget: SideBudget | None = None,
) -> dict:
    """The post-encode hook: payloads for ``bitstream`` (a finished, not yet published file),
    as SEI (the bitstream rewritten in place, atomically) or in ``out_file``; see
    :func:`vcmtool.sidestreams.transport.stream_report` for the returned block."""
    return send_side_stream(
        "vcs",
        lambda: VcsSideEncoder((model or vcs_model()).encoder),
        encode_side_stream,
        clip,
        bitstream,
        codec,
        out_file,
        budget,
    )
