"""The canonical ``.qpm`` file (see DESIGN.md) and the CSV / .npy alternatives.

Layout, little-endian: b"QPM1", uint16 ctu, uint16 grid_w, uint16 grid_h, uint32 frames, then
per frame grid_w*grid_h uint8 QPs in raster order. Readers stream frame by frame and reject
anything malformed with the file name and what is wrong.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from vcmtool import native
from vcmtool.atomic import atomic_path
from vcmtool.errors import InputError
from vcmtool.qpmap.maps import QPMaps

MAGIC = b"QPM1"
HEADER = struct.Struct("<4sHHHI")
MAX_QP = 63


class QpmWriter:
    """Streaming writer; the header's frame count is patched on close."""

    def __init__(self, f: BinaryIO, ctu: int, grid_w: int, grid_h: int) -> None:
        self.f, self.ctu, self.gw, self.gh, self.count = f, ctu, grid_w, grid_h, 0
        f.write(HEADER.pack(MAGIC, ctu, grid_w, grid_h, 0))

    def write(self, qp_map: np.ndarray) -> None:
        m = np.asarray(qp_map)
        if m.shape != (self.gh, self.gw):
            raise ValueError(f"map shape {m.shape} != grid {(self.gh, self.gw)}")
        if m.min() < 0 or m.max() > 255:
            raise ValueError("QPs must fit in uint8")
        self.f.write(m.astype(np.uint8).tobytes())
        self.count += 1

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(HEADER.pack(MAGIC, self.ctu, self.gw, self.gh, self.count))
        self.f.seek(0, os.SEEK_END)


def write_qpm(path: str | os.PathLike[str], maps: QPMaps) -> None:
    data = native.qpm_bytes(maps.data, maps.ctu)  # header + all frames, range-checked
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def iter_qpm(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int, int], Iterator[np.ndarray]]:
    """Header (ctu, grid_w, grid_h, frames) and a lazy iterator over the maps."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        f.close()
        raise InputError(f"{path}: too short for a .qpm header ({len(head)} bytes)")
    magic, ctu, gw, gh, n = HEADER.unpack(head)
    if magic != MAGIC:
        f.close()
        raise InputError(f"{path}: not a .qpm file (magic {magic!r}, expected b'QPM1')")
    if ctu not in (8, 16, 32, 64, 128) or gw == 0 or gh == 0 or n == 0:
        f.close()
        raise InputError(f"{path}: invalid .qpm header (ctu {ctu}, grid {gw}x{gh}, frames {n})")
    size = os.fstat(f.fileno()).st_size
    want = HEADER.size + gw * gh * n
    if size != want:
        f.close()
        raise InputError(
            f"{path}: .qpm holds {size} bytes but its header ({n} frames of {gw}x{gh}) needs {want}"
        )

    def gen() -> Iterator[np.ndarray]:
        # Read ~1 MiB of frames at a time; the range check runs natively over the chunk.
        fs = gw * gh
        per = max(1, (1 << 20) // fs)
        with f:
            left = n
            while left:
                k = min(per, left)
                buf = f.read(fs * k)
                if len(buf) != fs * k:
                    raise InputError(f"{path}: file changed while reading")
                chunk = np.frombuffer(buf, dtype=np.uint8).reshape(k, gh, gw)
                bad, top = native.qpm_first_above(buf, k, fs, MAX_QP)
                yield from chunk[: k if bad < 0 else bad]
                if bad >= 0:
                    raise InputError(f"{path}: QP {top} above {MAX_QP}")
                left -= k

    return (ctu, gw, gh, n), gen()


def read_qpm(path: str | os.PathLike[str]) -> QPMaps:
    (ctu, _, _, _), it = iter_qpm(path)
    return QPMaps(np.stack(list(it)), ctu)


def load_map_file(path: str, ctu: int = 64) -> QPMaps:
    """Load .qpm, .npy ((F,)rows,cols) or .csv (one grid; blank line separates frames)."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise InputError(f"{path}: no such QP-map file")
    if ext == ".qpm":
        return read_qpm(path)
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{path}: not a readable .npy array ({e})") from None
    elif ext == ".csv":
        arr = _read_csv(path)
    else:
        raise InputError(f"{path}: unknown QP-map format {ext!r}; use .qpm, .npy or .csv")
    if not np.issubdtype(arr.dtype, np.number) or arr.ndim not in (2, 3):
        raise InputError(f"{path}: QP map must be a 2-D or 3-D numeric array")
    if arr.min() < 0 or arr.max() > MAX_QP:
        raise InputError(f"{path}: QPs must lie in 0..{MAX_QP}")
    return QPMaps(np.rint(arr).astype(np.int16), ctu)


def _read_csv(path: str) -> np.ndarray:
    frames: list[list[list[float]]] = [[]]
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                if frames[-1]:
                    frames.append([])
                continue
            try:
                frames[-1].append([float(x) for x in line.split(",")])
            except ValueError:
                raise InputError(f"{path}:{ln}: not a comma-separated row of numbers") from None
    frames = [fr for fr in frames if fr]
    try:
        return np.array(frames, dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: rows or frames differ in length") from None
