"""Options shared by several commands (input geometry, map source), defined once.

The QP-map sources' own options are not written here: each source declares them (its
``Options`` dataclass, :mod:`vcmtool.plugin_options`) and :class:`MapSourceCommand` generates
them for ``encode``, ``qpmap`` and ``bench``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import click

log = logging.getLogger(__name__)


def missing_payload_option(flag: str, help: str) -> Callable:
    """The CDRE receiver's policy for frames sent without a payload (``cdre detect``, ``bench``)."""
    from vcmtool.sidestreams.cdre import DEFAULT_MISSING, MISSING_POLICIES

    return click.option(
        flag, type=click.Choice(MISSING_POLICIES), default=DEFAULT_MISSING, show_default=True, help=help
    )


def input_options(f: Callable) -> Callable:
    opts = [
        click.option("--size", help="WxH, required for raw .yuv input"),
        click.option("--fps", type=float, help="frame rate (raw input; overrides containers)"),
        click.option(
            "--pix-fmt", type=click.Choice(["yuv420p", "yuv420p10le"]), help="raw input sample format"
        ),
        click.option("--frames", type=click.IntRange(min=1), help="encode at most N frames"),
        click.option(
            "--skip", type=click.IntRange(min=0), default=0, show_default=True, help="skip the first N frames"
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


SOURCES_HELP = "{sources}"  # in a --qpmap help text: replaced by the registry's sources


class MapIntervalType(click.ParamType):
    """``--map-interval``: N >= 1, ``auto`` or ``auto:N`` (:mod:`vcmtool.qpmap.propagate`)."""

    name = "N|auto[:N]"

    def convert(self, value, param, ctx):
        from vcmtool.errors import UsageError
        from vcmtool.qpmap.propagate import parse_map_interval

        try:
            return parse_map_interval(value).value
        except UsageError as e:
            self.fail(str(e).removeprefix("--map-interval ").strip(), param, ctx)


def source_options(f: Callable) -> Callable:
    """The map-source knobs every command that makes maps takes (``--ctu``, ``--map-interval``,
    ``--task-model``). The sources' own options (``--roi-*``, a plug-in's) are not listed here:
    :class:`MapSourceCommand` makes them from the sources' ``Options``."""
    opts = [
        click.option(
            "--ctu",
            type=click.Choice(["16", "32", "64", "128"]),
            default="64",
            show_default=True,
            help="QP-map block size in pixels",
        ),
        click.option(
            "--map-interval",
            type=MapIntervalType(),
            default="1",
            show_default=True,
            help="predict a map on every frame (1), every N frames, or auto / auto:N: on cuts, "
            "drift and motion, at most N (8) frames apart; objects' QPs move with them in between",
        ),
        click.option(
            "--task-model",
            default="yolov3-tiny",
            show_default=True,
            help="task model for roi/auto maps: yolov3-tiny or onnx:PATH",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def map_options(f: Callable) -> Callable:
    """``--qpmap``, ``--qp`` and :func:`source_options` (use with :class:`MapSourceCommand`)."""
    opts = [
        click.option(
            "--qpmap", "qpmap", default="none", show_default=True, help=f"QP-map source: {SOURCES_HELP}"
        ),
        click.option(
            "--qp",
            type=click.IntRange(0, 63),
            default=32,
            show_default=True,
            help="base QP (uniform QP for --qpmap none)",
        ),
    ]
    f = source_options(f)
    for o in reversed(opts):
        f = o(f)
    return f


def sources_help() -> str:
    """``none (uniform --qp) | roi (...) | ...``: every QP-map source (plug-ins included) as
    ``--qpmap`` names it."""
    from vcmtool.qpmap.sources import QPMAP_SOURCES

    names = sorted(QPMAP_SOURCES.names(), key=lambda n: (n != "none", n))
    listed = " | ".join(QPMAP_SOURCES.get(n).usage or n for n in names)
    return f"{listed} (plug-ins: entry-point group vcmtool.qpmap_sources)"


class MapSourceCommand(click.Command):
    """A command that makes QP maps. On first use (parsing, ``--help``, completion) it adds one
    ``--<prefix>-<field>`` option per field of every source's ``Options`` (plug-ins found
    through entry points included; roi's are ``--roi-qp-in`` ...) after ``--task-model``, and
    lists the sources in the ``--qpmap`` help. Other commands never load the plug-ins."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if getattr(self, "source_specs", None) is None:
            self.source_specs: dict = {}  # before adding: plug-in code may ask for them again
            self._add_source_options()
        return super().get_params(ctx)

    def _add_source_options(self) -> None:
        from vcmtool.qpmap.sources import option_groups

        taken = {o for p in self.params for o in p.opts} | {p.name for p in self.params}
        added: list[click.Parameter] = []
        for group in option_groups():
            for s in group.specs:
                if s.cli in taken or s.key in taken:
                    log.warning(
                        "warning: option %s of QP-map source %s is one of `%s`'s own; skipped",
                        s.cli,
                        ", ".join(group.sources),
                        self.name,
                    )
                    continue
                taken |= {s.cli, s.key}
                # text in, parsed and checked by collect_map_options (one line naming the option)
                default = None if s.default is None else str(s.default)
                rng = f" [{s.span()}]" if s.span() else ""
                added.append(
                    click.Option(
                        [s.cli, s.key],
                        type=click.STRING,
                        default=default,
                        metavar=s.metavar,
                        show_default=default is not None,
                        help=f"{', '.join(group.sources)}: {s.help}{rng}",
                    )
                )
                self.source_specs[s.key] = s
        names = [p.name for p in self.params]
        at = names.index("task_model") + 1 if "task_model" in names else len(self.params)
        self.params[at:at] = added
        for p in self.params:
            if isinstance(p, click.Option) and p.help and SOURCES_HELP in p.help:
                p.help = p.help.replace(SOURCES_HELP, sources_help())


def collect_map_options(kw: dict, qpmaps: list[str]) -> dict:
    """``EncodeJob.map_options`` from a :class:`MapSourceCommand`'s keyword arguments: pops the
    sources' options, parses and checks every value given (one line naming the option), and
    keeps those of the sources named in ``qpmaps`` (``roi``, ``dets:FILE``, ...), at their
    given values or defaults, under their flat keys (``roi_qp_in``)."""
    from vcmtool.plugin_options import parse_text
    from vcmtool.qpmap.sources import options_of

    ctx = click.get_current_context(silent=True)
    generated = getattr(ctx.command, "source_specs", None) or {} if ctx is not None else {}
    given = {k: parse_text(s, kw.pop(k)) for k, s in generated.items() if k in kw}
    out = {}
    for s in options_of(qpmaps):
        v = given.get(s.key)
        out[s.key] = v if v is not None else (list(s.default) if isinstance(s.default, list) else s.default)
    return out


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise click.BadParameter(f"{it!r} is not KEY=VALUE", param_hint="--param")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, sort_keys=False))
