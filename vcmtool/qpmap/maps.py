"""The QP-map sequence: absolute QPs on the CTU grid, one map per frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vcmtool.errors import UsageError
from vcmtool.qpmap.raster import grid_shape


@dataclass
class QPMaps:
    """``data`` is (frames, grid_h, grid_w) int16 absolute QPs in the target codec's domain.

    A sequence shorter than the clip repeats its last map (a single map applies to all frames).
    """

    data: np.ndarray
    ctu: int = 64
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        d = np.asarray(self.data)
        if d.ndim == 2:
            d = d[None]
        if d.ndim != 3 or d.shape[0] == 0:
            raise UsageError(f"QP map must be (frames, rows, cols), got shape {d.shape}")
        self.data = d.astype(np.int16)

    @classmethod
    def uniform(cls, qp: int, frames: int, height: int, width: int, ctu: int = 64) -> QPMaps:
        gh, gw = grid_shape(height, width, ctu)
        return cls(np.full((frames, gh, gw), qp, dtype=np.int16), ctu)

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def frame(self, i: int) -> np.ndarray:
        return self.data[min(i, len(self) - 1)]

    def check_grid(self, height: int, width: int) -> None:
        want = grid_shape(height, width, self.ctu)
        if self.grid != want:
            raise UsageError(
                f"QP map grid {self.grid[1]}x{self.grid[0]} (ctu {self.ctu}) does not match "
                f"{width}x{height} video, which needs {want[1]}x{want[0]}"
            )

    def offset(self, k: int) -> QPMaps:
        return QPMaps(self.data + int(k), self.ctu, list(self.notes))

    def clamp(self, lo: int, hi: int) -> QPMaps:
        return QPMaps(np.clip(self.data, lo, hi), self.ctu, list(self.notes))

    def extend(self, frames: int) -> QPMaps:
        idx = np.minimum(np.arange(frames), len(self) - 1)
        return QPMaps(self.data[idx], self.ctu, list(self.notes))

    def is_uniform_per_frame(self) -> bool:
        flat = self.data.reshape(len(self), -1)
        return bool((flat == flat[:, :1]).all())

    def frame_qps(self) -> np.ndarray:
        """One QP per frame for frame-level encoders: the rounded mean of the map."""
        return np.rint(self.data.reshape(len(self), -1).mean(axis=1)).astype(np.int16)

    def stats(self) -> dict:
        d = self.data
        return {
            "ctu": self.ctu,
            "grid": [self.grid[1], self.grid[0]],
            "frames": len(self),
            "min": int(d.min()),
            "max": int(d.max()),
            "mean": round(float(d.mean()), 3),
            "std": round(float(d.std()), 3),
            "uniform": self.is_uniform_per_frame(),
        }
