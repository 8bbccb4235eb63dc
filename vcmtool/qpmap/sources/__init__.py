"""QP-map sources. Importing this package registers them all in ``QPMAP_SOURCES``."""

from vcmtool.qpmap.sources import file, roi, uniform  # noqa: F401 - registration
from vcmtool.qpmap.sources.base import QPMAP_SOURCES, MapContext, QPMapSource, get_source

__all__ = ["QPMAP_SOURCES", "MapContext", "QPMapSource", "get_source"]
