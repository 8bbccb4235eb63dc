"""kvazaar (HEVC) with per-CTU QP deltas, through ffmpeg's libkvazaar (or kvazaar on PATH).

Recipe measured on these machines (docs/design.md, "kvazaar"): ``preset`` first (it resets gop), then
``qp=BASE,gop=0,roi=FILE``. The ROI file repeats an int32 width/height header before every
frame's int8 deltas (verified: a single header makes kvazaar assert on frame 2). kvazaar aborts
when a CU QP leaves [-26, +25] around its predicted QP, so each frame's map is squeezed into a
window around BASE; the report notes how many CTUs that moved.

kvazaar reads the ROI file sequentially, one frame's header and deltas when that frame enters
the encoder (``next_roi_frame_from_file``; it rewinds only seekable files), so streamed maps go
through a named pipe written as each map arrives (measured: identical bytes to the file).
BASE must be fixed before the first frame. With streamed maps it is the centre of the source's
announced QP range (``roi``: its two QPs, so the same BASE as precomputed maps); without one, the
window hangs from the first map's highest QP (see ``KvazaarPrep``). Later maps that leave the
window are squeezed and counted like any other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from vcmtool import native
from vcmtool.encoders.base import (
    ENCODERS,
    X264_STYLE_PRESETS,
    Capabilities,
    ClampPrep,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    ProgressFn,
)
from vcmtool.encoders.ffmpeg import ffmpeg_encode, ffmpeg_version, has_encoder
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.stream import MapFeed

# Half-width of the QP window around BASE; 2*12 = 24 < 25 keeps every predicted-QP delta legal.
WINDOW = 12
# Linux opens a FIFO O_RDWR without a reader, so the writer never blocks on open (POSIX leaves
# this undefined): elsewhere kvazaar gets a regular ROI file written before encoding.
FIFO_OK = sys.platform.startswith("linux") and hasattr(os, "mkfifo")
PIPE_BYTES = 1 << 20
# Tuning keys --param may pass to kvazaar (each checked: ffmpeg's libkvazaar only warns on an
# unknown one). QP-changing keys (vaq, erp-aqp, lossless, bitrate) are owned: they break the map.
KVAZAAR_PARAMS = frozenset(
    {
        "rd",
        "full-intra-search",
        "me",
        "subme",
        "pu-depth-inter",
        "pu-depth-intra",
        "tr-depth-intra",
        "sao",
        "deblock",
        "signhide",
        "rdoq",
        "rdoq-skip",
        "transform-skip",
        "tmvp",
        "smp",
        "amp",
        "bipred",
        "cu-split-termination",
        "me-early-termination",
        "intra-rdo-et",
        "early-skip",
        "fast-residual-cost",
        "max-merge",
        "mv-rdo",
        "vps-period",
        "ref",
        "wpp",
        "mv-constraint",
        "hash",
        "level",
        "high-tier",
        "zero-coeff-rdo",
        "intra-chroma-search",
        "tiles",
        "slices",
        "aud",
        "combine-intra-cus",
        "force-inter",
        "psnr",
        "info",
    }
)
PRESETS = X264_STYLE_PRESETS


def pad_to_multiple(frames: Iterable[Frame], width: int, height: int) -> Iterator[Frame]:
    """Edge-replicate frames up to ``width`` x ``height`` (kvazaar needs multiples of 8)."""
    for fr in frames:
        ph, pw = height - fr.height, width - fr.width
        if ph == 0 and pw == 0:
            yield fr
            continue
        y, u, v = (
            np.pad(p, ((0, ph // s), (0, pw // s)), mode="edge") for p, s in ((fr.y, 1), (fr.u, 2), (fr.v, 2))
        )
        yield Frame(y, u, v, fr.index, fr.bit_depth)


def _roi_numpy(d: np.ndarray) -> bytes:
    if d.size and (d.min() < -128 or d.max() > 127):
        bad = d[(d < -128) | (d > 127)].flat[0]
        raise ValueError(f"kvazaar ROI delta {int(bad)} does not fit in int8")
    f, gh, gw = d.shape
    # One (frames, 8 + cells) array, not a join over frames: many frames of an empty grid are
    # one allocation (or one MemoryError), not a Python loop.
    rec = np.empty((f, 8 + gh * gw), np.uint8)
    rec[:, :8] = np.frombuffer(struct.pack("<ii", gw, gh), np.uint8)
    rec[:, 8:] = d.reshape(f, gh * gw).astype(np.int8).view(np.uint8)
    return rec.tobytes()


def kvazaar_roi_bytes(deltas: np.ndarray) -> bytes:
    """kvazaar's binary ``roi=`` file from (frames, rows, cols) integer QP deltas (-128..127).

    Each frame is int32 LE width, int32 LE height, then width*height int8 deltas in raster
    order (verified with ffmpeg's libkvazaar: a single header for all frames makes kvazaar
    assert on frame 2; kvazaar reads one record per frame and loops at EOF). A delta outside
    int8 is refused (``ValueError``), never wrapped.
    """
    d = native.int_maps(deltas, "kvazaar ROI deltas")
    f, gh, gw = d.shape
    # An empty array can have huge dimensions: the int32 header and the output size are checked.
    if gw > 0x7FFFFFFF or gh > 0x7FFFFFFF:
        raise ValueError("kvazaar ROI grid too large for its int32 header")
    native.check_size(f * (8 + gh * gw), "kvazaar ROI")
    if native.has("kvazaar_roi") and d.dtype not in (np.uint32, np.uint64):
        return native._native.kvazaar_roi(np.ascontiguousarray(d))
    return _roi_numpy(d)


def centre(lo: int, hi: int) -> int:
    return int(round((int(lo) + int(hi)) / 2))


def window(base: int) -> tuple[int, int]:
    return max(0, base - WINDOW), min(51, base + WINDOW)


class KvazaarPrep(ClampPrep):
    """Per-frame kvazaar maps: codec clamp, then the delta window around a base fixed up front.

    With a ``hint`` (the source's QP range) the base is its centre. Without one the first map
    decides: the window spans from its highest QP down, because predicted maps (JRD) keep the
    background at a steady top QP and objects that show up later need QPs below it; squeezing
    those up would cost the task accuracy, squeezing the background down only costs bits. A first
    map wider than the window is centred, as precomputed maps are.
    """

    def __init__(self, caps: Capabilities, hint: tuple[int, int] | None) -> None:
        super().__init__(caps)
        self.why = "the source's QP range" if hint is not None else "the first map's top QP"
        self.base = None if hint is None else centre(*(min(max(q, self.lo), self.hi) for q in hint))
        self.moved = 0

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        grid = super().__call__(grid)
        if self.base is None:
            lo, hi = int(grid.min()), int(grid.max())
            self.base = centre(lo, hi) if hi - lo > 2 * WINDOW else max(0, hi - WINDOW)
        lo, hi = window(self.base)
        self.moved += int(((grid < lo) | (grid > hi)).sum())
        return np.clip(grid, lo, hi)

    def notes(self) -> list[str]:
        out = super().notes()
        if self.moved and self.base is not None:
            lo, hi = window(self.base)
            out.append(
                f"kvazaar: {self.moved} CTU QPs squeezed into [{lo}, {hi}] (its QP-delta "
                f"limit; base QP {self.base} set from {self.why} because maps were streamed)"
            )
        return out


def _write_all(fd: int, data: bytes, alive: Callable[[], bool]) -> bool:
    """Write ``data`` to the non-blocking pipe ``fd``; False when the reader's process died."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            # kvazaar is more than a pipe buffer of maps behind; wait for it while it lives.
            if not alive():
                return False
            select.select([], [fd], [], 0.2)
    return True


@ENCODERS.register("kvazaar")
class Kvazaar(Encoder):
    name = "kvazaar"
    presets = PRESETS
    param_keys = KVAZAAR_PARAMS
    owned_params = {
        "preset": "--preset",
        "qp": "--qp / --qpmap",
        "gop": "--intra-period (low delay)",
        "period": "--intra-period",
        "threads": "--threads",
        "owf": "--threads",
        "roi": "--qpmap",
        "input": "INPUT",
        "input-res": "INPUT",
        "input-fps": "--fps",
        "bitrate": "--target-kbps",
        "vaq": "--qpmap",
        "erp-aqp": "--qpmap",
        "lossless": "--qp",
        "implicit-rdpcm": "--qp",
    }
    param_separators = ",="

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities("hevc", 64, (0, 51), (8,), ".hevc", streams_maps=FIFO_OK)

    @classmethod
    def probe(cls) -> Probe:
        if has_encoder("libkvazaar"):
            return Probe(True, f"libkvazaar in ffmpeg {ffmpeg_version()}", "ffmpeg (imageio-ffmpeg)")
        exe = shutil.which("kvazaar")
        if exe:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
            return Probe(True, out.strip().splitlines()[0] if out else "kvazaar", exe)
        return Probe(False, detail="no ffmpeg with libkvazaar and no kvazaar on PATH")

    @staticmethod
    def base_qp(maps: QPMaps) -> int:
        return centre(maps.data.min(), maps.data.max())

    def prepare_maps(self, maps: QPMaps, settings: EncodeSettings) -> QPMaps:
        out = super().prepare_maps(maps, settings)
        base = self.base_qp(out)
        lo, hi = window(base)
        moved = int(((out.data < lo) | (out.data > hi)).sum())
        if moved:
            out = out.clamp(lo, hi)
            out.notes.append(f"kvazaar: {moved} CTU QPs squeezed into [{lo}, {hi}] (its QP-delta limit)")
        return out

    def frame_prep(self, settings: EncodeSettings, hint: tuple[int, int] | None = None) -> KvazaarPrep:
        return KvazaarPrep(self.capabilities(), hint)

    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        base = self.base_qp(maps)
        with tempfile.TemporaryDirectory(prefix="vcmtool-kvz-") as tmp:
            roi = Path(tmp) / "roi.bin"
            roi.write_bytes(kvazaar_roi_bytes(maps.data - base))
            notes, cmd = self._run(clip, base, roi, settings, out_path, progress)
        return EncodeResult(out_path, maps, list(maps.notes) + notes, cmd)

    def encode_stream(
        self,
        clip: Clip,
        feed: MapFeed,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None = None,
    ) -> EncodeResult:
        if not FIFO_OK:
            return super().encode_stream(clip, feed, settings, out_path, progress)
        if not isinstance(feed.prep, KvazaarPrep):
            raise TypeError("kvazaar streams need the feed prepared by Kvazaar.frame_prep")
        feed.frame(0)  # the first map fixes the base when the source announced no range
        base = feed.prep.base
        assert base is not None
        with tempfile.TemporaryDirectory(prefix="vcmtool-kvz-") as tmp:
            # kvazaar picks the binary ROI format from the ".bin" suffix (anything else is text).
            fifo = Path(tmp) / "roi.bin"
            os.mkfifo(fifo, 0o600)
            fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            proc: list[subprocess.Popen] = []

            def with_maps(frames: Iterable[Frame]) -> Iterator[Frame]:
                # Frame i's deltas go in before frame i itself: kvazaar reads them when the frame
                # enters the encoder, so it never waits on a map whose frame it does not have.
                for fr in frames:
                    delta = (feed.frame(fr.index) - base)[None]
                    if not _write_all(fd, kvazaar_roi_bytes(delta), lambda: proc[0].poll() is None):
                        return  # ffmpeg died; pipe_frames reports its last words
                    yield fr

            # a closed-loop source tails the output as it grows (vcmtool.qpmap.recon): ffmpeg must
            # write each packet at once (-flush_packets 1; the bytes do not change)
            on_output = getattr(feed, "on_output", None)
            if on_output is not None:
                on_output(out_path, lambda: not proc or proc[0].poll() is None)
            try:
                notes, cmd = self._run(
                    clip,
                    base,
                    fifo,
                    settings,
                    out_path,
                    progress,
                    with_maps,
                    proc.append,
                    on_output is not None,
                )
            finally:
                os.close(fd)
        maps = feed.maps(clip.count())
        return EncodeResult(out_path, maps, list(maps.notes) + notes, cmd)

    def _run(
        self,
        clip: Clip,
        base: int,
        roi: Path,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
        wrap: Callable[[Iterable[Frame]], Iterable[Frame]] | None = None,
        on_start: Callable[[subprocess.Popen], None] | None = None,
        flush: bool = False,
    ) -> tuple[list[str], list[str]]:
        info = clip.info
        notes: list[str] = []
        width, height = -(-info.width // 8) * 8, -(-info.height // 8) * 8
        if (width, height) != (info.width, info.height):
            # Padding to 8 never adds a 64-pixel CTU row or column, so the maps still fit.
            notes.append(
                f"kvazaar needs sizes in multiples of 8: coded {width}x{height} "
                f"(edge-replicated); decoders show the padded picture"
            )
            info = VideoInfo(width, height, info.fps, info.pix_fmt, info.frame_count)
        params = [
            f"preset={settings.preset}",
            f"qp={base}",
            "gop=0",
            f"period={settings.intra_period}",
            f"threads={max(0, settings.threads)}",
            "owf=0",
            f"roi={roi}",
            *(f"{k}={v}" for k, v in settings.params.items()),
        ]
        args = ["-c:v", "libkvazaar", "-kvazaar-params", ",".join(params)]
        if flush:
            args += ["-flush_packets", "1"]
        frames: Iterable[Frame] = pad_to_multiple(clip.frames(), width, height)
        if wrap is not None:
            frames = wrap(frames)
        cmd = ffmpeg_encode(
            args,
            "hevc",
            info,
            frames,
            out_path,
            progress,
            pix_fmt="yuv420p",
            what="kvazaar",
            on_start=on_start,
        )
        return notes, cmd
