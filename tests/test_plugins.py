"""Third-party plugins through entry points: a distribution made here, never pip-installed, is
found on PYTHONPATH by the real CLI; a broken one costs a warning line, not the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import half_psnr_gap
from vcmtool.errors import UsageError
from vcmtool.qpmap.qpm import read_qpm
from vcmtool.registry import Registry

FAST = ("--preset", "ultrafast")

GOOD = '''
"""A QP-map source and a task model from outside vcmtool."""
import numpy as np

from vcmtool.qpmap.raster import grid_shape
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources.base import QPMapSource
from vcmtool.tasks.base import Detections, TaskModel


class HalfSource(QPMapSource):
    """``myplugin[:D]``: left half QP - D, right half QP + D (D defaults to 6)."""

    name = "myplugin"

    def process(self, clip, ctx):
        d = int(self.arg) if self.arg else 6
        gh, gw = grid_shape(clip.info.height, clip.info.width, ctx.ctu)
        m = np.full((clip.count(), gh, gw), ctx.qp + d, np.int16)
        m[:, :, : gw // 2] = ctx.qp - d
        return QPMaps(m, ctx.ctu)

    def versions(self):
        return {"myplugin": "0.1"}


class LeftHalfDetector(TaskModel):
    """Finds one "person" covering the left half of every image."""

    name = "lefthalf"
    class_names = ["person"]

    @property
    def version(self):
        return "lefthalf-0.1"

    def detect_batch(self, images):
        return [Detections([[0, 0, im.shape[1] / 2, im.shape[0]]], [0.9], [0], self.class_names)
                for im in images]


def make_lefthalf(arg="", **options):
    return LeftHalfDetector()


def helper():
    return 1
'''


def _dist(site: Path, name: str, version: str, entry_points: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def site(tmp_path) -> Path:
    """A folder holding one working plugin distribution and one broken one."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "vcm_goodplugin.py").write_text(GOOD)
    _dist(
        site,
        "vcm-goodplugin",
        "0.1",
        """
        [vcmtool.qpmap_sources]
        myplugin = vcm_goodplugin:HalfSource
        [vcmtool.task_models]
        lefthalf = vcm_goodplugin:make_lefthalf
    """,
    )
    (site / "vcm_badenc.py").write_text("raise RuntimeError('needs libfoo.so.3\\nsecond line')\n")
    _dist(
        site,
        "vcm-broken",
        "0.2",
        """
        [vcmtool.qpmap_sources]
        brokensrc = vcm_not_there:Thing
        notasource = vcm_goodplugin:helper
        roi = vcm_goodplugin:HalfSource
        [vcmtool.encoders]
        brokenenc = vcm_badenc
    """,
    )
    return site


def run_cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "vcmtool", *args], capture_output=True, text=True, env=env, timeout=600
    )


def _warnings(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "warning:" in ln]


def test_plugin_source_encodes_a_real_bitstream(site, bikes_y4m, tmp_path):
    out, qpm = tmp_path / "p.hevc", tmp_path / "p.qpm"
    r = run_cli(
        site,
        "encode",
        str(bikes_y4m),
        "--qpmap",
        "myplugin:8",
        "--qp",
        "32",
        "-o",
        str(out),
        "--qpm-out",
        str(qpm),
        "--json",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["qpmap"]["source"] == "myplugin:8" and rep["qpmap"]["myplugin"] == "0.1"
    m = read_qpm(qpm).data
    assert (m[:, :, :2] == 24).all() and (m[:, :, 2:] == 40).all()  # the option reached it
    assert out.stat().st_size == rep["bytes"] > 0 and half_psnr_gap(bikes_y4m, out) > 3.0
    # the broken distribution's QP-map entries: one line each, naming it; no traceback
    warns = _warnings(r.stderr)
    assert len(warns) == 3 and all("vcm-broken 0.2" in w for w in warns), r.stderr
    assert any("'brokensrc'" in w and "ModuleNotFoundError" in w for w in warns)
    assert any("'notasource'" in w and "is not a QP-map source" in w for w in warns)
    assert any("'roi'" in w and "is taken" in w for w in warns)
    assert "Traceback" not in r.stderr and "brokenenc" not in r.stderr  # encoders not asked


def test_plugin_task_model_drives_roi(site, bikes_y4m, tmp_path):
    qpm = tmp_path / "t.qpm"
    r = run_cli(
        site,
        "qpmap",
        str(bikes_y4m),
        "--qpmap",
        "roi",
        "--task-model",
        "lefthalf",
        "--roi-margin",
        "0",
        "-o",
        str(qpm),
    )
    assert r.returncode == 0, r.stderr
    m = read_qpm(qpm).data
    assert (m[:, :, :2] == 28).all() and (m[:, :, 2:] == 38).all()


def test_broken_plugins_warn_and_the_tool_goes_on(site, bikes_y4m, tmp_path):
    r = run_cli(site, "doctor", "--json")  # lists encoders: loads the encoder group
    assert r.returncode == 0, r.stderr
    assert "kvazaar" in json.loads(r.stdout)["encoders"]
    warns = _warnings(r.stderr)
    assert len(warns) == 1 and "'brokenenc'" in warns[0] and "vcm-broken 0.2" in warns[0]
    assert "needs libfoo.so.3" in warns[0] and "second line" not in r.stderr
    assert "Traceback" not in r.stderr

    r = run_cli(site, "encode", str(bikes_y4m), "--qpmap", "brokensrc", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 4 and len(_warnings(r.stderr)) == 3, r.stderr
    assert "unknown QP-map source 'brokensrc'" in lines[-1] and "myplugin" in lines[-1]


def test_loading_is_lazy_and_once(site, monkeypatch, caplog):
    import importlib.metadata

    from vcmtool import plugins

    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    reg: Registry = Registry(
        "QP-map source", plugin_group="vcmtool.qpmap_sources", accepts=lambda o: isinstance(o, type)
    )
    reg.register("builtin")(object)
    reg.register("roi")(int)  # a plugin may not take a built-in's name
    calls = []
    real = plugins.load_entry_points
    monkeypatch.setattr(plugins, "load_entry_points", lambda r: (calls.append(r), real(r)))
    assert reg.get("builtin") is object and "builtin" in reg and not calls  # no miss: no loading
    assert "myplugin" in reg and len(calls) == 1
    assert reg.get("myplugin").__name__ == "HalfSource"
    with pytest.raises(
        UsageError, match="unknown QP-map source 'nope'; choose one of: builtin, myplugin, roi"
    ):
        reg.get("nope")
    assert reg.names() == ["builtin", "myplugin", "roi"] and len(calls) == 1  # loaded once
    assert reg.get("roi") is int
    warns = [r.getMessage() for r in caplog.records if r.name == "vcmtool.plugins"]
    assert len(warns) == 3 and all("vcm-broken 0.2" in w and "\n" not in w for w in warns)
    assert {p.name for p in plugins.PLUGINS if p.error is None} >= {"myplugin"}
    assert np.isin(["brokensrc", "notasource"], [p.name for p in plugins.PLUGINS]).all()
