"""CDRE side stream: ONNX encoder on (original, decoded) frames -> bits -> one payload per frame.

Payload (carried in an SEI user_data_unregistered message with ``VCMTOOL_UUID``, or in a side file),
version 2: ``b"CD"``, version (2), coder id, flags, uint32 LE display-order frame index, then the
coded body. Flags bit 0 (``FLAG_TEMPORAL``): the body was coded with an earlier display frame's bits
as context, so the receiver needs that frame's payload first; bits 1-7: that frame's distance minus
1 (0: the previous frame; a frame skipped under ``--side-stream-budget`` makes the next payload
refer further back, to the last one sent). Bodies by coder: 0 "none", 1 "zlib", 2 "lzma":
:func:`vcmtool.sidestreams.bits.pack_bits` of the (channels, rows, cols) 0/1 array, raw or
compressed; 3 "ctx": uint8 channels, uint16 LE rows, uint16 LE cols (left out with
``FLAG_TEMPORAL``: the reference frame's shape), then :func:`vcmtool.sidestreams.entropy.encode_map`
(context-adaptive arithmetic coding). Version 1 (older streams, still read): ``b"CD"``, 1, coder id
(0-2), uint32 index, body; no flags. The frame index makes the payload independent of which access
unit carries it (decode order may differ from display order).

Measured (benchmarks/bench_cdre.py: shipped encoder, 32 frames of 720p bigbuckbunny at kvazaar
QP 37, 5,520 bits a frame; payload bits a frame, headers included): raw 5,696; version 1's "auto"
(zlib) 4,551; ctx without the previous frame 3,971; ctx with it 1,994 (1,930 after the first
frame): 0.44 of version 1's "auto", 0.35 of raw. Over the first 8 frames: 1,417 (0.31).

Side file (``--side-stream-out``): ``b"VCMSIDE1"`` then per payload a uint32 LE length and
the payload bytes.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from vcmtool.errors import InputError, UsageError
from vcmtool.modelfiles import model_path
from vcmtool.sidestreams import transport
from vcmtool.sidestreams.bits import pack_bits, unpack_bits
from vcmtool.sidestreams.budget import SideBudget, gate_for
from vcmtool.sidestreams.entropy import decode_map, encode_map
from vcmtool.sidestreams.transport import (
    ModelPair,
    model_pair,
    onnx_sender,
    send_side_stream,
)

ENCODER_ONNX = model_path("cdre_encoder.onnx")
DECODER_PT = model_path("cdre_decoder.pt")


# the shipped variants: frozen detector ("Ours-FD"), joint fine-tuning ("Ours"), and the frozen
# detector trained by distillation (better mAP@.5, worse mAP@[.5:.95]; CDRE_MODEL_CARD.md)
CDRE_MODELS: dict[str, ModelPair] = {
    "fd": ModelPair("fd", ENCODER_ONNX, DECODER_PT),
    "joint": ModelPair("joint", model_path("cdre_joint_encoder.onnx"), model_path("cdre_joint_decoder.pt")),
    "distill": ModelPair(
        "distill", model_path("cdre_distill_encoder.onnx"), model_path("cdre_distill_decoder.pt")
    ),
}


def cdre_model(spec: str) -> ModelPair:
    """A shipped variant (``fd``, ``joint``), an export directory (``vcmtool cdre export -o DIR``)
    or an exported ``PREFIX_decoder.pt`` with its ``PREFIX_encoder.onnx`` beside it."""
    return model_pair(spec, CDRE_MODELS, "cdre")


STRIDE = 32
MAGIC = b"CD"
VERSION = 2
_HEAD = struct.Struct("<2sBBBI")  # magic, version, coder id, flags, display index
_HEAD_V1 = struct.Struct("<2sBBI")  # magic, version, coder id, display index
FLAG_TEMPORAL = 1
MAX_DISTANCE = 128  # flags bits 1-7 hold the reference distance minus 1
_SHAPE = struct.Struct("<BHH")  # the ctx body's (channels, rows, cols)


def _lzma_filters() -> list[dict]:
    return [{"id": lzma.FILTER_LZMA2}]


# Packed bits of a CDRE map are far below this; a larger inflated body is a decompression bomb.
_MAX_PACKED = 1 << 24


def _decompress(make: Callable[[], object], body: bytes) -> bytes:
    """Inflate ``body`` with a fresh ``zlib.decompressobj``/``lzma.LZMADecompressor``, bounded."""
    d = make()
    try:
        out = d.decompress(body, _MAX_PACKED + 1)
    except (zlib.error, lzma.LZMAError, EOFError) as e:
        raise InputError(f"CDRE payload: corrupt compressed body ({e})") from None
    if len(out) > _MAX_PACKED:
        raise InputError(f"CDRE payload: compressed body inflates past {_MAX_PACKED} bytes")
    if not d.eof or d.unused_data:
        raise InputError("CDRE payload: truncated compressed body or bytes after it")
    return out


def _ctx_encode(bits: np.ndarray, prev: np.ndarray | None) -> bytes:
    # Coded against the previous frame, the shape is that frame's: 40 bits a frame saved (2%).
    if prev is not None:
        return encode_map(bits, prev)
    c, h, w = bits.shape
    return _SHAPE.pack(c, h, w) + encode_map(bits, None)


def _ctx_decode(body: bytes, prev: np.ndarray | None) -> np.ndarray:
    if prev is not None:
        if prev.ndim != 3:
            raise InputError(f"CDRE ctx payload needs (channels, rows, cols) context, got shape {prev.shape}")
        return decode_map(body, prev.shape, prev)
    if len(body) < _SHAPE.size:
        raise InputError(f"CDRE ctx body of {len(body)} bytes has no shape")
    return decode_map(body[_SHAPE.size :], _SHAPE.unpack_from(body), None)


def _ctx_fits(bits: np.ndarray) -> bool:
    return bits.ndim == 3 and all(n <= m for n, m in zip(bits.shape, (0xFF, 0xFFFF, 0xFFFF), strict=True))


@dataclass(frozen=True)
class Coder:
    """A lossless coder of one frame's bits. ``encode(bits, prev)`` -> body and
    ``decode(body, prev)`` -> bits; ``temporal`` coders use ``prev`` (the previous display
    frame's bits) as context when it is given, the others ignore it."""

    ident: int
    encode: Callable[[np.ndarray, np.ndarray | None], bytes]
    decode: Callable[[bytes, np.ndarray | None], np.ndarray]
    temporal: bool = False


# Lossless coders of one frame's bits. Measured on the shipped model's bits of 32 frames of 720p
# bigbuckbunny (module docstring, benchmarks/bench_cdre.py): zlib and lzma take 20-22% off the
# raw payload; "ctx" (context-adaptive arithmetic coding, vcmtool.sidestreams.entropy) takes 56%
# off zlib with the previous frame as context and 13% without. "auto" (the default) takes the
# smallest of none/zlib/ctx per frame (tiny maps: zlib's and ctx's headers can cost more).
CODERS: dict[str, Coder] = {
    "none": Coder(0, lambda b, _: pack_bits(b), lambda d, _: unpack_bits(d)),
    "zlib": Coder(
        1,
        lambda b, _: zlib.compress(pack_bits(b), 9),
        lambda d, _: unpack_bits(_decompress(zlib.decompressobj, d)),
    ),
    "lzma": Coder(
        2,
        lambda b, _: lzma.compress(pack_bits(b), format=lzma.FORMAT_RAW, filters=_lzma_filters()),
        lambda d, _: unpack_bits(
            _decompress(partial(lzma.LZMADecompressor, format=lzma.FORMAT_RAW, filters=_lzma_filters()), d)
        ),
    ),
    "ctx": Coder(3, _ctx_encode, _ctx_decode, temporal=True),
}
_BY_ID = {c.ident: c for c in CODERS.values()}
_V1_IDS = (0, 1, 2)
DEFAULT_CODER = "auto"


def make_payload(
    index: int,
    bits: np.ndarray,
    coder: str = DEFAULT_CODER,
    prev: np.ndarray | None = None,
    distance: int = 1,
) -> bytes:
    """One frame's payload (version 2). ``prev``: the bits of the last earlier frame that was sent,
    ``distance`` frames back (1..MAX_DISTANCE), or None when no earlier payload can serve (the
    receiver will not have it); a temporal coder then codes without it and the flags say so."""
    a = np.asarray(bits)
    if not np.isin(a, (0, 1)).all():
        raise ValueError("CDRE bits must be 0 or 1")
    a = a.astype(np.uint8)
    if prev is not None and (np.shape(prev) != a.shape or not 1 <= distance <= MAX_DISTANCE):
        prev = None  # the model's map changed size (a new clip), or the reference is too far back
    if coder == "auto":
        names = ["none", "zlib"] + (["ctx"] if _ctx_fits(a) else [])
        return min((make_payload(index, a, n, prev, distance) for n in names), key=len)
    if coder not in CODERS:
        raise ValueError(f"unknown CDRE coder {coder!r}; choose one of: auto, {', '.join(CODERS)}")
    c = CODERS[coder]
    if c is CODERS["ctx"] and not _ctx_fits(a):
        raise ValueError(f"the ctx coder takes (channels<=255, rows, cols<=65535) bits, got {a.shape}")
    temporal = c.temporal and prev is not None
    body = c.encode(a, prev if temporal else None)
    flags = FLAG_TEMPORAL | (distance - 1) << 1 if temporal else 0
    return _HEAD.pack(MAGIC, VERSION, c.ident, flags, index) + body


def _header(data: bytes) -> tuple[Coder, int, int, int]:
    """(coder, flags, display index, body offset) of a version 1 or 2 payload."""
    if len(data) < _HEAD_V1.size or bytes(data[:2]) != MAGIC:
        raise InputError(f"not a CDRE payload ({len(data)} bytes starting {bytes(data[:2])!r})")
    version = data[2]
    if version == 1:
        _, _, ident, index = _HEAD_V1.unpack_from(data)
        flags, off, known = 0, _HEAD_V1.size, _V1_IDS
    elif version == 2:
        if len(data) < _HEAD.size:
            raise InputError(f"CDRE v2 payload of {len(data)} bytes is too short")
        _, _, ident, flags, index = _HEAD.unpack_from(data)
        off, known = _HEAD.size, tuple(_BY_ID)
    else:
        raise InputError(f"CDRE payload version {version} is not supported (this vcmtool reads 1 and 2)")
    if ident not in known:
        raise InputError(f"CDRE v{version} payload with unknown coder id {ident}")
    if (flags & ~FLAG_TEMPORAL and not flags & FLAG_TEMPORAL) or (
        flags & FLAG_TEMPORAL and not _BY_ID[ident].temporal
    ):
        raise InputError(f"CDRE payload of frame {index}: bad flags {flags:#x} for coder id {ident}")
    return _BY_ID[ident], flags, index, off


def payload_index(data: bytes) -> int:
    """The display frame index a payload carries (header only)."""
    return _header(data)[2]


def reference_index(data: bytes) -> int | None:
    """The display index of the frame whose bits a payload was coded against (None: none)."""
    _, flags, index, _ = _header(data)
    return index - 1 - (flags >> 1) if flags & FLAG_TEMPORAL else None


def parse_payload(data: bytes, prev: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """(frame index, uint8 0/1 array (channels, rows, cols)) of one payload (version 1 or 2).
    ``prev``: the bits of the frame :func:`reference_index` names, needed when the payload was
    coded against them."""
    coder, flags, index, off = _header(data)
    if flags & FLAG_TEMPORAL:
        if prev is None:
            raise InputError(
                f"CDRE payload of frame {index} is coded against frame {index - 1 - (flags >> 1)}, "
                "whose payload is missing"
            )
        prev = np.asarray(prev)
    else:
        prev = None
    return index, coder.decode(bytes(data[off:]), prev)


def is_cdre_payload(data: bytes) -> bool:
    return len(data) >= _HEAD_V1.size and bytes(data[:2]) == MAGIC


def bits_by_frame(payloads: Sequence[bytes]) -> dict[int, np.ndarray]:
    """Bits by display index of the CDRE payloads among ``payloads`` (others are skipped),
    decoded in display order so that each frame's bits are the next one's context."""
    mine = sorted((p for p in payloads if is_cdre_payload(p)), key=payload_index)
    out: dict[int, np.ndarray] = {}
    for p in mine:
        ref = reference_index(p)
        out[payload_index(p)] = parse_payload(p, out.get(ref) if ref is not None else None)[1]
    return out


# What the receiver does with a frame sent without a payload (skipped by --side-stream-budget):
# "hold" embeds the last payload received before it (display order), "plain" runs the plain
# detector, as a receiver without the side stream would. Frames before the first payload are
# always plain.
MISSING_POLICIES = ("hold", "plain")
DEFAULT_MISSING = "hold"
T = TypeVar("T")  # a frame of any kind (embedded_bits)


def embedded_bits(
    bits: Mapping[int, np.ndarray], frames: Iterable[T], missing: str = DEFAULT_MISSING, index=lambda f: f
) -> Iterator[tuple[T, np.ndarray | None]]:
    """Each of ``frames`` (display order; ``index(frame)`` its display index) with the bits the
    receiver embeds on it under the ``missing`` policy; None: the plain detector."""
    if missing not in MISSING_POLICIES:
        raise UsageError(f"missing-payload policy {missing!r}: use one of {', '.join(MISSING_POLICIES)}")
    last = None
    for f in frames:
        own = bits.get(index(f))
        last = own if own is not None else last
        yield f, own if missing == "plain" else last


def fill_missing(
    bits: Mapping[int, np.ndarray], frames: int, missing: str = DEFAULT_MISSING
) -> dict[int, np.ndarray]:
    """The bits the receiver embeds per frame under the ``missing`` policy."""
    return {i: b for i, b in embedded_bits(bits, range(frames), missing) if b is not None}


def frame_rgb(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (H, W, 3) -> float32 (1, 3, H', W') RGB in [0, 1], edge-padded to a multiple of 32."""
    h, w = bgr.shape[:2]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    a = np.pad(bgr, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else bgr
    return np.ascontiguousarray(a[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


class CdreSideEncoder:
    """The exported encoder under onnxruntime (CUDA provider when present, else CPU)."""

    def __init__(self, path: str | Path = ENCODER_ONNX, threads: int = 2) -> None:
        self.session = onnx_sender(path, "cdre", threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.channels = int(meta.get("channels", 6))
        self.version = meta.get("version", "unknown")
        self.provider = self.session.get_providers()[0]

    def process(self, original_bgr: np.ndarray, decoded_bgr: np.ndarray) -> np.ndarray:
        """Bits (channels, ceil(H/32), ceil(W/32)) uint8 of one frame pair."""
        feeds = {"original": frame_rgb(original_bgr), "decoded": frame_rgb(decoded_bgr)}
        out = self.session.run(None, feeds)[0]
        return (out[0] > 0.5).astype(np.uint8)


def encode_side_stream(
    clip,
    bitstream: Path,
    encoder: CdreSideEncoder | None = None,
    coder: str = DEFAULT_CODER,
    progress: Callable[[int], object] | None = None,
    budget: SideBudget | None = None,
) -> list[bytes | None]:
    """Payloads for every frame of ``clip`` vs the decoded ``bitstream`` (display order); None
    for a frame whose payload did not fit ``budget``. Each payload may use the bits of the last
    frame sent before it as coding context (the receiver holds those)."""
    from vcmtool.decode import decoded_frames

    enc = encoder or CdreSideEncoder()
    gate = gate_for(budget, bitstream, clip)
    payloads: list[bytes | None] = []
    prev, prev_index = None, -1  # the last frame sent: the receiver holds its bits
    for i, (src, dec) in enumerate(zip(clip.frames(), decoded_frames(bitstream), strict=False)):
        bits = enc.process(src.to_bgr(), dec.to_bgr())
        payload = make_payload(i, bits, coder, prev=prev, distance=i - prev_index)
        if gate is not None and not gate.admit(i, 8 * len(payload)):
            payload = None
        else:
            prev, prev_index = bits, i
        payloads.append(payload)
        if progress:
            progress(1)
    return payloads


def extract_from_bitstream(bitstream: Path, codec: str) -> list[bytes]:
    """The CDRE payloads among ``bitstream``'s vcmtool SEI messages."""
    return transport.extract_from_bitstream(bitstream, codec, is_cdre_payload)


def run_cdre(
    clip,
    bitstream: Path,
    codec: str,
    out_file: str | None,
    model: ModelPair | None = None,
    budget: SideBudget | None = None,
) -> dict:
    """The post-encode hook: payloads for ``bitstream`` (a finished, not yet published file).

    Without ``out_file`` they go into the bitstream as SEI (rewritten in place, atomically);
    with it they go to that side file and the bitstream is left untouched. ``bits`` is what the
    side stream adds on the wire: the SEI NAL units' bytes, or the side file's size;
    ``frame_bits`` the payload bits of each frame (0: skipped under ``budget``).
    """
    return send_side_stream(
        "cdre",
        lambda: CdreSideEncoder(model.encoder if model else ENCODER_ONNX),
        encode_side_stream,
        clip,
        bitstream,
        codec,
        out_file,
        budget,
    )
