"""A tiny named registry, so a new backend is one file plus one decorator.

In the style of CompressAI's model zoo: ``@ENCODERS.register("kvazaar")`` on a class makes it
reachable by name from the CLI, with no if-chains anywhere else.

A registry with a ``plugin_group`` (see :mod:`vcmtool.plugins`) also holds what installed
distributions offer through that entry-point group. They are loaded lazily, once: the first time
the registry is asked for a name it does not have, or for the list of its names.

Plug-ins are named on the command line as ``NAME`` or ``NAME:ARG`` (``file:maps.qpm``,
``onnx:det.onnx``, ``cdre:joint``). :func:`parse_spec` is the one parser of that form, and
:meth:`Registry.build` parses a spec and constructs the plug-in it names with its options.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from vcmtool.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Spec:
    """A parsed ``NAME`` or ``NAME:ARG``: ``arg`` is everything after the first ``:`` (which may
    hold more colons, ``file:C:/maps.qpm``), ``""`` when there is none."""

    name: str
    arg: str = ""

    def __str__(self) -> str:
        return f"{self.name}:{self.arg}" if self.arg else self.name


def parse_spec(spec: str | Spec, kind: str = "plug-in") -> Spec:
    """``"NAME"`` or ``"NAME:ARG"`` -> :class:`Spec`; the name is stripped of blanks, the argument
    kept as written. An empty name is a one-line :class:`UsageError` naming ``kind``."""
    if isinstance(spec, Spec):
        return spec
    if not isinstance(spec, str):
        raise UsageError(f"{kind} {spec!r}: use NAME or NAME:ARG")
    name, _, arg = spec.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"empty {kind} name in {spec!r}; use NAME or NAME:ARG")
    return Spec(name, arg)


class Registry(Generic[T]):
    """Plug-ins by name. ``no_arg`` is what :meth:`build` hands a plug-in named without ``:ARG``
    (task-model factories take ``""``, QP-map sources ``None``)."""

    def __init__(
        self,
        kind: str,
        plugin_group: str | None = None,
        accepts: Callable[[object], bool] | None = None,
        no_arg: str | None = "",
    ) -> None:
        self.kind = kind
        self.no_arg = no_arg
        self._items: dict[str, T] = {}
        self.plugin_group: str | None = None
        self.accepts: Callable[[object], bool] | None = None
        self._plugins_started = self._plugins_done = False
        self._plugin_lock = threading.RLock()
        if plugin_group is not None:
            self.enable_plugins(plugin_group, accepts)

    def enable_plugins(self, group: str, accepts: Callable[[object], bool] | None = None) -> None:
        """Also offer what the entry points of ``group`` register (loaded on first need).

        ``accepts(obj)`` says whether an entry point that names an object (rather than a module
        that registers itself) is of the registry's kind.
        """
        self.plugin_group = group
        self.accepts = accepts

    def load_plugins(self) -> None:
        """Load the plugin group's entry points (once per process; later calls do nothing)."""
        if self.plugin_group is None or self._plugins_done:
            return
        with self._plugin_lock:  # another thread waits here until the loading thread is done
            if self._plugins_started:  # done, or this thread's plugin asking its own registry
                return
            self._plugins_started = True
            try:
                from vcmtool.plugins import load_entry_points

                load_entry_points(self)
            finally:
                self._plugins_done = True

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UsageError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def build(self, spec: str | Spec, **options: Any) -> Any:
        """Parse ``spec`` (``NAME`` or ``NAME:ARG``, :func:`parse_spec`) and construct what
        ``NAME`` holds: ``plugin(ARG, **options)``. An unknown name is a :class:`UsageError`
        listing the known ones."""
        s = parse_spec(spec, self.kind)
        factory: Any = self.get(s.name)
        return factory(s.arg if s.arg else self.no_arg, **options)

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._items)

    def loaded_names(self) -> list[str]:
        """The names registered so far, without loading plugins."""
        return sorted(self._items)

    def peek(self, name: str) -> T | None:
        """What ``name`` holds now, without loading plugins (None when nothing)."""
        return self._items.get(name)

    def __len__(self) -> int:
        """Names registered so far (without loading plugins)."""
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self.load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
