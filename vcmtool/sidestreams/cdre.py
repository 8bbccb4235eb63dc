"""CDRE side stream: ONNX encoder on (original, decoded) frames -> bits -> one payload per frame.

Payload (carried in an SEI user_data_unregistered message with ``VCMTOOL_UUID``, or in a
side file): ``b"CD"``, version, coder id, uint32 LE display-order frame index, then the
coded body. The body is :func:`vcmtool.sidestreams.bits.pack_bits` of the (channels, rows, cols) 0/1
array, passed through the entropy coder named by the coder id. The frame index makes the
payload independent of which access unit carries it (decode order may differ from display order).

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

import numpy as np

from vcmtool.atomic import atomic_path
from vcmtool.errors import InputError, ModelError
from vcmtool.modelfiles import model_path
from vcmtool.registry import parse_spec
from vcmtool.sidestreams.bits import pack_bits, unpack_bits

ENCODER_ONNX = model_path("cdre_encoder.onnx")
DECODER_PT = model_path("cdre_decoder.pt")


@dataclass(frozen=True)
class CdreModel:
    """One trained CDRE model: the sender's ONNX encoder and the receiver's decoder file."""

    name: str
    encoder: Path
    decoder: Path


# the shipped variants: frozen detector ("Ours-FD") and joint fine-tuning ("Ours")
CDRE_MODELS: dict[str, CdreModel] = {
    "fd": CdreModel("fd", ENCODER_ONNX, DECODER_PT),
    "joint": CdreModel("joint", model_path("cdre_joint_encoder.onnx"), model_path("cdre_joint_decoder.pt")),
}


def cdre_model(spec: str) -> CdreModel:
    """A shipped variant (``fd``, ``joint``), an export directory (``vcmtool cdre export -o DIR``)
    or an exported ``PREFIX_decoder.pt`` with its ``PREFIX_encoder.onnx`` beside it."""
    if spec in CDRE_MODELS:
        m = CDRE_MODELS[spec]
    else:
        p = Path(spec)
        dec = p / "cdre_decoder.pt" if p.is_dir() else p
        if not dec.name.endswith("_decoder.pt"):
            raise ModelError(
                f"CDRE model {spec!r}: use {', '.join(CDRE_MODELS)}, an export directory "
                "or a PREFIX_decoder.pt file"
            )
        m = CdreModel(spec, dec.with_name(dec.name[: -len("_decoder.pt")] + "_encoder.onnx"), dec)
    missing = [str(f) for f in (m.encoder, m.decoder) if not f.is_file()]
    if missing:
        raise ModelError(f"CDRE model {spec!r}: missing {', '.join(missing)}; run 'vcmtool cdre export'")
    return m


STRIDE = 32
MAGIC = b"CD"
VERSION = 1
_HEAD = struct.Struct("<2sBBI")
SIDE_FILE_MAGIC = b"VCMSIDE1"


@dataclass(frozen=True)
class Coder:
    ident: int
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]


# Lossless coders for the packed bits. Measured on the shipped model's bits of 8 frames of 720p
# bigbuckbunny (benchmarks/bench_cdre.py): zlib -14.3%, lzma -14.7% (adaptive order-0 bound
# -18%), so the default "auto" takes zlib per frame whenever it is smaller than the raw bits.
CODERS: dict[str, Coder] = {
    "none": Coder(0, lambda b: b, lambda b: b),
    "zlib": Coder(1, lambda b: zlib.compress(b, 9), zlib.decompress),
    "lzma": Coder(
        2,
        lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]),
        lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]),
    ),
}
_BY_ID = {c.ident: c for c in CODERS.values()}
DEFAULT_CODER = "auto"  # zlib where it helps, raw otherwise (tiny frames: zlib's header costs more)


def make_payload(index: int, bits: np.ndarray, coder: str = DEFAULT_CODER) -> bytes:
    packed = pack_bits(np.asarray(bits, np.uint8))
    if coder == "auto":
        z = CODERS["zlib"].encode(packed)
        c, body = (CODERS["zlib"], z) if len(z) < len(packed) else (CODERS["none"], packed)
    else:
        c = CODERS[coder]
        body = c.encode(packed)
    return _HEAD.pack(MAGIC, VERSION, c.ident, index) + body


def parse_payload(data: bytes) -> tuple[int, np.ndarray]:
    """(frame index, uint8 0/1 array (channels, rows, cols)) of one payload."""
    if len(data) < _HEAD.size:
        raise InputError(f"CDRE payload of {len(data)} bytes is too short")
    magic, version, ident, index = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION or ident not in _BY_ID:
        raise InputError(f"not a CDRE v{VERSION} payload (magic {magic!r}, version {version}, coder {ident})")
    return index, unpack_bits(_BY_ID[ident].decode(bytes(data[_HEAD.size :])))


def is_cdre_payload(data: bytes) -> bool:
    return len(data) >= _HEAD.size and bytes(data[:2]) == MAGIC


def write_side_file(path: str | Path, payloads: Iterable[bytes]) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(SIDE_FILE_MAGIC)
        for p in payloads:
            f.write(struct.pack("<I", len(p)))
            f.write(p)


def read_side_file(path: str | Path) -> list[bytes]:
    data = Path(path).read_bytes()
    if not data.startswith(SIDE_FILE_MAGIC):
        raise InputError(f"{path}: not a vcmtool side-stream file (no {SIDE_FILE_MAGIC!r} header)")
    out, off = [], len(SIDE_FILE_MAGIC)
    while off < len(data):
        if off + 4 > len(data):
            raise InputError(f"{path}: truncated at byte {off}")
        (n,) = struct.unpack_from("<I", data, off)
        if off + 4 + n > len(data):
            raise InputError(f"{path}: payload at byte {off} runs past the end of the file")
        out.append(data[off + 4 : off + 4 + n])
        off += 4 + n
    return out


def bits_by_frame(payloads: Sequence[bytes]) -> dict[int, np.ndarray]:
    return dict(parse_payload(p) for p in payloads if is_cdre_payload(p))


def frame_rgb(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (H, W, 3) -> float32 (1, 3, H', W') RGB in [0, 1], edge-padded to a multiple of 32."""
    h, w = bgr.shape[:2]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    a = np.pad(bgr, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else bgr
    return np.ascontiguousarray(a[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


class CdreSideEncoder:
    """The exported encoder under onnxruntime (CUDA provider when present, else CPU)."""

    def __init__(self, path: str | Path = ENCODER_ONNX, threads: int = 2) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.exists():
            raise ModelError(f"{path}: CDRE encoder missing; run 'vcmtool cdre export' or reinstall vcmtool")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: cannot load the CDRE encoder ({e})") from None
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
) -> list[bytes]:
    """Payloads for every frame of ``clip`` vs the decoded ``bitstream`` (display order)."""
    from vcmtool.decode import decoded_frames

    enc = encoder or CdreSideEncoder()
    payloads = []
    for i, (src, dec) in enumerate(zip(clip.frames(), decoded_frames(bitstream), strict=False)):
        payloads.append(make_payload(i, enc.process(src.to_bgr(), dec.to_bgr()), coder))
        if progress:
            progress(1)
    return payloads


def embed_in_bitstream(bitstream: Path, payloads: Sequence[bytes], codec: str) -> int:
    """Rewrite ``bitstream`` (atomically) with one SEI per access unit; returns the bytes added.

    Payload i rides in access unit i; each carries its own display index, so the receiver does
    not depend on the stream's reordering.
    """
    from vcmtool.bitstream.annexb import access_units, insert_sei

    data = bitstream.read_bytes()
    n_au = len(access_units(data, codec))
    if n_au != len(payloads):
        raise InputError(f"{bitstream}: {n_au} access units for {len(payloads)} side-stream payloads")
    out = insert_sei(data, list(payloads), codec)
    with atomic_path(bitstream) as tmp:
        Path(tmp).write_bytes(out)
    return len(out) - len(data)


def extract_from_bitstream(bitstream: Path, codec: str) -> list[bytes]:
    from vcmtool.bitstream.annexb import extract_sei

    try:
        data = bitstream.read_bytes()
    except OSError as e:
        raise InputError(f"{bitstream}: cannot read ({e})") from None
    return [p for p in extract_sei(data, codec) if is_cdre_payload(p)]


def run_cdre(clip, bitstream: Path, codec: str, out_file: str | None, model: CdreModel | None = None) -> dict:
    """The post-encode hook: payloads for ``bitstream`` (a finished, not yet published file).

    Without ``out_file`` they go into the bitstream as SEI (rewritten in place, atomically);
    with it they go to that side file and the bitstream is left untouched. ``bits`` is what the
    side stream adds on the wire: the SEI NAL units' bytes, or the side file's size.
    """
    import time

    if codec not in ("hevc", "vvc", "avc") and not out_file:
        raise InputError(
            f"{codec} bitstreams carry no SEI; write the CDRE side stream with --side-stream-out FILE"
        )
    t0 = time.perf_counter()
    enc = CdreSideEncoder(model.encoder if model else ENCODER_ONNX)
    payloads = encode_side_stream(clip, bitstream, enc)
    t_enc = time.perf_counter() - t0
    if out_file:
        write_side_file(out_file, payloads)
        added = Path(out_file).stat().st_size
    else:
        added = embed_in_bitstream(bitstream, payloads, codec)
    return {
        "name": "cdre",
        "bits": 8 * added,
        "payload_bits": 8 * sum(len(p) for p in payloads),
        "frames": len(payloads),
        "carrier": out_file or "sei",
        "model": enc.version,
        "provider": enc.provider,
        "encode_s": round(t_enc, 4),
    }


class SideStreams(Mapping[str, Callable[..., dict]]):
    """Post-encode side streams by name, plus ``KIND:ARG`` forms (``cdre:joint``, ``cdre:DIR``)
    built on lookup; iterating lists the plain names only."""

    def __init__(
        self,
        named: dict[str, Callable[..., dict]],
        parametric: dict[str, Callable[[str], Callable[..., dict]]],
    ) -> None:
        self._named, self._parametric = named, parametric

    def __getitem__(self, name: str) -> Callable[..., dict]:
        if name in self._named:
            return self._named[name]
        spec = parse_spec(name, "side stream")
        if spec.arg and spec.name in self._parametric:
            return self._parametric[spec.name](spec.arg)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __len__(self) -> int:
        return len(self._named)


# ``vcmtool encode --side-stream NAME`` and ``EncodeJob.side_stream``
SIDE_STREAMS = SideStreams(
    {"cdre": run_cdre}, {"cdre": lambda spec: partial(run_cdre, model=cdre_model(spec))}
)
