"""x265 (HEVC) and x264 (AVC): per-CTU QPs through the native C-API drivers, frame QPs
through ffmpeg.

The two backends differ only in names and numbers, so they share this module: per-block QP
needs the C API (``quantOffsets`` / ``quant_offsets`` with a forced frame QP, docs/design.md,
"x265 and x264"); the x265 CLI and ffmpeg cannot carry it. Without the native drivers a
non-uniform map is refused (or reduced to frame QPs with --allow-frame-qp, applied through
ffmpeg's ``zones``).
The native drivers encode frame by frame, so they take streamed maps (``encode_stream``).

This module also owns the drivers' Python side: :class:`X265Encoder` / :class:`X264Encoder`
(wrappers of the ``vcmtool._native`` classes that turn library errors into
:class:`EncoderError`) and :func:`block_offsets`, the CTU-grid-to-16x16-offset expansion the
drivers apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from vcmtool import native
from vcmtool.encoders.base import (
    ENCODERS,
    X264_STYLE_PRESETS,
    Capabilities,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    ProgressFn,
)
from vcmtool.encoders.ffmpeg import ffmpeg_encode, ffmpeg_version, has_encoder
from vcmtool.encoders.frame_qp import zones
from vcmtool.errors import EncoderError, UsageError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.raster import grid_shape
from vcmtool.qpmap.stream import MapFeed

# ---------------------------------------------------------------------------------------------
# Block offsets: what the drivers hand the encoders (the C++ drivers expand each grid with the
# same code as the native path below; this function exposes it to checks and benchmarks)


def _offset_args(
    qp_map: Any, base: Any, ctu: Any, block: Any, height: Any, width: Any
) -> tuple[np.ndarray, np.ndarray, int, int, int, int, bool]:
    g = np.asarray(qp_map)
    single = g.ndim == 2
    g = native.int_maps(g, "QP map")
    f, gh, gw = g.shape
    ctu, block = native.count_arg(ctu, "ctu", 1), native.count_arg(block, "block", 1)
    h = native.count_arg(gh * ctu if height is None else height, "height")
    w = native.count_arg(gw * ctu if width is None else width, "width")
    if h < 1 or w < 1:  # an empty picture has no blocks to set (the native path refuses it too)
        raise ValueError(f"bad picture size {w}x{h}")
    if grid_shape(h, w, ctu) != (gh, gw):
        raise ValueError(f"grid {gw}x{gh} does not cover {w}x{h} with ctu {ctu}")
    native.check_size(f * (-(-h // block)) * (-(-w // block)) * 4, "block offsets")
    b = np.asarray(base, dtype=np.float64).reshape(-1)
    if b.shape != (f,):
        b = np.broadcast_to(b, (f,)).copy()
    return g, b, ctu, block, h, w, single


def _offsets_numpy(g: np.ndarray, b: np.ndarray, ctu: int, block: int, h: int, w: int) -> np.ndarray:
    f, gh, gw = g.shape
    bh, bw = -(-h // block), -(-w // block)
    if not f:  # no frames: nothing to compute (the spans below could be huge)
        return np.zeros((0, bh, bw), np.float32)

    def spans(n_blocks: int, size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(n_blocks)
        lo = (i * block) // ctu
        hi = np.minimum(cells, -(-np.minimum(size, (i + 1) * block) // ctu))
        return lo, hi

    r0, r1 = spans(bh, h, gh)
    c0, c1 = spans(bw, w, gw)
    g64 = g.astype(np.int64)
    # Min over the (usually single) cells under each block: step through the widest span.
    rows = g64[:, r0]
    for k in range(1, int((r1 - r0).max()) if bh else 1):
        rows = np.minimum(rows, g64[:, np.minimum(r0 + k, r1 - 1)])
    out = rows[:, :, c0]
    for k in range(1, int((c1 - c0).max()) if bw else 1):
        out = np.minimum(out, rows[:, :, np.minimum(c0 + k, c1 - 1)])
    return (out - b[:, None, None]).astype(np.float32)


def block_offsets(
    qp_map: np.ndarray,
    base: Any,
    *,
    ctu: int = 64,
    block: int = 16,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Per-block float offsets ``CTU QP - base`` (x265 ``quantOffsets`` / x264 ``quant_offsets``).

    ``qp_map`` is (rows, cols) or (frames, rows, cols) absolute QPs on ``ctu`` cells; ``base``
    a scalar or one per frame. The result has one value per ``block`` x ``block`` pixels
    (``ceil(height/block)`` x ``ceil(width/block)``; height/width default to the full grid).
    Where a block spans several cells (ctu < block) it takes their minimum QP.
    """
    g, b, ctu, block, h, w, single = _offset_args(qp_map, base, ctu, block, height, width)
    if native.has("block_offsets") and native.fits_int32(g):
        res = native._native.block_offsets(g, b, ctu, block, h, w)
    else:
        res = _offsets_numpy(g, b, ctu, block, h, w)
    return res[0] if single else res


def x265_offsets(
    qp_map: np.ndarray,
    base: Any,
    *,
    ctu: int = 64,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """x265 ``quantOffsets`` (and x264 ``quant_offsets``, the same layout): one float per 16x16
    block (all blocks of a CTU share its offset)."""
    return block_offsets(qp_map, base, ctu=ctu, block=16, height=height, width=width)


# ---------------------------------------------------------------------------------------------
# The native drivers (libx265 / libx264 C APIs)

X265_REASON = native.driver_reason("libx265", "X265_AVAILABLE")
X265_AVAILABLE = not X265_REASON
X264_REASON = native.driver_reason("libx264", "X264_AVAILABLE")
X264_AVAILABLE = not X264_REASON


class DriverError(EncoderError):
    """An error the encoder library reported; ``detail`` is its message without the library name."""

    def __init__(self, lib: str, detail: object) -> None:
        super().__init__(f"{lib}: {detail}")
        self.detail = str(detail)


class _Driver:
    """Wraps ``_native.X265Encoder`` / ``X264Encoder``: errors of the encoder library become
    :class:`DriverError` (an :class:`EncoderError`); bad arguments (a QP grid that does not fit,
    planes of the wrong size or type) stay ``ValueError``.

    ``encode(y, u, v, qp_grid=None, base_qp=None, ctu=64)`` takes 4:2:0 planes (uint8, or
    uint16 for bit_depth > 8) and optionally absolute QPs on ``ctu`` x ``ctu`` cells; it returns
    the Annex-B bytes the encoder produced for that call (possibly empty: lookahead), headers
    included with every keyframe. Without a grid and base the encoder's own rate control runs;
    with only ``base_qp`` the frame QP is forced. ``flush()`` drains the delayed frames.
    """

    lib = ""
    available = False
    reason = ""
    native_class = ""  # the class in vcmtool._native

    def __init__(
        self,
        width: int,
        height: int,
        fps_num: int = 25,
        fps_den: int = 1,
        bit_depth: int = 8,
        preset: str = "medium",
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if not self.available:
            raise EncoderError(f"{self.lib} per-CTU driver unavailable: {self.reason}")
        p = {str(k): str(v) for k, v in (params or {}).items()}
        try:
            self._enc = getattr(native._native, self.native_class)(
                int(width), int(height), int(fps_num), int(fps_den), int(bit_depth), str(preset), p
            )
        except (ValueError, RuntimeError) as e:
            raise DriverError(self.lib, e) from None

    @classmethod
    def version(cls) -> str:
        return getattr(native._native, cls.native_class).version()

    def encode(
        self,
        y: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        qp_grid: np.ndarray | None = None,
        base_qp: int | None = None,
        ctu: int = 64,
    ) -> bytes:
        try:
            return self._enc.encode(y, u, v, qp_grid, base_qp, int(ctu))
        except RuntimeError as e:
            raise DriverError(self.lib, e) from None

    def flush(self) -> bytes:
        try:
            return self._enc.flush()
        except RuntimeError as e:
            raise DriverError(self.lib, e) from None

    def headers(self) -> bytes:
        return self._enc.headers()

    @property
    def frames_in(self) -> int:
        return self._enc.frames_in

    @property
    def frames_out(self) -> int:
        return self._enc.frames_out

    @property
    def last_base_qp(self) -> int:
        """Frame QP forced for the last frame (-1: encoder's rate control)."""
        return self._enc.last_base_qp


class X265Encoder(_Driver):
    """libx265 with absolute per-CTU QPs (docs/design.md, "x265 and x264": aq-mode 1, aq-strength 0.0001,
    cutree 0, qg-size 64, forced frame QP + per-16x16 quantOffsets).

    Defaults (overridable through ``params``, x265 option names): bframes=0 (low delay),
    frame-threads=1 (reproducible bytes), ctu=64, qg-size=64, log-level=error, info=0 (no
    2.3 KB version SEI); ``threads`` sets x265's worker pool. Fixed: aq-mode, aq-strength,
    cutree, annexb, repeat-headers, qp.
    """

    lib, available, reason, native_class = "x265", X265_AVAILABLE, X265_REASON, "X265Encoder"


class X264Encoder(_Driver):
    """libx264 with absolute per-macroblock QPs expanded from the CTU grid (``i_qpplus1`` +
    ``quant_offsets``, aq-strength 0.0001, mbtree off).

    Defaults (overridable through ``params``, x264 option names): bframes=0, threads=1.
    Fixed: aq-mode, aq-strength, mbtree, annexb, repeat-headers, qp. 10-bit QPs use x264's
    0..63 scale.
    """

    lib, available, reason, native_class = "x264", X264_AVAILABLE, X264_REASON, "X264Encoder"


# ---------------------------------------------------------------------------------------------
# The backends


class _FrameMaps(Protocol):
    ctu: int  # cell size of the grids ``frame`` returns (--ctu); the driver expands it to blocks

    def frame(self, i: int) -> np.ndarray: ...


PRESETS = X264_STYLE_PRESETS
# Keys that carry the per-block QP recipe, the rate or the GOP: set by vcmtool, never by --param.
_OWNED = {
    "qp": "--qp / --qpmap",
    "crf": "--crf",
    "bitrate": "--target-kbps",
    "aq-mode": "--qpmap",
    "aq-strength": "--qpmap",
    "keyint": "--intra-period",
    "bframes": "--intra-period (low delay)",
    "threads": "--threads",
    "preset": "--preset",
    "lossless": "--qp",
}


class _X26x(Encoder):
    presets = PRESETS
    crf_range = (0.0, 51.0)
    param_separators = ",:="  # ':' separates ffmpeg's -x265-params / -x264-params
    codec: ClassVar[str]
    ffmpeg_codec: ClassVar[str]
    params_flag: ClassVar[str]
    muxer: ClassVar[str]
    ext: ClassVar[str]
    block: ClassVar[int]  # block size the driver sets QPs on
    driver_cls: ClassVar[type[_Driver]]  # the per-CTU driver
    lowdelay: ClassVar[list[str]]

    @classmethod
    def driver(cls) -> type[_Driver] | None:
        return cls.driver_cls if cls.driver_cls.available else None

    @classmethod
    def capabilities(cls) -> Capabilities:
        native_drv = cls.driver() is not None
        return Capabilities(
            cls.codec, cls.block if native_drv else None, (0, 51), (8,), cls.ext, streams_maps=native_drv
        )

    @classmethod
    def probe(cls) -> Probe:
        drv = cls.driver()
        if drv is not None:
            return Probe(True, drv.version(), "native C-API driver (per-CTU)")
        if has_encoder(cls.ffmpeg_codec):
            why = (
                native.NATIVE_ERROR or f"{cls.driver_cls.native_class} not built (install lib{cls.name}-dev)"
            )
            return Probe(
                True,
                f"{cls.ffmpeg_codec} in ffmpeg {ffmpeg_version()}",
                f"ffmpeg, frame QP only; per-CTU unavailable: {why}",
            )
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
        rate = f"qp={base}"
        if settings.crf is not None:
            if not (maps.data == settings.crf_base).all():
                raise UsageError(f"{self.name}: --crf with a QP map needs the native per-CTU driver")
            rate, zone = f"crf={settings.crf:g}", ""
        params = [rate, *self.lowdelay, f"keyint={settings.intra_period or 100000}"]
        if zone:
            params.append(f"zones={zone}")
        params += [f"{k}={v}" for k, v in settings.params.items()]
        args = [
            "-c:v",
            self.ffmpeg_codec,
            "-preset",
            settings.preset,
            "-threads",
            str(max(1, settings.threads)),
            self.params_flag,
            ":".join(params),
        ]
        cmd = ffmpeg_encode(
            args, self.muxer, clip.info, clip.frames(), out_path, progress, pix_fmt="yuv420p", what=self.name
        )
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
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        cmd = self._run_native(clip, maps, settings, out_path, progress)
        return EncodeResult(out_path, maps, list(maps.notes), cmd)

    def _run_native(
        self,
        clip: Clip,
        maps: _FrameMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> list[str]:
        info = clip.info
        params = {"keyint": str(settings.intra_period or 100000), **settings.params}
        if settings.threads:
            params.setdefault("threads", str(settings.threads))
        # --crf: the encoder's rate control picks the frame QPs; the map rides on them as
        # offsets from its base (else the frame QP is forced to the map's rounded mean)
        base = None
        if settings.crf is not None:
            params["crf"] = f"{settings.crf:g}"
            base = settings.crf_base
        enc = self.driver_cls(
            info.width, info.height, info.fps.numerator, info.fps.denominator, 8, settings.preset, params
        )
        # The grids are on --ctu cells (16 for x264 macroblocks, 32, 64, 128): the driver must be
        # told the cell size, or it reads them as 64x64 CTUs and refuses every other --ctu.
        ctu = int(maps.ctu)
        # closed-loop sources decode the bytes as they come (vcmtool.qpmap.recon, MapFeed.on_bytes)
        on_bytes = getattr(maps, "on_bytes", None)
        with out_path.open("wb") as f:
            for fr in clip.frames():
                fr = fr.to_bit_depth(8)
                grid = maps.frame(fr.index).astype("int32")
                try:
                    data = enc.encode(fr.y, fr.u, fr.v, grid, base, ctu)
                except (DriverError, ValueError) as e:  # one-line error, not a traceback
                    detail = e.detail if isinstance(e, DriverError) else e
                    raise EncoderError(f"{self.name}: frame {fr.index}: {detail}") from None
                f.write(data)
                if on_bytes is not None:
                    on_bytes(fr.index, data)
                if progress:
                    progress(1)
            data = enc.flush()
            f.write(data)
            if on_bytes is not None:
                on_bytes(None, data)
        return [f"vcmtool._native.{self.driver_cls.native_class}"]


@ENCODERS.register("x265")
class X265(_X26x):
    name = "x265"
    codec = "hevc"
    ffmpeg_codec = "libx265"
    params_flag = "-x265-params"
    muxer = "hevc"
    ext = ".hevc"
    block = 64
    driver_cls = X265Encoder
    lowdelay = ["bframes=0", "info=0", "log-level=error"]
    # each checked against libx265 in the imageio-ffmpeg build
    param_keys = frozenset(
        {
            "rd",
            "me",
            "subme",
            "merange",
            "ref",
            "rdoq-level",
            "psy-rd",
            "psy-rdoq",
            "sao",
            "rect",
            "amp",
            "early-skip",
            "tu-intra-depth",
            "tu-inter-depth",
            "limit-refs",
            "limit-modes",
            "rskip",
            "weightp",
            "strong-intra-smoothing",
            "signhide",
            "tskip",
            "max-merge",
            "min-cu-size",
            "hash",
            "repeat-headers",
            "aud",
            "pmode",
            "pme",
            "wpp",
            "b-intra",
            "constrained-intra",
            "fast-intra",
            "tskip-fast",
            "scenecut",
            "rc-lookahead",
        }
    )
    owned_params = {
        **_OWNED,
        "cutree": "--qpmap",
        "qg-size": "--ctu",
        "ctu": "--ctu",
        "info": "(report)",
        "pools": "--threads",
        "frame-threads": "--threads",
    }


@ENCODERS.register("x264")
class X264(_X26x):
    name = "x264"
    codec = "avc"
    ffmpeg_codec = "libx264"
    params_flag = "-x264-params"
    muxer = "h264"
    ext = ".h264"
    block = 16
    driver_cls = X264Encoder
    lowdelay = ["bframes=0"]
    param_keys = frozenset(
        {
            "me",
            "subme",
            "merange",
            "ref",
            "trellis",
            "psy-rd",
            "8x8dct",
            "partitions",
            "weightp",
            "mixed-refs",
            "fast-pskip",
            "cabac",
            "aud",
            "direct",
            "no-dct-decimate",
            "deadzone-inter",
            "deadzone-intra",
            "nr",
            "chroma-me",
            "scenecut",
            "rc-lookahead",
        }
    )
    owned_params = {
        **_OWNED,
        "mbtree": "--qpmap",
        "qpmin": "--qpmap",
        "qpmax": "--qpmap",
        "qp-min": "--qpmap",
        "qp-max": "--qpmap",
    }


__all__ = [
    "X264",
    "X264_AVAILABLE",
    "X264_REASON",
    "X265",
    "X265_AVAILABLE",
    "X265_REASON",
    "DriverError",
    "X264Encoder",
    "X265Encoder",
    "block_offsets",
    "x265_offsets",
]
