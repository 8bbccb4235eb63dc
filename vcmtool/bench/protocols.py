"""Named bench protocols: a paper's evaluation grid as one option (``vcmtool bench --protocol``).

A protocol fills the bench options the command line leaves at their defaults; an option given
on the command line wins, and ``--param`` keys merge (the command line's value wins per key). The
report records the options that ran, so a protocol run is reproducible without the name.

``vcs``: the benchmark protocol of "coding framework and benchmark for low-bitrate video
understanding" (VCS): x264 and x265 ``veryfast`` (VVenC ``faster``, its fastest preset but one)
with zero latency (no B-frames, which vcmtool's drivers never use, and no rate lookahead:
``rc-lookahead=0``), a GOP of 10 frames, CRF 35 to 47
(the paper's points, 0.01-0.05 bits per pixel on 720p development clips), VVenC beside them at the
same numbers as QPs (it has no CRF; docs/results.md measured these at 0.0085-0.026 bpp, inside the
paper's range), and the methods codec only (``none``), the latent fusion network alone (``lfn``),
VCS (``vcs``) and the detector ROI map (``roi``, not on VVenC, which sets one QP per frame), pooled
over the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    options: dict[str, Any]  # bench CLI parameter names -> values (as click would pass them)
    params: tuple[str, ...] = ()  # --param [CODEC:]KEY=VALUE entries


PROTOCOLS: dict[str, Protocol] = {
    "vcs": Protocol(
        "vcs",
        "VCS benchmark: x264/x265 veryfast zero-latency at CRF 35-47 and VVenC at QP 35-47, GOP 10, "
        "codec only vs LFN-only vs VCS vs ROI, pooled",
        {
            "codecs": "x264,x265,vvenc",
            "qpmaps": "none,lfn,vcs,roi",
            "qps": [35, 39, 43, 47],
            "crf": True,
            "preset": "veryfast,vvenc:faster",
            "intra_period": 10,
            "pool": True,
        },
        ("x264:rc-lookahead=0", "x265:rc-lookahead=0"),
    ),
}


__all__ = ["PROTOCOLS", "Protocol"]
