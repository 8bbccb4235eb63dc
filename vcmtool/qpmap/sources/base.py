"""QP-map sources: each turns a clip into per-frame CTU QP maps, with one ``process`` call.

A source is named on the command line as ``NAME`` or ``NAME:ARG`` (``file:maps.qpm``);
adding one is one file with ``@QPMAP_SOURCES.register(NAME)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

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

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg

    @abstractmethod
    def process(self, clip: Clip, ctx: MapContext) -> QPMaps: ...

    def describe(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def versions(self) -> dict[str, str]:
        """Versions of the models this source used, for the report's provenance."""
        return {}


QPMAP_SOURCES: Registry[type[QPMapSource]] = Registry("QP-map source")


def get_source(spec: str) -> QPMapSource:
    name, _, arg = spec.partition(":")
    return QPMAP_SOURCES.get(name)(arg or None)
