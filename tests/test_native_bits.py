"""Bit packing of {0,1} tensors (vcmtool.sidestreams.bits): native against numpy, framing, malformed
records."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import numpy_path
from vcmtool.errors import InputError
from vcmtool.sidestreams.bits import iter_unpack_bits, pack_bits, unpack_bits, unpack_bits_from

pack_bits_numpy = numpy_path(pack_bits)
unpack_bits_from_numpy = numpy_path(unpack_bits_from)


@pytest.mark.parametrize(
    "shape", [(1,), (7,), (8,), (9,), (6, 45, 80), (1, 1, 1), (3, 5, 7), (2, 3, 4, 5), (0, 4), (6, 0, 3)]
)
def test_pack_matches_numpy(shape):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, shape, dtype=np.uint8)
    got = pack_bits(a)
    assert got == pack_bits_numpy(a)
    head = struct.pack(f"<B{len(shape)}I", len(shape), *shape)
    assert got[: len(head)] == head
    assert got[len(head) :] == np.packbits(a.reshape(-1)).tobytes()  # MSB first
    back = unpack_bits(got)
    assert back.shape == shape and back.dtype == np.uint8
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(unpack_bits_from_numpy(got)[0], a)


def test_pack_msb_first():
    assert pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1], bool))[5:] == b"\x81\x80"


def test_pack_dtypes():
    a = np.random.default_rng(1).integers(0, 2, (4, 33))
    ref = pack_bits(a.astype(np.uint8))
    for dt in (bool, np.int64, np.float32, np.float64, np.int8):
        assert pack_bits(a.astype(dt)) == ref
    assert pack_bits(np.asfortranarray(a.astype(np.uint8))) == ref  # C order regardless
    assert pack_bits(a.astype(np.uint8)[:, ::-1][:, ::-1]) == ref


@pytest.mark.parametrize("fn", [pack_bits, pack_bits_numpy])
def test_pack_rejects_non_binary(fn):
    a = np.zeros(20, np.uint8)
    a[13] = 2
    with pytest.raises(ValueError, match="flat index 13 is not 0 or 1"):
        fn(a)
    with pytest.raises(ValueError, match="not 0 or 1"):
        fn(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="dimensions"):
        fn(np.zeros((1,) * 9, np.uint8))
    with pytest.raises(ValueError, match="dimensions"):
        fn(np.uint8(1))


def test_concatenated_records():
    rng = np.random.default_rng(2)
    arrs = [rng.integers(0, 2, (6, h, w), dtype=np.uint8) for h, w in [(3, 5), (8, 8), (1, 1)]]
    blob = b"".join(pack_bits(a) for a in arrs)
    out = list(iter_unpack_bits(blob))
    assert len(out) == 3
    for a, b in zip(arrs, out, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="bytes after the record"):
        unpack_bits(blob)


def _rec(dims, payload):
    return struct.pack(f"<B{len(dims)}I", len(dims), *dims) + payload


MALFORMED = [
    (b"", "no frame header"),
    (b"\x00", "bad dimension count 0"),
    (b"\x09" + bytes(36), "bad dimension count 9"),
    (b"\x03\x01\x00", "truncated frame header"),
    (_rec([10], b"\xff"), "needs 2 payload bytes, 1 present"),
    (_rec([0xFFFFFFFF] * 8, b"\x00" * 4), "declares more bits"),
    (_rec([0xFFFFFFFF, 0xFFFFFFFF], b""), "declares more bits"),
    (_rec([3], b"\xf0"), "nonzero padding bits"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
@pytest.mark.parametrize("fn", [unpack_bits_from, unpack_bits_from_numpy])
def test_malformed_records(fn, data, message):
    with pytest.raises(InputError, match=message) as e:
        fn(data)
    assert "\n" not in str(e.value)


def test_empty_dimension_record():
    arr = unpack_bits(_rec([0, 0xFFFFFFFF], b""))
    assert arr.shape == (0, 0xFFFFFFFF)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_unpack_fuzz(data):
    outcomes = []
    for fn in (unpack_bits_from, unpack_bits_from_numpy):
        try:
            arr, end = fn(data)
        except InputError as e:
            outcomes.append(("error", str(e)))
        else:
            assert arr.dtype == np.uint8 and arr.max(initial=0) <= 1 and end <= len(data)
            outcomes.append(("ok", arr.shape, arr.tobytes(), end))
    assert outcomes[0] == outcomes[1]  # native and numpy agree, messages included


@settings(max_examples=100, deadline=None)
@given(shape=st.lists(st.integers(0, 20), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_pack_round_trip_fuzz(shape, seed):
    a = np.random.default_rng(seed).integers(0, 2, shape, dtype=np.uint8)
    b = pack_bits(a)
    assert b == pack_bits_numpy(a)
    np.testing.assert_array_equal(unpack_bits(b), a)
