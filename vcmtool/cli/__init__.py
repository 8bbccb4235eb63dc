"""The ``vcmtool`` command group.

Subcommands live one per module and register themselves on ``main``. User mistakes surface as
one line on stderr with exit 2 (usage) or 1 (failure); Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import sys

import click

from vcmtool import __version__
from vcmtool.errors import VcmError


class VcmGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VcmError as e:
            click.echo(f"vcmtool: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("vcmtool: interrupted; no partial output was kept", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)


@click.group(cls=VcmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vcmtool")
def main() -> None:
    """Video coding for machines: learned per-CTU QP maps for standard encoders."""


def _register() -> None:
    from vcmtool.plugins import import_submodules

    import_submodules("vcmtool.cli", skip=("options", "summary"))


_register()
