"""QP-map sources: each turns a clip into per-frame CTU QP maps.

A source is named on the command line as ``NAME`` or ``NAME:ARG`` (``file:maps.qpm``);
adding one is one file with ``@QPMAP_SOURCES.register(NAME)``, or, from another distribution,
an entry point in the ``vcmtool.qpmap_sources`` group (:mod:`vcmtool.plugins`).

``process`` returns every map at once; ``stream`` yields them frame by frame so the pipeline
can encode while later maps are still being predicted (``vcmtool.qpmap.stream``). The default
``stream`` wraps ``process`` (nothing to overlap); sources whose maps cost model time
(``auto``, ``eljrd``, ``roi``) implement ``stream`` natively, set ``streams = True`` and build
``process`` from it, so both routes give the same maps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.registry import Registry


@dataclass
class MapContext:
    """What every source may need: the target grid and the rate point."""

    qp: int = 32  # base QP of the rate point (codec domain)
    ctu: int = 64
    qp_range: tuple[int, int] = (0, 51)
    task_model: str = "yolov3-tiny"
    map_interval: int = 1  # predict every N frames, reuse in between
    options: dict = field(default_factory=dict)  # source-specific knobs from the CLI


class QPMapSource(ABC):
    name: str = ""
    streams: ClassVar[bool] = False  # stream() yields each map as soon as it is predicted

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        self.predicted = 0  # frames the source ran its model on (the others reuse a map)
        self.predict_s = 0.0  # time spent inside the models for those frames

    @abstractmethod
    def process(self, clip: Clip, ctx: MapContext) -> QPMaps: ...

    def stream(self, clip: Clip, ctx: MapContext) -> Iterator[np.ndarray]:
        """One (grid_h, grid_w) map per frame of ``clip``, in order."""
        maps = self.process(clip, ctx)
        maps.check_grid(clip.info.height, clip.info.width)
        for i in range(clip.count()):
            yield maps.frame(i)

    def qp_range_hint(self, ctx: MapContext) -> tuple[int, int] | None:
        """The QP range the maps will span, when it is known before any map exists.

        Encoders that must fix a base QP before the first frame (kvazaar) centre it here;
        ``None``: no prior knowledge, they use the first map.
        """
        return None

    def describe(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def versions(self) -> dict[str, str]:
        """Versions of the models this source used, for the report's provenance."""
        return {}

    def notes(self) -> list[str]:
        """Remarks on the maps made so far (input entries ignored, ...) for the report's notes;
        complete once ``process`` returned or ``stream`` ended."""
        return []

    def model_files(self) -> list[Path]:
        """Learned files the maps depend on (a retrained model must invalidate stored results)."""
        return []


QPMAP_SOURCES: Registry[type[QPMapSource]] = Registry("QP-map source")


def get_source(spec: str) -> QPMapSource:
    name, _, arg = spec.partition(":")
    return QPMAP_SOURCES.get(name)(arg or None)
