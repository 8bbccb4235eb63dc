"""Versions and checksums for reports: every output's md5, every tool's version."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path

import numpy as np

import vcmtool


def md5_file(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.cache
def git_commit() -> str:
    try:
        r = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(vcmtool.__file__).parent,
            timeout=5,
        )
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def base_versions() -> dict[str, str]:
    from vcmtool import native

    v = {
        "vcmtool": vcmtool.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "native": "yes" if native.NATIVE else "no (numpy fallback)",
    }
    commit = git_commit()
    if commit:
        v["git"] = commit
    return v
