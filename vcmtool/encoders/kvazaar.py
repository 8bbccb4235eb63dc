"""kvazaar (HEVC) with per-CTU QP deltas, through ffmpeg's libkvazaar (or kvazaar on PATH).

Recipe measured on these machines (DESIGN.md): ``preset`` first (it resets gop), then
``qp=BASE,gop=0,roi=FILE``. The ROI file repeats an int32 width/height header before every
frame's int8 deltas (verified: a single header makes kvazaar assert on frame 2). kvazaar aborts
when a CU QP leaves [-26, +25] around its predicted QP, so each frame's map is squeezed into a
window around BASE; the report notes how many CTUs that moved.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

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
from vcmtool.io.frame import Frame, VideoInfo
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps

# Half-width of the QP window around BASE; 2*12 = 24 < 25 keeps every predicted-QP delta legal.
WINDOW = 12
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")


def pad_to_multiple(frames: Iterable[Frame], width: int, height: int) -> Iterator[Frame]:
    """Edge-replicate frames up to ``width`` x ``height`` (kvazaar needs multiples of 8)."""
    for fr in frames:
        ph, pw = height - fr.height, width - fr.width
        if ph == 0 and pw == 0:
            yield fr
            continue
        y, u, v = (np.pad(p, ((0, ph // s), (0, pw // s)), mode="edge")
                   for p, s in ((fr.y, 1), (fr.u, 2), (fr.v, 2)))
        yield Frame(y, u, v, fr.index, fr.bit_depth)


def kvazaar_roi_bytes(deltas: np.ndarray) -> bytes:
    """Serialise (frames, rows, cols) int8 deltas as kvazaar's binary ROI file."""
    if hasattr(native, "kvazaar_roi_bytes"):
        return native.kvazaar_roi_bytes(deltas.astype(np.int8))
    f, gh, gw = deltas.shape
    head = np.array([gw, gh], dtype="<i4").tobytes()
    return b"".join(head + d.astype(np.int8).tobytes() for d in deltas)


@ENCODERS.register("kvazaar")
class Kvazaar(Encoder):
    name = "kvazaar"

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities("hevc", 64, (0, 51), (8,), ".hevc")

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
        return int(round((int(maps.data.min()) + int(maps.data.max())) / 2))

    def prepare_maps(self, maps: QPMaps, settings: EncodeSettings) -> QPMaps:
        out = super().prepare_maps(maps, settings)
        base = self.base_qp(out)
        lo, hi = max(0, base - WINDOW), min(51, base + WINDOW)
        moved = int(((out.data < lo) | (out.data > hi)).sum())
        if moved:
            out = out.clamp(lo, hi)
            out.notes.append(
                f"kvazaar: {moved} CTU QPs squeezed into [{lo}, {hi}] (its QP-delta limit)"
            )
        return out

    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        info = clip.info
        notes = list(maps.notes)
        width, height = -(-info.width // 8) * 8, -(-info.height // 8) * 8
        if (width, height) != (info.width, info.height):
            # Padding to 8 never adds a 64-pixel CTU row or column, so the maps still fit.
            notes.append(f"kvazaar needs sizes in multiples of 8: coded {width}x{height} "
                         f"(edge-replicated); decoders show the padded picture")
            info = VideoInfo(width, height, info.fps, info.pix_fmt, info.frame_count)
        base = self.base_qp(maps)
        preset = settings.preset if settings.preset in PRESETS else "medium"
        with tempfile.TemporaryDirectory(prefix="vcmtool-kvz-") as tmp:
            roi = Path(tmp) / "roi.bin"
            roi.write_bytes(kvazaar_roi_bytes(maps.data - base))
            params = [
                f"preset={preset}", f"qp={base}", "gop=0", f"period={settings.intra_period}",
                f"threads={max(0, settings.threads)}", "owf=0",
                f"roi={roi}",
                *(f"{k}={v}" for k, v in settings.params.items()),
            ]
            args = ["-c:v", "libkvazaar", "-kvazaar-params", ",".join(params)]
            frames = pad_to_multiple(clip.frames(), width, height)
            cmd = ffmpeg_encode(args, "hevc", info, frames, out_path, progress,
                                pix_fmt="yuv420p", what="kvazaar")
        return EncodeResult(out_path, maps, notes, cmd)
