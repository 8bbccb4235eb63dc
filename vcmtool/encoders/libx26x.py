"""x265 (HEVC) and x264 (AVC): per-CTU QPs through the native C-API drivers, frame QPs
through ffmpeg.

The two backends differ only in names and numbers, so they share this module: per-block QP
needs the C API (``quantOffsets`` / ``quant_offsets`` with a forced frame QP, docs/design.md,
"x265 and x264"); the x265 CLI and ffmpeg cannot carry it. Without the native drivers a
non-uniform map is refused (or reduced to frame QPs with --allow-frame-qp, applied through
ffmpeg's ``zones``).
The native drivers encode frame by frame, so they take streamed maps (``encode_stream``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from vcmtool import native
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
from vcmtool.encoders.frame_qp import zones
from vcmtool.errors import EncoderError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.stream import MapFeed


class _FrameMaps(Protocol):
    ctu: int  # cell size of the grids ``frame`` returns (--ctu); the driver expands it to blocks

    def frame(self, i: int) -> np.ndarray: ...


PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")
# Keys that carry the per-block QP recipe, the rate or the GOP: set by vcmtool, never by --param.
_OWNED = {"qp": "--qp / --qpmap", "crf": "--qp", "bitrate": "--target-kbps", "aq-mode": "--qpmap",
          "aq-strength": "--qpmap", "keyint": "--intra-period", "bframes": "--intra-period (low delay)",
          "threads": "--threads", "preset": "--preset", "lossless": "--qp"}


class _X26x(Encoder):
    presets = PRESETS
    param_separators = ",:="  # ':' separates ffmpeg's -x265-params / -x264-params
    codec: ClassVar[str]
    ffmpeg_codec: ClassVar[str]
    params_flag: ClassVar[str]
    muxer: ClassVar[str]
    ext: ClassVar[str]
    block: ClassVar[int]  # block size the driver sets QPs on
    driver_name: ClassVar[str]  # class in vcmtool._native
    lowdelay: ClassVar[list[str]]

    @classmethod
    def driver(cls):
        return getattr(native._native, cls.driver_name, None) if native.NATIVE else None

    @classmethod
    def capabilities(cls) -> Capabilities:
        native_drv = cls.driver() is not None
        return Capabilities(cls.codec, cls.block if native_drv else None, (0, 51), (8,), cls.ext,
                            streams_maps=native_drv)

    @classmethod
    def probe(cls) -> Probe:
        drv = cls.driver()
        if drv is not None:
            return Probe(True, getattr(drv, "version", lambda: "")(), "native C-API driver (per-CTU)")
        if has_encoder(cls.ffmpeg_codec):
            why = native.NATIVE_ERROR or f"{cls.driver_name} not built (install lib{cls.name}-dev)"
            return Probe(True, f"{cls.ffmpeg_codec} in ffmpeg {ffmpeg_version()}",
                         f"ffmpeg, frame QP only; per-CTU unavailable: {why}")
        return Probe(False, detail=f"no native driver and no ffmpeg with {cls.ffmpeg_codec}")

    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        if self.driver() is not None:
            return self._encode_native(clip, maps, settings, out_path, progress)
        base, zone = zones(maps.frame_qps())
        params = [f"qp={base}", *self.lowdelay, f"keyint={settings.intra_period or 100000}"]
        if zone:
            params.append(f"zones={zone}")
        params += [f"{k}={v}" for k, v in settings.params.items()]
        args = ["-c:v", self.ffmpeg_codec, "-preset", settings.preset,
                "-threads", str(max(1, settings.threads)), self.params_flag, ":".join(params)]
        cmd = ffmpeg_encode(args, self.muxer, clip.info, clip.frames(), out_path, progress,
                            pix_fmt="yuv420p", what=self.name)
        return EncodeResult(out_path, maps, list(maps.notes), cmd)

    def encode_stream(
        self,
        clip: Clip,
        feed: MapFeed,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None = None,
    ) -> EncodeResult:
        if self.driver() is None:
            return super().encode_stream(clip, feed, settings, out_path, progress)
        cmd = self._run_native(clip, feed, settings, out_path, progress)
        maps = feed.maps(clip.count())
        return EncodeResult(out_path, maps, list(maps.notes), cmd)

    def _encode_native(
        self, clip: Clip, maps: QPMaps, settings: EncodeSettings, out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        cmd = self._run_native(clip, maps, settings, out_path, progress)
        return EncodeResult(out_path, maps, list(maps.notes), cmd)

    def _run_native(
        self, clip: Clip, maps: _FrameMaps, settings: EncodeSettings, out_path: Path,
        progress: ProgressFn | None,
    ) -> list[str]:
        info = clip.info
        params = {"keyint": str(settings.intra_period or 100000), **settings.params}
        if settings.threads:
            params.setdefault("threads", str(settings.threads))
        try:
            enc = self.driver()(info.width, info.height, info.fps.numerator, info.fps.denominator,
                                8, settings.preset, params)
        except (RuntimeError, ValueError) as e:
            raise EncoderError(f"{self.name}: {e}") from None
        # The grids are on --ctu cells (16 for x264 macroblocks, 32, 64, 128): the driver must be
        # told the cell size, or it reads them as 64x64 CTUs and refuses every other --ctu.
        ctu = int(maps.ctu)
        with out_path.open("wb") as f:
            for fr in clip.frames():
                fr = fr.to_bit_depth(8)
                grid = maps.frame(fr.index).astype("int32")
                try:
                    f.write(enc.encode(fr.y, fr.u, fr.v, grid, None, ctu))
                except (RuntimeError, ValueError) as e:  # one-line error, not a traceback
                    raise EncoderError(f"{self.name}: frame {fr.index}: {e}") from None
                if progress:
                    progress(1)
            try:
                f.write(enc.flush())
            except RuntimeError as e:
                raise EncoderError(f"{self.name}: {e}") from None
        return [f"vcmtool._native.{self.driver_name}"]


@ENCODERS.register("x265")
class X265(_X26x):
    name = "x265"
    codec = "hevc"
    ffmpeg_codec = "libx265"
    params_flag = "-x265-params"
    muxer = "hevc"
    ext = ".hevc"
    block = 64
    driver_name = "X265Encoder"
    lowdelay = ["bframes=0", "info=0", "log-level=error"]
    # each checked against libx265 in the imageio-ffmpeg build
    param_keys = frozenset({
        "rd", "me", "subme", "merange", "ref", "rdoq-level", "psy-rd", "psy-rdoq", "sao", "rect",
        "amp", "early-skip", "tu-intra-depth", "tu-inter-depth", "limit-refs", "limit-modes", "rskip",
        "weightp", "strong-intra-smoothing", "signhide", "tskip", "max-merge", "min-cu-size", "hash",
        "repeat-headers", "aud", "pmode", "pme", "wpp", "b-intra", "constrained-intra", "fast-intra",
        "tskip-fast", "scenecut", "rc-lookahead",
    })
    owned_params = {**_OWNED, "cutree": "--qpmap", "qg-size": "--ctu", "ctu": "--ctu",
                    "info": "(report)", "pools": "--threads", "frame-threads": "--threads"}


@ENCODERS.register("x264")
class X264(_X26x):
    name = "x264"
    codec = "avc"
    ffmpeg_codec = "libx264"
    params_flag = "-x264-params"
    muxer = "h264"
    ext = ".h264"
    block = 16
    driver_name = "X264Encoder"
    lowdelay = ["bframes=0"]
    param_keys = frozenset({
        "me", "subme", "merange", "ref", "trellis", "psy-rd", "8x8dct", "partitions", "weightp",
        "mixed-refs", "fast-pskip", "cabac", "aud", "direct", "no-dct-decimate", "deadzone-inter",
        "deadzone-intra", "nr", "chroma-me", "scenecut", "rc-lookahead",
    })
    owned_params = {**_OWNED, "mbtree": "--qpmap", "qpmin": "--qpmap", "qpmax": "--qpmap",
                    "qp-min": "--qpmap", "qp-max": "--qpmap"}


__all__ = ["X264", "X265"]
