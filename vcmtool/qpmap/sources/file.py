"""``file:PATH``: maps computed elsewhere (.qpm, .npy or .csv).

``{stem}`` in PATH is the input's file name without its extension, so one bench over several
inputs reads one map file per input (``file:maps/{stem}.npy``); a path without it is the same
file for every input.
"""

from __future__ import annotations

from pathlib import Path

from vcmtool.errors import UsageError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.qpm import load_map_file
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource


@QPMAP_SOURCES.register("file")
class FileSource(QPMapSource):
    name = "file"
    usage = "file:PATH (.qpm/.npy/.csv maps; {stem} = the input's name)"

    def process(self, clip: Clip, ctx: MapContext) -> QPMaps:
        if not self.arg:
            raise UsageError("--qpmap file:PATH needs a path (e.g. file:maps.qpm)")
        path = self.arg.replace("{stem}", Path(clip.path).stem)
        maps = load_map_file(path, ctx.ctu)
        if maps.ctu != ctx.ctu:
            # A .qpm carries its own CTU size. Letting it override --ctu would hand the encoder
            # a grid of another block size than the one the run checked its backend against.
            fix = (
                f"run with --ctu {maps.ctu}"
                if maps.ctu in (16, 32, 64, 128)
                else "encodes take --ctu 16, 32, 64 or 128"
            )
            raise UsageError(
                f"{path}: its maps are on a {maps.ctu}x{maps.ctu} CTU grid (.qpm header) but "
                f"--ctu is {ctx.ctu}; {fix}"
            )
        maps.check_grid(clip.info.height, clip.info.width)
        return maps
