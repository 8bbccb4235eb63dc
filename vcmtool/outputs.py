"""The output policy: which paths a run may write, checked before any work starts.

One set of rules for ``encode``, ``qpmap``, ``batch``, ``bench`` and ``verify``, because an
adversarial pass found every one of them able to destroy data with exit 0: ``-o`` equal to the
input replaced the input, two outputs of one run on the same path left the wrong file behind,
``-o /dev/null`` as root replaced the device node with a regular file (an atomic rename goes over
whatever the path is), and untrusted manifests could write anywhere. A run now refuses, with one
line and exit 2, any output that

- is an input of the run, or another output of the same run (or of the same batch of rows);
- exists and is not a regular file (a directory, device, FIFO or socket);
- is a symbolic link whose target lies outside the link's own folder (writing would follow the
  link somewhere the user did not name);
- lies outside the confining folder, when one is given (``batch --outdir`` for manifests);
- needs more than its own parent folder created (``/nonexistent/d/x.qpm`` is a typo, not a
  request to build a tree at the filesystem root); inside a confining folder the caller creates
  the folders (``batch`` does, for rows inside ``--outdir``).

Existing regular files are replaced (atomically). The CLI's ``encode`` and ``qpmap`` first refuse
an existing output unless ``-y/--overwrite`` (:func:`refuse_existing`); batch and bench manage
their own output folders and resume in them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vcmtool.errors import UsageError


@dataclass(frozen=True)
class Output:
    """One path a run will write, and the option that named it (for messages)."""

    path: str
    option: str


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_output(out: Output, confine_to: Path | None = None) -> None:
    """Refuse one output path that breaks the policy (see the module docstring)."""
    p = Path(out.path)
    name = f"{out.option} {out.path}"
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UsageError(f"{name}: cannot use this path ({e.strerror})") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        target = _real(p)
        if not _is_within(target, _real(p.parent)):
            raise UsageError(
                f"{name} is a symbolic link to {target}, outside its folder; name the real file instead"
            )
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None  # a dangling link inside the folder: the rename replaces the link
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "not a regular file"
        )
        raise UsageError(f"{name} is {kind}; outputs must be regular files (name a file path)")
    parent = _real(p.parent)
    inside = confine_to is not None and _is_within(parent, _real(confine_to))
    if not inside and not parent.exists() and not parent.parent.is_dir():
        raise UsageError(
            f"{name}: folder {parent.parent} does not exist; vcmtool creates only an output's own folder"
        )
    if confine_to is not None and not _is_within(_real(p), _real(confine_to)):
        raise UsageError(
            f"{name} is outside the output folder {confine_to}; use a path inside it or pass --allow-outside"
        )


def check_outputs(
    outputs: Iterable[Output], inputs: Sequence[str] = (), confine_to: Path | None = None
) -> None:
    """Check every output of a run (or of all rows of a batch) against the policy, the run's
    inputs and each other. ``-`` (stdin/stdout) is not a file and is skipped."""
    seen: dict[Path, Output] = {}
    ins = {_real(i): i for i in inputs if i and i != "-"}
    in_ids = set()
    for i in ins:
        try:
            st = os.stat(i)
            in_ids.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    for out in outputs:
        if not out.path or out.path == "-":
            continue
        check_output(out, confine_to)
        real = _real(out.path)
        same_input = real in ins
        if not same_input and in_ids:
            try:
                st = os.stat(real)
                same_input = (st.st_dev, st.st_ino) in in_ids  # hard links, bind mounts
            except OSError:
                pass
        if same_input:
            raise UsageError(
                f"{out.option} {out.path} is an input of this run; writing it would "
                "destroy the input (choose another output path)"
            )
        if real in seen:
            first = seen[real]
            raise UsageError(f"{out.option} {out.path} is also {first.option}; give each output its own path")
        seen[real] = out


def refuse_existing(outputs: Iterable[Output], how: str = "pass -y/--overwrite") -> None:
    """ffmpeg's habit: an existing output is replaced only when the user said ``-y``."""
    for out in outputs:
        if out.path and out.path != "-" and os.path.lexists(out.path):
            raise UsageError(f"{out.option} {out.path} exists; {how} to replace it")


__all__ = ["Output", "check_output", "check_outputs", "refuse_existing"]
