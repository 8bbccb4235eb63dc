"""Per-CTU QP maps: the container type, the .qpm format, and the map sources.

This package is also the public function ``vcmtool.qpmap(input, ...)`` (see
:func:`vcmtool.api.qpmap`): once any module below it is imported, Python binds the *package* to
the attribute ``vcmtool.qpmap``, so the package itself is made callable (module ``__class__``
assignment, supported since Python 3.5) rather than having the API name shadowed by it.
"""

import sys
import types
from typing import Any

from vcmtool.qpmap.maps import QPMaps

__all__ = ["QPMaps"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from vcmtool.api import qpmap

        return qpmap(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
