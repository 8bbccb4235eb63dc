"""QP-map sources. Importing this package registers them all in ``QPMAP_SOURCES``."""

from vcmtool.plugins import import_submodules
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource, get_source

import_submodules(__name__, skip=("base",))

__all__ = ["QPMAP_SOURCES", "MapContext", "QPMapSource", "get_source"]
