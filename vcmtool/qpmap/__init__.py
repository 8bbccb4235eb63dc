"""Per-CTU QP maps: the container type, the .qpm format, and the map sources."""

from vcmtool.qpmap.maps import QPMaps

__all__ = ["QPMaps"]
