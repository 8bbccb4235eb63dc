"""``roi``: detector boxes get a low QP, the background a high one (the VCS paper's ROI baseline).

Options (``MapContext.options``): ``roi_qp_in`` / ``roi_qp_out`` (absolute QPs; default base-4
and base+6), ``roi_margin`` (pixels added around each box, default 16), ``roi_classes``
(class names to keep; default all), ``roi_min_score`` (default 0.3). Maps are streamed frame
by frame (one detection per predicted frame), so detection overlaps with encoding.

:class:`RoiOptions` and :func:`boxes_to_map` are the options and the box rasterisation that
``dets`` (boxes from a file) shares, so both turn the same boxes into the same map.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from vcmtool import native
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource


def _qps(ctx: MapContext) -> tuple[int, int]:
    o = ctx.options
    q_in = int(o.get("roi_qp_in") if o.get("roi_qp_in") is not None else ctx.qp - 4)
    q_out = int(o.get("roi_qp_out") if o.get("roi_qp_out") is not None else ctx.qp + 6)
    return q_in, q_out


@dataclass(frozen=True)
class RoiOptions:
    """The ``--roi-*`` options as ``roi`` and ``dets`` read them from ``MapContext.options``."""

    q_in: int
    q_out: int
    margin: float
    classes: list[str] | None
    min_score: float

    @classmethod
    def from_context(cls, ctx: MapContext) -> RoiOptions:
        o = ctx.options
        q_in, q_out = _qps(ctx)
        return cls(q_in, q_out, float(o.get("roi_margin", 16)), o.get("roi_classes") or None,
                   float(o.get("roi_min_score", 0.3)))


def boxes_to_map(boxes: np.ndarray, height: int, width: int, ctu: int, opts: RoiOptions
                 ) -> np.ndarray:
    """The ROI map of one frame: boxes (N, 4) ``x0, y0, x1, y1`` in pixels, grown by the margin,
    get ``q_in``, every other CTU ``q_out``; parts outside the frame are clipped away."""
    m = opts.margin
    b = np.asarray(boxes, np.float64).reshape(-1, 4) + np.array([-m, -m, m, m])
    return native.rasterize_boxes(height, width, ctu, b, np.full(len(b), opts.q_in, np.uint8),
                                  opts.q_out)


@QPMAP_SOURCES.register("roi")
class RoiSource(QPMapSource):
    name = "roi"
    streams = True

    def __init__(self, arg: str | None = None) -> None:
        super().__init__(arg)
        self._model_version = ""

    def process(self, clip: Clip, ctx: MapContext) -> QPMaps:
        return QPMaps(np.stack(list(self.stream(clip, ctx))), ctx.ctu)

    def qp_range_hint(self, ctx: MapContext) -> tuple[int, int]:
        q_in, q_out = _qps(ctx)
        return min(q_in, q_out), max(q_in, q_out)

    def stream(self, clip: Clip, ctx: MapContext) -> Iterator[np.ndarray]:
        from vcmtool.tasks import get_task_model

        model = get_task_model(ctx.task_model)
        self._model_version = model.version
        opts = RoiOptions.from_context(ctx)
        info = clip.info
        self.predicted, self.predict_s = 0, 0.0
        last: np.ndarray | None = None
        for fr in tqdm(clip.frames(), total=info.frame_count, desc="roi map", unit="f",
                       leave=False, disable=None):
            if last is None or fr.index % max(1, ctx.map_interval) == 0:
                bgr = fr.to_bgr()
                t0 = time.perf_counter()
                det = model.detect(bgr).filter(opts.min_score, opts.classes)
                self.predict_s += time.perf_counter() - t0
                self.predicted += 1
                last = boxes_to_map(det.boxes, info.height, info.width, ctx.ctu, opts)
            yield last

    def versions(self) -> dict[str, str]:
        return {"task_model": self._model_version} if self._model_version else {}
