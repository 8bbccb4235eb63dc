"""Plugin discovery: built-ins by module, third-party code by entry point.

Built-ins: :func:`import_submodules` imports every module of a package so its
``@REGISTRY.register`` decorators run. This is what makes a new encoder, QP-map source or command
"one file": dropping the module into its package is the registration; no list elsewhere needs an
edit.

Third-party packages register through ``importlib.metadata`` entry points, with no file inside
vcmtool. The groups:

- ``vcmtool.encoders``: encoder backends, subclasses of :class:`vcmtool.encoders.base.Encoder`
  (``vcmtool encode -c NAME``);
- ``vcmtool.qpmap_sources``: QP-map sources, subclasses of
  :class:`vcmtool.qpmap.sources.base.QPMapSource` (``--qpmap NAME`` or ``--qpmap NAME:ARG``; the
  text after the colon reaches the source as ``self.arg``; the options it declares as an
  ``Options`` dataclass (:mod:`vcmtool.plugin_options`) become ``--NAME-FIELD`` options of
  ``encode``, ``qpmap`` and ``bench`` and reach it, checked and typed, as ``self.opts(ctx)``);
- ``vcmtool.task_models``: task models, factories ``(arg: str = "", **options) -> TaskModel``
  (``--task-model NAME`` or ``NAME:ARG``).

The entry point's name is the name users type. Its value is either the object itself
(``mysrc = mypkg.maps:MySource``: registered under ``mysrc``) or a module whose import registers
with the decorator (``mysrc = mypkg.maps``, which runs ``@QPMAP_SOURCES.register("mysrc")``).
In ``pyproject.toml``::

    [project.entry-points."vcmtool.qpmap_sources"]
    mysrc = "mypkg.maps:MySource"

A group is loaded lazily, once per process: the first time its registry is asked for a name it
does not have, or for its list of names (``vcmtool doctor``, an unknown-name error). Built-in
names win: a plugin that claims one is skipped. A plugin that fails to load (import error,
wrong kind of object, a name already taken) costs one warning line on stderr naming its
distribution, and is skipped; it never stops the tool.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

GROUPS = ("vcmtool.encoders", "vcmtool.qpmap_sources", "vcmtool.task_models")


def import_submodules(package: str, skip: tuple[str, ...] = ()) -> None:
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name not in skip:
            importlib.import_module(f"{package}.{mod.name}")


@dataclass(frozen=True)
class Plugin:
    """One entry point of a plugin group, as loaded (``error`` is None) or skipped."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    error: str | None = None


PLUGINS: list[Plugin] = []  # every entry point seen so far, loaded or skipped (for reports)


class PluginError(Exception):
    """An entry point that loaded but cannot be registered."""


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(e, PluginError):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _dist_label(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    try:
        meta = dist.metadata
        return (meta["Name"] or "an unnamed distribution"), (meta["Version"] or "")
    except Exception:  # noqa: BLE001 - unreadable metadata must not stop the listing
        return "an unnamed distribution", ""


def _entry_points(group: str) -> list[tuple[importlib.metadata.EntryPoint, str, str]]:
    """(entry point, distribution, version) for ``group``, each distribution once (first on
    ``sys.path`` wins, as in ``importlib.metadata.entry_points``)."""
    out = []
    seen_dists: set[str] = set()
    seen_eps: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        name, version = _dist_label(dist)
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen_dists:
            continue
        seen_dists.add(key)
        try:
            eps = list(dist.entry_points.select(group=group))
        except Exception as e:  # noqa: BLE001 - a malformed entry_points.txt
            log.warning(
                "warning: cannot read the entry points of distribution %s %s: %s; its plugins are skipped",
                name,
                version,
                _one_line(e),
            )
            continue
        for ep in eps:
            if (ep.name, ep.value) not in seen_eps:
                seen_eps.add((ep.name, ep.value))
                out.append((ep, name, version))
    return out


def _register(registry: Any, ep: importlib.metadata.EntryPoint, obj: object, before: int) -> None:
    if isinstance(obj, ModuleType):  # a module that registers itself with the decorator
        if len(registry) == before:
            raise PluginError(f"module {ep.value} registered no {registry.kind}")
        return
    held = registry.peek(ep.name)
    if held is obj:  # the decorator already did it
        return
    if held is not None:
        raise PluginError(
            f"the name {ep.name!r} is taken by {getattr(held, '__module__', '?')}."
            f"{getattr(held, '__qualname__', held)!s}"
        )
    if registry.accepts is not None and not registry.accepts(obj):
        raise PluginError(f"{ep.value} is not a {registry.kind}")
    registry.register(ep.name)(obj)


def load_entry_points(registry: Any) -> None:
    """Load every entry point of ``registry.plugin_group`` into ``registry`` (see module doc).

    Called by :meth:`vcmtool.registry.Registry.load_plugins`, which makes it happen once.
    """
    group = registry.plugin_group
    try:
        found = _entry_points(group)
    except Exception as e:  # noqa: BLE001 - a broken environment must not stop the tool
        log.warning("warning: cannot list %s plugins: %s", group, _one_line(e))
        return
    for ep, dist, version in found:
        error = None
        try:
            if not ep.name or ":" in ep.name:
                raise PluginError(f"{ep.name!r} is not a usable name (empty or with ':')")
            before = len(registry)
            _register(registry, ep, ep.load(), before)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any plugin failure is skipped
            error = _one_line(e)
            log.warning(
                "warning: %s plugin %r (%s) from distribution %s %s skipped: %s",
                registry.kind,
                ep.name,
                ep.value,
                dist,
                version,
                error,
            )
        PLUGINS.append(Plugin(group, ep.name, ep.value, dist, version, error))
