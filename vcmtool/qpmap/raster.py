"""The CTU grid: pooling pixel maps onto it and rasterising boxes and instance masks.

A grid has ``ceil(H/ctu) x ceil(W/ctu)`` cells; partial CTUs at the right and bottom edges pool
only their real pixels. Each function checks its arguments once, then runs the native code
(``vcmtool._native``) or the numpy version, which give the same results and the same errors
(:mod:`vcmtool.native`; tests/test_native_fuzz.py holds them against each other).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcmtool import native


def grid_shape(height: int, width: int, ctu: int) -> tuple[int, int]:
    """CTU grid rows x cols; partial CTUs at the right/bottom edge count."""
    return -(-height // ctu), -(-width // ctu)


# ---------------------------------------------------------------------------------------------
# Pooling

_POOL_MODES = ("min", "max", "mean")


def _pool_args(pixmap: np.ndarray, ctu: Any, mode: Any) -> int:
    if not isinstance(mode, str) or mode not in _POOL_MODES:
        raise ValueError(f"pool mode {mode!r}; use 'min', 'max' or 'mean'")
    ctu = native.count_arg(ctu, "ctu", 1)
    if np.ndim(pixmap) != 2:
        raise ValueError(f"pixel map must be 2-D, got shape {np.shape(pixmap)}")
    return ctu


def _pool_numpy(pixmap: np.ndarray, ctu: int, mode: str) -> np.ndarray:
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


def _pool(pixmap: np.ndarray, ctu: int, mode: str) -> np.ndarray:
    if pixmap.dtype == bool and mode != "mean":
        return _pool(pixmap.view(np.uint8), ctu, mode).astype(bool)
    if native.has("pool_ctu") and pixmap.dtype in (np.uint8, np.float32) and pixmap.size:
        return native._native.pool_ctu(_rows_contiguous(pixmap), ctu, mode)
    return _pool_numpy(pixmap, ctu, mode)


def pool_ctu(pixmap: np.ndarray, ctu: int, mode: str = "min") -> np.ndarray:
    """Pool a pixel map to the CTU grid: min, max or mean (mean is float32).

    Native for uint8 and float32 (float min/max propagate NaN like numpy); other dtypes use
    numpy. Partial CTUs at the right/bottom edge pool only their real pixels.
    """
    pixmap = np.asarray(pixmap)
    return _pool(pixmap, _pool_args(pixmap, ctu, mode), mode)


# ---------------------------------------------------------------------------------------------
# Rasterisation


def _box_args(boxes: Any, qps: Any, background: Any) -> tuple[np.ndarray, np.ndarray]:
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


def _mask_args(masks: Any, qps: Any, background: Any) -> tuple[np.ndarray, np.ndarray]:
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


def _rasterize_boxes_numpy(
    height: int, width: int, ctu: int, boxes: np.ndarray, qps: np.ndarray, background: int
) -> np.ndarray:
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
    h, w, c = (
        native.count_arg(height, "height"),
        native.count_arg(width, "width"),
        native.count_arg(ctu, "ctu", 1),
    )
    gh, gw = grid_shape(h, w, c)
    native.check_size(gh * gw, "CTU grid")  # the grid they ask for must be addressable
    b, q = _box_args(boxes, qps, background)
    if native.has("rasterize_boxes"):
        return native._native.rasterize_boxes(h, w, c, b, q, int(background))
    return _rasterize_boxes_numpy(h, w, c, b, q, int(background))


def boxes_cells(height: int, width: int, ctu: int, boxes: np.ndarray) -> np.ndarray:
    """The CTU grid (bool) with True where one of ``boxes`` ``(x0, y0, x1, y1)`` touches the CTU."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return rasterize_boxes(height, width, ctu, b, np.zeros(len(b), np.uint8), 1) == 0


def _rasterize_masks_numpy(masks: np.ndarray, qps: np.ndarray, ctu: int, background: int) -> np.ndarray:
    gh, gw = grid_shape(masks.shape[1], masks.shape[2], ctu)
    grid = np.full((gh, gw), background, dtype=np.uint8)
    for mask, qp in zip(masks, qps, strict=True):
        hit = _pool_numpy((mask != 0).view(np.uint8), ctu, "max") > 0
        grid[hit] = np.minimum(grid[hit], qp)
    return grid


def rasterize_masks(masks: np.ndarray, qps: np.ndarray, ctu: int, background: int) -> np.ndarray:
    """Instance masks ``(n, H, W)`` (nonzero = inside) with one QP each onto the CTU grid.

    A CTU holding any pixel of a mask takes min(its value, that mask's QP).
    """
    ctu = native.count_arg(ctu, "ctu", 1)
    m, q = _mask_args(masks, qps, background)
    if native.has("rasterize_masks") and m.size:
        if m.dtype not in (np.uint8, np.bool_):
            m = m != 0
        if m.shape[2] > 1 and m.strides[2] != 1:
            m = np.ascontiguousarray(m)
        return native._native.rasterize_masks(m, q, ctu, int(background))
    return _rasterize_masks_numpy(m, q, ctu, int(background))


__all__ = ["grid_shape", "pool_ctu", "rasterize_boxes", "rasterize_masks"]
