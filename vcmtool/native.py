"""Facade over the C++ extension ``vcmtool._native`` with pure-numpy fallbacks.

Callers import from here, never from ``_native`` directly, so vcmtool runs (slower) when the
extension did not build. ``NATIVE`` tells whether the fast path is active; ``vcmtool doctor``
reports it.
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - depends on the build
    from vcmtool import _native  # type: ignore[attr-defined]

    NATIVE = True
    NATIVE_ERROR = ""
except ImportError as e:  # pragma: no cover
    _native = None
    NATIVE = False
    NATIVE_ERROR = str(e)


def grid_shape(height: int, width: int, ctu: int) -> tuple[int, int]:
    """CTU grid rows x cols; partial CTUs at the right/bottom edge count."""
    return -(-height // ctu), -(-width // ctu)


def pool_ctu_numpy(pixmap: np.ndarray, ctu: int, mode: str = "min") -> np.ndarray:
    h, w = pixmap.shape
    gh, gw = grid_shape(h, w, ctu)
    ph, pw = gh * ctu - h, gw * ctu - w
    if mode == "mean":
        a = pixmap.astype(np.float64)
        s = np.pad(a, ((0, ph), (0, pw))).reshape(gh, ctu, gw, ctu).sum(axis=(1, 3))
        ones = np.pad(np.ones((h, w)), ((0, ph), (0, pw))).reshape(gh, ctu, gw, ctu).sum(axis=(1, 3))
        return (s / ones).astype(np.float32)
    if mode not in ("min", "max"):
        raise ValueError(f"pool mode {mode!r}")
    # Pad with a value that never wins, so partial edge CTUs pool only real pixels.
    if np.issubdtype(pixmap.dtype, np.integer):
        info = np.iinfo(pixmap.dtype)
        fill = info.max if mode == "min" else info.min
    else:
        fill = np.inf if mode == "min" else -np.inf
    a = np.pad(pixmap, ((0, ph), (0, pw)), constant_values=fill).reshape(gh, ctu, gw, ctu)
    return a.min(axis=(1, 3)) if mode == "min" else a.max(axis=(1, 3))


def pool_ctu(pixmap: np.ndarray, ctu: int, mode: str = "min") -> np.ndarray:
    """Pool a pixel map (uint8 or float32) to the CTU grid: min, max or mean."""
    if NATIVE and hasattr(_native, "pool_ctu"):
        return _native.pool_ctu(np.ascontiguousarray(pixmap), int(ctu), mode)
    return pool_ctu_numpy(pixmap, ctu, mode)


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
    boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
    qps = np.ascontiguousarray(qps, dtype=np.uint8).reshape(-1)
    if NATIVE and hasattr(_native, "rasterize_boxes"):
        return _native.rasterize_boxes(height, width, ctu, boxes, qps, int(background))
    return rasterize_boxes_numpy(height, width, ctu, boxes, qps, background)
