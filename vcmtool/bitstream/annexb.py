"""Annex-B byte streams of H.264/AVC, H.265/HEVC and H.266/VVC: NAL units, access units and
vcmtool's side data carried in SEI ``user_data_unregistered`` messages.

``insert_sei`` puts one prefix SEI NAL unit (HEVC type 39, VVC 23, AVC 6) before the first VCL
NAL unit of each access unit (after its parameter sets and existing prefix SEI; in VVC before
the picture header). It holds a single payloadType 5 message: ``VCMTOOL_UUID`` (16 bytes) and
the payload, with ff-byte size coding and emulation prevention. Decoders ignore unknown
user-data SEI, so the decoded pictures are bit-identical to those of the original stream.

Access units start at the first VCL NAL unit of a new picture (HEVC
first_slice_segment_in_pic_flag, AVC first_mb_in_slice == 0, VVC picture header NAL unit or
picture_header_in_slice_header_flag) together with the AUD / parameter sets / prefix SEI that
precede it.

The native extension does the scanning and escaping; the pure-Python versions here give the
same results (and the same errors) when it is missing. Malformed streams raise
:class:`vcmtool.errors.InputError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from vcmtool import native
from vcmtool.errors import InputError

VCMTOOL_UUID = uuid.UUID("55753575-506c-4bcd-a175-2a72d89dd319")
CODECS = ("hevc", "vvc", "avc")
_ALIASES = {"hevc": "hevc", "h265": "hevc", "vvc": "vvc", "h266": "vvc", "avc": "avc", "h264": "avc"}
_NAMES = {"avc": "H.264", "hevc": "HEVC", "vvc": "VVC"}
_PREFIX_SEI = {"avc": 6, "hevc": 39, "vvc": 23}

Payload = bytes | bytearray | memoryview | None


def _codec(codec: str) -> str:
    try:
        return _ALIASES[codec.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"codec must be 'hevc', 'vvc' or 'avc', got {codec!r}") from None


def _uuid_bytes(u: uuid.UUID | bytes) -> bytes:
    b = u.bytes if isinstance(u, uuid.UUID) else bytes(u)
    if len(b) != 16:
        raise ValueError("uuid must be 16 bytes")
    return b


def _use_native(name: str) -> bool:
    return native.has(name)


# ---------------------------------------------------------------------------------------------
# Public API


def split_nal_units(data: bytes, codec: str) -> list[tuple[int, int, int]]:
    """NAL units as ``(offset, size, nal_unit_type)``.

    ``offset`` is the first byte of the NAL unit header (after the start code); ``size`` runs to
    the next start code, trailing zero bytes excluded.
    """
    c = _codec(codec)
    if _use_native("split_nals"):
        try:
            arr = native._native.split_nals(data, c)
        except native._native.FormatError as e:
            raise InputError(str(e)) from None
        return [tuple(r) for r in arr.tolist()]
    return _py_split(memoryview(data).cast("B"), c)


def access_units(data: bytes, codec: str) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of the access units (start = first NAL unit's header)."""
    c = _codec(codec)
    nals = split_nal_units(data, c)
    aus = _aus(data, nals, c)
    out = []
    for first, _, end in aus:
        last = nals[end - 1]
        out.append((nals[first][0], last[0] + last[1]))
    return out


def insert_sei(
    data: bytes, payloads: Sequence[Payload], codec: str, uuid: uuid.UUID | bytes = VCMTOOL_UUID
) -> bytes:
    """Insert one SEI user_data_unregistered message per access unit.

    ``payloads`` has one entry per access unit (``None`` skips that access unit); a count that
    does not match the stream raises InputError.
    """
    c = _codec(codec)
    u = _uuid_bytes(uuid)
    plist = [None if p is None else bytes(p) if not isinstance(p, bytes) else p for p in payloads]
    if _use_native("insert_sei"):
        try:
            return native._native.insert_sei(data, plist, c, u)
        except native._native.FormatError as e:
            raise InputError(str(e)) from None
    return _py_insert(memoryview(data).cast("B"), plist, c, u)


def extract_sei_by_au(
    data: bytes, codec: str, uuid: uuid.UUID | bytes = VCMTOOL_UUID
) -> list[tuple[int, bytes]]:
    """All payloads carried with ``uuid``, each with the index of its access unit."""
    c = _codec(codec)
    u = _uuid_bytes(uuid)
    if _use_native("extract_sei"):
        try:
            return [(int(a), p) for a, p in native._native.extract_sei(data, c, u)]
        except native._native.FormatError as e:
            raise InputError(str(e)) from None
    return _py_extract(memoryview(data).cast("B"), c, u)


def extract_sei(data: bytes, codec: str, uuid: uuid.UUID | bytes = VCMTOOL_UUID) -> list[bytes]:
    """Payloads of the SEI user_data_unregistered messages carrying ``uuid``, in stream order."""
    return [p for _, p in extract_sei_by_au(data, codec, uuid)]


def strip_sei(data: bytes, codec: str, uuid: uuid.UUID | bytes = VCMTOOL_UUID) -> bytes:
    """The stream without the SEI NAL units that carry only ``uuid`` messages (inverse of
    :func:`insert_sei` on a stream that had none)."""
    c = _codec(codec)
    u = _uuid_bytes(uuid)
    mv = memoryview(data).cast("B")
    nals = split_nal_units(data, c)
    keep_from, parts = 0, []
    hs = 1 if c == "avc" else 2
    for i, (off, size, t) in enumerate(nals):
        if t != _PREFIX_SEI[c]:
            continue
        msgs = _sei_messages(bytes(unescape_rbsp(mv[off + hs : off + size])), off)
        if msgs and all(pt == 5 and len(p) >= 16 and p[:16] == u for pt, p in msgs):
            start = 0 if i == 0 else nals[i - 1][0] + nals[i - 1][1]
            parts.append(mv[keep_from:start])
            keep_from = off + size
    parts.append(mv[keep_from:])
    return b"".join(parts)


def escape_rbsp(rbsp: bytes) -> bytes:
    """Emulation prevention: 0x03 after any two zero bytes followed by a byte <= 3."""
    if _use_native("escape_rbsp"):
        return native._native.escape_rbsp(rbsp)
    return _py_escape(bytes(rbsp))


def unescape_rbsp(payload: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00)."""
    if _use_native("unescape_rbsp"):
        return native._native.unescape_rbsp(payload)
    return _py_unescape(bytes(payload))


# ---------------------------------------------------------------------------------------------
# Pure-Python implementation (fallback and test reference)


def _is_vcl(t: int, c: str) -> bool:
    if c == "avc":
        return 1 <= t <= 5
    return t <= 31 if c == "hevc" else t <= 11


def _opens_au(t: int, c: str) -> bool:
    if c == "avc":
        return t in (6, 7, 8, 9) or 13 <= t <= 18
    if c == "hevc":
        return 32 <= t <= 35 or t == 39 or 41 <= t <= 44 or 48 <= t <= 55
    return 12 <= t <= 17 or t in (20, 23, 26, 28, 29)


def _py_split(d: memoryview, c: str) -> list[tuple[int, int, int]]:
    n = len(d)
    if n == 0:
        return []
    raw = d.tobytes()
    sc = []
    i = raw.find(b"\x00\x00\x01")
    while i >= 0:
        sc.append(i)
        i = raw.find(b"\x00\x00\x01", i + 3)
    name = _NAMES[c]
    if not sc:
        raise InputError(f"not an Annex-B {name} stream: no start code (00 00 01) in {n} bytes")
    if raw[: sc[0]].strip(b"\x00"):
        raise InputError(
            f"not an Annex-B {name} stream: {sc[0]} bytes of other data before the first start code"
        )
    hs = 1 if c == "avc" else 2
    nals = []
    for k, s in enumerate(sc):
        off = s + 3
        end = sc[k + 1] if k + 1 < len(sc) else n
        while end > off and raw[end - 1] == 0:
            end -= 1
        size = end - off
        if size == 0:
            if k + 1 == len(sc):
                break
            raise InputError(f"empty NAL unit at byte {off}")
        if size < hs:
            raise InputError(f"truncated NAL unit header at byte {off}")
        if raw[off] & 0x80:
            raise InputError(f"NAL unit at byte {off} has forbidden_zero_bit set")
        if c != "avc" and raw[off + 1] & 7 == 0:
            raise InputError(f"NAL unit at byte {off} has nuh_temporal_id_plus1 = 0")
        if c == "avc":
            t = raw[off] & 0x1F
        elif c == "hevc":
            t = (raw[off] >> 1) & 0x3F
        else:
            t = (raw[off + 1] >> 3) & 0x1F
        nals.append((off, size, t))
    return nals


def _aus(data: bytes, nals: list[tuple[int, int, int]], c: str) -> list[tuple[int, int, int]]:
    """(first_nal, insert_nal, end_nal) per access unit."""
    if _use_native("access_units"):
        try:
            return [tuple(r) for r in native._native.access_units(data, c).tolist()]
        except native._native.FormatError as e:
            raise InputError(str(e)) from None
    return _py_aus(memoryview(data).cast("B"), nals, c)


def _py_aus(d: memoryview, nals: list[tuple[int, int, int]], c: str) -> list[tuple[int, int, int]]:
    aus: list[list[int]] = []
    pending, opened, ph_waiting = -1, False, False
    count = len(nals)
    hs = 1 if c == "avc" else 2
    for i, (off, size, t) in enumerate(nals):
        if c == "vvc" and t == 19:
            start = pending if pending >= 0 else i
            if aus:
                aus[-1][2] = start
            aus.append([start, i, count])
            pending, opened, ph_waiting = -1, True, True
            continue
        if _is_vcl(t, c):
            if c == "vvc" and ph_waiting:
                first = False
            else:
                if size < hs + 1:
                    raise InputError(f"truncated slice NAL unit at byte {off}")
                first = bool(d[off + hs] & 0x80)
            ph_waiting = False
            if first or not opened:
                ins = i
                if c == "avc":
                    while ins > 0 and nals[ins - 1][2] == 14:
                        ins -= 1
                start = min(pending, ins) if pending >= 0 else ins
                if aus:
                    aus[-1][2] = start
                aus.append([start, ins, count])
                opened = True
            pending = -1
            continue
        if _opens_au(t, c) and pending < 0 and not ph_waiting:
            pending = i
    return [tuple(a) for a in aus]


def _py_escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _py_unescape(payload: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in payload:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _sei_number(n: int) -> bytes:
    return b"\xff" * (n // 255) + bytes([n % 255])


def _sei_nal(hdr: memoryview, c: str, payload: bytes, u: bytes) -> bytes:
    rbsp = _sei_number(5) + _sei_number(16 + len(payload)) + u + payload + b"\x80"
    if c == "avc":
        head = b"\x06"
    elif c == "hevc":
        head = bytes([(39 << 1) | (hdr[0] & 1), hdr[1]])
    else:
        head = bytes([hdr[0] & 0x3F, (23 << 3) | (hdr[1] & 7)])
    return b"\x00\x00\x00\x01" + head + _py_escape(rbsp)


def _py_insert(d: memoryview, payloads: list[bytes | None], c: str, u: bytes) -> bytes:
    nals = _py_split(d, c)
    aus = _py_aus(d, nals, c)
    if len(aus) != len(payloads):
        raise InputError(
            f"the stream has {len(aus)} access units but {len(payloads)} SEI payloads were given"
        )
    parts, src = [], 0
    for (_, ins, _), p in zip(aus, payloads, strict=True):
        if p is None:
            continue
        pos = 0 if ins == 0 else nals[ins - 1][0] + nals[ins - 1][1]
        off = nals[ins][0]
        parts += [d[src:pos], _sei_nal(d[off : off + 2], c, p, u)]
        src = pos
    parts.append(d[src:])
    return b"".join(parts)


def _sei_messages(r: bytes, nal_off: int) -> list[tuple[int, bytes]]:
    msgs, pos, n = [], 0, len(r)
    while pos < n:
        if n - pos == 1 and r[pos] == 0x80:
            break
        vals = []
        for _ in range(2):
            v = 0
            while pos < n and r[pos] == 0xFF:
                v += 255
                pos += 1
            if pos >= n:
                raise InputError(f"truncated SEI message in the SEI NAL unit at byte {nal_off}")
            v += r[pos]
            pos += 1
            vals.append(v)
        ptype, psize = vals
        if psize > n - pos:
            raise InputError(
                f"SEI message in the NAL unit at byte {nal_off} claims {psize} bytes but only "
                f"{n - pos} remain"
            )
        msgs.append((ptype, r[pos : pos + psize]))
        pos += psize
    return msgs


def _py_extract(d: memoryview, c: str, u: bytes) -> list[tuple[int, bytes]]:
    nals = _py_split(d, c)
    aus = _py_aus(d, nals, c)
    hs = 1 if c == "avc" else 2
    found, au = [], 0
    for k, (off, size, t) in enumerate(nals):
        while au + 1 < len(aus) and k >= aus[au + 1][0]:
            au += 1
        if t != _PREFIX_SEI[c]:
            continue
        for ptype, p in _sei_messages(_py_unescape(d[off + hs : off + size].tobytes()), off):
            if ptype == 5 and len(p) >= 16 and p[:16] == u:
                found.append((-1 if not aus or k < aus[0][0] else au, p[16:]))
    return found


__all__ = [
    "CODECS",
    "VCMTOOL_UUID",
    "access_units",
    "escape_rbsp",
    "extract_sei",
    "extract_sei_by_au",
    "insert_sei",
    "split_nal_units",
    "strip_sei",
    "unescape_rbsp",
]
