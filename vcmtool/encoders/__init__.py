"""Encoder backends. Importing this package registers every backend in ``ENCODERS``.

Installed distributions add backends through the ``vcmtool.encoders`` entry-point group
(:mod:`vcmtool.plugins`), loaded when a name is missing or the names are listed.
"""

from vcmtool.encoders.base import (
    ENCODERS,
    Capabilities,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    get_encoder,
)
from vcmtool.plugins import import_submodules

import_submodules(__name__, skip=("base", "ffmpeg", "frame_qp"))
ENCODERS.enable_plugins("vcmtool.encoders", accepts=lambda o: isinstance(o, type) and issubclass(o, Encoder))

__all__ = ["ENCODERS", "Capabilities", "EncodeResult", "EncodeSettings", "Encoder", "Probe", "get_encoder"]
