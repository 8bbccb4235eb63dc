"""The encoder's own reconstruction, frame by frame, for closed-loop QP-map sources (``loop``).

:class:`ReconTap` decodes the bitstream an encoder is producing, with PyAV, and lets the map
thread wait for the reconstruction it needs. Two routes:

- *pushed* (x265, x264 native drivers, :mod:`vcmtool.encoders.libx26x`): the driver hands over
  the bytes of each ``encode`` call through ``MapFeed.on_bytes``. :meth:`ReconTap.wait` blocks
  until the encoder has *returned* from a given number of calls; what is decoded then depends
  only on the encoder's inputs (its output latency is a property of its settings: x265 needs
  ``rc-lookahead=0``, x264's ultrafast..medium presets have none at ``bframes=0``).
- *tailed* (kvazaar in an ffmpeg subprocess, :mod:`vcmtool.encoders.kvazaar`): the encoder names
  its output file through ``MapFeed.on_output`` and ffmpeg writes each packet at once
  (``-flush_packets 1``; measured: with ``owf=0`` frame ``t`` is in the file before frame ``t+1``
  is sent). The file is read as it grows and split into access units by PyAV's parser, which
  releases unit ``t`` only once unit ``t+1`` has begun, so the shortest lag is 2 (map ``t``
  uses frame ``t-2``, complete once frame ``t-1``, whose map exists, started to arrive).
  :meth:`ReconTap.wait` blocks until frame ``t-L`` *is* decoded, whatever the timing, so the
  content is deterministic; if ffmpeg stops producing for :attr:`ReconTap.STALL_S` seconds the
  encode fails loudly instead of guessing.

A source never takes "whatever is decoded by now": identical inputs and options give identical
maps and bytes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from vcmtool.errors import UsageError
from vcmtool.io.frame import Frame

# Decoders of the codecs whose in-process encoders can hand over their bytes.
_DECODERS = {"hevc": "hevc", "h265": "hevc", "avc": "h264", "h264": "h264"}


class ReconTap:
    """Decoded frames of the bitstream an encoder is producing, in display order.

    ``push(index, data)`` is called by the encoder thread after each ``encode`` call (``index``:
    the frame it took, ``None`` for the final flush); ``wait(calls)`` by the map thread.
    """

    POLL_S = 0.1
    STALL_S = 120.0  # tailed: no new bytes for this long while waiting: the encoder is stuck

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.frames: list[Frame] = []
        self.calls = 0  # encode calls returned so far
        self.bound = False  # an encoder will push bytes (bind() was called)
        self.closed = False
        self.decode_s = 0.0
        self._codec = None
        self._failed: BaseException | None = None
        self.tailed = False  # the file route (kvazaar)
        self.min_lag = 1  # the shortest lag this route can serve without a deadlock
        self._path: Path | None = None
        self._alive: Callable[[], bool] = lambda: True
        self._pos = 0

    def bind(self, encoder: object, codec: str) -> None:
        """Attach to ``encoder`` (an :class:`~vcmtool.encoders.base.Encoder`); it must produce its
        bitstream in process, frame by frame (``driver()`` not None), in a codec PyAV decodes."""
        import av

        driver = getattr(encoder, "driver", None)
        name = getattr(encoder, "name", type(encoder).__name__)
        pushed = callable(driver) and driver() is not None
        # kvazaar streams maps through a FIFO on Linux only (elsewhere it takes all maps first)
        self.tailed = name == "kvazaar" and sys.platform.startswith("linux")
        if not (pushed or self.tailed) or codec.lower() not in _DECODERS:
            raise UsageError(
                f"--qpmap loop needs the encoder's reconstruction frame by frame: use x265 or x264 "
                f"with their native drivers, or kvazaar on Linux (not {name})"
            )
        self.min_lag = 2 if self.tailed else 1
        self._codec = av.CodecContext.create(_DECODERS[codec.lower()], "r")
        self._codec.thread_count = 1  # no frame threads: a frame comes out with its packet
        self.bound = True

    def push(self, index: int | None, data: bytes) -> None:
        import time

        import av

        from vcmtool.io.container import _planes

        t0 = time.perf_counter()
        out: list[Frame] = []
        try:
            if self._codec is not None and not self._failed:
                packets = [av.Packet(data)] if (data and index is not None) else []
                if index is None:  # the flush may hold several access units: split them
                    packets = list(self._codec.parse(data)) if data else []
                    packets.append(None)  # drain the decoder
                for pkt in packets:
                    for vf in self._codec.decode(pkt):
                        y, u, v = _planes(vf, 8)
                        out.append(Frame(y, u, v, len(self.frames) + len(out), 8))
        except av.error.FFmpegError as e:  # reported to the waiting source, not swallowed
            self._failed = e
        with self._cond:
            self.frames.extend(out)
            if index is not None:
                self.calls += 1
            self.decode_s += time.perf_counter() - t0
            self._cond.notify_all()

    def tail(self, path: Path, alive: Callable[[], bool]) -> None:
        """The tailed route: the encoder writes its bitstream to ``path``; ``alive()`` is False
        once it exited."""
        with self._cond:
            self._path, self._alive = Path(path), alive
            self._cond.notify_all()

    def _read_more(self, final: bool) -> bool:
        """Tailed: decode what was added to the file; ``final``: the encoder has exited, drain
        the parser. Whether new bytes came."""
        import av

        from vcmtool.io.container import _planes

        if self._path is None or self._codec is None:
            return False
        try:
            with self._path.open("rb") as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self._pos += len(data)
        out: list[Frame] = []
        try:
            packets = list(self._codec.parse(data)) if data else []
            if final:
                packets += list(self._codec.parse(b""))  # the last access unit
                packets.append(None)
            for pkt in packets:
                for vf in self._codec.decode(pkt):
                    y, u, v = _planes(vf, 8)
                    out.append(Frame(y, u, v, len(self.frames) + len(out), 8))
        except av.error.FFmpegError as e:
            self._failed = e
        self.frames.extend(out)
        return bool(data)

    def _wait_tailed(self, frames: int) -> int:
        import time

        t0 = time.perf_counter()
        last = time.monotonic()
        while len(self.frames) < frames and self._failed is None:
            if self._read_more(False):
                last = time.monotonic()
                continue
            if self.closed or (self._path is not None and not self._alive()):
                self._read_more(True)
                break
            if time.monotonic() - last > self.STALL_S:
                self.decode_s += time.perf_counter() - t0
                raise RuntimeError(
                    f"closed loop: the encoder wrote nothing for {self.STALL_S:.0f} s while frame "
                    f"{frames - 1} was awaited"
                )
            time.sleep(0.01)
        self.decode_s += time.perf_counter() - t0
        if self._failed is not None:
            raise RuntimeError(f"closed loop: cannot decode the encoder's output ({self._failed})")
        if len(self.frames) < frames:
            raise RuntimeError(f"closed loop: the encoder stopped after {len(self.frames)} frames")
        return len(self.frames)

    def close(self) -> None:
        """No more bytes will come (the encode ended or failed): waiters stop waiting."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait(self, calls: int) -> int:
        """Block until ``calls`` encode calls have returned (tailed: until ``calls`` frames are
        decoded); the number of frames decoded then."""
        if self.tailed:
            return self._wait_tailed(calls)
        with self._cond:
            while self.calls < calls and not self.closed:
                self._cond.wait(self.POLL_S)
            if self._failed is not None:
                raise RuntimeError(f"closed loop: cannot decode the encoder's output ({self._failed})")
            if self.calls < calls:
                raise RuntimeError(f"closed loop: the encoder stopped after {self.calls} frames")
            return len(self.frames)

    def frame(self, index: int) -> Frame:
        with self._cond:
            return self.frames[index]
