"""``roi``: detector boxes get a low QP, the background a high one (the VCS paper's ROI baseline).

Options (:class:`RoiOptions`, on the command line ``--roi-qp-in`` / ``--roi-qp-out``,
absolute QPs, or ``--roi-delta-in`` / ``--roi-delta-out`` relative to the base QP, which
follow it across rate points; default base-4 and base+6; ``--roi-margin``, pixels added around each box,
default 16; ``--roi-classes``, class names to keep, default all; ``--roi-min-score``, default
0.3; ``roi_qp_in``, ... in ``EncodeJob.map_options``). Maps are streamed frame by frame (one
detection per predicted frame), so detection overlaps with encoding. Between predicted frames
(``--map-interval``) the boxes move on with their tracked velocity and are rasterised again
(:mod:`vcmtool.qpmap.propagate`).

:class:`RoiOptions` and :func:`boxes_to_map` are the options and the box rasterisation that
``dets`` (boxes from a file) shares, so both turn the same boxes into the same map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcmtool.io.frame import Frame
from vcmtool.io.open import Clip
from vcmtool.plugin_options import option
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.propagate import Keyframe
from vcmtool.qpmap.raster import rasterize_boxes
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource


@dataclass(frozen=True)
class RoiOptions:
    """The options of ``roi`` and ``dets`` (``--roi-*``; ``roi_*`` keys in ``map_options``)."""

    qp_in: int | None = option(
        None, cli="--roi-qp-in", min=0, max=63, help="QP inside objects (default: qp + --roi-delta-in)"
    )
    qp_out: int | None = option(
        None, cli="--roi-qp-out", min=0, max=63, help="background QP (default: qp + --roi-delta-out)"
    )
    delta_in: int = option(-4, cli="--roi-delta-in", min=-51, max=51, help="inside QP relative to the base")
    delta_out: int = option(6, cli="--roi-delta-out", min=-51, max=51, help="background QP relative to base")
    margin: float = option(16.0, cli="--roi-margin", min=0, max=4096, help="pixels added around each box")
    min_score: float = option(0.3, cli="--roi-min-score", min=0, max=1, help="minimum detection score")
    classes: list[str] | None = option(None, cli="--roi-classes", help="comma-separated class names to keep")

    def qps(self, base: int) -> tuple[int, int]:
        """The QPs inside and outside the boxes at base QP ``base``, kept in 0..63 like the
        absolute options (a relative one can leave it at a low or high base; the pipeline then
        clamps to the codec's own range)."""
        q_in = self.qp_in if self.qp_in is not None else base + self.delta_in
        q_out = self.qp_out if self.qp_out is not None else base + self.delta_out
        return min(max(int(q_in), 0), 63), min(max(int(q_out), 0), 63)


def boxes_to_map(
    boxes: np.ndarray, height: int, width: int, ctu: int, opts: RoiOptions, qp: int
) -> np.ndarray:
    """The ROI map of one frame at base QP ``qp``: boxes (N, 4) ``x0, y0, x1, y1`` in pixels,
    grown by the margin, get the inside QP, every other CTU the background QP; parts outside
    the frame are clipped away."""
    q_in, q_out = opts.qps(qp)
    m = opts.margin
    b = np.asarray(boxes, np.float64).reshape(-1, 4) + np.array([-m, -m, m, m])
    return rasterize_boxes(height, width, ctu, b, np.full(len(b), q_in, np.uint8), q_out)


@QPMAP_SOURCES.register("roi")
class RoiSource(QPMapSource):
    name = "roi"
    usage = "roi (task-model boxes)"
    streams = True
    Options = RoiOptions

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        self._model_version = ""

    def process(self, clip: Clip, ctx: MapContext) -> QPMaps:
        return QPMaps(np.stack(list(self.stream(clip, ctx))), ctx.ctu)

    def qp_range_hint(self, ctx: MapContext) -> tuple[int, int]:
        q_in, q_out = self.opts(ctx).qps(ctx.qp)
        return min(q_in, q_out), max(q_in, q_out)

    def stream(self, clip: Clip, ctx: MapContext) -> Iterator[np.ndarray]:
        from vcmtool.tasks import get_task_model

        model = get_task_model(ctx.task_model)
        self._model_version = model.version
        opts: RoiOptions = self.opts(ctx)
        info = clip.info

        def render(boxes: np.ndarray) -> np.ndarray:
            return boxes_to_map(boxes, info.height, info.width, ctx.ctu, opts, ctx.qp)

        def predict(fr: Frame) -> Keyframe:
            det = model.detect(fr.to_bgr()).filter(opts.min_score, opts.classes)
            return Keyframe(render(det.boxes), det.boxes, det.classes, render)

        yield from self.every_frame(clip, ctx, predict)

    def versions(self) -> dict[str, str]:
        return {"task_model": self._model_version} if self._model_version else {}
