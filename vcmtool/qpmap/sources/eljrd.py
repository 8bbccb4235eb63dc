"""``eljrd``: the EL-JRD baseline predictor (``vcmtool/models/eljrd.onnx``), used like ``auto``."""

from __future__ import annotations

from vcmtool.qpmap.sources.auto import JrdSource
from vcmtool.qpmap.sources.base import QPMAP_SOURCES


@QPMAP_SOURCES.register("eljrd")
class ElJrdSource(JrdSource):
    name = "eljrd"
    usage = "eljrd (the EL-JRD baseline, used like auto)"
    kind = "eljrd"
