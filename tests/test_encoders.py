"""Encoder backends with real encoders and a real decoder: maps must be obeyed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import half_psnr_gap
from vcmtool.encoders import ENCODERS, EncodeSettings, get_encoder
from vcmtool.errors import UsageError
from vcmtool.io import open_video
from vcmtool.qpmap import QPMaps

FAST = EncodeSettings(preset="ultrafast")


def half_map(clip, base: int, left: int, right: int) -> QPMaps:
    from vcmtool.qpmap.raster import grid_shape

    gh, gw = grid_shape(clip.info.height, clip.info.width, 64)
    m = np.full((1, gh, gw), base + right, np.int16)
    m[:, :, : gw // 2] = base + left
    return QPMaps(m)


def encode(name: str, clip, maps: QPMaps, out: Path, settings=FAST) -> Path:
    enc = get_encoder(name)
    enc.encode(clip, enc.prepare_maps(maps, settings), settings, out)
    return out


def test_kvazaar_obeys_half_map(bikes_y4m, tmp_path):
    clip = open_video(str(bikes_y4m))
    gap = half_psnr_gap(bikes_y4m, encode("kvazaar", clip, half_map(clip, 32, -10, 10), tmp_path / "h.hevc"))
    assert gap >= 5.0
    flat = half_psnr_gap(bikes_y4m, encode("kvazaar", clip, half_map(clip, 32, 0, 0), tmp_path / "u.hevc"))
    assert abs(flat) < 1.5


def test_kvazaar_squeezes_wide_maps_instead_of_aborting(bikes_y4m, tmp_path):
    clip = open_video(str(bikes_y4m), frames=2)
    enc = get_encoder("kvazaar")
    maps = enc.prepare_maps(half_map(clip, 30, -25, 21), FAST)
    assert int(maps.data.max()) - int(maps.data.min()) <= 25
    assert any("squeezed" in n for n in maps.notes)
    enc.encode(clip, maps, FAST, tmp_path / "w.hevc")
    assert (tmp_path / "w.hevc").stat().st_size > 0


def test_kvazaar_per_frame_maps_change_per_frame(bikes_y4m, tmp_path):
    """Frame 0 favours the left half, frame 1 (intra too) the right: the file is per frame."""
    clip = open_video(str(bikes_y4m), frames=2)
    a = half_map(clip, 32, -10, 10).data
    maps = QPMaps(np.concatenate([a, a[:, :, ::-1]]))
    settings = EncodeSettings(preset="ultrafast", intra_period=1)
    out = encode("kvazaar", clip, maps, tmp_path / "pf.hevc", settings)
    from vcmtool.decode import decoded_frames, psnr

    gaps = []
    for ref, dec in zip(clip.frames(), decoded_frames(out), strict=True):
        w = ref.width // 2
        gaps.append(psnr(ref.y[:, :w], dec.y[:, :w], 255) - psnr(ref.y[:, w:], dec.y[:, w:], 255))
    assert gaps[0] > 5 and gaps[1] < -5


@pytest.mark.parametrize("name", ["x265", "x264"])
def test_frame_qp_backends_encode_uniform(name, bikes_y4m, tmp_path):
    clip = open_video(str(bikes_y4m), frames=4)
    hi = encode(name, clip, QPMaps.uniform(22, 1, 128, 256), tmp_path / "a.bin").stat().st_size
    lo = encode(name, clip, QPMaps.uniform(40, 1, 128, 256), tmp_path / "b.bin").stat().st_size
    assert hi > 2 * lo


def test_vvenc_refuses_block_map_without_flag(bikes_y4m):
    clip = open_video(str(bikes_y4m), frames=2)
    enc = get_encoder("vvenc")
    with pytest.raises(UsageError, match="allow-frame-qp"):
        enc.prepare_maps(half_map(clip, 32, -4, 4), FAST)
    maps = enc.prepare_maps(half_map(clip, 32, -4, 4), EncodeSettings(allow_frame_qp=True))
    assert maps.is_uniform_per_frame() and any("frame-level" in n for n in maps.notes)


def test_vvenc_encodes_10bit(bikes_y4m_10bit, tmp_path):
    clip = open_video(str(bikes_y4m_10bit), frames=2)
    out = encode(
        "vvenc", clip, QPMaps.uniform(37, 1, 128, 256), tmp_path / "v.266", EncodeSettings(preset="faster")
    )
    from vcmtool.quality import measure_quality

    assert 25 < measure_quality(clip, out).mean_psnr_y < 60


def test_every_backend_declares_capabilities():
    for name in ENCODERS.names():
        caps = ENCODERS.get(name).capabilities()
        assert caps.qp_range[1] in (51, 63) and caps.codec in ("hevc", "avc", "vvc", "av1")
