"""Facade over the C++ extension ``vcmtool._native`` with pure-numpy fallbacks.

Callers import from here, never from ``_native`` directly, so vcmtool runs (slower) when the
extension did not build. ``NATIVE`` tells whether the fast path is active; ``vcmtool doctor``
reports it (``native_status()`` gives the details, including the x265/x264 drivers).

Every function here has a numpy/pure-Python version (``*_numpy``) with the same results and the
same error messages; the tests hold the two against each other. Malformed *input data* (files,
streams) raises :class:`vcmtool.errors.InputError`; bad arguments raise ``ValueError``.

Sizes and counts are validated here, once, before either path runs (``_count``,
``_check_size``): both paths then refuse the same arguments with the same ``ValueError``, and
the C++ code (which checks again, overflow-safe) never sees a size whose product wraps.
tests/test_native_fuzz.py holds both paths against each other on random and hostile arguments.
"""

from __future__ import annotations

import operator
import os
import struct
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vcmtool.errors import EncoderError, InputError

if os.environ.get("VCMTOOL_NO_NATIVE"):  # force the numpy paths (testing, debugging)
    _native = None
    NATIVE = False
    NATIVE_ERROR = "disabled by VCMTOOL_NO_NATIVE"
else:
    try:  # pragma: no cover - depends on the build
        from vcmtool import _native  # type: ignore[attr-defined]

        NATIVE = True
        NATIVE_ERROR = ""
    except ImportError as e:  # pragma: no cover
        _native = None
        NATIVE = False
        NATIVE_ERROR = f"vcmtool._native did not build or load ({e}); numpy fallbacks in use"


def _has(name: str) -> bool:
    return NATIVE and hasattr(_native, name)


def _format_error(e: Exception, prefix: str = "") -> InputError:
    return InputError(f"{prefix}{e}")


_INT64_MAX = 2**63 - 1


def _count(value: Any, what: str, minimum: int = 0) -> int:
    """An integer argument (Python or numpy integer) in ``minimum..2**63-1``, else ``ValueError``.

    Floats are refused rather than truncated: the native path would truncate where numpy would
    fail later, so the two paths would disagree. The upper bound is what the C++ side can take
    (int64); beyond it pybind11 raises TypeError where numpy might try to allocate.
    """
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {v}")
    if v > _INT64_MAX:
        raise ValueError(f"{what} {v} does not fit in 64 bits")
    return v


def _check_size(nbytes: int, what: str) -> None:
    """Refuse outputs whose size does not fit in a signed 64-bit (``Py_ssize_t``) count.

    Python integers do not overflow, so this is the exact test the C++ code makes with
    ``__builtin_mul_overflow``; sizes below it that memory cannot hold fail with MemoryError.
    """
    if nbytes > sys.maxsize:
        raise ValueError(f"{what}: size overflows 64 bits ({nbytes} bytes)")


def _byte_buffer(data: Any) -> memoryview:
    """A flat byte view of any C-contiguous buffer (bytes, bytearray, memoryview, arrays).

    Both paths read this one view, so a non-buffer (TypeError) or a strided buffer
    (ValueError) fails the same way on both.
    """
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("buffer must be C-contiguous")
    if mv.ndim == 1 and mv.format == "B":
        return mv
    # cast() refuses shapes with a zero: an empty buffer of any shape is just no bytes.
    return mv.cast("B") if mv.nbytes else memoryview(b"")


# ---------------------------------------------------------------------------------------------
# CTU grid pooling and rasterization


def grid_shape(height: int, width: int, ctu: int) -> tuple[int, int]:
    """CTU grid rows x cols; partial CTUs at the right/bottom edge count."""
    return -(-height // ctu), -(-width // ctu)


_POOL_MODES = ("min", "max", "mean")


def _check_pool_args(pixmap: np.ndarray, ctu: int, mode: str) -> int:
    if not isinstance(mode, str) or mode not in _POOL_MODES:
        raise ValueError(f"pool mode {mode!r}; use 'min', 'max' or 'mean'")
    ctu = _count(ctu, "ctu", 1)
    if np.ndim(pixmap) != 2:
        raise ValueError(f"pixel map must be 2-D, got shape {np.shape(pixmap)}")
    return ctu


def pool_ctu_numpy(pixmap: np.ndarray, ctu: int, mode: str = "min") -> np.ndarray:
    ctu = _check_pool_args(pixmap, ctu, mode)
    h, w = pixmap.shape
    # A CTU larger than the map pools the same as one the map's size; without the clamp the
    # padding below would be ctu x ctu (terabytes for a huge ctu the native path handles).
    ctu = min(ctu, max(h, w, 1))
    gh, gw = grid_shape(h, w, ctu)
    ph, pw = gh * ctu - h, gw * ctu - w
    if mode == "mean":
        a = pixmap.astype(np.float64)
        s = np.pad(a, ((0, ph), (0, pw))).reshape(gh, ctu, gw, ctu).sum(axis=(1, 3))
        ones = np.pad(np.ones((h, w)), ((0, ph), (0, pw))).reshape(gh, ctu, gw, ctu).sum(axis=(1, 3))
        with np.errstate(invalid="ignore"):
            return (s / ones).astype(np.float32)
    # Pad with a value that never wins, so partial edge CTUs pool only real pixels.
    if np.issubdtype(pixmap.dtype, np.integer):
        info = np.iinfo(pixmap.dtype)
        fill = info.max if mode == "min" else info.min
    elif pixmap.dtype == bool:
        fill = mode == "min"
    else:
        fill = np.inf if mode == "min" else -np.inf
    a = np.pad(pixmap, ((0, ph), (0, pw)), constant_values=fill).reshape(gh, ctu, gw, ctu)
    return a.min(axis=(1, 3)) if mode == "min" else a.max(axis=(1, 3))


def _rows_contiguous(a: np.ndarray) -> np.ndarray:
    if a.shape[1] > 1 and a.strides[1] != a.itemsize or a.strides[0] < 0:
        return np.ascontiguousarray(a)
    return a


def pool_ctu(pixmap: np.ndarray, ctu: int, mode: str = "min") -> np.ndarray:
    """Pool a pixel map to the CTU grid: min, max or mean (mean is float32).

    Native for uint8 and float32 (float min/max propagate NaN like numpy); other dtypes use
    numpy. Partial CTUs at the right/bottom edge pool only their real pixels.
    """
    pixmap = np.asarray(pixmap)
    ctu = _check_pool_args(pixmap, ctu, mode)
    if pixmap.dtype == bool and mode != "mean":
        return pool_ctu(pixmap.view(np.uint8), ctu, mode).astype(bool)
    if _has("pool_ctu") and pixmap.dtype in (np.uint8, np.float32) and pixmap.size:
        return _native.pool_ctu(_rows_contiguous(pixmap), ctu, mode)
    return pool_ctu_numpy(pixmap, ctu, mode)


def _grid_args(height: Any, width: Any, ctu: Any) -> tuple[int, int, int]:
    """Picture size and ctu given as plain numbers: the grid they ask for must be addressable."""
    h, w, c = _count(height, "height"), _count(width, "width"), _count(ctu, "ctu", 1)
    gh, gw = grid_shape(h, w, c)
    _check_size(gh * gw, "CTU grid")
    return h, w, c


def _box_args(boxes: Any, qps: Any, background: int) -> tuple[np.ndarray, np.ndarray]:
    b = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
    q = np.asarray(qps).reshape(-1)
    if len(q) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(q)} QPs")
    if np.isnan(b).any():
        raise ValueError("box coordinates must not be NaN")
    if len(q) and (q.min() < 0 or q.max() > 255):
        raise ValueError("box QPs must lie in 0..255")
    if not 0 <= int(background) <= 255:
        raise ValueError("background QP must lie in 0..255")
    return b, np.ascontiguousarray(q, dtype=np.uint8)


def rasterize_boxes_numpy(
    height: int, width: int, ctu: int, boxes: np.ndarray, qps: np.ndarray, background: int
) -> np.ndarray:
    """Grid of QPs: each CTU takes the min QP of the boxes touching it, else ``background``."""
    gh, gw = grid_shape(height, width, ctu)
    grid = np.full((gh, gw), background, dtype=np.uint8)
    for (x0, y0, x1, y1), q in zip(np.asarray(boxes, dtype=np.float64), qps, strict=True):
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        if x1 <= x0 or y1 <= y0:
            continue
        c0, r0 = int(x0 // ctu), int(y0 // ctu)
        c1, r1 = int(np.ceil(x1 / ctu)), int(np.ceil(y1 / ctu))
        sub = grid[r0:r1, c0:c1]
        np.minimum(sub, np.uint8(q), out=sub)
    return grid


def rasterize_boxes(
    height: int, width: int, ctu: int, boxes: np.ndarray, qps: np.ndarray, background: int
) -> np.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` in pixels with one QP each onto the CTU grid (uint8).

    A CTU touched by several boxes takes the smallest QP; untouched CTUs get ``background``.
    """
    height, width, ctu = _grid_args(height, width, ctu)
    b, q = _box_args(boxes, qps, background)
    if _has("rasterize_boxes"):
        return _native.rasterize_boxes(height, width, ctu, b, q, int(background))
    return rasterize_boxes_numpy(height, width, ctu, b, q, int(background))


def _mask_args(masks: Any, qps: Any, background: int) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"masks must be (n, height, width), got shape {m.shape}")
    q = np.asarray(qps).reshape(-1)
    if len(q) != len(m):
        raise ValueError(f"{len(m)} masks but {len(q)} QPs")
    if len(q) and (q.min() < 0 or q.max() > 255):
        raise ValueError("mask QPs must lie in 0..255")
    if not 0 <= int(background) <= 255:
        raise ValueError("background QP must lie in 0..255")
    return m, np.ascontiguousarray(q, dtype=np.uint8)


def rasterize_masks_numpy(masks: np.ndarray, qps: np.ndarray, ctu: int, background: int) -> np.ndarray:
    ctu = _count(ctu, "ctu", 1)
    m, q = _mask_args(masks, qps, background)
    gh, gw = grid_shape(m.shape[1], m.shape[2], ctu)
    grid = np.full((gh, gw), background, dtype=np.uint8)
    for mask, qp in zip(m, q, strict=True):
        hit = pool_ctu_numpy((mask != 0).view(np.uint8), ctu, "max") > 0
        grid[hit] = np.minimum(grid[hit], qp)
    return grid


def rasterize_masks(masks: np.ndarray, qps: np.ndarray, ctu: int, background: int) -> np.ndarray:
    """Instance masks ``(n, H, W)`` (nonzero = inside) with one QP each onto the CTU grid.

    A CTU holding any pixel of a mask takes min(its value, that mask's QP).
    """
    ctu = _count(ctu, "ctu", 1)
    m, q = _mask_args(masks, qps, background)
    if _has("rasterize_masks") and m.size:
        if m.dtype not in (np.uint8, np.bool_):
            m = m != 0
        if m.shape[2] > 1 and m.strides[2] != 1:
            m = np.ascontiguousarray(m)
        return _native.rasterize_masks(m, q, ctu, int(background))
    return rasterize_masks_numpy(m, q, ctu, background)


# ---------------------------------------------------------------------------------------------
# QP-map serialization

QPM_HEADER = struct.Struct("<4sHHHI")


def _int_maps(maps: Any, what: str = "QP maps") -> np.ndarray:
    a = np.asarray(maps)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{what} must be (frames, rows, cols), got shape {a.shape}")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got {a.dtype}")
    return a


def _qpm_args(maps: Any, ctu: Any) -> tuple[np.ndarray, int]:
    a = _int_maps(maps)
    f, gh, gw = a.shape
    ctu = _count(ctu, "ctu")
    # The header fields are uint16/uint32: a larger value would not fit (struct.error in the
    # numpy path, a silent wrap if unchecked), so both paths refuse it here.
    if ctu > 0xFFFF or gw > 0xFFFF or gh > 0xFFFF or f > 0xFFFFFFFF:
        raise ValueError("ctu, grid or frame count too large for a .qpm header")
    return a, ctu


def qpm_bytes_numpy(maps: np.ndarray, ctu: int) -> bytes:
    a, ctu = _qpm_args(maps, ctu)
    f, gh, gw = a.shape
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError("QPs must fit in uint8")
    return QPM_HEADER.pack(b"QPM1", ctu, gw, gh, f) + a.astype(np.uint8).tobytes()


def qpm_bytes(maps: np.ndarray, ctu: int) -> bytes:
    """A whole ``.qpm`` file (header + frames) from (frames, rows, cols) integer QPs."""
    a, ctu = _qpm_args(maps, ctu)
    if _has("qpm_encode") and a.dtype not in (np.uint32, np.uint64):
        return _native.qpm_encode(np.ascontiguousarray(a), ctu)
    return qpm_bytes_numpy(a, ctu)


def _qpm_check_args(buf: Any, frames: Any, frame_size: Any, max_qp: Any) -> tuple[memoryview, int, int, int]:
    mv = _byte_buffer(buf)
    frames, frame_size = _count(frames, "frame count"), _count(frame_size, "frame size")
    # Python integers do not wrap: this is the exact bound the C++ code tests by division.
    if frames * frame_size > mv.nbytes:
        raise ValueError(f"buffer of {mv.nbytes} bytes is shorter than {frames} frames of {frame_size} bytes")
    # QPs are uint8: clamping the limit to -1..255 changes no answer and keeps it in C int range.
    try:
        max_qp = operator.index(max_qp)
    except TypeError:
        raise ValueError(f"max_qp must be an integer, got {max_qp!r}") from None
    return mv, frames, frame_size, min(max(max_qp, -1), 255)


def qpm_first_above_numpy(buf: bytes, frames: int, frame_size: int, max_qp: int) -> tuple[int, int]:
    mv, frames, frame_size, max_qp = _qpm_check_args(buf, frames, frame_size, max_qp)
    if not frames or not frame_size:  # no QPs at all, so none above the limit
        return -1, 0
    a = np.frombuffer(mv, dtype=np.uint8, count=frames * frame_size).reshape(frames, frame_size)
    m = a.max(axis=1)
    bad = np.flatnonzero(m > max_qp)
    return (int(bad[0]), int(m[bad[0]])) if len(bad) else (-1, 0)


def qpm_first_above(buf: bytes, frames: int, frame_size: int, max_qp: int) -> tuple[int, int]:
    """Index of the first frame with a QP above ``max_qp`` and that frame's maximum; (-1, 0).

    ``buf`` holds at least ``frames`` x ``frame_size`` bytes (``ValueError`` otherwise, also for
    negative counts); frames of size 0 hold no QP, so (-1, 0).
    """
    mv, frames, frame_size, max_qp = _qpm_check_args(buf, frames, frame_size, max_qp)
    if _has("qpm_check"):
        return _native.qpm_check(mv, frames, frame_size, max_qp)
    return qpm_first_above_numpy(mv, frames, frame_size, max_qp)


def _kvazaar_args(deltas: Any) -> np.ndarray:
    d = _int_maps(deltas, "kvazaar ROI deltas")
    f, gh, gw = d.shape
    # An empty array can have huge dimensions: the int32 header and the output size are checked.
    if gw > 0x7FFFFFFF or gh > 0x7FFFFFFF:
        raise ValueError("kvazaar ROI grid too large for its int32 header")
    _check_size(f * (8 + gh * gw), "kvazaar ROI")
    return d


def kvazaar_roi_bytes_numpy(deltas: np.ndarray) -> bytes:
    d = _kvazaar_args(deltas)
    if d.size and (d.min() < -128 or d.max() > 127):
        bad = d[(d < -128) | (d > 127)].flat[0]
        raise ValueError(f"kvazaar ROI delta {int(bad)} does not fit in int8")
    f, gh, gw = d.shape
    # One (frames, 8 + cells) array, not a join over frames: many frames of an empty grid are
    # one allocation (or one MemoryError), not a Python loop.
    rec = np.empty((f, 8 + gh * gw), np.uint8)
    rec[:, :8] = np.frombuffer(struct.pack("<ii", gw, gh), np.uint8)
    rec[:, 8:] = d.reshape(f, gh * gw).astype(np.int8).view(np.uint8)
    return rec.tobytes()


def kvazaar_roi_bytes(deltas: np.ndarray) -> bytes:
    """kvazaar's binary ``roi=`` file from (frames, rows, cols) QP deltas.

    Each frame is int32 LE width, int32 LE height, then width*height int8 deltas in raster
    order (verified with ffmpeg's libkvazaar: a single header for all frames makes kvazaar
    assert on frame 2; kvazaar reads one record per frame and loops at EOF).
    """
    d = _kvazaar_args(deltas)
    if _has("kvazaar_roi") and d.dtype.kind in "iu" and d.dtype not in (np.uint32, np.uint64):
        return _native.kvazaar_roi(np.ascontiguousarray(d))
    return kvazaar_roi_bytes_numpy(d)


def _offset_args(
    qp_map: Any, base: Any, ctu: int, block: int, height: int | None, width: int | None
) -> tuple[np.ndarray, np.ndarray, int, int, bool]:
    g = np.asarray(qp_map)
    single = g.ndim == 2
    g = _int_maps(g, "QP map")
    f, gh, gw = g.shape
    ctu, block = _count(ctu, "ctu", 1), _count(block, "block", 1)
    h = _count(gh * ctu if height is None else height, "height")
    w = _count(gw * ctu if width is None else width, "width")
    if h < 1 or w < 1:  # an empty picture has no blocks to set (the native path refuses it too)
        raise ValueError(f"bad picture size {w}x{h}")
    if grid_shape(h, w, ctu) != (gh, gw):
        raise ValueError(f"grid {gw}x{gh} does not cover {w}x{h} with ctu {ctu}")
    _check_size(f * (-(-h // block)) * (-(-w // block)) * 4, "block offsets")
    b = np.asarray(base, dtype=np.float64).reshape(-1)
    if b.shape != (f,):
        b = np.broadcast_to(b, (f,)).copy()
    return g, b, ctu, block, h, w, single


def block_offsets_numpy(
    qp_map: np.ndarray,
    base: Any,
    *,
    ctu: int = 64,
    block: int = 16,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    g, b, ctu, block, h, w, single = _offset_args(qp_map, base, ctu, block, height, width)
    f, gh, gw = g.shape
    bh, bw = -(-h // block), -(-w // block)
    if not f:  # no frames: nothing to compute (the spans below could be huge)
        res = np.zeros((0, bh, bw), np.float32)
        return res[0] if single else res

    def spans(n_blocks: int, size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(n_blocks)
        lo = (i * block) // ctu
        hi = np.minimum(cells, -(-np.minimum(size, (i + 1) * block) // ctu))
        return lo, hi

    r0, r1 = spans(bh, h, gh)
    c0, c1 = spans(bw, w, gw)
    g64 = g.astype(np.int64)
    # Min over the (usually single) cells under each block: step through the widest span.
    rows = g64[:, r0]
    for k in range(1, int((r1 - r0).max()) if bh else 1):
        rows = np.minimum(rows, g64[:, np.minimum(r0 + k, r1 - 1)])
    out = rows[:, :, c0]
    for k in range(1, int((c1 - c0).max()) if bw else 1):
        out = np.minimum(out, rows[:, :, np.minimum(c0 + k, c1 - 1)])
    res = (out - b[:, None, None]).astype(np.float32)
    return res[0] if single else res


def block_offsets(
    qp_map: np.ndarray,
    base: Any,
    *,
    ctu: int = 64,
    block: int = 16,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Per-block float offsets ``CTU QP - base`` (x265 ``quantOffsets`` / x264 ``quant_offsets``).

    ``qp_map`` is (rows, cols) or (frames, rows, cols) absolute QPs on ``ctu`` cells; ``base``
    a scalar or one per frame. The result has one value per ``block`` x ``block`` pixels
    (``ceil(height/block)`` x ``ceil(width/block)``; height/width default to the full grid).
    Where a block spans several cells (ctu < block) it takes their minimum QP.
    """
    g, b, ctu, block, h, w, single = _offset_args(qp_map, base, ctu, block, height, width)
    if _has("block_offsets") and (
        g.dtype.itemsize < 4 or g.dtype == np.int32 or not g.size or (g.min() >= -(2**31) and g.max() < 2**31)
    ):
        res = _native.block_offsets(g, b, ctu, block, h, w)
        return res[0] if single else res
    return block_offsets_numpy(qp_map, base, ctu=ctu, block=block, height=height, width=width)


def x265_offsets(
    qp_map: np.ndarray,
    base: Any,
    *,
    ctu: int = 64,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """x265 ``quantOffsets``: one float per 16x16 block (all blocks of a CTU share its offset)."""
    return block_offsets(qp_map, base, ctu=ctu, block=16, height=height, width=width)


x264_offsets = x265_offsets  # x264 ``quant_offsets``: one per 16x16 macroblock, same layout


def _svt_args(offsets: Any, frame_numbers: Any) -> tuple[np.ndarray, np.ndarray]:
    o = _int_maps(offsets, "SVT-AV1 ROI offsets")
    if frame_numbers is None:
        return o, np.arange(len(o), dtype=np.int64)
    raw = np.asarray(frame_numbers).reshape(-1)
    if len(raw) != len(o):
        raise ValueError(f"{len(o)} maps but {len(raw)} frame numbers")
    # Integers within int64 only: a float would be truncated and a huge number wrapped (or an
    # OverflowError), silently naming the wrong frame. One per frame, so a Python loop is cheap.
    try:
        vals = [operator.index(x) for x in raw.tolist()]
    except TypeError:
        raise ValueError("SVT-AV1 frame numbers must be integers") from None
    if any(not -(2**63) <= v <= _INT64_MAX for v in vals):
        raise ValueError("SVT-AV1 frame number does not fit in 64 bits")
    return o, np.array(vals, dtype=np.int64)


def svtav1_roi_text_numpy(offsets: np.ndarray, frame_numbers: Sequence[int] | None = None) -> str:
    o, fn = _svt_args(offsets, frame_numbers)
    lines = []
    for i, (m, n) in enumerate(zip(o, fn, strict=True)):
        flat = m.reshape(-1)
        if flat.size and (flat.min() < -255 or flat.max() > 255):
            bad = flat[(flat < -255) | (flat > 255)][0]
            raise ValueError(f"SVT-AV1 ROI offset {int(bad)} (frame {i}) outside -255..255")
        if len(np.unique(flat)) > 8:
            raise ValueError(
                f"SVT-AV1 ROI map of frame {i} has more than 8 distinct offsets (AV1 has 8 segments)"
            )
        lines.append(" ".join([str(int(n)), *map(str, flat.tolist())]) + "\n")
    return "".join(lines)


def svtav1_roi_text(offsets: np.ndarray, frame_numbers: Sequence[int] | None = None) -> str:
    """SvtAv1EncApp ``--roi-map-file`` text: per frame ``"<frame> <off> <off> ...\\n"``.

    ``offsets`` are qindex offsets (-255..255) per 64x64 superblock in raster order, at most 8
    distinct values per frame (AV1 segments). ``frame_numbers`` default to 0, 1, 2, ...
    """
    o, fn = _svt_args(offsets, frame_numbers)
    if _has("svtav1_roi"):
        if (
            o.dtype.itemsize >= 4
            and o.dtype != np.int32
            and o.size
            and (o.min() < -(2**31) or o.max() >= 2**31)
        ):
            return svtav1_roi_text_numpy(o, fn)
        return _native.svtav1_roi(o, fn)
    return svtav1_roi_text_numpy(o, fn)


def csv_text_numpy(maps: np.ndarray) -> str:
    a = _int_maps(maps)
    return "\n".join("".join(",".join(map(str, row)) + "\n" for row in m.tolist()) for m in a)


def csv_text(maps: np.ndarray) -> str:
    """CSV of integer QP maps: comma-separated rows, a blank line between frames (the layout
    ``vcmtool.qpmap.qpm.load_map_file`` reads)."""
    a = _int_maps(maps)
    if _has("csv") and (
        a.dtype.itemsize < 4 or a.dtype == np.int32 or not a.size or (a.min() >= -(2**31) and a.max() < 2**31)
    ):
        return _native.csv(a)
    return csv_text_numpy(a)


# ---------------------------------------------------------------------------------------------
# Bit packing: framed {0,1} tensors

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


def pack_bits_numpy(arr: np.ndarray) -> bytes:
    a = _bits_input(arr)
    flat = a.reshape(-1)
    bad = np.flatnonzero(flat > 1)
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"pack_bits: value {int(flat[i])} at flat index {i} is not 0 or 1")
    head = struct.pack(f"<B{a.ndim}I", a.ndim, *a.shape)
    return head + np.packbits(flat, bitorder="big").tobytes()


def pack_bits(arr: np.ndarray) -> bytes:
    """Pack a {0,1} tensor (bool or any numeric dtype) into one framed record.

    Record: uint8 ndim (1..8), ndim x uint32 LE dims, then ceil(N/8) bytes of bits in C order,
    MSB first, zero padded. Records can be concatenated; ``iter_unpack_bits`` splits them.
    """
    a = _bits_input(arr)
    if _has("pack_bits"):
        return _native.pack_bits(a)
    return pack_bits_numpy(a)


def _unpack_args(data: Any, offset: Any) -> tuple[memoryview, int]:
    mv = _byte_buffer(data)
    try:
        offset = operator.index(offset)
    except TypeError:
        raise ValueError(f"offset must be an integer, got {offset!r}") from None
    if offset < 0 or offset > mv.nbytes:  # also offsets beyond int64, which C++ cannot take
        raise ValueError("offset outside the buffer")
    return mv, offset


def unpack_bits_from_numpy(data: bytes, offset: int = 0) -> tuple[np.ndarray, int]:
    mv, offset = _unpack_args(data, offset)
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


def unpack_bits_from(data: bytes, offset: int = 0) -> tuple[np.ndarray, int]:
    """Decode the record starting at ``offset``: (uint8 array of 0/1, offset after it)."""
    mv, offset = _unpack_args(data, offset)
    if _has("unpack_bits"):
        try:
            return _native.unpack_bits(mv, offset)
        except _native.FormatError as e:
            raise _format_error(e) from None
    return unpack_bits_from_numpy(mv, offset)


def unpack_bits(data: bytes) -> np.ndarray:
    """Inverse of :func:`pack_bits` for exactly one record (trailing bytes are an error)."""
    mv = _byte_buffer(data)
    arr, end = unpack_bits_from(mv, 0)
    if end != mv.nbytes:
        raise InputError(f"packed bits: {mv.nbytes - end} bytes after the record")
    return arr


def iter_unpack_bits(data: bytes) -> Iterator[np.ndarray]:
    """Decode concatenated records one by one."""
    mv = _byte_buffer(data)
    off, n = 0, mv.nbytes
    while off < n:
        arr, off = unpack_bits_from(mv, off)
        yield arr


# ---------------------------------------------------------------------------------------------
# Encoder drivers (libx265 / libx264 C APIs)


def _driver_reason(lib: str, flag: str) -> str:
    if not NATIVE:
        return f"the native extension vcmtool._native is not available ({NATIVE_ERROR})"
    if not getattr(_native, flag, False):
        return (
            f"vcmtool._native was built without {lib} (install {lib}-dev and pkg-config, "
            "then reinstall vcmtool)"
        )
    return ""


X265_REASON = _driver_reason("libx265", "X265_AVAILABLE")
X265_AVAILABLE = not X265_REASON
X264_REASON = _driver_reason("libx264", "X264_AVAILABLE")
X264_AVAILABLE = not X264_REASON


class _Driver:
    """Wraps ``_native.X265Encoder`` / ``X264Encoder``: errors become :class:`EncoderError`.

    ``encode(y, u, v, qp_grid=None, base_qp=None, ctu=64)`` takes 4:2:0 planes (uint8, or
    uint16 for bit_depth > 8) and optionally absolute QPs on ``ctu`` x ``ctu`` cells; it returns
    the Annex-B bytes the encoder produced for that call (possibly empty: lookahead), headers
    included with every keyframe. Without a grid and base the encoder's own rate control runs;
    with only ``base_qp`` the frame QP is forced. ``flush()`` drains the delayed frames.
    """

    _lib = ""
    _available = False
    _reason = ""
    _cls = ""

    def __init__(
        self,
        width: int,
        height: int,
        fps_num: int = 25,
        fps_den: int = 1,
        bit_depth: int = 8,
        preset: str = "medium",
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if not self._available:
            raise EncoderError(f"{self._lib} per-CTU driver unavailable: {self._reason}")
        p = {str(k): str(v) for k, v in (params or {}).items()}
        try:
            self._enc = getattr(_native, self._cls)(
                int(width), int(height), int(fps_num), int(fps_den), int(bit_depth), str(preset), p
            )
        except (ValueError, RuntimeError) as e:
            raise EncoderError(f"{self._lib}: {e}") from None

    def encode(
        self,
        y: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        qp_grid: np.ndarray | None = None,
        base_qp: int | None = None,
        ctu: int = 64,
    ) -> bytes:
        try:
            return self._enc.encode(y, u, v, qp_grid, base_qp, int(ctu))
        except RuntimeError as e:
            raise EncoderError(f"{self._lib}: {e}") from None

    def flush(self) -> bytes:
        try:
            return self._enc.flush()
        except RuntimeError as e:
            raise EncoderError(f"{self._lib}: {e}") from None

    def headers(self) -> bytes:
        return self._enc.headers()

    @property
    def frames_in(self) -> int:
        return self._enc.frames_in

    @property
    def frames_out(self) -> int:
        return self._enc.frames_out

    @property
    def last_base_qp(self) -> int:
        """Frame QP forced for the last frame (-1: encoder's rate control)."""
        return self._enc.last_base_qp


class X265Encoder(_Driver):
    """libx265 with absolute per-CTU QPs (docs/design.md, "x265 and x264": aq-mode 1, aq-strength 0.0001,
    cutree 0, qg-size 64, forced frame QP + per-16x16 quantOffsets).

    Defaults (overridable through ``params``, x265 option names): bframes=0 (low delay),
    frame-threads=1 (reproducible bytes), ctu=64, qg-size=64, log-level=error, info=0 (no
    2.3 KB version SEI); ``threads`` sets x265's worker pool. Fixed: aq-mode, aq-strength,
    cutree, annexb, repeat-headers, qp.
    """

    _lib, _available, _reason, _cls = "x265", X265_AVAILABLE, X265_REASON, "X265Encoder"


class X264Encoder(_Driver):
    """libx264 with absolute per-macroblock QPs expanded from the CTU grid (``i_qpplus1`` +
    ``quant_offsets``, aq-strength 0.0001, mbtree off).

    Defaults (overridable through ``params``, x264 option names): bframes=0, threads=1.
    Fixed: aq-mode, aq-strength, mbtree, annexb, repeat-headers, qp. 10-bit QPs use x264's
    0..63 scale.
    """

    _lib, _available, _reason, _cls = "x264", X264_AVAILABLE, X264_REASON, "X264Encoder"


def native_status() -> dict[str, Any]:
    """What ``vcmtool doctor`` shows about the native paths."""
    return {
        "native": NATIVE,
        "native_error": NATIVE_ERROR,
        "x265": {
            "available": X265_AVAILABLE,
            "detail": X265_REASON
            or f"libx265 {_native.X265_VERSION}, bit depths " + ",".join(map(str, _native.X265_BIT_DEPTHS)),
        },
        "x264": {
            "available": X264_AVAILABLE,
            "detail": X264_REASON or f"libx264 {_native.X264_VERSION}",
        },
    }
