"""Encoder backends. Importing this package registers every backend in ``ENCODERS``."""

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

__all__ = ["ENCODERS", "Capabilities", "EncodeResult", "EncodeSettings", "Encoder", "Probe",
           "get_encoder"]
