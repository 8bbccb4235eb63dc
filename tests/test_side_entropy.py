"""CDRE payload coding: the context-adaptive arithmetic coder ("ctx"), payload v2, v1 streams."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest

from tests.conftest import write_crop_y4m
from vcmtool.decode import decoded_frames
from vcmtool.errors import InputError
from vcmtool.io import open_video
from vcmtool.pipeline import EncodeJob, run_encode
from vcmtool.sidestreams.cdre import (
    CODERS,
    FLAG_TEMPORAL,
    VERSION,
    CdreSideEncoder,
    bits_by_frame,
    make_payload,
    parse_payload,
    payload_index,
)
from vcmtool.sidestreams.entropy import decode_map, encode_map

SHAPES = [(1, 1, 1), (6, 23, 40), (3, 7, 5), (2, 1, 9), (1, 9, 1), (0, 3, 3), (2, 0, 4), (2, 3, 0)]


def _maps(shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "random": (rng.random(shape) < 0.5).astype(np.uint8),
        "sparse": (rng.random(shape) < 0.03).astype(np.uint8),
        "zeros": np.zeros(shape, np.uint8),
        "ones": np.ones(shape, np.uint8),
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_map_roundtrip_bit_exact(shape):
    rng = np.random.default_rng(sum(shape))
    maps = _maps(shape, rng)
    for name, bits in maps.items():
        for prev_name, prev in (("none", None), *maps.items()):
            body = encode_map(bits, prev)
            back = decode_map(body, shape, prev)
            assert back.dtype == np.uint8 and np.array_equal(back, bits), (name, prev_name)


@pytest.mark.parametrize("shape", SHAPES)
def test_payload_roundtrip_every_coder(shape):
    rng = np.random.default_rng(1 + sum(shape))
    maps = _maps(shape, rng)
    for bits in maps.values():
        for prev in (None, maps["random"]):
            for name in (*CODERS, "auto"):
                p = make_payload(5, bits, name, prev=prev)
                assert p[:3] == b"CD\x02"
                idx, back = parse_payload(p, prev)
                assert idx == 5 and np.array_equal(back, bits), name


def test_context_makes_redundant_bits_cheap():
    # A smooth, persistent map (what the CDRE encoder emits) costs far less than its raw bits,
    # and the previous frame as context cuts it further; noise costs about one bit a bit.
    rng = np.random.default_rng(3)
    base = np.zeros((6, 23, 40), np.uint8)
    base[:, 5:15, 10:30] = 1
    cur = base.copy()
    flips = rng.random(base.shape) < 0.03
    cur[flips] ^= 1
    intra, temporal = len(encode_map(cur)), len(encode_map(cur, base))
    assert temporal < intra < cur.size / 8 / 2
    noise = (rng.random(base.shape) < 0.5).astype(np.uint8)
    assert len(encode_map(noise)) > 0.95 * noise.size / 8


def test_temporal_flag_and_auto_choice():
    rng = np.random.default_rng(4)
    prev = (rng.random((6, 23, 40)) < 0.4).astype(np.uint8)
    cur = prev.copy()
    cur[rng.random(cur.shape) < 0.02] ^= 1
    with_prev, without = make_payload(1, cur, "ctx", prev), make_payload(1, cur, "ctx")
    assert with_prev[4] == FLAG_TEMPORAL and without[4] == 0
    assert len(with_prev) < len(without) / 2
    assert make_payload(1, cur, prev=prev) == with_prev  # "auto" takes the smallest
    assert make_payload(1, cur, "zlib", prev)[4] == 0  # only ctx uses the context
    # a previous map of another size is no context (a new clip): coded without it
    assert make_payload(1, cur, "ctx", np.zeros((6, 2, 2), np.uint8))[4] == 0
    with pytest.raises(InputError, match="frame 0, whose payload is missing"):
        parse_payload(with_prev)
    with pytest.raises(ValueError):
        make_payload(0, np.full((2, 2, 2), 2), "ctx")
    with pytest.raises(ValueError):
        make_payload(0, cur, "nope")


def test_bits_by_frame_decodes_a_temporal_chain_in_display_order():
    rng = np.random.default_rng(5)
    frames = [(rng.random((6, 9, 20)) < 0.5).astype(np.uint8)]
    for _ in range(7):
        f = frames[-1].copy()
        f[rng.random(f.shape) < 0.05] ^= 1
        frames.append(f)
    # frame 4 was not sent (a budget skip): frame 5 is coded without context
    payloads = {
        i: make_payload(i, b, "ctx", frames[i - 1] if i and i != 5 else None)
        for i, b in enumerate(frames)
        if i != 4
    }
    assert payloads[5][4] == 0 and payloads[6][4] == FLAG_TEMPORAL
    order = [payloads[i] for i in (7, 2, 0, 6, 1, 5, 3)]  # decode order differs from display order
    got = bits_by_frame([b"not cdre", *order])
    assert sorted(got) == [0, 1, 2, 3, 5, 6, 7]
    assert all(np.array_equal(got[i], frames[i]) for i in got)
    assert [payload_index(p) for p in order] == [7, 2, 0, 6, 1, 5, 3]
    # losing the frame a payload was coded against is a one-line input error
    with pytest.raises(InputError, match="frame 2 is coded against frame 1"):
        bits_by_frame([payloads[0], payloads[2], payloads[3]])


# Version 1 payloads written by vcmtool before payload version 2 (make_payload of that version,
# bytes recorded when the v2 coder was added): index 42 for V1_BITS, index 7 for the "auto" one.
V1_BITS = np.array(
    [
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1],
        [1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0],
        [1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1],
        [1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1],
        [1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1],
        [1, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0],
    ],
    np.uint8,
).reshape(6, 3, 5)
V1_PAYLOADS = {
    "none": "434401002a00000003060000000300000005000000e0672ada894e55b9697ed400",
    "zlib": "434401012a00000078da636663606060066256207e90ae75abd32f746766dd1506002a8605fd",
    "lzma": "434401022a00000001001803060000000300000005000000e0672ada894e55b9697ed40000",
}
V1_AUTO = "434401010700000078da63666360606001620e20feff9f012b0000319d0214"


def test_version1_payloads_still_decode():
    assert VERSION == 2
    for name, hexed in V1_PAYLOADS.items():
        idx, bits = parse_payload(bytes.fromhex(hexed))
        assert idx == 42 and np.array_equal(bits, V1_BITS), name
    auto = np.zeros((6, 4, 8), np.uint8)
    auto[0, :2] = 1
    got = bits_by_frame([bytes.fromhex(V1_AUTO), bytes.fromhex(V1_PAYLOADS["zlib"])])
    assert sorted(got) == [7, 42] and np.array_equal(got[7], auto)
    # version 1 had no ctx coder and no flags
    with pytest.raises(InputError, match="unknown coder id 3"):
        parse_payload(struct.pack("<2sBBI", b"CD", 1, 3, 0) + b"\x01\x02")


def test_hostile_payloads_raise_input_error_quickly():
    rng = np.random.default_rng(6)
    prev = (rng.random((6, 23, 40)) < 0.4).astype(np.uint8)
    cur = prev.copy()
    cur[rng.random(cur.shape) < 0.1] ^= 1
    good = [make_payload(3, cur, name, prev) for name in ("none", "zlib", "lzma", "ctx")]
    good.append(make_payload(3, cur, "ctx"))
    bad = [b"", b"CD", b"CD\x02\x03\x00", b"CD\x09\x00\x00\x00\x00\x00", b"CD\x02\x07\x00\x00\x00\x00\x00"]
    bad.append(struct.pack("<2sBBBI", b"CD", 2, 0, FLAG_TEMPORAL, 0) + good[0][9:])  # flag on raw
    bad.append(struct.pack("<2sBBBI", b"CD", 2, 3, 2, 0) + good[3][9:])  # unknown flag
    # a zlib bomb and a huge declared shape must be refused, not inflated or decoded for minutes
    bad.append(struct.pack("<2sBBBI", b"CD", 2, 1, 0, 0) + zlib.compress(b"\0" * (1 << 25)))
    bad.append(struct.pack("<2sBBBIBHH", b"CD", 2, 3, 0, 0, 255, 65535, 65535) + b"\x55" * 8)
    for p in good:
        bad += [p[: len(p) // 2], p[:-1], p + b"\x01"]
        for _ in range(20):
            q = bytearray(p)
            q[rng.integers(9, len(q))] ^= 1 << int(rng.integers(8))
            bad.append(bytes(q))
    t0 = time.perf_counter()
    for p in bad:
        try:
            idx, bits = parse_payload(p, prev)
        except InputError:
            continue
        # a flipped bit may still decode to a valid map (no checksum in raw bits): then it is
        # a well-formed map of the right kind, never a crash
        assert bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 1}
    assert time.perf_counter() - t0 < 30
    ctx = good[3]
    for p in (ctx[: len(ctx) // 2], ctx[:-1], ctx + b"\x01"):
        with pytest.raises(InputError):
            parse_payload(p, prev)
    with pytest.raises(InputError):  # context of the wrong shape
        parse_payload(ctx, prev[:, :5])


@pytest.fixture(scope="module")
def model_bits(tmp_path_factory) -> list[np.ndarray]:
    """The shipped CDRE encoder's bits of 5 frames of bikes (640x272) coded by kvazaar at QP 37."""
    d = tmp_path_factory.mktemp("side_entropy")
    src = write_crop_y4m(d / "bikes.y4m", "bikes", 5, crop=(0, 0, 640, 272))
    bs = d / "bikes.hevc"
    run_encode(EncodeJob(input=str(src), output=str(bs), qp=37, preset="ultrafast", measure=False))
    enc = CdreSideEncoder()
    frames = open_video(str(src)).frames()
    return [enc.process(s.to_bgr(), r.to_bgr()) for s, r in zip(frames, decoded_frames(bs), strict=True)]


def test_ctx_beats_zlib_on_real_model_output(model_bits):
    assert len(model_bits) == 5 and model_bits[0].shape == (6, 9, 20)

    def total(coder: str, temporal: bool) -> int:
        return sum(
            len(make_payload(i, b, coder, model_bits[i - 1] if temporal and i else None))
            for i, b in enumerate(model_bits)
        )

    zlib_bytes, ctx_intra, ctx = total("zlib", False), total("ctx", False), total("ctx", True)
    assert ctx < ctx_intra < zlib_bytes
    payloads = [make_payload(i, b, prev=model_bits[i - 1] if i else None) for i, b in enumerate(model_bits)]
    got = bits_by_frame(payloads)
    assert all(np.array_equal(got[i], b) for i, b in enumerate(model_bits))
    assert sum(map(len, payloads)) <= ctx
