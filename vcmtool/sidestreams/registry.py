"""Post-encode side streams by name: ``vcmtool encode --side-stream NAME`` and
``EncodeJob.side_stream``.

Plain names (``cdre``, ``vcs``) and ``KIND:ARG`` forms (``cdre:joint``, ``cdre:DIR``,
``vcs:DIR``) that pick another trained model; each hook is
``(clip, bitstream, codec, out_file, **options) -> report dict`` with the bits it adds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial

from vcmtool.registry import parse_spec
from vcmtool.sidestreams.cdre import cdre_model, run_cdre
from vcmtool.sidestreams.vcs import run_vcs, vcs_model


class SideStreams(Mapping[str, Callable[..., dict]]):
    """Post-encode side streams by name, plus ``KIND:ARG`` forms (``cdre:joint``, ``cdre:DIR``)
    built on lookup; iterating lists the plain names only."""

    def __init__(
        self,
        named: dict[str, Callable[..., dict]],
        parametric: dict[str, Callable[[str], Callable[..., dict]]],
    ) -> None:
        self._named, self._parametric = named, parametric

    def __getitem__(self, name: str) -> Callable[..., dict]:
        if name in self._named:
            return self._named[name]
        spec = parse_spec(name, "side stream")
        if spec.arg and spec.name in self._parametric:
            return self._parametric[spec.name](spec.arg)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __len__(self) -> int:
        return len(self._named)


SIDE_STREAMS = SideStreams(
    {"cdre": run_cdre, "vcs": run_vcs},
    {
        "cdre": lambda spec: partial(run_cdre, model=cdre_model(spec)),
        "vcs": lambda spec: partial(run_vcs, model=vcs_model(spec)),
    },
)
