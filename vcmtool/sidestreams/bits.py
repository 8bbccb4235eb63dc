"""Framed bit packing: {0,1} tensors <-> bytes, the body of a CDRE payload.

Record: uint8 ndim (1..8), ndim x uint32 LE dims, then ceil(N/8) bytes of bits in C order, MSB
first, zero padded. Records can be concatenated; :func:`iter_unpack_bits` splits them. Each
function checks its arguments once, then runs the native code (``vcmtool._native``) or numpy,
which give the same results and the same errors. Malformed records raise
:class:`vcmtool.errors.InputError`; bad arguments raise ``ValueError``.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from vcmtool import native
from vcmtool.errors import InputError

_MAX_DIMS = 8


def _bits_input(arr: Any) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim < 1 or a.ndim > _MAX_DIMS:
        raise ValueError(f"pack_bits handles 1 to {_MAX_DIMS} dimensions, got {a.ndim}")
    if any(d > 0xFFFFFFFF for d in a.shape):
        raise ValueError("dimension too large for the uint32 frame header")
    if a.dtype == bool:
        return np.ascontiguousarray(a).view(np.uint8)
    if a.dtype != np.uint8:
        ok = (a == 0) | (a == 1)
        if not ok.all():
            i = int(np.flatnonzero(~ok.reshape(-1))[0])
            raise ValueError(f"pack_bits: value {a.reshape(-1)[i]!r} at flat index {i} is not 0 or 1")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


def _pack_numpy(a: np.ndarray) -> bytes:
    flat = a.reshape(-1)
    bad = np.flatnonzero(flat > 1)
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"pack_bits: value {int(flat[i])} at flat index {i} is not 0 or 1")
    head = struct.pack(f"<B{a.ndim}I", a.ndim, *a.shape)
    return head + np.packbits(flat, bitorder="big").tobytes()


def pack_bits(arr: np.ndarray) -> bytes:
    """Pack a {0,1} tensor (bool or any numeric dtype) into one framed record."""
    a = _bits_input(arr)
    if native.has("pack_bits"):
        return native._native.pack_bits(a)
    return _pack_numpy(a)


def _unpack_numpy(mv: memoryview, offset: int) -> tuple[np.ndarray, int]:
    n = len(mv)
    if offset == n:
        raise InputError(f"packed bits: no frame header at byte {offset}")
    nd = mv[offset]
    if nd < 1 or nd > _MAX_DIMS:
        raise InputError(f"packed bits: bad dimension count {nd} at byte {offset}")
    hdr = 1 + 4 * nd
    if n - offset < hdr:
        raise InputError(f"packed bits: truncated frame header at byte {offset}")
    shape = struct.unpack_from(f"<{nd}I", mv, offset + 1)
    total = int(np.prod(shape, dtype=object))
    avail = n - offset - hdr
    nbytes = (total + 7) // 8
    if nbytes > avail:
        if 0 not in shape and total > (avail + 1) * 8:
            raise InputError(
                f"packed bits: frame at byte {offset} declares more bits than the {avail} bytes that follow"
            )
        raise InputError(f"packed bits: frame at byte {offset} needs {nbytes} payload bytes, {avail} present")
    payload = np.frombuffer(mv, dtype=np.uint8, count=nbytes, offset=offset + hdr)
    if total % 8 and payload[-1] & (0xFF >> (total % 8)):
        raise InputError(f"packed bits: nonzero padding bits in the frame at byte {offset}")
    bits = np.unpackbits(payload, count=total, bitorder="big")
    return bits.reshape(shape), offset + hdr + nbytes


def _unpack(mv: memoryview, offset: int) -> tuple[np.ndarray, int]:
    if native.has("unpack_bits"):
        try:
            return native._native.unpack_bits(mv, offset)
        except native._native.FormatError as e:
            raise InputError(str(e)) from None
    return _unpack_numpy(mv, offset)


def unpack_bits_from(data: Any, offset: int = 0) -> tuple[np.ndarray, int]:
    """Decode the record starting at ``offset``: (uint8 array of 0/1, offset after it)."""
    mv = native.byte_buffer(data)
    try:
        offset = operator.index(offset)
    except TypeError:
        raise ValueError(f"offset must be an integer, got {offset!r}") from None
    if offset < 0 or offset > mv.nbytes:  # also offsets beyond int64, which C++ cannot take
        raise ValueError("offset outside the buffer")
    return _unpack(mv, offset)


def unpack_bits(data: Any) -> np.ndarray:
    """Inverse of :func:`pack_bits` for exactly one record (trailing bytes are an error)."""
    mv = native.byte_buffer(data)
    arr, end = _unpack(mv, 0)
    if end != mv.nbytes:
        raise InputError(f"packed bits: {mv.nbytes - end} bytes after the record")
    return arr


def iter_unpack_bits(data: Any) -> Iterator[np.ndarray]:
    """Decode concatenated records one by one."""
    mv = native.byte_buffer(data)
    off, n = 0, mv.nbytes
    while off < n:
        arr, off = _unpack(mv, off)
        yield arr


__all__ = ["iter_unpack_bits", "pack_bits", "unpack_bits", "unpack_bits_from"]
