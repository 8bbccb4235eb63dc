"""The ``vcmtool`` command group.

Subcommands live one per module and register themselves on ``main``. User mistakes surface as
one line on stderr with exit 2 (usage) or 1 (failure); Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import errno
import logging
import sys

import click

from vcmtool import __version__, interrupts
from vcmtool.errors import VcmError

# Failures of the machine or the user's files, not of vcmtool: reported in one line.
_USER_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOENT,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EFBIG,
    errno.EMFILE,
}


class VcmGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VcmError as e:
            click.echo(f"vcmtool: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:  # Ctrl-C, and SIGTERM/SIGHUP (vcmtool.interrupts)
            click.echo(f"vcmtool: {interrupts.describe(e)}; no partial output was kept", err=True)
            sys.exit(interrupts.exit_code(e))
        except BrokenPipeError:
            sys.exit(1)
        except OSError as e:  # a full disk, a read-only folder: the OS's words, one line
            if e.errno not in _USER_ERRNOS:
                raise
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"vcmtool: error: {where}{e.strerror}", err=True)
            sys.exit(1)


@click.group(cls=VcmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vcmtool")
@click.option(
    "-q", "--quiet", is_flag=True, help="print nothing on stderr but errors (no progress, summaries or notes)"
)
@click.option(
    "-v", "--verbose", count=True, help="log what runs (-v: steps and encoder commands, -vv: debug)"
)
def main(quiet: bool, verbose: int) -> None:
    """Video coding for machines: learned per-CTU QP maps for standard encoders.

    Results go to stdout (JSON with --json), everything about the work to stderr.
    """
    interrupts.install()  # also when called as vcmtool.cli.main (tests, embedding)
    from vcmtool.cli.summary import set_verbosity

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other; give one")
    set_verbosity(quiet)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    log = logging.getLogger("vcmtool")  # only ours: -v must not turn on every library's logs
    log.setLevel(level)
    log.propagate = False
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("vcmtool: %(message)s"))
        log.addHandler(handler)


def _register() -> None:
    from vcmtool.plugins import import_submodules

    import_submodules("vcmtool.cli", skip=("options", "summary"))


_register()
