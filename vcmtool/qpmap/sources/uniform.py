"""``none``: the anchor, one uniform QP everywhere."""

from __future__ import annotations

from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource


@QPMAP_SOURCES.register("none")
class UniformSource(QPMapSource):
    name = "none"
    usage = "none (uniform --qp)"

    def process(self, clip: Clip, ctx: MapContext) -> QPMaps:
        info = clip.info
        return QPMaps.uniform(ctx.qp, 1, info.height, info.width, ctx.ctu)
