"""CRF rate control on x264/x265 (``--crf``; a QP map rides on the encoder's frame QPs as
offsets) and the bench protocol that uses it (``bench --protocol vcs``). Real encoders, real
decoders, real clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import half_psnr_gap, run_cli

from vcmtool.encoders import libx26x
from vcmtool.encoders.libx26x import X264Encoder, X265Encoder
from vcmtool.io import open_video
from vcmtool.qpmap.raster import grid_shape

needs_x265 = pytest.mark.skipif(not libx26x.X265_AVAILABLE, reason=libx26x.X265_REASON or "x265")
needs_x264 = pytest.mark.skipif(not libx26x.X264_AVAILABLE, reason=libx26x.X264_REASON or "x264")
DRIVERS = [
    pytest.param(X265Encoder, marks=needs_x265, id="x265"),
    pytest.param(X264Encoder, marks=needs_x264, id="x264"),
]


def _planes(path):
    return [(f.y, f.u, f.v) for f in open_video(str(path)).frames()]


def _run(cls, frames, crf, grid=None, base=None):
    h, w = frames[0][0].shape
    params = {"keyint": "100000"} if crf is None else {"keyint": "100000", "crf": str(crf)}
    enc = cls(w, h, 25, 1, 8, "veryfast", params)
    out = b"".join(enc.encode(*fr, grid, base, 64) for fr in frames) + enc.flush()
    return out, enc.last_base_qp


@pytest.mark.parametrize("cls", DRIVERS)
def test_crf_lets_the_encoder_pick_the_frame_qp_and_keeps_the_map_as_offsets(bikes_y4m, cls):
    frames = _planes(bikes_y4m)
    h, w = frames[0][0].shape
    uniform = np.full(grid_shape(h, w, 64), 30, np.int32)
    # a uniform map at the base adds nothing to CRF: offsets are all zero
    plain, last = _run(cls, frames, 30)
    same, last_map = _run(cls, frames, 30, uniform, 30)
    assert plain == same and last == last_map == -1  # -1: no frame QP was forced
    # the CRF value moves the rate (under a forced QP it would not matter)
    assert len(_run(cls, frames, 38, uniform, 30)[0]) < 0.7 * len(same)
    # and the map's offsets still move bits: background 8 above the base costs fewer bits
    half = uniform.copy()
    half[:, half.shape[1] // 2 :] += 8
    assert len(_run(cls, frames, 30, half, 30)[0]) < 0.9 * len(same)
    forced, last_forced = _run(cls, frames, None, uniform, 30)
    assert last_forced == 30 and forced != same


@needs_x265
def test_encode_crf_cli_obeys_a_half_map_and_reports_the_rate_control(bikes_y4m, tmp_path):
    """``--crf`` with a map: the map's halves keep their PSNR gap (offsets from the base ride on
    the CRF's frame QPs); the report records the CRF and the base the map was built at."""
    qpm = tmp_path / "half.npy"
    g = np.full(grid_shape(128, 256, 64), 36, np.int32)
    g[:, : g.shape[1] // 2] = 26  # 10 below the base on the left
    np.save(qpm, g)
    out = tmp_path / "half.hevc"
    r = run_cli(
        "encode", str(bikes_y4m), "-c", "x265", "--crf", "36", "--qpmap", f"file:{qpm}",
        "--preset", "veryfast", "-o", str(out), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["crf"] == 36 and rep["qp"] == 36
    assert any("--crf 36" in n for n in rep["notes"])
    assert half_psnr_gap(bikes_y4m, out) > 3


def test_crf_refused_in_one_line_where_it_cannot_work(bikes_y4m, tmp_path):
    out = tmp_path / "k.hevc"
    r = run_cli("encode", str(bikes_y4m), "-c", "kvazaar", "--crf", "30", "-o", str(out))
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and len(err.splitlines()) == 1, err
    assert "kvazaar has no CRF rate control" in err and "x264, x265" in err
    assert not out.exists()
    r = run_cli("encode", str(bikes_y4m), "-c", "x265", "--crf", "30", "--target-kbps", "100", "-o", str(out))
    assert r.returncode != 0 and "one rate control" in r.stderr.decode()
    r = run_cli("encode", str(bikes_y4m), "-c", "x265", "--crf", "60", "-o", str(out))
    assert r.returncode != 0 and not out.exists()


@needs_x264
def test_bench_protocol_fills_what_the_command_line_leaves_and_crf_points(bikes_y4m, tmp_path):
    """``--protocol vcs`` sets the VCS grid (CRF, veryfast, GOP 10, zero lookahead, pooled); an
    option on the command line wins; the rate points are CRF values, labelled so."""
    r = run_cli(
        "bench", str(bikes_y4m), "--protocol", "vcs", "--codec", "x264", "--qpmap", "none,roi",
        "--qps", "40,47", "--bootstrap", "0", "-o", str(tmp_path / "rep"), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    cfg = res["config"]
    assert cfg["crf"] is True and cfg["preset"] == "veryfast" and cfg["intra_period"] == 10
    assert cfg["codecs"] == ["x264"] and cfg["qps"] == [40, 47]  # the command line's
    assert cfg["codec_params"] == {"x264": {"rc-lookahead": "0"}}  # x265's entry dropped: not in the grid
    assert cfg["codec_presets"] == {}  # vvenc's preset dropped too
    pts = {(p["method"], p["qp"]): p for p in res["points"]}
    assert {p["rate"] for p in res["points"]} == {"CRF40", "CRF47"}
    assert pts[("none", 47)]["bits"] < pts[("none", 40)]["bits"]
    # the ROI map changes the bits at the same CRF (its offsets ride on the frame QPs)
    assert pts[("roi", 40)]["bits"] != pts[("none", 40)]["bits"]


def test_bench_scoped_options_and_a_frame_qp_encoder(bikes_y4m, tmp_path):
    r = run_cli(
        "bench", str(bikes_y4m), "--codec", "x264", "--param", "x265:rd=2", "-o", str(tmp_path / "a"),
    )  # fmt: skip
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and "x265 is not in --codec" in err and len(err.splitlines()) == 1
    r = run_cli(
        "bench", str(bikes_y4m), "--codec", "x264", "--preset", "x265:slow", "-o", str(tmp_path / "a"),
    )  # fmt: skip
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and "--preset x265:slow: x265 is not in --codec" in err
    assert not (tmp_path / "a").exists()
    # a scoped preset reaches its encoder only; a map method is not run on a frame-QP encoder
    # (it would refuse every point) and has no BD row, and the report says why
    r = run_cli(
        "bench", str(bikes_y4m), "--codec", "vvenc", "--qpmap", "none,roi", "--qps", "40,47",
        "--preset", "veryfast,vvenc:faster", "--crf", "--bootstrap", "0", "-o", str(tmp_path / "b"), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    assert res["config"]["codec_presets"] == {"vvenc": "faster"}
    assert {p["method"] for p in res["points"]} == {"none"} and not res["failures"]
    assert {p["rate"] for p in res["points"]} == {"QP40", "QP47"}  # no CRF in VVenC: QPs
    assert not [b for b in res["bd"] if b["method"] == "roi"]
    assert any("vvenc sets one QP per frame: roi not run" in n for n in res["warnings"])


def test_crf_without_qp_puts_the_map_base_at_the_crf_everywhere(bikes_y4m, tmp_path):
    """CLI, Python API and manifests share one default: --crf without --qp builds the map at QP =
    the CRF rounded (so an absolute map's offsets are taken where CRF's frame QPs will be)."""
    from vcmtool import api
    from vcmtool.batch import parse_manifest

    rows = parse_manifest(
        f"input,codec,crf\n{bikes_y4m},x265,37.6\n{bikes_y4m},x265,\n", "m.csv", tmp_path, tmp_path
    )
    assert [(r.job.crf, r.job.qp) for r in rows] == [(37.6, 38), (None, 32)]
    fast = {"codec": "x265", "crf": 41, "frames": 2, "preset": "ultrafast"}
    rep = api.encode(bikes_y4m, tmp_path / "a.hevc", **fast)
    assert (rep["crf"], rep["qp"]) == (41, 41)
    rep = api.encode(bikes_y4m, tmp_path / "b.hevc", qp=30, **fast)
    assert (rep["crf"], rep["qp"]) == (41, 30)
