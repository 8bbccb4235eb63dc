"""The canonical ``.qpm`` file (docs/design.md, "The .qpm file") and the CSV / .npy alternatives.

Layout, little-endian: b"QPM1", uint16 ctu, uint16 grid_w, uint16 grid_h, uint32 frames, then
per frame grid_w*grid_h uint8 QPs in raster order. Readers stream frame by frame and reject
anything malformed with the file name and what is wrong.

Every reader hands out exactly the QPs the file holds or refuses the file: a map value that is
not an integer in 0..63 (NaN, inf, 31.5, -1, 70) is refused with its position, never rounded,
clamped or wrapped into range.

This module owns the bytes of the format: the writer (:func:`qpm_bytes`, native or numpy) and
the reader's header and range checks (:func:`iter_qpm`, :func:`qpm_first_above`), and the CSV
text (:func:`csv_text`).
"""

from __future__ import annotations

import operator
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

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


# ---------------------------------------------------------------------------------------------
# .qpm bytes (native or numpy; both refuse the same arguments with the same ValueError)


def _qpm_args(maps: Any, ctu: Any) -> tuple[np.ndarray, int]:
    a = native.int_maps(maps)
    f, gh, gw = a.shape
    ctu = native.count_arg(ctu, "ctu")
    # The header fields are uint16/uint32: a larger value would not fit (struct.error in the
    # numpy path, a silent wrap if unchecked), so both paths refuse it here.
    if ctu > 0xFFFF or gw > 0xFFFF or gh > 0xFFFF or f > 0xFFFFFFFF:
        raise ValueError("ctu, grid or frame count too large for a .qpm header")
    return a, ctu


def _qpm_bytes_numpy(a: np.ndarray, ctu: int) -> bytes:
    f, gh, gw = a.shape
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError("QPs must fit in uint8")
    return HEADER.pack(MAGIC, ctu, gw, gh, f) + a.astype(np.uint8).tobytes()


def qpm_bytes(maps: np.ndarray, ctu: int) -> bytes:
    """A whole ``.qpm`` file (header + frames) from (frames, rows, cols) integer QPs (0..255)."""
    a, ctu = _qpm_args(maps, ctu)
    if native.has("qpm_encode") and a.dtype not in (np.uint32, np.uint64):
        return native._native.qpm_encode(np.ascontiguousarray(a), ctu)
    return _qpm_bytes_numpy(a, ctu)


def _first_above_numpy(mv: memoryview, frames: int, frame_size: int, max_qp: int) -> tuple[int, int]:
    if not frames or not frame_size:  # no QPs at all, so none above the limit
        return -1, 0
    a = np.frombuffer(mv, dtype=np.uint8, count=frames * frame_size).reshape(frames, frame_size)
    m = a.max(axis=1)
    bad = np.flatnonzero(m > max_qp)
    return (int(bad[0]), int(m[bad[0]])) if len(bad) else (-1, 0)


def qpm_first_above(buf: Any, frames: int, frame_size: int, max_qp: int) -> tuple[int, int]:
    """Index of the first frame with a QP above ``max_qp`` and that frame's maximum; (-1, 0).

    ``buf`` holds at least ``frames`` x ``frame_size`` bytes (``ValueError`` otherwise, also for
    negative counts); frames of size 0 hold no QP, so (-1, 0).
    """
    mv = native.byte_buffer(buf)
    frames, frame_size = native.count_arg(frames, "frame count"), native.count_arg(frame_size, "frame size")
    # Python integers do not wrap: this is the exact bound the C++ code tests by division.
    if frames * frame_size > mv.nbytes:
        raise ValueError(f"buffer of {mv.nbytes} bytes is shorter than {frames} frames of {frame_size} bytes")
    # QPs are uint8: clamping the limit to -1..255 changes no answer and keeps it in C int range.
    try:
        max_qp = min(max(operator.index(max_qp), -1), 255)
    except TypeError:
        raise ValueError(f"max_qp must be an integer, got {max_qp!r}") from None
    if native.has("qpm_check"):
        return native._native.qpm_check(mv, frames, frame_size, max_qp)
    return _first_above_numpy(mv, frames, frame_size, max_qp)


def write_qpm(path: str | os.PathLike[str], maps: QPMaps) -> None:
    data = qpm_bytes(maps.data, maps.ctu)  # header + all frames, range-checked
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
                bad, top = qpm_first_above(buf, k, fs, MAX_QP)
                yield from chunk[: k if bad < 0 else bad]
                if bad >= 0:
                    raise InputError(f"{path}: QP {top} above {MAX_QP} in frame {n - left + bad}")
                left -= k

    return (ctu, gw, gh, n), gen()


def read_qpm(path: str | os.PathLike[str]) -> QPMaps:
    (ctu, _, _, _), it = iter_qpm(path)
    return QPMaps(np.stack(list(it)), ctu)


def csv_text(maps: np.ndarray) -> str:
    """CSV of integer QP maps: comma-separated rows, a blank line between frames (the layout
    :func:`load_map_file` reads)."""
    a = native.int_maps(maps)
    if native.has("csv") and native.fits_int32(a):
        return native._native.csv(a)
    return "\n".join("".join(",".join(map(str, row)) + "\n" for row in m.tolist()) for m in a)


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
                f"{path}: QP map must be 2-D (rows, cols) or 3-D (frames, rows, cols), got shape {arr.shape}"
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
        (
            lambda x: np.abs(x - np.rint(x)) > FRACTION_TOL,
            "is not an integer; round the map before saving it (numpy.rint)",
        ),
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
        raise InputError(f"{path}: not a .npy file (no \\x93NUMPY signature); write maps with numpy.save")
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
