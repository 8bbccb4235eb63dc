"""Encoder backends. Importing this package registers every backend in ``ENCODERS``."""

from vcmtool.encoders import kvazaar, libx26x, svtav1, vtm, vvenc  # noqa: F401 - registration
from vcmtool.encoders.base import (
    ENCODERS,
    Capabilities,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    get_encoder,
)

__all__ = ["ENCODERS", "Capabilities", "EncodeResult", "EncodeSettings", "Encoder", "Probe",
           "get_encoder"]
