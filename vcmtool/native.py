"""Loader of the C++ extension ``vcmtool._native`` and what its callers share.

The extension only converts buffers; each domain module owns its format, validates its
arguments once and picks the native or the numpy path (the numpy paths give the same results
and the same errors):

- CTU grid, pooling and rasterisation of boxes and masks: :mod:`vcmtool.qpmap.raster`
- the ``.qpm`` file and CSV maps: :mod:`vcmtool.qpmap.qpm`
- kvazaar's binary ROI file: :mod:`vcmtool.encoders.kvazaar`
- x265/x264 block offsets and the per-CTU drivers: :mod:`vcmtool.encoders.libx26x`
- SvtAv1EncApp's ROI text: :mod:`vcmtool.encoders.svtav1`
- framed bit packing: :mod:`vcmtool.sidestreams.bits`
- Annex-B NAL units and SEI: :mod:`vcmtool.bitstream.annexb`

``NATIVE`` tells whether the extension loaded; ``vcmtool doctor`` reports it
(:func:`native_status`, with the x265/x264 drivers). Domain modules ask :func:`has` at call
time, so ``numpy_only()`` (tests, benchmarks) and ``VCMTOOL_NO_NATIVE`` (environment) force
the numpy paths. The argument checks below are shared: sizes and counts are checked before
either path runs, so both refuse the same arguments with the same ``ValueError`` and the C++
code (which checks again, overflow-safe) never sees a size whose product wraps.
tests/test_native_fuzz.py holds both paths against each other on random and hostile arguments.
"""

from __future__ import annotations

import contextlib
import operator
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

if os.environ.get("VCMTOOL_NO_NATIVE"):  # force the numpy paths (testing, debugging)
    _native = None
    NATIVE = False
    NATIVE_ERROR = "disabled by VCMTOOL_NO_NATIVE"
else:
    try:  # pragma: no cover - depends on the build
        from vcmtool import _native  # type: ignore[attr-defined]

        NATIVE = True
        NATIVE_ERROR = ""
    except ImportError as e:  # pragma: no cover
        _native = None
        NATIVE = False
        NATIVE_ERROR = f"vcmtool._native did not build or load ({e}); numpy fallbacks in use"

_numpy_only = False


def has(name: str) -> bool:
    """Whether ``_native.<name>`` is there to use (False inside :func:`numpy_only`)."""
    return NATIVE and not _numpy_only and hasattr(_native, name)


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """Run the numpy paths inside the block (process-wide: for tests and benchmarks)."""
    global _numpy_only
    saved, _numpy_only = _numpy_only, True
    try:
        yield
    finally:
        _numpy_only = saved


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the domain modules

INT64_MAX = 2**63 - 1


def count_arg(value: Any, what: str, minimum: int = 0) -> int:
    """An integer argument (Python or numpy integer) in ``minimum..2**63-1``, else ``ValueError``.

    Floats are refused rather than truncated: the native path would truncate where numpy would
    fail later, so the two paths would disagree. The upper bound is what the C++ side can take
    (int64); beyond it pybind11 raises TypeError where numpy might try to allocate.
    """
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {v}")
    if v > INT64_MAX:
        raise ValueError(f"{what} {v} does not fit in 64 bits")
    return v


def check_size(nbytes: int, what: str) -> None:
    """Refuse outputs whose size does not fit in a signed 64-bit (``Py_ssize_t``) count.

    Python integers do not overflow, so this is the exact test the C++ code makes with
    ``__builtin_mul_overflow``; sizes below it that memory cannot hold fail with MemoryError.
    """
    if nbytes > sys.maxsize:
        raise ValueError(f"{what}: size overflows 64 bits ({nbytes} bytes)")


def byte_buffer(data: Any) -> memoryview:
    """A flat byte view of any C-contiguous buffer (bytes, bytearray, memoryview, arrays).

    Both paths read this one view, so a non-buffer (TypeError) or a strided buffer
    (ValueError) fails the same way on both.
    """
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("buffer must be C-contiguous")
    if mv.ndim == 1 and mv.format == "B":
        return mv
    # cast() refuses shapes with a zero: an empty buffer of any shape is just no bytes.
    return mv.cast("B") if mv.nbytes else memoryview(b"")


def int_maps(maps: Any, what: str = "QP maps") -> np.ndarray:
    """(frames, rows, cols) integers (a single 2-D map gets a frame axis), else ``ValueError``."""
    a = np.asarray(maps)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{what} must be (frames, rows, cols), got shape {a.shape}")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got {a.dtype}")
    return a


def fits_int32(a: np.ndarray) -> bool:
    """Whether every value of an integer array fits the C++ side's int32 (no scan for small dtypes)."""
    return (
        a.dtype.itemsize < 4 or a.dtype == np.int32 or not a.size or (a.min() >= -(2**31) and a.max() < 2**31)
    )


# ---------------------------------------------------------------------------------------------
# What the extension was built with


def driver_reason(lib: str, flag: str) -> str:
    """Why the ``lib`` encoder driver is unavailable ('' when it is there)."""
    if not NATIVE:
        return f"the native extension vcmtool._native is not available ({NATIVE_ERROR})"
    if not getattr(_native, flag, False):
        return (
            f"vcmtool._native was built without {lib} (install {lib}-dev and pkg-config, "
            "then reinstall vcmtool)"
        )
    return ""


def native_status() -> dict[str, Any]:
    """What ``vcmtool doctor`` shows about the native paths."""
    x265, x264 = driver_reason("libx265", "X265_AVAILABLE"), driver_reason("libx264", "X264_AVAILABLE")
    return {
        "native": NATIVE,
        "native_error": NATIVE_ERROR,
        "x265": {
            "available": not x265,
            "detail": x265
            or f"libx265 {_native.X265_VERSION}, bit depths " + ",".join(map(str, _native.X265_BIT_DEPTHS)),
        },
        "x264": {
            "available": not x264,
            "detail": x264 or f"libx264 {_native.X264_VERSION}",
        },
    }
