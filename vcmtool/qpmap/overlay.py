"""Draw a QP map over a frame: the CTU grid, each cell tinted by its QP and labelled."""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from vcmtool.atomic import atomic_path


def render_overlay(bgr: np.ndarray, qp_map: np.ndarray, ctu: int, qp_range: tuple[int, int]) -> np.ndarray:
    h, w = bgr.shape[:2]
    lo, hi = qp_range
    norm = ((qp_map.astype(np.float32) - lo) / max(1, hi - lo) * 255).clip(0, 255).astype(np.uint8)
    # Low QP (more bits) is hot: invert so the map reads like a heat map of spent bits.
    colours = cv2.applyColorMap(255 - norm, cv2.COLORMAP_JET)
    tint = cv2.resize(
        colours, (qp_map.shape[1] * ctu, qp_map.shape[0] * ctu), interpolation=cv2.INTER_NEAREST
    )[:h, :w]
    out = cv2.addWeighted(bgr, 0.6, tint, 0.4, 0)
    for r in range(qp_map.shape[0]):
        for c in range(qp_map.shape[1]):
            x, y = c * ctu, r * ctu
            cv2.rectangle(out, (x, y), (min(x + ctu, w) - 1, min(y + ctu, h) - 1), (255, 255, 255), 1)
            if ctu >= 32:
                cv2.putText(
                    out,
                    str(int(qp_map[r, c])),
                    (x + 4, y + 16),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    (255, 255, 255),
                    1,
                    cv2.LINE_AA,
                )
    return out


def write_overlay(
    path: str, bgr: np.ndarray, qp_map: np.ndarray, ctu: int, qp_range: tuple[int, int]
) -> None:
    img = render_overlay(bgr, qp_map, ctu, qp_range)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def most_informative_frame(maps) -> int:
    """Index of the map with the widest QP spread (first on ties): a flat map shows nothing."""
    d = maps.data.reshape(len(maps), -1)
    return int((d.max(axis=1) - d.min(axis=1)).argmax())


def write_clip_overlay(path: str, clip, maps, qp_range: tuple[int, int]) -> int:
    """Overlay the most informative frame of ``clip``; returns its index (for the report)."""
    k = most_informative_frame(maps)
    frame = next(itertools.islice(clip.frames(), k, None))
    write_overlay(path, frame.to_bgr(), maps.frame(k), maps.ctu, qp_range)
    return k
