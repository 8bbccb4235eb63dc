"""A QP-map source plug-in from outside vcmtool, in one file: ``stripes``.

Vertical stripes of CTU columns, alternately ``--qp`` - 6 and ``--qp`` + 6, each ``--stripes-width
N`` columns wide (default 1). Its only option is declared here, as a dataclass; vcmtool makes
the ``--stripes-width`` option of ``encode``, ``qpmap`` and ``bench`` from it, checks the value
(1..64) from every front end and stores it as ``stripes_width`` in ``map_options``.

Registered by an entry point of the distribution that ships it (tests/test_source_plugin.py
writes one)::

    [vcmtool.qpmap_sources]
    stripes = stripes_source:StripesSource
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vcmtool.plugin_options import option
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources.base import QPMapSource

DELTA = 6


@dataclass(frozen=True)
class StripesOptions:
    width: int = option(1, min=1, max=64, help="stripe width in CTU columns")


class StripesSource(QPMapSource):
    name = "stripes"
    usage = "stripes (vertical QP stripes, a test plug-in)"
    Options = StripesOptions

    def process(self, clip, ctx):
        width = self.opts(ctx).width
        rows, cols = -(-clip.info.height // ctx.ctu), -(-clip.info.width // ctx.ctu)
        low = (np.arange(cols) // width) % 2 == 0
        row = np.where(low, ctx.qp - DELTA, ctx.qp + DELTA).astype(np.int16)
        return QPMaps(np.broadcast_to(row, (1, rows, cols)).copy(), ctx.ctu)  # repeats per frame

    def versions(self):
        return {"stripes": "0.1"}
