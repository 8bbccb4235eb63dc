"""``file:PATH``: maps computed elsewhere (.qpm, .npy or .csv)."""

from __future__ import annotations

from vcmtool.errors import UsageError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.qpm import load_map_file
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource


@QPMAP_SOURCES.register("file")
class FileSource(QPMapSource):
    name = "file"

    def process(self, clip: Clip, ctx: MapContext) -> QPMaps:
        if not self.arg:
            raise UsageError("--qpmap file:PATH needs a path (e.g. file:maps.qpm)")
        maps = load_map_file(self.arg, ctx.ctu)
        maps.check_grid(clip.info.height, clip.info.width)
        return maps
