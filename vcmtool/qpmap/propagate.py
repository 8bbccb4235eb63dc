"""Between predicted frames: when to predict again (``--map-interval``) and how a map moves
with its objects until then.

``--map-interval`` (:func:`parse_map_interval`):

- ``1`` (the default): a prediction on every frame, the reference the others are measured against;
- ``N``: a prediction on frames 0, N, 2N, ...;
- ``auto`` (``auto:8``) or ``auto:N``: a prediction on frame 0 and then again as
  soon as one of these holds, and at the latest N frames after the last one:

  * *cut*: the mean absolute difference of 16x16-block luma means (a "thumbnail", from every
    second row and column) between this frame and the one before exceeds ``CUT_MAD`` (8-bit
    levels);
  * *drift*: the same difference between this frame and the last predicted frame exceeds
    ``DRIFT_MAD`` (camera motion, objects entering, light changes);
  * *motion*: a tracked object has moved (extrapolated) by ``ctu`` pixels or more since the last
    prediction: the map has moved by a whole block and the extrapolation is getting long;
  * *empty*: the last prediction's map is uniform (it protects nothing: no object, or none the
    model kept) and ``EMPTY_RECHECK`` frames have passed. An empty prediction is the least
    reliable one (a detector's miss on one frame, or objects about to enter), and held for
    ``N`` frames it codes all of them alike: above the base QP under ``auto``'s default
    (``--jrd-empty base+6``), at the codec's maximum QP with ``--jrd-empty max``. The map, not
    the boxes, decides: ``auto`` keeps boxes down to score 0.1 that its model may still map to
    background. Measured on carphone (32 frames from frame 30):
    YOLOv3-tiny misses the face on frame 0 only, and ``auto:8`` coded frames 0-7 at QP 51, which
    capped its mAP@0.5 near 77% at any rate (``docs/results.md``, "Throughput").

  Sources without pixels (``dets:``, whose detections cost nothing) predict every frame under
  ``auto``. Every decision is integer arithmetic on the frames and the detections: the same
  input and options give the same maps and bytes, whatever the machine's speed.

Propagation (:class:`Propagator`): a source that returns a :class:`Keyframe` (its map plus the
boxes it was made from) has the map moved with the boxes on the frames in between. Boxes of the
last two predicted frames are matched (same class, similar area, centres at most
``MATCH_SHIFT`` box sizes apart, nearest first) and each matched box moves on with its centre's
constant velocity; unmatched boxes stay where they were, and a prediction made at a cut starts
with no motion. ``roi`` and ``dets:`` re-rasterise
the moved boxes (``Keyframe.render``): the same map their boxes would give on that frame.
``auto`` has no per-box QPs to re-rasterise, so its predicted grid is kept and each moved
object's CTU region is carried with it: the CTUs of the box's new footprint take the
predicted QPs of the old footprint shifted by the displacement (rounded to whole CTUs, clamped
into the old footprint), never raising a QP another object still needs, and the CTUs the
object left take the map's background QP (the median over CTUs no box touches). A source that
returns a plain grid has it held until the next prediction.

Measured on the development clips (docs/results.md, "Throughput"): bikes has cuts and fast pans
(consecutive thumbnail differences: median 2.5, cuts and whip pans 30-70), bigbuckbunny and carphone move
slowly (consecutive <= 4.2, 8 frames apart <= 14).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vcmtool.errors import UsageError

DEFAULT_MAX_INTERVAL = 8  # ``auto`` = ``auto:8``
CUT_MAD = 20  # thumbnail difference to the previous frame that means a new scene
DRIFT_MAD = 12  # thumbnail difference to the last predicted frame that asks for a new map
MATCH_SHIFT = 2.0  # boxes of two predictions may be one object up to this many box sizes apart
MATCH_AREA = 2.0  # ... and when their areas differ by at most this factor (same class too)
THUMB_BLOCK = 16  # thumbnail: means of 16x16 luma blocks
EMPTY_RECHECK = 2  # frames after a prediction without objects before the next (adaptive only)


@dataclass(frozen=True)
class MapInterval:
    """When a source predicts: every ``every`` frames, or (``adaptive``) early on a cut, drift or
    motion and at the latest ``every`` frames after the last prediction."""

    every: int = 1
    adaptive: bool = False

    def __str__(self) -> str:
        return f"auto:{self.every}" if self.adaptive else str(self.every)

    def predicts(self, k: int) -> bool:
        """Whether a fixed interval predicts frame ``k`` (adaptive ones decide frame by frame)."""
        return k % self.every == 0

    @property
    def value(self) -> int | str:
        """The canonical option value (``8``, ``"auto:8"``; the default reads ``"auto"``)."""
        if self.adaptive:
            return "auto" if self.every == DEFAULT_MAX_INTERVAL else f"auto:{self.every}"
        return self.every


def parse_map_interval(value: object, opt: str = "--map-interval") -> MapInterval:
    """``1``, ``N``, ``"N"``, ``"auto"``, ``"auto:N"`` -> :class:`MapInterval`; anything else is a
    one-line :class:`UsageError` naming ``opt``."""
    if isinstance(value, MapInterval):
        return value
    if isinstance(value, bool):
        raise UsageError(f"{opt} {value!r}: use a frame count >= 1, auto or auto:N")
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    adaptive = False
    if text is not None and (text == "auto" or text.startswith("auto:")):
        adaptive = True
        text = str(DEFAULT_MAX_INTERVAL) if text == "auto" else text[5:]
    if text is None or not text.isdigit():
        raise UsageError(f"{opt} {value!r}: use a frame count >= 1, auto or auto:N")
    n = int(text)
    if n < 1:
        raise UsageError(f"{opt} {value!r}: out of range (>= 1)")
    return MapInterval(n, adaptive)


@dataclass
class Keyframe:
    """A predicted map with the boxes it was made from, so it can follow them.

    ``boxes`` (N, 4) ``x0, y0, x1, y1`` in pixels, ``classes`` (N,) (None: one class).
    ``render(moved_boxes) -> grid`` re-rasterises moved boxes exactly (``roi``, ``dets:``);
    without it the grid's object regions are shifted (``auto``).
    """

    grid: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray | None = None
    render: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        n = len(self.boxes)
        self.classes = (
            np.zeros(n, np.int64) if self.classes is None else np.asarray(self.classes, np.int64).reshape(-1)
        )
        if len(self.classes) != n:
            raise ValueError(f"{n} boxes but {len(self.classes)} classes")


def thumbnail(luma: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Means of ``THUMB_BLOCK``-square luma blocks in 8-bit levels (int16), from every second
    row and column (a quarter of the samples: ~0.7 ms for 720p); integer arithmetic, so the
    same on every machine. Partial blocks at the right and bottom are left out."""
    y = np.asarray(luma)
    if y.shape[0] >= 2 * THUMB_BLOCK and y.shape[1] >= 2 * THUMB_BLOCK:
        y = y[::2, ::2]
        b = THUMB_BLOCK // 2
    else:
        b = max(1, min(THUMB_BLOCK, *y.shape))
    if bit_depth > 8:
        y = y >> (bit_depth - 8)
    h, w = y.shape
    gh, gw = h // b, w // b
    s = y[: gh * b, : gw * b].reshape(gh, b, gw, b).sum(axis=(1, 3), dtype=np.int64)
    return (s // (b * b)).astype(np.int16)


def thumb_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (an exact ratio of integers)."""
    return int(np.abs(a.astype(np.int32) - b).sum()) / max(1, a.size)


def match_boxes(
    prev: np.ndarray,
    prev_cls: np.ndarray,
    cur: np.ndarray,
    cur_cls: np.ndarray,
    max_shift: float = MATCH_SHIFT,
) -> list[tuple[int, int]]:
    """One-to-one matching of the boxes of two predictions: ``(index in prev, index in cur)``.

    Candidates are boxes of one class whose areas differ by at most ``MATCH_AREA`` times and
    whose centres lie at most ``max_shift`` box sizes (square root of the mean area) apart;
    pairs are taken greedily, nearest first (ties by index). Distance rather than IoU: objects
    predicted 8 frames apart often no longer overlap themselves."""
    a = np.asarray(prev, np.float64).reshape(-1, 4)
    b = np.asarray(cur, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return []
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).clip(1e-6)[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clip(1e-6)[None]
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    dist = np.hypot(*(ca[:, None] - cb[None]).transpose(2, 0, 1)) / np.sqrt((area_a + area_b) / 2)
    ok = np.asarray(prev_cls).reshape(-1, 1) == np.asarray(cur_cls).reshape(1, -1)
    ok &= (area_a / area_b <= MATCH_AREA) & (area_b / area_a <= MATCH_AREA) & (dist <= max_shift)
    i, j = np.nonzero(ok)
    order = np.lexsort((j, i, dist[i, j]))
    used_i: set[int] = set()
    used_j: set[int] = set()
    pairs = []
    for k in order:
        p, q = int(i[k]), int(j[k])
        if p not in used_i and q not in used_j:
            used_i.add(p)
            used_j.add(q)
            pairs.append((p, q))
    return pairs


def _spans(boxes: np.ndarray, height: int, width: int, ctu: int) -> np.ndarray:
    """CTU rows and columns each box touches: (N, 4) ``r0, r1, c0, c1`` (end exclusive; empty
    when the box lies outside the frame)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = np.clip(b[:, 0], 0, width), np.clip(b[:, 1], 0, height)
    x1, y1 = np.clip(b[:, 2], 0, width), np.clip(b[:, 3], 0, height)
    c0, r0 = np.floor(x0 / ctu), np.floor(y0 / ctu)
    c1, r1 = np.ceil(x1 / ctu), np.ceil(y1 / ctu)
    empty = (x1 <= x0) | (y1 <= y0)
    out = np.stack([r0, r1, c0, c1], 1).astype(np.int64)
    out[empty] = 0
    return out


class Propagator:
    """The per-frame state of :meth:`QPMapSource.every_frame`: ``due(k, thumb)`` says whether
    frame ``k`` needs a prediction (and why), ``keyframe(k, result, why)`` takes it, ``at(k)``
    gives the map of a frame in between."""

    def __init__(self, policy: MapInterval, height: int, width: int, ctu: int) -> None:
        self.policy = policy
        self.height, self.width, self.ctu = height, width, ctu
        self.reasons: dict[str, int] = {}
        self.keyframes: list[int] = []
        self._key: Keyframe | None = None
        self._grid: np.ndarray | None = None
        self._k = 0
        self._prev_thumb: np.ndarray | None = None
        self._key_thumb: np.ndarray | None = None
        self._velocity = np.zeros((0, 2))
        self._spans = np.zeros((0, 4), np.int64)
        self._background = 0
        self._empty = False  # the last prediction's map is uniform
        self._cache: tuple[bytes, np.ndarray] | None = None

    # -- when -----------------------------------------------------------------------------------

    def due(self, k: int, thumb: np.ndarray | None = None) -> str | None:
        """Why frame ``k`` needs a prediction (``first``, ``interval``, ``cut``, ``drift``,
        ``empty``, ``motion``), or None. ``thumb``: the frame's :func:`thumbnail` (adaptive policies)."""
        prev, self._prev_thumb = self._prev_thumb, thumb
        if self._grid is None:
            return "first"
        p = self.policy
        if not p.adaptive:
            return "interval" if p.predicts(k) else None
        if k - self._k >= p.every:
            return "interval"
        if thumb is not None and prev is not None and thumb_mad(thumb, prev) > CUT_MAD:
            return "cut"
        key = self._key_thumb
        if thumb is not None and key is not None and thumb_mad(thumb, key) > DRIFT_MAD:
            return "drift"
        if self._empty and k - self._k >= EMPTY_RECHECK:
            return "empty"
        if len(self._velocity):
            step = np.abs(self._velocity).max() * (k - self._k)
            if step >= self.ctu:
                return "motion"
        return None

    # -- what -----------------------------------------------------------------------------------

    def keyframe(self, k: int, result: np.ndarray | Keyframe, why: str = "interval") -> np.ndarray:
        """Take the prediction of frame ``k``; returns its map."""
        self.reasons[why] = self.reasons.get(why, 0) + 1
        self.keyframes.append(k)
        self._key_thumb = self._prev_thumb
        grid = np.asarray(result.grid if isinstance(result, Keyframe) else result)
        self._empty = bool(grid.size) and int(grid.min()) == int(grid.max())
        if not isinstance(result, Keyframe):
            self._key, self._grid, self._velocity = None, grid, np.zeros((0, 2))
            self._k = k
            return self._grid
        prev, prev_k = self._key, self._k
        self._key, self._grid, self._k = result, grid, k
        self._cache = None
        n = len(result.boxes)
        self._velocity = np.zeros((n, 2))
        if prev is not None and why not in ("cut", "first") and k > prev_k:
            for a, b in match_boxes(prev.boxes, prev.classes, result.boxes, result.classes):
                pc = (prev.boxes[a, :2] + prev.boxes[a, 2:]) / 2
                cc = (result.boxes[b, :2] + result.boxes[b, 2:]) / 2
                self._velocity[b] = (cc - pc) / (k - prev_k)
        if result.render is None:
            self._spans = _spans(result.boxes, self.height, self.width, self.ctu)
            covered = np.zeros(self._grid.shape, bool)
            for r0, r1, c0, c1 in self._spans:
                covered[r0:r1, c0:c1] = True
            rest = self._grid[~covered]
            self._background = int(np.median(rest)) if rest.size else int(self._grid.max())
        return self._grid

    def at(self, k: int) -> np.ndarray:
        """The map of frame ``k`` after the last prediction: moved with its objects."""
        key = self._key
        if key is None or not len(key.boxes) or not np.any(self._velocity):
            return self._grid
        shift = self._velocity * (k - self._k)
        moved = key.boxes + np.tile(shift, 2)
        if key.render is not None:  # exact: the boxes' own map on this frame
            return np.asarray(key.render(moved))
        spans = _spans(moved, self.height, self.width, self.ctu)
        if np.array_equal(spans, self._spans):
            return self._grid
        steps = np.floor(shift / self.ctu + 0.5).astype(np.int64)  # whole CTUs, half up
        tag = spans.tobytes() + steps.tobytes()
        if self._cache is None or self._cache[0] != tag:
            self._cache = (tag, self._shift_regions(spans, steps))
        return self._cache[1]

    def _shift_regions(self, spans: np.ndarray, steps: np.ndarray) -> np.ndarray:
        grid, old = self._grid, self._spans
        out = grid.copy()
        now = np.zeros(grid.shape, bool)
        for r0, r1, c0, c1 in spans:
            now[r0:r1, c0:c1] = True
        moved = [i for i in range(len(old)) if not np.array_equal(old[i], spans[i])]
        for i in moved:  # the CTUs an object left and no object covers now: background
            r0, r1, c0, c1 = old[i]
            region = out[r0:r1, c0:c1]
            region[~now[r0:r1, c0:c1]] = self._background
        for i in moved:  # the object's predicted QPs, carried to its new footprint
            r0, r1, c0, c1 = spans[i]
            o0, o1, p0, p1 = old[i]
            if r1 <= r0 or c1 <= c0 or o1 <= o0 or p1 <= p0:
                continue
            rows = np.clip(np.arange(r0, r1) - steps[i, 1], o0, o1 - 1)
            cols = np.clip(np.arange(c0, c1) - steps[i, 0], p0, p1 - 1)
            src = grid[np.ix_(rows, cols)]
            np.minimum(out[r0:r1, c0:c1], src, out=out[r0:r1, c0:c1])
        return out
