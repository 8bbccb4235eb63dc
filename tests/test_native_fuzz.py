"""Fuzzing the native fast paths (``vcmtool._native``) against their numpy twins.

Every function with a native and a numpy path (``FUNCS``: the domain modules that own the
formats) is called with random and hostile arguments (zero sizes, counts whose product
overflows 64 bits, negative values, truncated buffers, wrong dtypes, strided views) once with
the native path and once with the fallback (inside ``native.numpy_only()``). Both must return
equal results or both raise the same clean exception (ValueError, TypeError or InputError).

The hostile calls run in a child process (this file run as a script), so a SIGSEGV or an
endless loop fails a test instead of killing pytest; the child also calls the raw ``_native``
entry points directly, without the facade's validation, since the C++ code must hold on its
own. Seeded and small: the whole file runs in a few seconds.
"""

from __future__ import annotations

import collections
import os
import struct
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from vcmtool import native
from vcmtool.encoders.kvazaar import kvazaar_roi_bytes
from vcmtool.encoders.libx26x import block_offsets
from vcmtool.encoders.svtav1 import svtav1_roi_text
from vcmtool.errors import InputError
from vcmtool.qpmap.qpm import csv_text, qpm_bytes, qpm_first_above
from vcmtool.qpmap.raster import pool_ctu, rasterize_boxes, rasterize_masks
from vcmtool.sidestreams.bits import iter_unpack_bits, pack_bits, unpack_bits, unpack_bits_from

# Every function with both paths, by the name the cases use.
FUNCS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (
        pool_ctu,
        rasterize_boxes,
        rasterize_masks,
        qpm_bytes,
        qpm_first_above,
        csv_text,
        kvazaar_roi_bytes,
        block_offsets,
        svtav1_roi_text,
        pack_bits,
        unpack_bits_from,
        unpack_bits,
        iter_unpack_bits,
    )
}

# Clean refusals. MemoryError only comes from sizes far beyond any address space (2**50+ bytes),
# which both paths must refuse the same way.
CLEAN = (ValueError, TypeError, InputError, MemoryError)
BIG = 2**62  # a count that fits in int64 but whose products overflow
HUGE = 2**64 + 5  # beyond int64: C++ cannot even take it

needs_native = pytest.mark.skipif(not native.NATIVE, reason=native.NATIVE_ERROR or "no native extension")


# ---------------------------------------------------------------------------------------------
# Running one call on both paths


class _Counting:
    """Stands in for ``vcmtool._native`` and counts the calls, so the tests can prove the native
    code actually ran (a facade that silently fell back to numpy would pass a parity test)."""

    def __init__(self, mod: Any) -> None:
        self._mod = mod
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._mod, name)
        if callable(attr) and not isinstance(attr, type):

            def counted(*a: Any, **k: Any) -> Any:
                self.calls[name] += 1
                return attr(*a, **k)

            return counted
        return attr


# the native functions with a numpy twin: both the fuzz child and the parity rounds must reach each
TWINNED = (
    "pool_ctu",
    "rasterize_boxes",
    "rasterize_masks",
    "qpm_encode",
    "qpm_check",
    "kvazaar_roi",
    "block_offsets",
    "svtav1_roi",
    "csv",
    "pack_bits",
    "unpack_bits",
)


def _outcome(fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[str, Any]:
    """("ok", result) or ("error", exception type); anything but a clean error propagates."""
    try:
        r = fn(*args, **kwargs)
        return "ok", tuple(r) if isinstance(r, types.GeneratorType) else r  # iter_unpack_bits
    except CLEAN as e:
        for t in (InputError, MemoryError):  # numpy raises a MemoryError subclass
            if isinstance(e, t):
                return "error", t
        return "error", type(e)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind == "f":  # mean pooling sums in a different order: last-ulp differences
            return bool(np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _both(name: str, args: tuple, kwargs: dict | None = None) -> str:
    """Run ``FUNCS[name]`` on the native path and on the fallback; '' or what differed."""
    fn = FUNCS[name]
    kwargs = kwargs or {}
    got = _outcome(fn, args, kwargs)
    with native.numpy_only():
        want = _outcome(fn, args, kwargs)
    if got[0] != want[0] or (got[0] == "error" and got[1] is not want[1]):
        return f"{name}: native {got[0]} {got[1] if got[0] == 'error' else ''} vs numpy {want[0]} " + (
            f"{want[1]}" if want[0] == "error" else ""
        )
    if got[0] == "ok" and not _same(got[1], want[1]):
        return f"{name}: results differ: native {got[1]!r:.200} vs numpy {want[1]!r:.200}"
    return ""


# ---------------------------------------------------------------------------------------------
# Hostile calls (run in the child process)


def _packed(dims: list[int], payload: bytes = b"") -> bytes:
    return struct.pack(f"<B{len(dims)}I", len(dims), *dims) + payload


def _hostile_facade_cases() -> list[tuple[str, tuple, dict]]:
    u8 = np.arange(35, dtype=np.uint8).reshape(5, 7)
    f32 = np.linspace(-3, 3, 35, dtype=np.float32).reshape(5, 7)
    f32n = f32.copy()
    f32n[1, 2], f32n[3, 6], f32n[0, 0] = np.nan, np.inf, -np.inf
    box = np.array([[0, 0, 10, 10]], np.float32)
    cases: list[tuple[str, tuple, dict]] = []
    add = lambda name, *a, **k: cases.append((name, a, k))  # noqa: E731

    # pool_ctu: empty maps, absurd ctu, wrong modes, dtypes and layouts
    for pm in (np.zeros((0, 0), np.uint8), np.zeros((0, 5), np.float32), np.zeros((5, 0), np.uint8)):
        add("pool_ctu", pm, 4, "min")
    for ctu in (0, -1, BIG, 2**63 - 1, HUGE, 16.5, "16", None):
        for mode in ("min", "mean"):
            add("pool_ctu", u8, ctu, mode)
            add("pool_ctu", f32n, ctu, mode)
    for mode in ("median", None, 3):
        add("pool_ctu", u8, 2, mode)
    for pm in (
        u8[0],
        u8[None],
        u8.T,
        u8[:, ::2],
        u8[::-1, ::-1],
        f32n[::-2, ::3],
        u8.astype(bool),
        u8.astype(np.int64),
        u8.astype(np.float64),
        u8.astype(object),
        u8.astype(str),
        np.full((300, 3), 255, np.uint8),
    ):
        for mode in ("min", "max", "mean"):
            add("pool_ctu", pm, 3, mode)
    add("pool_ctu", np.full((300, 3), 255, np.uint8), 512, "mean")  # 32-bit column sums

    # rasterize_boxes: sizes whose grid overflows, negative sizes, hostile boxes
    qp1 = np.array([20])
    for h, w, ctu in [
        (-1, 64, 16),
        (64, -1, 16),
        (BIG, BIG, 1),
        (2**63 - 1, 2**63 - 1, 1),
        (HUGE, 64, 16),
        (64, 64, 0),
        (64, 64, -5),
        (64, 64, BIG),
        (BIG, BIG, BIG),
        (0, 0, 16),
        (0, 64, 16),
        (64.5, 64, 16),
        ("64", 64, 16),
    ]:
        add("rasterize_boxes", h, w, ctu, box, qp1, 30)
    for boxes, qps in [
        (np.array([[np.nan, 0, 1, 1]]), qp1),
        (np.array([[-np.inf, -np.inf, np.inf, np.inf]]), qp1),
        (np.array([[1e30, 1e30, -1e30, 9e37]]), qp1),
        (np.zeros(3), qp1),
        (np.zeros((2, 4)), qp1),
        (box, np.array([300])),
        (box, np.array([-1])),
        (box, np.array([2**70])),
        (box, np.array([7.9])),
        (np.array([["a", "b", "c", "d"]]), qp1),
        (np.zeros((0, 4)), np.zeros(0)),
        (box, []),
    ]:
        add("rasterize_boxes", 100, 60, 16, boxes, qps, 30)
    for bg in (-1, 256, 2**70):
        add("rasterize_boxes", 100, 60, 16, box, qp1, bg)

    # rasterize_masks
    m = np.zeros((2, 9, 11), np.uint8)
    m[0, 2:5, 3:9], m[1, 8, 10] = 1, 7
    for masks, qps in [
        (m, [10, 20]),
        (m[0], [5]),
        (m[:, :, ::2], [1, 2]),
        (m[:, ::-1], [1, 2]),
        (m.astype(np.float32) * np.nan, [1, 2]),
        (m.astype(np.int16) - 3, [1, 2]),
        (m.astype(bool), [1, 2]),
        (np.zeros((0, 4, 4)), []),
        (np.zeros((2, 0, 4)), [1, 2]),
        (m, [1]),
        (m, [1, 300]),
        (m[0, 0], [1]),
        (m[None], [1, 2]),
        (m.astype(str), [1, 2]),
    ]:
        add("rasterize_masks", masks, qps, 4, 40)
    for ctu in (0, -3, BIG, 2**63 - 1, HUGE, 2.0):
        add("rasterize_masks", m, [1, 2], ctu, 40)

    # qpm_bytes: header fields that do not fit, empty arrays with huge dimensions
    q = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    for maps, ctu in [
        (q, 64),
        (q, 0),
        (q, -1),
        (q, 65536),
        (q, HUGE),
        (q, 16.0),
        (np.zeros((0, 0, 0), np.uint8), 64),
        (np.zeros((2, 70000, 0), np.uint8), 64),
        (np.zeros((2**33, 0, 0), np.uint8), 64),
        (q.astype(np.float32), 64),
        (q.astype(bool), 64),
        (q[0, 0], 64),
        (q[None], 64),
        (q + 250, 64),
        (q - 1, 64),
        (q.astype(np.uint64) + 2**63, 64),
        (q.astype(np.int64) * 2**40, 64),
        (np.ascontiguousarray(q.transpose(0, 2, 1)), 64),
        (q[:, ::-1, ::2], 64),
    ]:
        add("qpm_bytes", maps, ctu)

    # qpm_first_above: the reported crash (bounds product overflows) and endless loop (size 0)
    buf = bytes(range(40, 100))
    for frames, fs in [
        (BIG, 4),
        (2**32, 2**32),
        (2**63 - 1, 2),
        (BIG, 0),
        (2**63 - 1, 0),
        (HUGE, 0),
        (1, 2**63 - 1),
        (-1, 4),
        (4, -1),
        (-BIG, -BIG),
        (0, 0),
        (0, BIG),
        (6, 10),
        (7, 10),
        (1, 60),
        (2, 30),
        (3.0, 4),
        ("2", 4),
    ]:
        add("qpm_first_above", buf, frames, fs, 60)
    for b in (
        b"",
        bytearray(buf),
        memoryview(buf)[::2],
        np.arange(30, dtype=np.int16),
        np.arange(30, dtype=np.int16).reshape(5, 6).T,
        "text",
        None,
        5,
    ):
        add("qpm_first_above", b, 3, 4, 60)
    for mq in (-1, -(2**70), 2**70, 255, 256, 59.5):
        add("qpm_first_above", buf, 6, 10, mq)

    # kvazaar_roi_bytes: empty arrays whose output size overflows, int32 header limits
    d = np.arange(-12, 12, dtype=np.int16).reshape(2, 3, 4)
    for deltas in (
        d,
        d * 20,
        d.astype(np.int8),
        d.astype(np.uint8),
        d.astype(np.float32),
        np.zeros((2**60, 4, 0), np.int8),
        np.zeros((1, 2**31, 0), np.int8),
        np.zeros((0, 5, 5), np.int8),
        np.zeros((3, 0, 7), np.int8),
        d[0, 0],
        d[:, ::-1],
        d.astype(np.uint64),
        d.astype(np.int64) - 2**40,
    ):
        add("kvazaar_roi_bytes", deltas)

    # block_offsets: huge ctu / picture size (output overflows), empty pictures, mismatches
    g = np.array([[20, 30], [40, 25]], np.int32)
    for kw in [
        dict(ctu=64, block=16),
        dict(ctu=64, block=16, height=100, width=70),
        dict(ctu=BIG, block=1, height=BIG, width=BIG),
        dict(ctu=2**63 - 1, block=1),
        dict(ctu=HUGE, block=16),
        dict(ctu=64, block=HUGE),
        dict(ctu=0, block=16),
        dict(ctu=64, block=0),
        dict(ctu=-64, block=16),
        dict(ctu=64.0, block=16),
        dict(ctu=64, block=16, height=0, width=0),
        dict(ctu=64, block=16, height=-5, width=70),
        dict(ctu=64, block=16, height=300, width=70),
        dict(ctu=3, block=16, height=6, width=5),
        dict(ctu=1, block=BIG, height=2, width=2),
        dict(ctu=64, block=16, height=HUGE, width=70),
    ]:
        add("block_offsets", g, 30, **kw)
    for grid, base in [
        (g[None].repeat(3, 0), [30, 31, 32]),
        (g[None].repeat(3, 0), [30, 31]),
        (g, np.nan),
        (g, "x"),
        (g.astype(np.int64) * 2**40, 0),
        (g.astype(np.float32), 0),
        (np.zeros((0, 2, 2), np.int32), []),
        (g[0], 0),
        (g[None, None], 0),
    ]:
        add("block_offsets", grid, base, ctu=64, block=16)

    # svtav1_roi_text: INT64_MIN frame numbers (an out-of-bounds read before), ranges, counts
    o = np.array([[[0, -8, 8, 16]], [[255, -255, 0, 0]]], np.int32)
    for offs, fn in [
        (o, None),
        (o, [-(2**63), 2**63 - 1]),
        (o, [0]),
        (o, [2**70, 0]),
        (o, [1.5, 2]),
        (o * 2, None),
        (np.arange(9).reshape(1, 1, 9), None),
        (np.array([[[300] + list(range(9))]]), None),
        (np.zeros((0, 4, 4), np.int32), []),
        (np.zeros((2, 0, 3), np.int32), None),
        (o.astype(np.int64) * 2**40, None),
        (o.astype(np.float64), None),
        (o[0, 0], None),
    ]:
        add("svtav1_roi_text", offs, fn)

    # csv_text: an empty grid row is still a line (a heap overflow before)
    for maps in (
        np.zeros((1, 100, 0), np.int32),
        np.zeros((3, 0, 5), np.int32),
        np.zeros((0, 2, 2), np.int8),
        np.array([[[-(2**31), 2**31 - 1]]], np.int64),
        np.array([[[2**40, -1]]], np.int64),
        np.array([[[2**63]]], np.uint64),
        q,
        q.astype(np.float32),
        q[:, ::-1],
    ):
        add("csv_text", maps)

    # pack_bits
    bits = (np.arange(37) % 3 == 0).astype(np.uint8)
    for arr in (
        bits,
        bits.astype(bool),
        bits.astype(np.float32),
        bits * 2,
        bits.reshape(1, 37)[:, ::2],
        np.zeros(0, np.uint8),
        np.zeros((0, 3), bool),
        np.uint8(1),
        np.zeros((1,) * 9, np.uint8),
        np.array([np.nan, 1.0]),
        bits.astype(object),
        bits.astype(str),
    ):
        add("pack_bits", arr)

    # unpack_bits_from: truncated / hostile headers, dimension products that overflow
    ok = _packed([3, 5], bytes([0xFF, 0x80]))
    for data, off in [
        (ok, 0),
        (ok[:-1], 0),
        (ok[:5], 0),
        (b"", 0),
        (b"\x00", 0),
        (b"\x09" + bytes(40), 0),
        (_packed([0xFFFFFFFF] * 8), 0),
        (_packed([0xFFFFFFFF] * 8, bytes(64)), 0),
        (_packed([0, 0xFFFFFFFF, 0xFFFFFFFF]), 0),
        (_packed([2**16, 2**16, 2**16, 2**16], bytes(9)), 0),
        (_packed([3], bytes([0xFF])), 0),
        (_packed([8], bytes([0xFF])), 0),
        (ok, -1),
        (ok, len(ok)),
        (ok, len(ok) + 1),
        (ok, HUGE),
        (ok, -HUGE),
        (ok, 1.0),
        (ok + ok, len(ok)),
        (memoryview(ok + ok)[::2], 0),
        (np.frombuffer(ok + b"\x00", np.int16), 0),
        ("text", 0),
        (None, 0),
    ]:
        add("unpack_bits_from", data, off)
    add("unpack_bits", ok + b"\x00")
    add("iter_unpack_bits", ok + ok[:-1])
    return cases


def _hostile_raw_cases() -> list[tuple[str, tuple]]:
    """Direct ``_native`` calls with what the facade would refuse: the C++ checks must hold."""
    u8 = np.arange(12, dtype=np.uint8).reshape(3, 4)
    box = np.array([[0, 0, 10, 10]], np.float32)
    q1 = np.array([20], np.uint8)
    m = np.ones((1, 5, 5), np.uint8)
    buf = bytes(range(40, 100))
    g = np.array([[[20, 30]]], np.int32)
    cases: list[tuple[str, tuple]] = [
        ("qpm_check", (buf, BIG, 4, 10)),
        ("qpm_check", (buf, 2**32, 2**32, 10)),  # the product wraps to 0
        ("qpm_check", (buf, 2**63 - 1, 3, 10)),
        ("qpm_check", (buf, 3, 2**63 - 1, 10)),
        ("qpm_check", (b"", BIG, 0, 10)),  # the endless loop
        ("qpm_check", (b"", 2**63 - 1, 0, -1)),
        ("qpm_check", (buf, -1, 4, 10)),
        ("qpm_check", (buf, 4, -1, 10)),
        ("qpm_check", (buf, -BIG, -BIG, 10)),
        ("qpm_check", (buf, HUGE, 1, 10)),
        ("qpm_check", (memoryview(buf)[::2], 1, 1, 10)),
        ("pool_ctu", (u8, 2**63 - 1, "min")),
        ("pool_ctu", (u8, 2**63 - 1, "mean")),
        ("pool_ctu", (u8.astype(np.float32), 2**63 - 1, "max")),
        ("pool_ctu", (u8, 0, "min")),
        ("pool_ctu", (u8, -BIG, "min")),
        ("pool_ctu", (u8[:, ::2], 2, "min")),
        ("pool_ctu", (u8.astype(np.int64), 2, "min")),
        ("rasterize_boxes", (BIG, BIG, 1, box, q1, 0)),
        ("rasterize_boxes", (2**63 - 1, 2**63 - 1, 1, box, q1, 0)),
        ("rasterize_boxes", (2**63 - 1, 1, 1, np.zeros((0, 4), np.float32), np.zeros(0, np.uint8), 0)),
        ("rasterize_boxes", (1, 2**63 - 1, 2**63 - 1, box, q1, 0)),
        ("rasterize_boxes", (-1, 5, 1, box, q1, 0)),
        ("rasterize_boxes", (5, 5, -1, box, q1, 0)),
        ("rasterize_boxes", (64, 64, 16, np.array([[-1e30, -1e30, 1e30, 1e30]], np.float32), q1, 0)),
        ("rasterize_boxes", (64, 64, 16, box, np.zeros(2, np.uint8), 0)),
        ("rasterize_masks", (m, q1, 2**63 - 1, 0)),
        ("rasterize_masks", (m, q1, 0, 0)),
        ("rasterize_masks", (m, np.zeros(3, np.uint8), 4, 0)),
        ("rasterize_masks", (m[:, :, ::2], q1, 2, 0)),
        ("rasterize_masks", (m[:, ::-1], q1, 2, 0)),
        ("qpm_encode", (np.zeros((2**33, 0, 0), np.int16), 64)),
        ("qpm_encode", (np.zeros((1, 70000, 0), np.int16), 64)),
        ("qpm_encode", (np.zeros((1, 2, 2), np.int16), -1)),
        ("qpm_encode", (np.zeros((1, 2, 2), np.int16), 2**40)),
        ("qpm_encode", (np.zeros((1, 2, 2), np.float32), 64)),
        ("qpm_encode", (np.zeros((1, 4, 4), np.int16)[:, ::2], 64)),
        ("kvazaar_roi", (np.zeros((2**60, 4, 0), np.int8),)),
        ("kvazaar_roi", (np.zeros((1, 2**31, 0), np.int8),)),
        ("kvazaar_roi", (np.zeros((2**40, 0, 2**20), np.int8),)),
        ("kvazaar_roi", (np.full((1, 2, 2), 200, np.int16),)),
        ("block_offsets", (g, np.zeros(1), BIG, 1, BIG, BIG)),
        ("block_offsets", (g, np.zeros(1), 2**63 - 1, 1, 2**63 - 1, 2**63 - 1)),
        ("block_offsets", (g, np.zeros(1), 64, 2**63 - 1, 64, 128)),
        ("block_offsets", (g, np.zeros(1), 64, 16, 640, 640)),  # grid does not cover the picture
        ("block_offsets", (g, np.zeros(1), 64, 16, 0, 0)),
        ("block_offsets", (g, np.zeros(2), 64, 16, 64, 128)),
        ("block_offsets", (np.zeros((0, 2**20, 2**20), np.int32), np.zeros(0), 1, 1, 2**20, 2**20)),
        ("svtav1_roi", (np.zeros((1, 1, 2), np.int32), np.array([-(2**63)]))),
        ("svtav1_roi", (np.zeros((2, 1, 2), np.int32), np.array([0]))),
        ("svtav1_roi", (np.zeros((0, 2**30, 2**30), np.int32), np.zeros(0, np.int64))),
        ("svtav1_roi", (np.arange(20, dtype=np.int32).reshape(1, 2, 10), np.array([0]))),
        ("csv", (np.zeros((1, 100, 0), np.int32),)),
        ("csv", (np.zeros((2, 2**20, 0), np.int32),)),
        ("csv", (np.full((1, 3, 3), -(2**31), np.int32),)),
        ("pack_bits", (np.zeros((1,) * 9, np.uint8),)),
        ("pack_bits", (np.zeros((4, 4), np.uint8)[:, ::2],)),
        ("pack_bits", (np.full(9, 2, np.uint8),)),
        ("unpack_bits", (_packed([0xFFFFFFFF] * 8, bytes(64)), 0)),
        ("unpack_bits", (_packed([0xFFFFFFFF] * 8), 0)),
        ("unpack_bits", (b"\x01\xff", 0)),
        ("unpack_bits", (b"\x01", 0)),
        ("unpack_bits", (buf, 2**63 - 1)),
        ("unpack_bits", (buf, -1)),
        ("unpack_bits", (buf, HUGE)),
    ]
    # Annex-B parsing on noise and on mutilated start-code soup: no crash, clean errors only.
    rng = np.random.default_rng(7)
    uuid = bytes(range(16))
    for k in range(60):
        n = int(rng.integers(0, 80))
        data = rng.integers(0, 4 if k % 2 else 256, n, dtype=np.uint8).tobytes()
        if k % 3 == 0:
            data = b"\x00\x00\x01" + data
        for codec in ("avc", "hevc", "vvc"):
            cases += [
                ("split_nals", (data, codec)),
                ("access_units", (data, codec)),
                ("extract_sei", (data, codec, uuid)),
                ("insert_sei", (data, [b"x"] * (k % 3), codec, uuid)),
            ]
        cases += [("escape_rbsp", (data,)), ("unescape_rbsp", (data,))]
    cases += [
        ("split_nals", (b"\x00\x00\x01\x65", "mpeg2")),
        ("extract_sei", (b"\x00\x00\x01\x06", "avc", b"short")),
        ("insert_sei", (b"\x00\x00\x01\x65\x88", [None, b"a"], "avc", uuid)),
    ]
    return cases


def _encoder_cases() -> list[tuple[str, tuple]]:
    """The x264/x265 drivers with hostile QP arguments (cell size, base QP beyond int)."""
    out: list[tuple[str, tuple]] = []
    for name in ("X264Encoder", "X265Encoder"):
        for grid, base, ctu in [
            (np.full((1, 1), 30), 2**70, 64),
            (np.full((1, 1), 30), -(2**70), 64),
            (np.full((1, 1), 30), None, 0),
            (np.full((1, 1), 30), None, -BIG),
            (np.full((1, 1), 30), None, 2**63 - 1),
            (np.full((1, 1), 30), None, HUGE),
            (np.full((4, 4), 30), None, 16),
            (np.full((4, 4), 30), None, 64),
            (np.zeros((0, 0), np.int32), None, 64),
            (None, 2**40, 64),
        ]:
            out.append((name, (grid, base, ctu)))
    return out


def _run_encoder_case(name: str, grid: Any, base: Any, ctu: Any) -> None:
    enc = getattr(native._native, name)(64, 64, 25, 1, 8, "ultrafast", {})
    y = np.full((64, 64), 100, np.uint8)
    c = np.full((32, 32), 128, np.uint8)
    enc.encode(y, c, c, grid, base, ctu)
    enc.flush()


def _child() -> int:
    """Run every hostile case; one line per case, flushed first so a crash names its case."""
    failures = 0
    native._native = _Counting(native._native)  # type: ignore[assignment]
    for i, (name, args, kwargs) in enumerate(_hostile_facade_cases()):
        print(f"start facade {i} {name}", flush=True)
        diff = _both(name, args, kwargs)
        if diff:
            failures += 1
            print(f"MISMATCH facade {i}: {diff}", flush=True)
    calls = native._native.calls  # type: ignore[attr-defined]
    raw = native._native._mod  # type: ignore[attr-defined]
    cases = _hostile_raw_cases()
    if getattr(raw, "X264_AVAILABLE", False) or getattr(raw, "X265_AVAILABLE", False):
        cases += [(n, a) for n, a in _encoder_cases() if hasattr(raw, n)]
    for i, (name, args) in enumerate(cases):
        print(f"start raw {i} {name}", flush=True)
        fn = _run_encoder_case if name.endswith("Encoder") else getattr(raw, name)
        full = (name, *args) if name.endswith("Encoder") else args
        try:
            fn(*full)
        except (ValueError, TypeError, MemoryError):  # FormatError is a ValueError
            pass
        except Exception as e:  # noqa: BLE001 - an unclean error is the finding
            failures += 1
            print(f"UNCLEAN raw {i} {name}: {type(e).__name__}: {e}", flush=True)
    print("native calls " + " ".join(f"{k}={v}" for k, v in sorted(calls.items())), flush=True)
    print(f"done {failures}", flush=True)
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------
# Tests


@needs_native
def test_hostile_arguments_in_a_child_process():
    env = dict(os.environ)
    env.pop("VCMTOOL_NO_NATIVE", None)
    try:
        # A passing run takes about a second; the timeout only catches an endless loop.
        r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired as e:  # an endless loop in a native entry point
        out = e.stdout or b""  # bytes even with text=True (the child was killed mid-stream)
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(f"fuzz child hung; last case started: {out.strip().splitlines()[-1:]}")
    lines = r.stdout.strip().splitlines()
    if r.returncode < 0:  # killed by a signal (SIGSEGV, SIGABRT, ...): the last case started did it
        pytest.fail(f"fuzz child died with signal {-r.returncode} in: {lines[-1:]}\n{r.stderr[-2000:]}")
    bad = [ln for ln in lines if ln.startswith(("MISMATCH", "UNCLEAN"))]
    assert not bad, "\n".join(bad)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert lines[-1] == "done 0"
    # The facade really ran the C++ code for every function with a twin.
    counts = dict(kv.split("=") for kv in lines[-2].removeprefix("native calls ").split())
    for fn in TWINNED:
        assert int(counts.get(fn, 0)) > 0, (fn, counts)


@pytest.fixture
def counting(monkeypatch):
    proxy = _Counting(native._native)
    monkeypatch.setattr(native, "_native", proxy)
    return proxy


def _rand_ints(rng: np.random.Generator, shape: tuple, lo: int, hi: int) -> np.ndarray:
    dtype = rng.choice([np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.uint32])
    info = np.iinfo(dtype)
    return rng.integers(max(lo, info.min), min(hi, info.max) + 1, shape).astype(dtype)


def _random_cases(rng: np.random.Generator) -> Iterator[tuple[str, tuple, dict]]:
    """Mostly valid random calls with a sprinkle of bad values (sizes 0..~40)."""

    def dim(hi: int = 40) -> int:
        return int(rng.integers(0, hi)) if rng.random() < 0.9 else 0

    def ctu() -> int:
        return (
            int(rng.choice([1, 2, 3, 7, 8, 16, 64, 1000, 2**40]))
            if rng.random() < 0.95
            else int(rng.integers(-2, 1))
        )

    h, w = dim(), dim()
    kind = rng.choice(["u8", "f32", "bool", "i16"])
    pm = {
        "u8": lambda: rng.integers(0, 256, (h, w)).astype(np.uint8),
        "f32": lambda: np.where(rng.random((h, w)) < 0.05, np.nan, rng.normal(0, 50, (h, w))).astype(
            np.float32
        ),
        "bool": lambda: rng.random((h, w)) < 0.5,
        "i16": lambda: rng.integers(-300, 300, (h, w)).astype(np.int16),
    }[kind]()
    if rng.random() < 0.3 and w > 1:
        pm = pm[:, ::2]
    yield "pool_ctu", (pm, ctu(), str(rng.choice(["min", "max", "mean"]))), {}

    n = int(rng.integers(0, 6))
    boxes = rng.uniform(-20, max(h, w, 1) + 20, (n, 4))
    boxes[:, 2:] += boxes[:, :2] * rng.random() * 0.2
    qps = rng.integers(0, 52, n) if rng.random() < 0.95 else rng.integers(-5, 300, n)
    yield "rasterize_boxes", (h, w, ctu(), boxes, qps, int(rng.integers(0, 52))), {}

    masks = rng.random((n, h, w)) < 0.05
    if rng.random() < 0.3:
        masks = masks.astype(rng.choice([np.uint8, np.int16, np.float32]))
    yield "rasterize_masks", (masks, rng.integers(0, 52, n), ctu(), int(rng.integers(0, 52))), {}

    f, gh, gw = dim(5), dim(12), dim(12)
    maps = _rand_ints(rng, (f, gh, gw), -2 if rng.random() < 0.1 else 0, 255 if rng.random() < 0.9 else 300)
    yield "qpm_bytes", (maps, int(rng.choice([16, 64, 0, 65535]))), {}
    yield "csv_text", (maps,), {}
    yield "kvazaar_roi_bytes", (_rand_ints(rng, (f, gh, gw), -130, 130),), {}

    buf = rng.integers(0, 70, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
    fs = dim(30)
    frames = int(rng.integers(0, len(buf) // fs + 2)) if fs else int(rng.integers(0, 5))
    yield "qpm_first_above", (buf, frames, fs, int(rng.integers(-2, 70))), {}

    c, blk = int(rng.choice([1, 3, 8, 16, 32, 64])), int(rng.choice([1, 4, 16, 33]))
    ph, pw = max(1, dim(130)), max(1, dim(130))
    grid = _rand_ints(rng, (f, -(-ph // c), -(-pw // c)), 0, 63)
    base = rng.uniform(0, 51, f) if rng.random() < 0.8 else float(rng.uniform(0, 51))
    yield "block_offsets", (grid, base), {"ctu": c, "block": blk, "height": ph, "width": pw}

    k = int(rng.integers(1, 11))
    levels = rng.integers(-255, 256, k) if rng.random() < 0.9 else rng.integers(-300, 300, k)
    offs = rng.choice(levels, (f, gh, gw))
    fn = rng.integers(-(2**40), 2**40, f) if rng.random() < 0.5 else None
    yield "svtav1_roi_text", (offs, fn), {}

    shape = tuple(int(rng.integers(0, 6)) for _ in range(int(rng.integers(1, 5))))
    arr = (rng.random(shape) < 0.5).astype(rng.choice([np.uint8, bool, np.float32, np.int64]))
    if rng.random() < 0.05 and arr.size:
        arr.flat[int(rng.integers(0, arr.size))] = 2
    yield "pack_bits", (arr,), {}

    rec = pack_bits((rng.random(shape) < 0.5).astype(np.uint8)) * int(rng.integers(1, 3))
    cut = bytearray(rec[: int(rng.integers(0, len(rec) + 1))] if rng.random() < 0.3 else rec)
    if cut and rng.random() < 0.3:
        cut[int(rng.integers(0, len(cut)))] = int(rng.integers(0, 256))
    yield "unpack_bits_from", (bytes(cut), int(rng.integers(0, 3)) if rng.random() < 0.2 else 0), {}
    yield "iter_unpack_bits", (bytes(cut),), {}


@needs_native
def test_random_calls_native_equals_numpy(counting):
    rng = np.random.default_rng(2024)
    diffs, per_fn = [], collections.Counter()
    for _ in range(250):
        for name, args, kwargs in _random_cases(rng):
            diff = _both(name, args, kwargs)
            per_fn[name] += 1
            if diff:
                diffs.append(diff)
    assert not diffs, "\n".join(diffs[:10])
    for fn in TWINNED:
        assert counting.calls[fn] > 20, (fn, counting.calls)


def test_qpm_first_above_overflowing_counts_are_refused():
    """The reported bug, on whichever path is active (also without the extension)."""
    buf = bytes(64)
    with pytest.raises(ValueError, match="shorter"):
        qpm_first_above(buf, 2**32, 2**32, 51)  # product wraps to 0 in 64 bits
    with pytest.raises(ValueError, match="shorter"):
        qpm_first_above(buf, BIG, 4, 51)
    with pytest.raises(ValueError, match=">= 0"):
        qpm_first_above(buf, -1, 4, 51)
    assert qpm_first_above(buf, 2**63 - 1, 0, 51) == (-1, 0)  # no QPs: nothing above, no loop
    assert qpm_first_above(bytes([1, 2, 60, 3]), 2, 2, 51) == (1, 60)


if __name__ == "__main__":
    sys.exit(_child())
