"""Streamed QP maps: predicted in a background thread while the encoder consumes them per frame.

``MapProducer`` runs a source's ``stream`` in a daemon thread and hands maps over through a
bounded queue; an exception in the thread is re-raised in the consumer, unchanged, at the frame
that needed the map (so a bad model file is the same one-line error as without overlap).
A thread is enough: the heavy parts (onnxruntime, OpenCV DNN, PyAV decoding, the native
x265/x264 drivers, ffmpeg pipe writes) release the GIL.

``MapFeed`` is what an encoder sees: ``frame(i)`` blocks until map ``i`` exists, applies the
encoder's per-frame preparation (``Encoder.frame_prep``) and keeps every applied map, so the
report, ``--qpm-out`` and ``--overlay`` get exactly what was encoded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np

from vcmtool.qpmap.maps import QPMaps

_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class MapProducer:
    """Iterate ``maps`` in a background thread; iterate the producer to receive them in order.

    ``busy_s`` is the time the thread spent producing (inside the source), ``produced`` the
    number of maps. ``close()`` stops the thread after its current map and is idempotent.
    """

    POLL_S = 0.1

    def __init__(self, maps: Iterable[np.ndarray], maxsize: int = 64, name: str = "vcmtool-maps") -> None:
        self._q: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self.busy_s = 0.0
        self.produced = 0
        # Daemon: an interpreter exiting on Ctrl-C must not wait for a model run to finish.
        self._thread = threading.Thread(target=self._run, args=(maps,), name=name, daemon=True)
        self._thread.start()

    def _run(self, maps: Iterable[np.ndarray]) -> None:
        it = iter(maps)
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                finally:
                    self.busy_s += time.perf_counter() - t0
                self.produced += 1
                if not self._put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failed(e))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # runs the source's finally blocks (timings, progress bar) in this thread
        self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=self.POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            try:
                item = self._q.get(timeout=self.POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    # Only close() stops it without a last word; never pass that off as the end.
                    raise RuntimeError("QP-map producer stopped before its last map") from None
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> MapProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FramePrep:
    """The per-frame form of ``Encoder.prepare_maps``: ``prep(grid) -> applied grid``.

    ``notes()`` is complete once every frame has passed (clamp counts are only known then).
    """

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        return grid

    def notes(self) -> list[str]:
        return []


class MapFeed:
    """Per-frame maps for an encoder, pulled from ``grids`` (raw source maps) on demand.

    ``offset`` is added (``--qp-offset``) and ``prep`` applied to each map as it arrives;
    ``wait_s`` is the time the encoder spent blocked waiting for maps.
    """

    def __init__(
        self,
        grids: Iterable[np.ndarray],
        ctu: int,
        height: int,
        width: int,
        prep: FramePrep | None = None,
        offset: int = 0,
    ) -> None:
        from vcmtool.qpmap.raster import grid_shape

        self._it = iter(grids)
        self.ctu = ctu
        self._shape = grid_shape(height, width, ctu)
        self._size = (height, width)
        self.prep = prep if prep is not None else FramePrep()
        self.offset = int(offset)
        self.applied: list[np.ndarray] = []
        self.wait_s = 0.0
        self._done = False

    def _pull(self) -> bool:
        t0 = time.perf_counter()
        try:
            raw = next(self._it)
        except StopIteration:
            self._done = True
            return False
        finally:
            self.wait_s += time.perf_counter() - t0
        grid = np.asarray(raw).astype(np.int16)  # before the offset: uint8 maps would wrap
        if grid.shape != self._shape:
            QPMaps(grid, self.ctu).check_grid(*self._size)  # raises the usual one-line error
        if self.offset:
            grid = grid + np.int16(self.offset)
        self.applied.append(np.asarray(self.prep(grid), dtype=np.int16))
        return True

    def frame(self, i: int) -> np.ndarray:
        """The applied map of frame ``i`` (frames are asked for in order); past the source's
        last map the last one repeats, as with :class:`QPMaps`."""
        while len(self.applied) <= i and not self._done and self._pull():
            pass
        if not self.applied:
            raise RuntimeError("QP-map source produced no maps")
        return self.applied[min(i, len(self.applied) - 1)]

    def finish(self) -> None:
        """Drain the source to its end (its timings and versions are final afterwards)."""
        while not self._done and self._pull():
            pass

    def maps(self, frames: int | None = None) -> QPMaps:
        """Every applied map as :class:`QPMaps` (extended to ``frames``), with the prep's notes."""
        out = QPMaps(np.stack(self.applied), self.ctu, list(self.prep.notes()))
        return out.extend(frames) if frames is not None and frames != len(out) else out
