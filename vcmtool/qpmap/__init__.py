"""Per-CTU QP maps: the container type, the .qpm format, and the map sources.

(The public function that computes maps from Python is ``vcmtool.qpmaps(...)``, in
:mod:`vcmtool.api`: a function named like this package would be shadowed by it.)
"""

from vcmtool.qpmap.maps import QPMaps

__all__ = ["QPMaps"]
