"""The canonical ``.qpm`` file (docs/design.md, "The .qpm file") and the CSV / .npy alternatives.

Layout, little-endian: b"QPM1", uint16 ctu, uint16 grid_w, uint16 grid_h, uint32 frames, then
per frame grid_w*grid_h uint8 QPs in raster order. Readers stream frame by frame and reject
anything malformed with the file name and what is wrong.

Every reader hands out exactly the QPs the file holds or refuses the file: a map value that is
not an integer in 0..63 (NaN, inf, 31.5, -1, 70) is refused with its position, never rounded,
clamped or wrapped into range.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from vcmtool import native
from vcmtool.atomic import atomic_path
from vcmtool.errors import InputError
from vcmtool.qpmap.maps import QPMaps

MAGIC = b"QPM1"
HEADER = struct.Struct("<4sHHHI")
MAX_QP = 63
FRACTION_TOL = 1e-6  # how far from an integer a float QP in .npy/.csv may be
MAX_FIELD = 32  # a CSV field longer than this is not a QP (and 200 kB would only slow float())


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
                    raise InputError(f"{path}: QP {top} above {MAX_QP} in frame {n - left + bad}")
                left -= k

    return (ctu, gw, gh, n), gen()


def read_qpm(path: str | os.PathLike[str]) -> QPMaps:
    (ctu, _, _, _), it = iter_qpm(path)
    return QPMaps(np.stack(list(it)), ctu)


def load_map_file(path: str, ctu: int = 64) -> QPMaps:
    """Load .qpm, .npy ((F,)rows,cols) or .csv (one grid; blank line separates frames).

    .npy and .csv hold absolute QPs, integers in 0..63, as integer or float numbers (``31.0`` is
    31). Anything else is refused with the file and the first bad position: NaN/inf, a value
    outside 0..63 (never clamped or wrapped) and a fractional QP such as 31.5 (float noise
    within ``FRACTION_TOL`` of an integer is that integer). Fractions are refused, not rounded:
    the rounding rule (nearest, floor, ...) is the map author's choice, and a silent one here
    would code something other than what they meant; ``numpy.rint`` before saving is one line.
    .npy files are read without unpickling (``allow_pickle=False``). The ``ctu`` of a .qpm
    comes from its header; ``ctu`` applies to .npy and .csv, which do not store one.
    """
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise InputError(f"{path}: no such QP-map file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a QP-map file")
    if ext == ".qpm":
        return read_qpm(path)
    if ext == ".npy":
        arr = _read_npy(path)
        if arr.ndim not in (2, 3):
            raise InputError(
                f"{path}: QP map must be 2-D (rows, cols) or 3-D (frames, rows, cols), got shape "
                f"{arr.shape}"
            )
        where = _npy_position(arr.ndim)
    elif ext == ".csv":
        arr, lines = _read_csv(path)
        where = lambda f, r, c: f"line {lines[f][r]}, column {c + 1}"  # noqa: E731
    else:
        raise InputError(f"{path}: unknown QP-map format {ext!r}; use .qpm, .npy or .csv")
    if arr.size == 0:
        raise InputError(f"{path}: QP map holds no QPs (shape {arr.shape})")
    return QPMaps(_checked_qps(arr if arr.ndim == 3 else arr[None], path, where), ctu)


def _npy_position(ndim: int) -> Callable[[int, int, int], str]:
    if ndim == 2:
        return lambda f, r, c: f"row {r}, col {c}"
    return lambda f, r, c: f"frame {f}, row {r}, col {c}"


def _checked_qps(a: np.ndarray, path: str, where: Callable[[int, int, int], str]) -> np.ndarray:
    """(frames, rows, cols) numbers as int16 QPs, or an InputError naming the first bad one."""
    tests: list[tuple[Callable[[np.ndarray], np.ndarray], str]] = [
        # NaN compares False with everything, so the finite test must come before the others.
        (lambda x: ~np.isfinite(x), f"is not a QP (QPs are integers 0..{MAX_QP})"),
        (lambda x: (x < 0) | (x > MAX_QP), f"is outside 0..{MAX_QP}"),
        # Float noise (29.999999999999996 from arithmetic) is the integer; 29.5 is not.
        (lambda x: np.abs(x - np.rint(x)) > FRACTION_TOL,
         "is not an integer; round the map before saving it (numpy.rint)"),
    ]
    if np.issubdtype(a.dtype, np.integer):
        tests = tests[1:2]  # integers are finite and whole
    for bad_of, why in tests:
        bad = bad_of(a)
        if bad.any():
            f, r, c = (int(i) for i in np.argwhere(bad)[0])
            v = a[f, r, c].item()
            v = int(v) if isinstance(v, float) and v.is_integer() else v  # "64" as written, not 64.0
            raise InputError(f"{path}: value {v} at {where(f, r, c)} {why}")
    return np.rint(a).astype(np.int16)


def _read_npy(path: str) -> np.ndarray:
    """A numeric array from a .npy file, never unpickling and never allocating more than the
    file holds (a header may claim any shape)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    if magic != b"\x93NUMPY":
        raise InputError(
            f"{path}: not a .npy file (no \\x93NUMPY signature); write maps with numpy.save"
        )
    try:
        # A memory map checks the header's shape against the file size before anything is read.
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable numeric .npy array ({e})") from None
    if not isinstance(mm, np.ndarray):
        raise InputError(f"{path}: not a single .npy array")
    if not (np.issubdtype(mm.dtype, np.integer) or np.issubdtype(mm.dtype, np.floating)):
        raise InputError(f"{path}: QP map must hold integers or floats, not {mm.dtype}")
    return np.array(mm)


def _read_csv(path: str) -> tuple[np.ndarray, list[list[int]]]:
    """(frames, rows, cols) float64 values and the line number of every row."""
    frames: list[list[list[float]]] = [[]]
    lines: list[list[int]] = [[]]
    try:
        # utf-8-sig: spreadsheet programs start their CSV files with a byte-order mark.
        with open(path, encoding="utf-8-sig") as f:
            for ln, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    if frames[-1]:
                        frames.append([])
                        lines.append([])
                    continue
                cells = line.split(",")
                for col, cell in enumerate(cells, 1):
                    if len(cell) > MAX_FIELD:
                        raise InputError(
                            f"{path}:{ln}: column {col} is {len(cell)} characters long, not a QP"
                        )
                try:
                    frames[-1].append([float(x) for x in cells])
                except ValueError:
                    raise InputError(f"{path}:{ln}: not a comma-separated row of numbers") from None
                lines[-1].append(ln)
    except UnicodeDecodeError as e:  # binary data (an image, random bytes)
        raise InputError(
            f"{path}: not a text CSV file ({e.reason} in UTF-8); write maps as comma-separated "
            "QPs, one grid row per line"
        ) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    frames = [fr for fr in frames if fr]
    lines = [ls for ls in lines if ls]
    if not frames:
        raise InputError(f"{path}: QP map holds no QPs (empty CSV)")
    try:
        return np.array(frames, dtype=np.float64), lines
    except ValueError:
        raise InputError(f"{path}: rows or frames differ in length") from None
