"""``eljrd``: the EL-JRD baseline predictor, used like ``auto``: ``vcmtool/models/eljrd.onnx`` (intra
labels), or ``eljrd_lowdelay.onnx`` with ``--jrd-labels lowdelay`` (or ``match`` on a low-delay encode)."""

from __future__ import annotations

from vcmtool.qpmap.sources.auto import JrdSource
from vcmtool.qpmap.sources.base import QPMAP_SOURCES


@QPMAP_SOURCES.register("eljrd")
class ElJrdSource(JrdSource):
    name = "eljrd"
    usage = "eljrd (the EL-JRD baseline, used like auto)"
    kind = "eljrd"
