"""How side-stream payloads travel, shared by every side stream (``cdre``, ``vcs``): one SEI
user-data-unregistered message per access unit (``VCMTOOL_UUID``), or a side file; plus the
pieces every learned sender/receiver pair needs (model files by name, the ONNX session).

Side file (``--side-stream-out``): ``b"VCMSIDE1"`` then per payload a uint32 LE length and the
payload bytes. Each payload starts with its stream's two magic bytes and carries its own display
frame index, so a payload does not depend on the access unit that carries it (decode order may
differ from display order) and streams can share a carrier.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcmtool.atomic import atomic_path
from vcmtool.errors import InputError, ModelError

SIDE_FILE_MAGIC = b"VCMSIDE1"
SEI_CARRIERS = ("hevc", "vvc", "avc")  # codecs whose bitstreams carry SEI messages


@dataclass(frozen=True)
class ModelPair:
    """One trained side-stream model: the sender's ONNX encoder and the receiver's file."""

    name: str
    encoder: Path
    decoder: Path


def model_pair(spec: str, shipped: Mapping[str, ModelPair], stream: str) -> ModelPair:
    """A shipped model by name, an export directory (``vcmtool STREAM export -o DIR``) or an
    exported ``PREFIX_decoder.pt`` with its ``PREFIX_encoder.onnx`` beside it; every file must
    exist (a one-line ModelError otherwise)."""
    if spec in shipped:
        m = shipped[spec]
    else:
        p = Path(spec)
        dec = p / f"{stream}_decoder.pt" if p.is_dir() else p
        if not dec.name.endswith("_decoder.pt"):
            raise ModelError(
                f"{stream.upper()} model {spec!r}: use {', '.join(shipped)}, an export directory "
                "or a PREFIX_decoder.pt file"
            )
        m = ModelPair(spec, dec.with_name(dec.name[: -len("_decoder.pt")] + "_encoder.onnx"), dec)
    missing = [str(f) for f in (m.encoder, m.decoder) if not f.is_file()]
    if missing:
        raise ModelError(
            f"{stream.upper()} model {spec!r}: missing {', '.join(missing)}; run 'vcmtool {stream} export'"
        )
    return m


def onnx_sender(path: str | Path, stream: str, threads: int = 2):
    """An onnxruntime session of a sender (CUDA provider when present, else CPU)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise ModelError(
            f"{path}: {stream.upper()} encoder missing; run 'vcmtool {stream} export' or reinstall vcmtool"
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    providers = [
        p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
    ]
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"{path}: cannot load the {stream.upper()} encoder ({e})") from None


def write_side_file(path: str | Path, payloads: Iterable[bytes | None]) -> None:
    """The side file (atomically): the payloads that were sent (None entries are left out)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(SIDE_FILE_MAGIC)
        for p in payloads:
            if p is None:
                continue
            f.write(struct.pack("<I", len(p)))
            f.write(p)


def read_side_file(path: str | Path) -> list[bytes]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
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


def embed_in_bitstream(bitstream: Path, payloads: Sequence[bytes | None], codec: str) -> int:
    """Rewrite ``bitstream`` (atomically) with payload i in access unit i (None: no SEI there);
    returns the bytes added."""
    from vcmtool.bitstream.annexb import access_units, insert_sei

    data = bitstream.read_bytes()
    n_au = len(access_units(data, codec))
    if n_au != len(payloads):
        raise InputError(f"{bitstream}: {n_au} access units for {len(payloads)} side-stream payloads")
    out = insert_sei(data, list(payloads), codec)
    with atomic_path(bitstream) as tmp:
        Path(tmp).write_bytes(out)
    return len(out) - len(data)


def extract_from_bitstream(bitstream: Path, codec: str, accept: Callable[[bytes], bool]) -> list[bytes]:
    """The payloads ``accept`` recognises among ``bitstream``'s vcmtool SEI messages."""
    from vcmtool.bitstream.annexb import extract_sei

    try:
        data = Path(bitstream).read_bytes()
    except OSError as e:
        raise InputError(f"{bitstream}: cannot read ({e.strerror or e})") from None
    return [p for p in extract_sei(data, codec) if accept(p)]


def check_carrier(codec: str, out_file: str | None, stream: str) -> None:
    """Before any work: a stream without SEI (AV1) needs a side file."""
    if codec not in SEI_CARRIERS and not out_file:
        raise InputError(
            f"{codec} bitstreams carry no SEI; write the {stream.upper()} side stream with "
            "--side-stream-out FILE"
        )


def deliver(bitstream: Path, payloads: Sequence[bytes | None], codec: str, out_file: str | None) -> int:
    """Put the payloads into the bitstream as SEI, or into ``out_file``; returns the bytes the
    side stream adds on the wire (the SEI NAL units, or the side file)."""
    if out_file:
        write_side_file(out_file, payloads)
        return Path(out_file).stat().st_size
    return embed_in_bitstream(bitstream, payloads, codec)


def stream_report(
    name: str,
    added_bytes: int,
    payloads: Sequence[bytes | None],
    out_file: str | None,
    budget: object | None,
    model: str,
    provider: str,
    encode_s: float,
) -> dict:
    """The report's ``side_stream`` block (``pipeline.report.SideStreamReport``; the pipeline adds
    ``kbps``): wire bits, payload bits per frame (0: none sent), skipped frames, the budget."""
    return {
        "name": name,
        "bits": 8 * added_bytes,
        "payload_bits": 8 * sum(len(p) for p in payloads if p is not None),
        "frames": len(payloads),
        "frame_bits": [8 * len(p) if p is not None else 0 for p in payloads],
        "skipped": sum(p is None for p in payloads),
        "budget": str(budget) if budget is not None else None,
        "carrier": out_file or "sei",
        "model": model,
        "provider": provider,
        "encode_s": round(encode_s, 4),
    }


def send_side_stream(
    name: str,
    make_sender: Callable[[], Any],
    encode: Callable[..., list[bytes | None]],
    clip: Any,
    bitstream: Path,
    codec: str,
    out_file: str | None,
    budget: object | None,
) -> dict:
    """The post-encode hook of every learned side stream: check the carrier before any work,
    build the sender (``make_sender``: has ``version`` and ``provider``), ``encode(clip,
    bitstream, sender, budget=budget)`` the payloads, deliver them as SEI or into ``out_file``,
    and return the :func:`stream_report` block."""
    check_carrier(codec, out_file, name)
    t0 = time.perf_counter()
    sender = make_sender()
    payloads = encode(clip, bitstream, sender, budget=budget)
    t_enc = time.perf_counter() - t0
    added = deliver(bitstream, payloads, codec, out_file)
    return stream_report(name, added, payloads, out_file, budget, sender.version, sender.provider, t_enc)


__all__ = [
    "send_side_stream",
    "stream_report",
    "SEI_CARRIERS",
    "SIDE_FILE_MAGIC",
    "ModelPair",
    "check_carrier",
    "deliver",
    "embed_in_bitstream",
    "extract_from_bitstream",
    "model_pair",
    "onnx_sender",
    "read_side_file",
    "write_side_file",
]
