"""QP-map sources: each turns a clip into per-frame CTU QP maps.

A source is named on the command line as ``NAME`` or ``NAME:ARG`` (``file:maps.qpm``);
adding one is one file with ``@QPMAP_SOURCES.register(NAME)``, or, from another distribution,
an entry point in the ``vcmtool.qpmap_sources`` group (:mod:`vcmtool.plugins`).

``process`` returns every map at once; ``stream`` yields them frame by frame so the pipeline
can encode while later maps are still being predicted (``vcmtool.qpmap.stream``). The default
``stream`` wraps ``process`` (nothing to overlap); sources whose maps cost model time
(``auto``, ``eljrd``, ``roi``) implement ``stream`` natively, set ``streams = True`` and build
``process`` from it, so both routes give the same maps. Those sources run their model through
:meth:`QPMapSource.every_frame`, the one per-frame loop (``--map-interval``, counts, timing;
when to predict and how maps move in between: :mod:`vcmtool.qpmap.propagate`).

A source owns its options: a dataclass of :func:`vcmtool.plugin_options.option` fields attached
as ``Options`` (``roi`` and ``dets`` share :class:`~vcmtool.qpmap.sources.roi.RoiOptions`). The
CLI makes ``--<prefix>-<field>`` options of it, :func:`check_source_options` checks the flat
keys (``roi_qp_in``) of ``EncodeJob.map_options`` from any front end, :func:`get_source`
builds the source with its typed options, and ``opts(ctx)`` hands them to it during a run.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from vcmtool.errors import UsageError
from vcmtool.io.open import Clip
from vcmtool.plugin_options import (
    OptionSpec,
    check_value,
    fields_from_flat,
    make_options,
    option_specs,
)
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.propagate import MapInterval, Propagator, parse_map_interval, thumbnail
from vcmtool.qpmap.stream import MapProducer
from vcmtool.registry import Registry, Spec, parse_spec

log = logging.getLogger(__name__)


@dataclass
class MapContext:
    """What every source may need: the target grid and the rate point."""

    qp: int = 32  # base QP of the rate point (codec domain)
    ctu: int = 64
    qp_range: tuple[int, int] = (0, 51)
    task_model: str = "yolov3-tiny"
    map_interval: int | str = 1  # predict every N frames, or "auto"/"auto:N" (qpmap.propagate)
    intra_period: int = 0  # the encode's coding: 0 low delay, 1 all intra (picks JRD models)
    options: dict = field(default_factory=dict)  # EncodeJob.map_options: flat keys (roi_qp_in)
    source_options: Any = None  # the source's typed options (its Options), see QPMapSource.opts


class QPMapSource(ABC):
    name: str = ""
    streams: ClassVar[bool] = False  # stream() yields each map as soon as it is predicted
    usage: ClassVar[str] = ""  # how --qpmap names it, for the CLI's help ("file:PATH (.qpm...)")
    Options: ClassVar[type | None] = None  # the source's options dataclass (plugin_options)

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        """``arg``: the text after ``NAME:``; ``options``: fields of ``Options`` (a subclass that
        overrides ``__init__`` takes them and passes them on)."""
        self.arg = arg
        self.options = self.make_options(options)  # typed; None for a source without options
        self.predicted = 0  # frames the source ran its model on (the others reuse a map)
        self.predict_s = 0.0  # time spent inside the models for those frames
        self.keyframes: list[int] = []  # which frames (0-based in the clip)
        self.keyframe_reasons: dict[str, int] = {}  # and why (first, interval, cut, drift, motion)

    # -- options -------------------------------------------------------------------------------

    @classmethod
    def option_specs(cls) -> tuple[OptionSpec, ...]:
        """The options of ``cls.Options`` (empty without); CLI names ``--<prefix>-<field>``
        with ``Options.prefix``, else the source's ``name``."""
        if cls.Options is None:
            return ()
        try:
            prefix = getattr(cls.Options, "prefix", None)  # a ClassVar, not a field of that name
            if not isinstance(prefix, str) or any(f.name == "prefix" for f in fields(cls.Options)):
                prefix = None
            return option_specs(cls.Options, prefix or cls.name)
        except TypeError as e:  # a plug-in's malformed declaration: one line, not a traceback
            raise UsageError(f"QP-map source {cls.name or cls.__qualname__}: bad Options: {e}") from None

    @classmethod
    def make_options(cls, values: Mapping[str, Any]) -> Any:
        """The typed options from field values (``{"qp_in": 24}``), checked."""
        if cls.Options is None:
            if values:
                raise UsageError(f"QP-map source {cls.name} takes no options (got {', '.join(values)})")
            return None
        return make_options(cls.Options, cls.option_specs(), values, f"QP-map source {cls.name}")

    def opts(self, ctx: MapContext) -> Any:
        """This source's typed options for a run: what ``ctx`` hands over (the pipeline puts the
        source's own there), else its flat keys in ``ctx.options`` (a MapContext made by hand),
        else those it was built with."""
        if self.Options is None:
            return None
        if isinstance(ctx.source_options, self.Options):
            return ctx.source_options
        specs = self.option_specs()
        if any(s.key in ctx.options for s in specs):
            return self.make_options(fields_from_flat(specs, ctx.options))
        return self.options

    # -- maps ----------------------------------------------------------------------------------

    def every_frame(
        self,
        clip: Clip,
        ctx: MapContext,
        predict: Callable[[Any], Any],
        decode: bool = True,
        ahead: Callable[[Any], Any] | None = None,
    ) -> Iterator[np.ndarray]:
        """The per-frame loop of a source whose maps cost model time: ``predict`` makes the map
        of the first frame and of the frames ``ctx.map_interval`` asks for (every N-th, or under
        ``auto`` early on a cut, drift or motion and at the latest every N-th; see
        :mod:`vcmtool.qpmap.propagate`); the frames between get the last map, moved with its
        objects when ``predict`` returns a :class:`~vcmtool.qpmap.propagate.Keyframe` (a plain
        grid is held). ``predict`` gets the decoded :class:`~vcmtool.io.frame.Frame`, or with
        ``decode=False`` the frame's 0-based number in ``clip`` (sources that need no pixels;
        under ``auto`` they predict every frame). Counts ``predicted`` (which frames in
        ``keyframes``, why in ``keyframe_reasons``) and adds the model time to ``predict_s``,
        also when the consumer stops early.

        ``ahead``: a first stage of the prediction (``predict`` then gets ``ahead(item)``
        instead of the item). When the frames to predict are known in advance (a fixed
        ``--map-interval N``), the first stage runs one thread ahead of the second, so two
        models (``auto``: the detector of the next frame while SNN-JRD runs on this one) use
        both cores; the maps are the same as in one thread. Under ``auto`` intervals whether a
        frame is predicted depends on the last prediction, so both stages run in turn."""
        policy = parse_map_interval(ctx.map_interval)
        if policy.adaptive and not decode:
            policy = MapInterval(1)
        self.predicted, self.predict_s = 0, 0.0
        prop = Propagator(policy, clip.info.height, clip.info.width, ctx.ctu)
        self.keyframes, self.keyframe_reasons = prop.keyframes, prop.reasons
        items = tqdm(
            clip.frames() if decode else range(clip.count()),
            total=clip.info.frame_count if decode else None,
            desc=f"{self.name} map",
            unit="f",
            leave=False,
            disable=None if decode else True,
        )
        staged = ahead is not None and not policy.adaptive
        producer = _AheadProducer(items, policy, ahead) if staged else None
        try:
            for k, item in producer if producer is not None else enumerate(items):
                thumb = thumbnail(item.y, item.bit_depth) if policy.adaptive else None
                why = prop.due(k, thumb)
                if why is None:
                    yield prop.at(k)
                    continue
                t0 = time.perf_counter()
                if ahead is not None and not staged:
                    item = ahead(item)
                result = predict(item)
                self.predict_s += time.perf_counter() - t0
                self.predicted += 1
                yield prop.keyframe(k, result, why)
        finally:
            if producer is not None:
                producer.close()
                self.predict_s += producer.first_stage_s

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


class _AheadProducer(MapProducer):
    """The first stage of a prediction (``every_frame``'s ``ahead``) run in a background thread
    on the frames a fixed interval predicts; yields ``(k, ahead(frame) or None)`` in order."""

    def __init__(self, items: Iterable[Any], policy: MapInterval, ahead: Callable[[Any], Any]) -> None:
        self.first_stage_s = 0.0

        def staged() -> Iterator[tuple[int, Any]]:
            for k, item in enumerate(items):
                if not policy.predicts(k):
                    yield k, None
                    continue
                t0 = time.perf_counter()
                early = ahead(item)
                self.first_stage_s += time.perf_counter() - t0
                yield k, early

        # Two staged frames at most wait in the queue: decoded frames are large.
        super().__init__(staged(), maxsize=2, name="vcmtool-map-ahead")


QPMAP_SOURCES: Registry[type[QPMapSource]] = Registry("QP-map source", no_arg=None)


def get_source(spec: str | Spec, map_options: Mapping[str, Any] | None = None) -> QPMapSource:
    """The source ``spec`` names (``NAME`` or ``NAME:ARG``), built with its own options out of
    ``map_options`` (``EncodeJob.map_options``: flat keys; other sources' keys are ignored)."""
    s = parse_spec(spec, QPMAP_SOURCES.kind)
    cls = QPMAP_SOURCES.get(s.name)
    values = fields_from_flat(cls.option_specs(), map_options) if map_options else {}
    return QPMAP_SOURCES.build(s, **values)


@dataclass(frozen=True)
class OptionGroup:
    """One options dataclass and the sources that take it (``roi`` and ``dets`` share one)."""

    sources: tuple[str, ...]
    specs: tuple[OptionSpec, ...]


def option_groups(load_plugins: bool = True) -> list[OptionGroup]:
    """Every source's options, each dataclass once, in the order of the source names (plug-ins
    found through entry points included unless ``load_plugins`` is False)."""
    names = QPMAP_SOURCES.names() if load_plugins else QPMAP_SOURCES.loaded_names()
    groups: dict[int, tuple[list[str], tuple[OptionSpec, ...]]] = {}
    taken: dict[str, str] = {}  # flat key -> the options class that has it
    for name in names:
        cls = QPMAP_SOURCES.get(name)
        if cls.Options is None:
            continue
        if id(cls.Options) in groups:
            groups[id(cls.Options)][0].append(name)
            continue
        try:
            specs = cls.option_specs()
        except UsageError as e:
            _warn_once(f"warning: {e}; its options are skipped")
            continue
        clash = [s for s in specs if s.key in taken]
        for s in clash:
            _warn_once(f"warning: QP-map source {name}: option {s.cli} is taken by {taken[s.key]}; skipped")
        specs = tuple(s for s in specs if s not in clash)
        taken.update({s.key: cls.Options.__qualname__ for s in specs})
        groups[id(cls.Options)] = ([name], specs)

    def owner_first(name: str) -> bool:  # the source declaring the Options before its heirs
        return "Options" not in vars(QPMAP_SOURCES.get(name))

    return [OptionGroup(tuple(sorted(srcs, key=owner_first)), specs) for srcs, specs in groups.values()]


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def options_of(specs: list[str]) -> list[OptionSpec]:
    """The options of the sources named in ``specs`` (``roi``, ``dets:FILE``; names that are no
    source are skipped), each once."""
    out: dict[str, OptionSpec] = {}
    for spec in specs:
        name = parse_spec(spec, QPMAP_SOURCES.kind).name
        if name in QPMAP_SOURCES:
            for s in QPMAP_SOURCES.get(name).option_specs():
                out.setdefault(s.key, s)
    return list(out.values())


def check_source_options(flat: Mapping[str, Any], also_known: tuple[str, ...] = ()) -> None:
    """Check the source options in ``flat`` (``EncodeJob.map_options``): every key must be one
    source's option (or in ``also_known``, checked by the caller) and hold a value it takes.
    Keys of a source the job does not use are checked too and then ignored, so manifests and
    golden files written with other sources' options stay valid."""

    def owned(load: bool) -> dict[str, OptionSpec]:
        return {s.key: s for g in option_groups(load) for s in g.specs}

    specs = owned(False)
    rest = [k for k in flat if k not in specs and k not in also_known]
    if rest:  # perhaps a plug-in's: look at the entry points too
        specs = owned(True)
        rest = [k for k in rest if k not in specs]
    if rest:
        known = sorted(set(specs) | set(also_known))
        raise UsageError(f"map_options: unknown key(s) {', '.join(sorted(rest))}; known: {', '.join(known)}")
    for k, v in flat.items():
        if k in specs:
            check_value(specs[k], v)
