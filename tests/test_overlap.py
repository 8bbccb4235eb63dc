"""Streamed map prediction overlapped with encoding: same maps and bytes as without overlap,
per-frame maps really applied per frame, producer errors and Ctrl-C end cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from vcmtool.encoders import EncodeSettings, get_encoder
from vcmtool.errors import ModelError
from vcmtool.io import open_video
from vcmtool.pipeline import EncodeJob, run_encode, streams_maps
from vcmtool.qpmap import QPMaps
from vcmtool.qpmap.sources import get_source
from vcmtool.qpmap.stream import MapFeed, MapProducer

FAST = ("--preset", "ultrafast")


def _encode(src: Path, out_dir: Path, tag: str, **kw) -> dict:
    out_dir.mkdir(exist_ok=True)
    job = EncodeJob(
        input=str(src),
        output=str(out_dir / f"{tag}.hevc"),
        preset="ultrafast",
        qpm_out=str(out_dir / f"{tag}.qpm"),
        overlay=str(out_dir / f"{tag}.png"),
        **kw,
    )
    return run_encode(job)


WIDE_ROI = {"roi_qp_in": 10, "roi_qp_out": 50}  # 40 QPs apart: wider than kvazaar's window


@pytest.mark.parametrize(
    "codec, qpmap, opts", [("x265", "auto", {}), ("kvazaar", "auto", {}), ("kvazaar", "roi", WIDE_ROI)]
)
def test_overlapped_and_precomputed_paths_give_identical_outputs(bikes_y4m, tmp_path, codec, qpmap, opts):
    reps = {
        ov: _encode(
            bikes_y4m,
            tmp_path / str(ov),
            "b",
            codec=codec,
            qpmap=qpmap,
            overlap=ov,
            map_options=dict(opts),
            measure=False,
        )
        for ov in (True, False)
    }
    on, off = reps[True], reps[False]
    assert on["timing"]["map_overlapped"] is True and off["timing"]["map_overlapped"] is False
    assert list(on["md5"].values()) == list(off["md5"].values())  # bitstream, .qpm, overlay
    strip = ("detect_s", "predict_s")  # wall times the source reports among its versions
    assert {k: v for k, v in on["qpmap"].items() if k not in strip} == {
        k: v for k, v in off["qpmap"].items() if k not in strip
    }
    assert on["notes"] == off["notes"] and on["bits_per_frame"] == off["bits_per_frame"]
    if qpmap == "auto":
        assert on["qpmap"]["uniform"] is False
    else:  # base 30 from roi's two QPs; 50 (and 10) leave [18, 42] and the report counts them
        assert any("squeezed into [18, 42]" in n and "streamed" in n for n in on["notes"])
    t = on["timing"]
    # the default interval predicts all 8 frames, on both paths
    assert t["frames_predicted"] == sum(t["predicted_why"].values()) == 8
    assert t["predicted_why"] == off["timing"]["predicted_why"]
    assert t["map_fps"] > 0 and t["encode_fps"] > 0
    assert t["other_s"] >= 0 and t["map_wait_s"] >= 0


def test_streamed_x265_equals_the_precomputed_file_path(bikes_y4m, tmp_path):
    """The maps a streamed encode applied, given back as a file, encode to the same bytes."""
    a = _encode(bikes_y4m, tmp_path, "s", codec="x265", qpmap="auto", map_interval=3, measure=False)
    b = _encode(
        bikes_y4m, tmp_path / "f", "f", codec="x265", qpmap=f"file:{tmp_path / 's.qpm'}", measure=False
    )
    assert a["timing"]["map_overlapped"] and not b["timing"]["map_overlapped"]
    assert a["md5"][str(tmp_path / "s.hevc")] == b["md5"][str(tmp_path / "f" / "f.hevc")]
    assert a["timing"]["frames_predicted"] == 3  # frames 0, 3, 6


def test_kvazaar_roi_streamed_equals_precomputed(bus_jpg, tmp_path):
    """roi announces its two QPs, so kvazaar's base equals the precomputed one when both occur."""
    a = _encode(bus_jpg, tmp_path, "s", codec="kvazaar", qpmap="roi", qp=32, measure=False)
    b = _encode(
        bus_jpg, tmp_path / "f", "f", codec="kvazaar", qpmap=f"file:{tmp_path / 's.qpm'}", measure=False
    )
    assert a["qpmap"]["min"] == 28 and a["qpmap"]["max"] == 38
    assert a["timing"]["map_overlapped"] and not b["timing"]["map_overlapped"]
    assert a["md5"][str(tmp_path / "s.hevc")] == b["md5"][str(tmp_path / "f" / "f.hevc")]


def _slow(maps: np.ndarray, delay: float):
    for m in maps:
        time.sleep(delay)  # prediction slower than the encoder: kvazaar must wait per frame
        yield m


def test_kvazaar_reads_streamed_maps_frame_by_frame(bikes_y4m, tmp_path):
    """Frame 0 favours the left half, frame 1 (intra) the right, and maps arrive late: kvazaar
    reads each frame's deltas from the pipe when that frame is encoded."""
    from tests.test_encoders import half_map
    from vcmtool.decode import decoded_frames, psnr

    clip = open_video(str(bikes_y4m), frames=2)
    a = half_map(clip, 32, -10, 10).data
    maps = np.concatenate([a, a[:, :, ::-1]])
    enc = get_encoder("kvazaar")
    settings = EncodeSettings(preset="ultrafast", intra_period=1)
    with MapProducer(_slow(maps, 0.3)) as producer:
        feed = MapFeed(producer, 64, clip.info.height, clip.info.width, enc.frame_prep(settings, (22, 42)))
        res = enc.encode_stream(clip, feed, settings, tmp_path / "s.hevc")
    assert np.array_equal(res.maps.data, maps)
    gaps = []
    for ref, dec in zip(clip.frames(), decoded_frames(tmp_path / "s.hevc"), strict=True):
        w = ref.width // 2
        gaps.append(psnr(ref.y[:, :w], dec.y[:, :w], 255) - psnr(ref.y[:, w:], dec.y[:, w:], 255))
    assert gaps[0] > 5 and gaps[1] < -5
    enc.encode(clip, QPMaps(maps), settings, tmp_path / "f.hevc")  # same base (32): same bytes
    assert (tmp_path / "s.hevc").read_bytes() == (tmp_path / "f.hevc").read_bytes()


def test_kvazaar_base_for_streamed_maps():
    enc, settings = get_encoder("kvazaar"), EncodeSettings()
    g = np.array([[36, 48], [48, 48]], np.int16)
    hinted = enc.frame_prep(settings, (28, 38))
    assert hinted.base == 33 and hinted(g).tolist() == [[36, 45], [45, 45]]  # window [21, 45]
    assert hinted.moved == 3 and "from the source's QP range" in hinted.notes()[0]
    top = enc.frame_prep(settings)  # no hint: the window hangs from the first map's top QP
    assert top(g).tolist() == g.tolist() and top.base == 36 and top.moved == 0
    assert top(np.array([[20, 51]], np.int16)).tolist() == [[24, 48]] and top.moved == 2
    assert any("squeezed into [24, 48]" in n for n in top.notes())
    wide = enc.frame_prep(settings)  # a first map wider than the window is centred
    wide(np.array([[10, 51]], np.int16))
    assert wide.base == 30 and wide.notes() and not get_encoder("x265").frame_prep(settings).notes()


def test_producer_error_reaches_the_consumer_and_the_thread_ends():
    def failing():
        yield np.zeros((2, 4), np.int16)
        raise ModelError("bad.onnx: not a valid ONNX JRD model")

    p = MapProducer(failing())
    it = iter(p)
    assert next(it).shape == (2, 4)
    with pytest.raises(ModelError, match="bad.onnx"):
        next(it)
    p.close()
    assert not p._thread.is_alive()

    endless = MapProducer(np.zeros((2, 4), np.int16) for _ in iter(int, 1))  # consumer stops early
    next(iter(endless))
    t0 = time.perf_counter()
    endless.close()
    assert not endless._thread.is_alive() and time.perf_counter() - t0 < 5


def test_which_encodes_stream():
    caps = {n: get_encoder(n).capabilities() for n in ("kvazaar", "x265", "vvenc")}
    assert caps["kvazaar"].streams_maps and not caps["vvenc"].streams_maps
    auto, none = get_source("auto"), get_source("none")
    assert streams_maps(EncodeJob(input="x"), auto, caps["kvazaar"])
    assert not streams_maps(EncodeJob(input="x"), auto, caps["vvenc"])  # frame QP: needs all maps
    assert not streams_maps(EncodeJob(input="x"), none, caps["kvazaar"])  # nothing to predict
    assert not streams_maps(EncodeJob(input="x", target_kbps=100), auto, caps["kvazaar"])  # MFIBA


@pytest.mark.parametrize("codec", ["kvazaar", "x265"])
def test_producer_failing_mid_encode_stops_the_encoder(bikes_y4m, tmp_path, codec):
    from tests.test_encoders import half_map

    clip = open_video(str(bikes_y4m))
    m = half_map(clip, 32, -6, 6).data[0]

    def dies_at_frame_3():
        yield from (m for _ in range(3))
        raise ModelError("died after 3 maps")

    enc = get_encoder(codec)
    settings = EncodeSettings(preset="ultrafast")
    with pytest.raises(ModelError, match="died after 3 maps"), MapProducer(dies_at_frame_3()) as p:
        feed = MapFeed(p, 64, clip.info.height, clip.info.width, enc.frame_prep(settings))
        enc.encode_stream(clip, feed, settings, tmp_path / "x.hevc")
    time.sleep(0.2)
    assert _processes_mentioning(str(tmp_path)) == []  # ffmpeg killed, not waiting for maps


@pytest.mark.parametrize("codec", ["kvazaar", "x265"])
def test_bad_model_in_producer_is_a_one_line_error_without_output(bikes_y4m, tmp_path, codec):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx graph\n" * 50)
    out = tmp_path / "o.hevc"
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--qpmap",
        f"auto:{bad}",
        "-c",
        codec,
        "-o",
        str(out),
        "--qpm-out",
        str(tmp_path / "o.qpm"),
        *FAST,
    )
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and "vcmtool jrd export" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids
