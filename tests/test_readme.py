"""Every command line in README.md runs as written, on small inputs.

The README's examples use the clip `make demo` leaves in ``demo-out/bikes-30-59.y4m``; here a
4-frame 256x128 crop of the same clip stands in for it (small inputs, same commands). Each
```sh block runs in bash with ``set -e -o pipefail`` in a fresh folder, ``vcmtool`` being this
checkout's CLI; each ```python block runs with this interpreter. Lines that install the tool
(``make ...``, ``pip install ...``) are not run here: ``.ci/run`` is ``make test`` itself, and
tests/test_install.py covers the pip route. ```text blocks are illustrations with the user's own
files and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_crop_y4m

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.S)
_SKIP = re.compile(r"^\s*(make|pip) ")


def blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return [(kind, body) for kind, body in _BLOCK.findall(text)]


def _runnable(body: str) -> str:
    lines, out = body.replace("\\\n", " ").splitlines(), []
    for ln in lines:
        out.append(f": skipped {ln!r}" if _SKIP.match(ln) else ln)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    (d / "demo-out").mkdir()
    write_crop_y4m(d / "demo-out" / "bikes-30-59.y4m", "bikes", 4)
    bin_dir = d / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vcmtool"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vcmtool "$@"\n')
    exe.chmod(0o755)
    return d


def test_readme_has_runnable_blocks():
    kinds = [k for k, _ in blocks()]
    assert kinds.count("sh") >= 4 and "python" in kinds


@pytest.mark.parametrize("index", range(len(blocks())))
def test_readme_block_runs(workdir, index):
    kind, body = blocks()[index]
    env = dict(
        os.environ,
        PATH=f"{workdir / 'bin'}:{os.environ['PATH']}",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    if kind == "sh":
        cmd = ["bash", "-c", "set -e -o pipefail\n" + _runnable(body)]
    else:
        cmd = [sys.executable, "-c", body]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=900)
    assert r.returncode == 0, f"README block {index} ({kind}) failed:\n{body}\n{r.stderr.decode()[-3000:]}"
