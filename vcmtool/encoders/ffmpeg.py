"""Run the ffmpeg binary of imageio-ffmpeg with frames piped as raw video.

Shared by every backend that reaches its encoder through ffmpeg, so a backend only states
its codec arguments.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from vcmtool.encoders.base import ProgressFn
from vcmtool.errors import EncoderError
from vcmtool.io.frame import Frame, VideoInfo


@functools.cache
def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - fall back to PATH, explained below if absent
        exe = shutil.which("ffmpeg")
        if exe:
            return exe
        raise EncoderError(
            "no ffmpeg binary: pip install imageio-ffmpeg (it ships ffmpeg with libkvazaar, "
            "libx265, libx264, libvvenc, libsvtav1)"
        ) from None


@functools.cache
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True)
    m = re.search(r"ffmpeg version (\S+)", out.stdout)
    return m.group(1) if m else "unknown"


@functools.cache
def ffmpeg_encoders() -> frozenset[str]:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return frozenset(m.group(1) for m in re.finditer(r"^\s*V\S*\s+(\S+)", out, flags=re.MULTILINE))


def has_encoder(name: str) -> bool:
    try:
        return name in ffmpeg_encoders()
    except EncoderError:
        return False


def raw_input_args(info: VideoInfo, pix_fmt: str | None = None) -> list[str]:
    fps = info.fps
    return [
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt or info.pix_fmt,
        "-s",
        f"{info.width}x{info.height}",
        "-r",
        f"{fps.numerator}/{fps.denominator}",
        "-i",
        "pipe:0",
    ]


def pipe_frames(
    cmd: list[str],
    frames: Iterable[Frame],
    bit_depth: int,
    progress: ProgressFn | None = None,
    what: str = "encoder",
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> None:
    """Feed frames to ``cmd`` on stdin; raise EncoderError with ffmpeg's last words on failure.

    ``on_start`` receives the process before the first frame is pulled (a frame source that
    also feeds the encoder a side channel needs to know whether it is still alive).
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if on_start is not None:
        on_start(proc)
    err_chunks: list[bytes] = []
    # Drain stderr concurrently: a chatty encoder would otherwise fill the pipe and deadlock.
    t = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    t.start()
    assert proc.stdin is not None
    try:
        for fr in frames:
            try:
                proc.stdin.write(fr.to_bit_depth(bit_depth).to_bytes())
            except BrokenPipeError:
                break
            if progress:
                progress(1)
        proc.stdin.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    rc = proc.wait()
    t.join()
    if rc != 0:
        tail = b"".join(err_chunks).decode(errors="replace").strip().splitlines()[-3:]
        raise EncoderError(f"{what} failed (exit {rc}): " + " | ".join(tail))


def ffmpeg_encode(
    codec_args: list[str],
    muxer: str,
    info: VideoInfo,
    frames: Iterable[Frame],
    out_path: Path,
    progress: ProgressFn | None = None,
    pix_fmt: str | None = None,
    what: str = "ffmpeg",
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> list[str]:
    pix = pix_fmt or info.pix_fmt
    bit_depth = 10 if "10" in pix else 8
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *raw_input_args(info, pix),
        "-an",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        *codec_args,
        "-f",
        muxer,
        str(out_path),
    ]
    pipe_frames(cmd, frames, bit_depth, progress, what, on_start)
    return cmd
