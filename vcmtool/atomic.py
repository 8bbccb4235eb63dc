"""Atomic output files: write to a temp file beside the target, rename on success.

An interrupted or failed run (Ctrl-C, SIGTERM and SIGHUP included) leaves neither a half file
nor the temp file. Only the target's own folder is created, and a target that exists but is not a
regular file (a device, a FIFO, a directory) is refused: the rename would replace it.

Temp files carry an owner tag when one is set (:func:`owner_tag`): ``vcmtool batch`` sets a tag
per state folder so its clean-up after a kill removes only its own temp files, never those of
another batch writing into the same output folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vcmtool.errors import UsageError, VcmError

_TAG: str = ""


def set_owner_tag(tag: str) -> None:
    """Mark the temp files this process creates from now on with ``tag`` (letters/digits)."""
    global _TAG
    _TAG = re.sub(r"[^A-Za-z0-9]", "", tag)[:16]


def owner_tag() -> str:
    return _TAG


def temp_glob(target: Path, tag: str = "") -> str:
    """The glob pattern of temp files for ``target`` (those carrying ``tag``, when given)."""
    mid = f"{tag}-*" if tag else "*"
    return f".{target.name}.{mid}.part{target.suffix}"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], parents: bool = True) -> Iterator[Path]:
    """Yield a temp path in the target's directory; it replaces ``target`` only on success.

    ``parents=False`` (user-named outputs) creates only the target's own folder; internal trees
    (datasets, bench folders) create what they need."""
    target = Path(target)
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{target} exists and is not a regular file; not replacing it")
    try:
        target.parent.mkdir(parents=parents, exist_ok=True)
    except FileNotFoundError:
        raise UsageError(f"{target}: folder {target.parent.parent} does not exist") from None
    except OSError as e:
        raise VcmError(f"{target}: cannot create folder {target.parent} ({e.strerror})") from None
    # Keep the real suffix last: decoders and muxers choose their format from it.
    prefix = f".{target.name}.{_TAG}-" if _TAG else f".{target.name}."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".part{target.suffix}", dir=target.parent)
    except OSError as e:
        raise VcmError(f"{target}: cannot write in {target.parent} ({e.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; outputs should get the usual permissions of a new file.
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(target, text.encode())
