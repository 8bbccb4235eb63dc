"""x264 with ``--ctu 16``: one QP per 16x16 macroblock through the native libx264 driver.

The backend used to hand every grid to the driver as 64x64 CTUs, so any ``--ctu`` but 64 failed
with a traceback ("QP grid is 8x16 ... with ctu 64 needs 2x4"), even a uniform map. These tests
run the real encoder on a real clip, decode the bitstream with PyAV and measure what landed:
the per-macroblock QPs read back from the decoder and the per-stripe PSNR, the way
tests/test_native_encoders.py proves it for 64x64 CTUs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from vcmtool.encoders import EncodeSettings, get_encoder, libx26x
from vcmtool.io import open_video
from vcmtool.io.frame import Frame
from vcmtool.io.y4m import write_y4m
from vcmtool.qpmap import QPMaps
from vcmtool.qpmap.qpm import write_qpm
from vcmtool.qpmap.raster import grid_shape
from vcmtool.qpmap.stream import MapFeed

pytestmark = pytest.mark.skipif(not libx26x.X264_AVAILABLE, reason=libx26x.X264_REASON or "x264")

FRAMES = 4
MB = 16


def _mb_qps(path: Path) -> list[np.ndarray]:
    """Per-macroblock QPs of every decoded frame (FFmpeg's exported encoder parameters)."""
    import av

    out = []
    with av.open(io.BytesIO(path.read_bytes()), format="h264") as c:
        s = c.streams.video[0]
        s.codec_context.options = {"export_side_data": "venc_params"}
        for f in c.decode(s):
            sd = [d for d in f.side_data if "ENC_PARAMS" in str(d.type)]
            assert sd, "decoder exported no per-block QPs"
            out.append(sd[0].qp_map().copy())
    return out


@pytest.fixture(scope="module")
def grainy_y4m(bikes_y4m, tmp_path_factory) -> Path:
    """The bikes crop (256x128) with film grain: every macroblock then has residual at QPs <= 36,
    so H.264 sends each macroblock's own QP (without residual it keeps the previous one)."""
    src = open_video(str(bikes_y4m), frames=FRAMES)
    rng = np.random.default_rng(1)

    def grain(p: np.ndarray) -> np.ndarray:
        return np.clip(p + rng.normal(0, 12.0, p.shape), 0, 255).astype(np.uint8)

    out = tmp_path_factory.mktemp("ctu16") / "grain.y4m"
    with open(out, "wb") as f:
        write_y4m(
            f, src.info, (Frame(grain(fr.y), grain(fr.u), grain(fr.v), fr.index, 8) for fr in src.frames())
        )
    return out


def _check_mb_qps(q: np.ndarray, want: np.ndarray, exact: bool = True) -> float:
    """H.264 sends a macroblock's QP only with residual (mb_qp_delta); a skipped or residual-free
    macroblock decodes with the previous macroblock's QP. On I-frames of grainy content every
    macroblock must carry the map's QP; on P-frames each carries the map's QP or its
    predecessor's. Returns the fraction that carries the map's QP."""
    assert q.shape == want.shape, (q.shape, want.shape)
    if exact:
        np.testing.assert_array_equal(q, want)
    flat, w = q.reshape(-1), want.reshape(-1)
    prev = np.concatenate([[-1], flat[:-1]])
    assert ((flat == w) | (flat == prev)).all(), np.argwhere(q.reshape(-1) != w)
    return float((flat == w).mean())


def _random_mb_map(clip, seed: int = 0) -> np.ndarray:
    """Random QPs per macroblock, 4 apart (x264 merges +-1 steps), different per frame."""
    gh, gw = grid_shape(clip.info.height, clip.info.width, MB)
    rng = np.random.default_rng(seed)
    return rng.choice(np.arange(12, 37, 4), (FRAMES, gh, gw)).astype(np.int16)


@pytest.mark.parametrize("intra_period", [1, 0])
def test_per_macroblock_qps_read_back_equal_the_map(grainy_y4m, tmp_path, intra_period):
    clip = open_video(str(grainy_y4m))
    m = _random_mb_map(clip)
    enc = get_encoder("x264")
    settings = EncodeSettings(preset="fast", intra_period=intra_period)
    out = tmp_path / "mb.h264"
    enc.encode(clip, enc.prepare_maps(QPMaps(m, MB), settings), settings, out)
    qps = _mb_qps(out)
    assert len(qps) == FRAMES
    # I-frames (intra_period 1): every macroblock exact. Low-delay P-frames (0): the first frame
    # is an I-frame (exact); a rare skipped macroblock keeps its predecessor's QP.
    exact = [_check_mb_qps(q, m[i], exact=intra_period == 1 or i == 0) for i, q in enumerate(qps)]
    assert min(exact) > 0.95, exact


def test_streamed_maps_land_per_macroblock(grainy_y4m, tmp_path):
    """The streamed path (MapFeed, what overlapped map sources use) with 16x16 cells."""
    clip = open_video(str(grainy_y4m))
    m = _random_mb_map(clip, seed=3)
    settings = EncodeSettings(preset="fast", intra_period=1)
    enc = get_encoder("x264")
    feed = MapFeed(iter(m), MB, clip.info.height, clip.info.width, enc.frame_prep(settings))
    out = tmp_path / "s.h264"
    res = enc.encode_stream(clip, feed, settings, out)
    assert res.maps.ctu == MB
    for i, q in enumerate(_mb_qps(out)):
        _check_mb_qps(q, m[i])


def test_macroblock_stripes_change_psnr_per_stripe(bikes_y4m, tmp_path):
    """Alternate 16-pixel columns at QP 22 and 40: a pattern only 16x16 control can make. The
    fine columns must decode much better than the coarse ones (natural content, no grain)."""
    from vcmtool.decode import decoded_frames, psnr

    clip = open_video(str(bikes_y4m), frames=FRAMES)
    gh, gw = grid_shape(clip.info.height, clip.info.width, MB)
    m = np.full((1, gh, gw), 40, np.int16)
    m[:, :, ::2] = 22
    out = tmp_path / "stripes.h264"
    enc = get_encoder("x264")
    settings = EncodeSettings(preset="fast")
    enc.encode(clip, enc.prepare_maps(QPMaps(m, MB), settings), settings, out)
    fine = (np.arange(clip.info.width) // MB) % 2 == 0
    gaps = [
        psnr(ref.y[:, fine], dec.y[:, fine], 255) - psnr(ref.y[:, ~fine], dec.y[:, ~fine], 255)
        for ref, dec in zip(clip.frames(), decoded_frames(out), strict=True)
    ]
    assert len(gaps) == FRAMES and min(gaps) >= 5, gaps
    # Swapped stripes: the gap follows the map, not the content.
    m2 = np.where(m == 22, 40, 22).astype(np.int16)
    enc.encode(clip, enc.prepare_maps(QPMaps(m2, MB), settings), settings, out)
    gaps2 = [
        psnr(ref.y[:, fine], dec.y[:, fine], 255) - psnr(ref.y[:, ~fine], dec.y[:, ~fine], 255)
        for ref, dec in zip(clip.frames(), decoded_frames(out), strict=True)
    ]
    assert max(gaps2) <= -5, gaps2


def _x264_ctu16_cli(src: Path, out: Path, *args: str) -> dict:
    r = run_cli(
        "encode", str(src), "-c", "x264", "--ctu", "16", "--frames", str(FRAMES), "--preset", "fast",
        "-o", str(out), "--json", *args,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_cli_ctu16_uniform_and_file_maps(grainy_y4m, tmp_path):
    """The documented command: ``vcmtool encode clip.y4m -c x264 --ctu 16 -o out.264``."""
    out = tmp_path / "u.264"
    rep = _x264_ctu16_cli(grainy_y4m, out, "--qpmap", "none", "--qp", "30")
    assert rep["frames"] == FRAMES and rep["bytes"] == out.stat().st_size > 0
    assert all((q == 30).all() for q in _mb_qps(out))  # every macroblock at --qp
    # A per-macroblock .qpm (ctu 16) through the CLI lands macroblock by macroblock.
    clip = open_video(str(grainy_y4m))
    m = _random_mb_map(clip, seed=5)
    write_qpm(tmp_path / "m.qpm", QPMaps(m, MB))
    out = tmp_path / "f.264"
    _x264_ctu16_cli(grainy_y4m, out, "--qpmap", f"file:{tmp_path / 'm.qpm'}", "--intra-period", "1")
    for i, q in enumerate(_mb_qps(out)):
        _check_mb_qps(q, m[i])


@pytest.mark.parametrize("ctu", [32, 128])
def test_other_cell_sizes_expand_to_macroblocks(grainy_y4m, tmp_path, ctu):
    """--ctu 32 and 128 had the same bug: each cell covers (ctu/16)^2 macroblocks."""
    clip = open_video(str(grainy_y4m), frames=2)
    gh, gw = grid_shape(clip.info.height, clip.info.width, ctu)
    m = np.random.default_rng(ctu).choice(np.arange(12, 37, 4), (2, gh, gw)).astype(np.int16)
    enc = get_encoder("x264")
    settings = EncodeSettings(preset="fast", intra_period=1)
    out = tmp_path / f"c{ctu}.h264"
    enc.encode(clip, enc.prepare_maps(QPMaps(m, ctu), settings), settings, out)
    k = ctu // MB
    for i, q in enumerate(_mb_qps(out)):
        _check_mb_qps(q, np.repeat(np.repeat(m[i], k, 0), k, 1)[: q.shape[0], : q.shape[1]])


def test_grid_mismatch_is_an_encoder_error_not_a_traceback(grainy_y4m, tmp_path):
    from vcmtool.errors import EncoderError

    clip = open_video(str(grainy_y4m), frames=1)
    bad = QPMaps(np.full((1, 3, 3), 30, np.int16), MB)  # 3x3 cells do not cover 256x128
    enc = get_encoder("x264")
    with pytest.raises(EncoderError, match="QP grid is 3x3"):
        enc.encode(clip, bad, EncodeSettings(preset="ultrafast"), tmp_path / "x.h264")
