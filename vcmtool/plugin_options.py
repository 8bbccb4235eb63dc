"""Options a plug-in owns: a dataclass whose fields carry their help, range and CLI name.

A QP-map source declares its knobs as a frozen dataclass and attaches it to the class
(``Options = StripesOptions``); every field is made with :func:`option`::

    @dataclass(frozen=True)
    class StripesOptions:
        width: int = option(2, help="stripe width in CTUs", min=1, max=64)

From that one declaration vcmtool

- generates the command-line option ``--<prefix>-<field>`` (``--stripes-width``; ``prefix`` is
  the class attribute ``prefix`` of the dataclass, else the source's ``name``; ``option(cli=...)``
  names one option explicitly) for ``encode``, ``qpmap`` and ``bench``;
- stores the values in ``EncodeJob.map_options`` under *flat keys*: the CLI name without its
  dashes, ``-`` as ``_`` (``stripes_width``, ``roi_qp_in``), the form manifests and golden files
  carry;
- checks them with :func:`check_value`, whether they come from the command line, a manifest, a
  golden file or the Python API: one line naming the option (``--stripes-width 0: out of range
  (1..64)``);
- hands the source an instance of the dataclass (``QPMapSource.opts(ctx)``).

Field types: ``int``, ``float``, ``str``, ``bool`` and ``list[str]`` (comma-separated on the
command line), each optionally ``| None``. ``None`` always means "the default".
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vcmtool.errors import UsageError

_META = "vcmtool"
_CLI = re.compile(r"^--[a-z0-9][a-z0-9-]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
KINDS = (int, float, str, bool, list)


def option(
    default: Any = None,
    *,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    cli: str | None = None,
) -> Any:
    """A field of a plug-in's options dataclass: its default, help text, range (``min``/``max``
    for numbers, ``choices`` for strings) and, when it is not ``--<prefix>-<field>``, its CLI
    name."""
    if isinstance(default, list | dict | set):
        raise TypeError("option(): use None, not a mutable default (None means the default)")
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices else None, "cli": cli}
    return dataclasses.field(default=default, metadata={_META: meta})


@dataclass(frozen=True)
class OptionSpec:
    """One option of a plug-in, as every front end sees it."""

    field: str  # the dataclass field ("qp_in")
    cli: str  # "--roi-qp-in"
    kind: type  # int, float, str, bool or list (of str)
    optional: bool  # None allowed (means: the default)
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """The flat key of ``EncodeJob.map_options`` (``roi_qp_in``)."""
        return self.cli[2:].replace("-", "_")

    @property
    def metavar(self) -> str:
        if self.choices:
            return "[" + "|".join(self.choices) + "]"  # as click shows a Choice
        return {int: "INTEGER", float: "NUMBER", bool: "BOOLEAN", list: "A,B,..."}.get(self.kind, "TEXT")

    def span(self) -> str:
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            return f"{lo:g}..{hi:g}"
        return f">= {lo:g}" if lo is not None else f"<= {hi:g}" if hi is not None else ""


def _kind(hint: Any, where: str) -> tuple[type, bool]:
    optional = False
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{where}: one type (or TYPE | None) per option, not {hint}")
        hint = args[0]
    origin = typing.get_origin(hint) or hint
    if origin is list:
        if typing.get_args(hint) not in ((), (str,)):
            raise TypeError(f"{where}: lists hold strings (list[str]), not {hint}")
        return list, optional
    if origin not in KINDS:
        raise TypeError(f"{where}: option types are int, float, str, bool or list[str], not {hint}")
    return origin, optional


@functools.cache
def option_specs(options_cls: type, prefix: str) -> tuple[OptionSpec, ...]:
    """The options of ``options_cls`` (a dataclass of :func:`option` fields), CLI names made with
    ``prefix`` where a field names none. A malformed declaration is a ``TypeError``."""
    if not dataclasses.is_dataclass(options_cls):
        raise TypeError(f"{options_cls!r} is not a dataclass")
    hints = typing.get_type_hints(options_cls)
    out = []
    for f in dataclasses.fields(options_cls):
        where = f"{options_cls.__qualname__}.{f.name}"
        meta = f.metadata.get(_META)
        if meta is None:
            raise TypeError(f"{where}: declare it with vcmtool.plugin_options.option(...)")
        kind, optional = _kind(hints[f.name], where)
        cli = meta["cli"] or f"--{prefix}-{f.name.replace('_', '-')}"
        if not prefix and not meta["cli"]:
            raise TypeError(f"{where}: no CLI name (give the source a name or option(cli=...))")
        if not _CLI.match(cli):
            raise TypeError(f"{where}: {cli!r} is not a CLI option name (--lower-case-words)")
        spec = OptionSpec(
            f.name,
            cli,
            kind,
            optional or f.default is None,
            f.default,
            meta["help"],
            meta["min"],
            meta["max"],
            meta["choices"],
        )
        if f.default is not None:
            check_value(spec, f.default)
        out.append(spec)
    return tuple(out)


def check_value(spec: OptionSpec, value: Any) -> None:
    """Refuse a value ``spec`` does not take: one-line :class:`UsageError` naming the option.
    ``None`` (the default) is always taken."""
    if value is None:
        return
    name, kind = spec.cli, spec.kind
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{name} {value!r}: use true or false")
        return
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name} {value!r}: not an integer")
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            raise UsageError(f"{name} {value}: out of range ({spec.span()})")
        return
    if kind is float:
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if (
            bad
            or not math.isfinite(value)
            or (spec.min is not None and value < spec.min)
            or (spec.max is not None and value > spec.max)
        ):
            rng = f" in {spec.span()}" if spec.span() else ""
            raise UsageError(f"{name} {value!r}: use a finite number{rng}")
        return
    if kind is str:
        if not isinstance(value, str):
            raise UsageError(f"{name} {value!r}: not a string")
        if spec.choices and value not in spec.choices:
            raise UsageError(f"{name} {value!r}: use one of {', '.join(spec.choices)}")
        return
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{name} {value!r}: use a list of strings (comma-separated on the command line)")


def parse_text(spec: OptionSpec, text: str | None) -> Any:
    """A command-line value (text) as ``spec``'s type, checked; ``None`` stays ``None``."""
    if text is None:
        return None
    t = text.strip()
    value: Any
    if spec.kind is int:
        if not re.fullmatch(r"[+-]?\d+", t):
            raise UsageError(f"{spec.cli} {text!r}: not an integer")
        value = int(t)
    elif spec.kind is float:
        try:
            value = float(t)
        except ValueError:
            raise UsageError(f"{spec.cli} {text!r}: not a number") from None
    elif spec.kind is bool:
        if t.lower() not in _TRUE | _FALSE:
            raise UsageError(f"{spec.cli} {text!r}: use true or false")
        value = t.lower() in _TRUE
    elif spec.kind is list:
        value = [c.strip() for c in text.split(",") if c.strip()] or None
    else:
        value = text
    check_value(spec, value)
    return value


def _converted(spec: OptionSpec, value: Any) -> Any:
    if value is None:
        return spec.default
    if spec.kind is float:
        return float(value)
    if spec.kind is list:
        return list(value)
    return value


def make_options(
    options_cls: type, specs: tuple[OptionSpec, ...], values: Mapping[str, Any], owner: str
) -> Any:
    """An instance of ``options_cls`` from field values (``{"qp_in": 24}``); unset or ``None``
    fields take their defaults. Unknown fields and bad values are :class:`UsageError`s."""
    by_field = {s.field: s for s in specs}
    unknown = sorted(set(values) - set(by_field))
    if unknown:
        known = ", ".join(by_field) or "none"
        raise UsageError(f"{owner} has no option {unknown[0]!r}; its options: {known}")
    kw = {}
    for s in specs:
        check_value(s, values.get(s.field))
        kw[s.field] = _converted(s, values.get(s.field))
    return options_cls(**kw)


def fields_from_flat(specs: tuple[OptionSpec, ...], flat: Mapping[str, Any]) -> dict[str, Any]:
    """The field values ``flat`` (``EncodeJob.map_options``: ``{"roi_qp_in": 24, ...}``) holds for
    ``specs``; keys of other owners are left alone."""
    return {s.field: flat[s.key] for s in specs if flat.get(s.key) is not None}


def to_flat(specs: tuple[OptionSpec, ...], options: Any) -> dict[str, Any]:
    """``options`` (an instance) as flat keys, in field order."""
    out = {}
    for s in specs:
        v = getattr(options, s.field)
        out[s.key] = list(v) if isinstance(v, list | tuple) else v
    return out


__all__ = [
    "OptionSpec",
    "check_value",
    "fields_from_flat",
    "make_options",
    "option",
    "option_specs",
    "parse_text",
    "to_flat",
]
