"""QP-map sources. Importing this package registers them all in ``QPMAP_SOURCES``.

Installed distributions add sources through the ``vcmtool.qpmap_sources`` entry-point group
(:mod:`vcmtool.plugins`), loaded when a name is missing or the names are listed.
"""

from vcmtool.plugins import import_submodules
from vcmtool.qpmap.sources.base import (
    QPMAP_SOURCES,
    MapContext,
    OptionGroup,
    QPMapSource,
    check_source_options,
    get_source,
    option_groups,
    options_of,
)

import_submodules(__name__, skip=("base",))
QPMAP_SOURCES.enable_plugins(
    "vcmtool.qpmap_sources", accepts=lambda o: isinstance(o, type) and issubclass(o, QPMapSource)
)

__all__ = [
    "QPMAP_SOURCES",
    "MapContext",
    "OptionGroup",
    "QPMapSource",
    "check_source_options",
    "get_source",
    "option_groups",
    "options_of",
]
