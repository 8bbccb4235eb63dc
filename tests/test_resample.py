"""Spatial resampling (``--scale``, ``vcmtool decode``, ``bench --scales``): real kvazaar/x264,
real decoders, real task models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from vcmtool.bitstream.annexb import extract_sei
from vcmtool.decode import decoded_frames, psnr
from vcmtool.io import open_video
from vcmtool.qpmap.qpm import read_qpm
from vcmtool.resample import (
    RESAMPLE_UUID,
    ResampleInfo,
    auto_scale,
    coded_size,
    read_info,
    receive,
    resample_grid,
    upsampled_frames,
)

FAST = ("--preset", "ultrafast", "--frames", "4")


def _encode(src: Path, out: Path, *args: str) -> dict:
    r = run_cli("encode", str(src), "-o", str(out), "--json", "-y", *FAST, *args)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return json.loads(r.stdout)


def test_coded_size_multiples_of_8_and_grid_moves_keep_the_minimum():
    assert coded_size(256, 128, 0.75) == (192, 96)
    assert coded_size(640, 272, 0.75) == (480, 208)  # 204 -> nearest multiple of 8
    assert coded_size(810, 1080, 0.5) == (408, 544)  # 540 -> 544 (halves round up)
    assert coded_size(102, 100, 0.99) == (96, 96)  # never above the original, rounded down to 8
    assert coded_size(176, 144, 1.0) == (176, 144)
    # a low-QP cell on the original grid keeps its QP on the coded grid
    g = np.full((2, 4), 40)
    g[0, 3] = 20
    out = resample_grid(g, 64, (128, 256), (96, 192))
    assert out.shape == (2, 3) and out[0, 2] == 20 and out[1].tolist() == [40, 40, 40]


def test_payload_round_trip_and_auto_rule():
    info = ResampleInfo(1280, 720, 960, 544, "area")
    assert ResampleInfo.from_payload(info.to_payload()) == info
    assert len(info.to_payload()) == 22
    # the rule: never below 0.5; smaller with a higher QP and with larger objects; full size at
    # high rates and for objects too small to lose pixels
    grid = {
        (h, q): auto_scale(h, q)[0] for h in (None, 10.0, 40.0, 80.0, 150.0, 400.0) for q in range(20, 52)
    }
    assert set(grid.values()) <= {1.0, 0.75, 0.5}
    for h in (10.0, 40.0, 80.0, 150.0, 400.0):
        by_qp = [grid[(h, q)] for q in range(20, 52)]
        assert by_qp == sorted(by_qp, reverse=True)
    for q in range(20, 52):
        by_h = [grid[(h, q)] for h in (10.0, 40.0, 80.0, 150.0, 400.0)]
        assert by_h == sorted(by_h, reverse=True)
    assert grid[(400.0, 20)] == 1.0 and grid[(10.0, 51)] == 1.0 and grid[(400.0, 51)] < 1.0
    # the coded long side stays at or above the detectors' 416 input, and below QP 44 at or above
    # 1.5x it: a 640-pixel picture is scaled at the lowest rates only, a 1280-pixel one earlier
    sizes = ((176, 144), (640, 272), (1280, 720))
    assert [auto_scale(400.0, 51, w, h)[0] for w, h in sizes] == [1.0, 0.75, 0.5]
    assert [auto_scale(400.0, 43, w, h)[0] for w, h in sizes] == [1.0, 1.0, 0.5]
    assert [auto_scale(400.0, 36, w, h)[0] for w, h in sizes] == [1.0, 1.0, 0.75]
    for w, h in sizes:  # still monotone in the QP with the picture size given
        by_qp = [auto_scale(400.0, q, w, h)[0] for q in range(20, 52)]
        assert by_qp == sorted(by_qp, reverse=True)


@pytest.mark.parametrize("codec, ext", [("kvazaar", ".hevc"), ("x264", ".264")])
def test_sei_round_trip_and_plain_decoders_still_play(bikes_y4m, tmp_path, codec, ext):
    out = tmp_path / f"s{ext}"
    rep = _encode(bikes_y4m, out, "-c", codec, "--scale", "0.75")
    info = read_info(out)
    assert (info.original_width, info.original_height, info.coded_width, info.coded_height) == (
        256,
        128,
        192,
        96,
    )
    assert info.filter == "area" and float(info.fps) == 25.0
    (payload,) = extract_sei(out.read_bytes(), rep["codec"], RESAMPLE_UUID)  # one SEI, first AU
    assert ResampleInfo.from_payload(payload) == info
    # a plain decoder (PyAV) ignores the SEI and plays the coded-size stream
    import av

    with av.open(str(out)) as c:
        sizes = [(f.width, f.height) for f in c.decode(video=0)]
    assert sizes == [(192, 96)] * 4
    # the report: original size, coded size, bpp against the original pixels, SEI bits counted
    assert (rep["width"], rep["height"], rep["coded_width"], rep["coded_height"]) == (256, 128, 192, 96)
    assert rep["scale"] == 0.75 and rep["resample"]["carrier"] == "sei"
    assert rep["bpp"] == pytest.approx(rep["bits"] / (256 * 128 * 4))
    assert rep["bits"] == 8 * out.stat().st_size  # the SEI is in the bits
    assert 100 < rep["resample"]["sei_bits"] < 500


def test_upsampled_quality_close_to_full_size_at_similar_rate(bikes_y4m, tmp_path):
    scaled = _encode(bikes_y4m, tmp_path / "s.hevc", "--scale", "0.75", "--qp", "30")
    assert scaled["bpp"] < _encode(bikes_y4m, tmp_path / "f30.hevc", "--qp", "30")["bpp"]
    full = [_encode(bikes_y4m, tmp_path / f"f{q}.hevc", "--qp", str(q)) for q in (30, 33, 36, 39)]
    near = min(full, key=lambda r: abs(np.log(r["bpp"] / scaled["bpp"])))
    assert abs(np.log(near["bpp"] / scaled["bpp"])) < 0.35
    assert abs(near["psnr_y"] - scaled["psnr_y"]) < 2.5, (near["psnr_y"], scaled["psnr_y"])
    # the receiver (CLI and Python) gives original-size frames, and the report measured those
    y4m = tmp_path / "r.y4m"
    r = run_cli("decode", str(tmp_path / "s.hevc"), "-o", str(y4m), "--json")
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    assert res["upsampled"] and (res["width"], res["height"], res["frames"]) == (256, 128, 4)
    dec = open_video(str(y4m))
    assert (dec.info.width, dec.info.height, float(dec.info.fps)) == (256, 128, 25.0)
    src = list(open_video(str(bikes_y4m), frames=4).frames())
    got = [psnr(a.y, b.y, 255) for a, b in zip(src, dec.frames(), strict=True)]
    assert np.mean(got) == pytest.approx(scaled["psnr_y"], abs=0.01)
    py = [psnr(a.y, b.y, 255) for a, b in zip(src, upsampled_frames(tmp_path / "s.hevc"), strict=True)]
    assert py == pytest.approx(got, abs=1e-9)
    # to stdout, byte for byte the file
    r = run_cli("decode", str(tmp_path / "s.hevc"), "-o", "-")
    assert r.returncode == 0 and r.stdout == y4m.read_bytes()
    # an unscaled stream is written as decoded
    res = receive(tmp_path / "f30.hevc", tmp_path / "plain.y4m")
    assert not res["upsampled"] and res["metadata"] == "none" and res["width"] == 256


def _side_gap_upsampled(src: Path, stream: Path) -> float:
    """Mean luma PSNR of the left 80 columns minus the right 80 columns (original size) of the
    upsampled frames: half_psnr_gap (conftest) for a map on the 3-column coded grid."""
    gaps = []
    for ref, dec in zip(open_video(str(src), frames=4).frames(), upsampled_frames(stream), strict=True):
        gaps.append(psnr(ref.y[:, :80], dec.y[:, :80], 255) - psnr(ref.y[:, -80:], dec.y[:, -80:], 255))
    return float(np.mean(gaps))


def test_maps_on_the_scaled_grid_land(bikes_y4m, tmp_path):
    # coded 192x96 at ctu 64: a 3x2 grid; QP 22 on the left two columns, 42 on the right one
    coded = np.array([[22, 22, 42]] * 2)
    np.save(tmp_path / "c.npy", coded)
    out = tmp_path / "c.hevc"
    rep = _encode(bikes_y4m, out, "--scale", "0.75", "--qpmap", f"file:{tmp_path / 'c.npy'}")
    assert rep["qpmap"]["min"] == 22 and rep["qpmap"]["max"] == 42
    assert _side_gap_upsampled(bikes_y4m, out) > 5.0  # ~0.2 dB with a uniform QP (conftest)
    # a map on the original 256x128 grid (4x2) is moved to the coded one (min over covered CTUs)
    np.save(tmp_path / "o.npy", np.array([[22, 22, 42, 42]] * 2))
    out2 = tmp_path / "o.hevc"
    rep2 = _encode(
        bikes_y4m, out2, "--scale", "0.75", "--qpmap", f"file:{tmp_path / 'o.npy'}",
        "--qpm-out", str(tmp_path / "o.qpm"),
    )  # fmt: skip
    assert any("moved to the coded 192x96 grid" in n for n in rep2["notes"])
    assert read_qpm(tmp_path / "o.qpm").data[0].tolist() == coded.tolist()
    assert _side_gap_upsampled(bikes_y4m, out2) > 5.0
    # a map on neither grid: one line naming both
    np.save(tmp_path / "b.npy", np.full((3, 3), 30))
    r = run_cli("encode", str(bikes_y4m), "--scale", "0.75", "--qpmap", f"file:{tmp_path / 'b.npy'}",
                "-o", str(tmp_path / "b.hevc"))  # fmt: skip
    assert r.returncode == 2 and b"coded 192x96 grid or on the original 256x128" in r.stderr


def test_dets_boxes_in_original_coordinates_land_on_the_coded_grid(bikes_y4m, tmp_path):
    dets = tmp_path / "d.jsonl"
    dets.write_text(
        "".join(json.dumps({"frame": i, "boxes": [[0, 0, 60, 60, 0.9, 0]]}) + "\n" for i in range(4))
    )
    rep = _encode(
        bikes_y4m, tmp_path / "d.264", "-c", "x264", "--scale", "0.5", "--ctu", "16",
        "--qpmap", f"dets:{dets}", "--roi-margin", "0", "--qpm-out", str(tmp_path / "d.qpm"),
    )  # fmt: skip
    m = read_qpm(tmp_path / "d.qpm").data[0]  # coded 128x64: an 8x4 grid of 16 px
    assert m.shape == (4, 8)
    low = m == m.min()
    # the box covers original 0..60 -> coded 0..30: two CTU columns and rows (min over covered cells)
    assert low[:2, :2].all() and not low[:, 3:].any() and not low[3:, :].any()
    assert rep["coded_width"] == 128


def test_10bit_input_scaled(bikes_y4m_10bit, tmp_path):
    rep = _encode(bikes_y4m_10bit, tmp_path / "t.hevc", "--scale", "0.75")
    assert rep["pix_fmt"] == "yuv420p10le" and rep["coded_width"] == 192
    assert 28 < rep["psnr_y"] < 60 and rep["psnr_u"] > 28  # chroma planes scaled too
    up = next(upsampled_frames(tmp_path / "t.hevc", 10))
    assert up.y.dtype == np.uint16 and up.u.shape == (64, 128) and int(up.y.max()) <= 1023


def test_scale_auto_and_target_rate(bikes_y4m, tmp_path):
    rep = _encode(bikes_y4m, tmp_path / "a.hevc", "--scale", "auto", "--qp", "44")
    auto = rep["resample"]["auto"]
    assert auto["frames_sampled"] == 4 and auto["qp"] == 44
    assert rep["scale"] == auto["scale"] in (1.0, 0.75, 0.5)
    # a target rate drives the coded clip; bpp and the target's error refer to the original size
    rep = _encode(bikes_y4m, tmp_path / "t.hevc", "--scale", "0.75", "--qpmap", "none", "--target-kbps", "40")
    assert rep["coded_width"] == 192
    t = rep["target"]
    assert t["achieved_bpp"] == pytest.approx(rep["bpp"], rel=1e-5)
    assert t["bpp"] == pytest.approx(40_000 / (25 * 256 * 128), rel=1e-3)
    assert abs(t["error_pct"]) < 10
    r = run_cli(
        "encode", str(bikes_y4m), "--scale", "auto", "--target-kbps", "40", "-o", str(tmp_path / "x.hevc")
    )
    assert r.returncode == 2 and b"--scale auto" in r.stderr


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "-0.5", "inf", "half"])
def test_bad_scales_refused_in_one_line(bikes_y4m, tmp_path, value):
    out = tmp_path / "x.hevc"
    r = run_cli("encode", str(bikes_y4m), "--scale", value, "-o", str(out))
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and "--scale" in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and not out.exists()


def test_bench_scales_make_their_own_curves(bikes_y4m, tmp_path):
    out = tmp_path / "bench"
    r = run_cli(
        "bench", str(bikes_y4m), "--qpmap", "none", "--scales", "1,0.75", "--qps", "30,36,42,48",
        "--frames", "4", "--preset", "ultrafast", "--bootstrap", "0", "--judges", "yolov3-tiny",
        "-o", str(out), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout)
    methods = {c["method"] for c in res["curves"]}
    assert methods == {"none", "none@0.75"}
    scaled = [c for c in res["curves"] if c["method"] == "none@0.75"]
    full = {c["qp"]: c for c in res["curves"] if c["method"] == "none"}
    assert len(scaled) == 4 and all(c["scale"] == 0.75 for c in scaled)
    for c in scaled[:2]:  # fewer bits than full size at the same (low) QP, against the original size
        assert c["bpp"] < full[c["qp"]]["bpp"]
    for p in res["points"]:
        assert p["bpp"] == pytest.approx(p["bits"] / (256 * 128 * 4))
    (bd,) = res["bd"]
    assert (bd["method"], bd["anchor"]) == ("none@0.75", "none")
    assert "| none@0.75 | 0.75 |" in (out / "report.md").read_text()
    r = run_cli("bench", str(bikes_y4m), "--scales", "1,nan", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and b"--scales" in r.stderr and b"Traceback" not in r.stderr


def test_unscaled_encode_unchanged(bikes_y4m, tmp_path):
    """--scale 1 is the encode as it was: no SEI, coded size = size, same bytes as no option."""
    a = _encode(bikes_y4m, tmp_path / "a.hevc")
    b = _encode(bikes_y4m, tmp_path / "b.hevc", "--scale", "1")
    assert (tmp_path / "a.hevc").read_bytes() == (tmp_path / "b.hevc").read_bytes()
    assert read_info(tmp_path / "a.hevc") is None and "resample" not in a
    assert b["coded_width"] == b["width"] == 256 and b["scale"] == 1.0
    assert [f.width for f in decoded_frames(tmp_path / "a.hevc")] == [256] * 4
