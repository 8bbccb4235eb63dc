"""VVenC (VVC) through ffmpeg's libvvenc: frame QP only (no block-QP API exists).

Measured recipe: ``-c:v libvvenc -qp N -qpa 0`` with 10-bit input. ffmpeg gives one QP per
clip, so a map whose frames differ is reduced to the clip's mean QP (noted in the report).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcmtool.encoders.base import (
    ENCODERS,
    Capabilities,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    ProgressFn,
)
from vcmtool.encoders.ffmpeg import ffmpeg_encode, ffmpeg_version, has_encoder
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps

PRESETS = {"faster", "fast", "medium", "slow", "slower"}


@ENCODERS.register("vvenc")
class VVenC(Encoder):
    name = "vvenc"
    presets = tuple(sorted(PRESETS))
    # checked against libvvenc in the imageio-ffmpeg build (lmcs, wpp, deblock are not options)
    param_keys = frozenset({"alf", "sao", "ccalf", "dmvr", "bdof", "mts", "sbt", "isp", "lfnst", "affine"})
    owned_params = {
        "qp": "--qp / --qpmap",
        "qpa": "--qpmap",
        "intraperiod": "--intra-period",
        "gopsize": "--intra-period",
        "decodingrefreshtype": "--intra-period",
        "threads": "--threads",
        "preset": "--preset",
    }

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities("vvc", None, (0, 63), (8, 10), ".266")

    @classmethod
    def probe(cls) -> Probe:
        if has_encoder("libvvenc"):
            return Probe(True, f"libvvenc in ffmpeg {ffmpeg_version()}", "ffmpeg, frame QP only")
        return Probe(False, detail="no ffmpeg with libvvenc")

    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        qps = maps.frame_qps()
        qp = int(np.rint(qps.mean()))
        notes = list(maps.notes)
        if (qps != qp).any():
            notes.append(f"vvenc via ffmpeg takes one QP per clip: used {qp} for all frames")
            maps = QPMaps(np.full_like(maps.data, qp), maps.ctu, notes)
        vparams = [f"{k}={v}" for k, v in settings.params.items()]
        if settings.intra_period == 1:
            vparams += ["intraperiod=1", "gopsize=1", "decodingrefreshtype=idr"]
        args = [
            "-c:v",
            "libvvenc",
            "-qp",
            str(qp),
            "-qpa",
            "0",
            "-preset",
            settings.preset,
            "-threads",
            str(max(1, settings.threads)),
        ]
        if vparams:
            args += ["-vvenc-params", ":".join(vparams)]
        cmd = ffmpeg_encode(
            args, "vvc", clip.info, clip.frames(), out_path, progress, pix_fmt="yuv420p10le", what="vvenc"
        )
        return EncodeResult(out_path, maps, notes, cmd)
