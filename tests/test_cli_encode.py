"""`vcmtool encode` / `qpmap` / `doctor` as a user runs them: exit codes, files, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from vcmtool.qpmap.qpm import read_qpm

FAST = ("--preset", "ultrafast")


def test_encode_json_report(bikes_y4m, tmp_path):
    out = tmp_path / "a.hevc"
    r = run_cli("encode", str(bikes_y4m), "-o", str(out), "--json", *FAST)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["frames"] == 8 and len(rep["bits_per_frame"]) == 8
    assert rep["bytes"] == out.stat().st_size and sum(rep["bits_per_frame"]) == rep["bits"]
    assert 30 < rep["psnr_y"] < 60 and rep["md5"][str(out)]
    assert {"map_s", "encode_s", "other_s", "total_s", "map_overlapped"} <= set(rep["timing"])
    assert rep["versions"]["vcmtool"] and "ffmpeg" in rep["versions"]["ffmpeg/encoder"]


def test_two_runs_identical_bytes(bikes_y4m, tmp_path):
    md5s = []
    for name in ("a.hevc", "b.hevc"):
        r = run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / name), "--json", *FAST, "--no-measure")
        assert r.returncode == 0, r.stderr
        md5s.append(next(iter(json.loads(r.stdout)["md5"].values())))
    assert md5s[0] == md5s[1]


def test_raw_yuv_from_stdin(bikes_yuv, tmp_path):
    out = tmp_path / "s.hevc"
    r = run_cli(
        "encode",
        "-",
        "--size",
        "256x128",
        "--fps",
        "25",
        "-o",
        str(out),
        "--json",
        *FAST,
        stdin=bikes_yuv.read_bytes(),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 8


@pytest.mark.parametrize("named", [False, True])
def test_file_map_applied(bikes_y4m, tmp_path, named):
    # named: "{stem}" in the path is the input's name (one map file per input in a bench); a
    # decoy map under another name must not be read
    np.save(tmp_path / "other.npy", np.array([[42, 42, 22, 22], [42, 42, 22, 22]]))
    np.save(
        tmp_path / f"{bikes_y4m.stem if named else 'm'}.npy", np.array([[22, 22, 42, 42], [22, 22, 42, 42]])
    )
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--qpmap",
        f"file:{tmp_path / ('{stem}.npy' if named else 'm.npy')}",
        "-o",
        str(tmp_path / "f.hevc"),
        "--qpm-out",
        str(tmp_path / "f.qpm"),
        "--json",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    applied = read_qpm(tmp_path / "f.qpm")
    assert applied.data[0, 0, 0] == 22 and applied.data[0, 0, 3] == 42


@pytest.mark.parametrize(
    "make, args, code, msg",
    [
        (lambda d, y, v: v, ["--fps", "25"], 2, "--size"),
        (lambda d, y, v: _truncate(d, v), ["--size", "256x128"], 1, "bytes extra"),
        (lambda d, y, v: v, ["--size", "255x128"], 1, "odd"),
        (lambda d, y, v: _write(d / "empty.y4m", b""), [], 1, "empty"),
        (lambda d, y, v: d / "missing.y4m", [], 1, "no such file"),
        (lambda d, y, v: y, ["-c", "h266enc"], 2, "unknown encoder"),
        (lambda d, y, v: y, ["--qpmap", "magic"], 2, "unknown QP-map source"),
        (lambda d, y, v: y, ["--qpmap", "file:nothere.qpm"], 1, "no such QP-map file"),
        (lambda d, y, v: _write(d / "junk.mp4", b"junk" * 50), [], 1, "cannot decode"),
        (lambda d, y, v: y, ["--side-stream", "cdrf"], 2, "--side-stream cdrf"),
        (lambda d, y, v: y, ["--side-stream", "cdre:nothere"], 1, "CDRE model"),
    ],
)
def test_bad_input_one_line_error_no_output(tmp_path, bikes_y4m, bikes_yuv, make, args, code, msg):
    src = make(tmp_path, bikes_y4m, bikes_yuv)
    out = tmp_path / "out.hevc"
    r = run_cli("encode", str(src), "-o", str(out), *args, *FAST)
    err = r.stderr.decode().strip()
    assert r.returncode == code, err
    assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_vvenc_block_map_refused_then_allowed(bikes_y4m, tmp_path):
    np.save(tmp_path / "m.npy", np.array([[30, 30, 40, 40], [30, 30, 40, 40]]))
    args = [
        "encode",
        str(bikes_y4m),
        "-c",
        "vvenc",
        "--qpmap",
        f"file:{tmp_path / 'm.npy'}",
        "--frames",
        "2",
        "-o",
        str(tmp_path / "v.266"),
        "--preset",
        "faster",
    ]
    r = run_cli(*args)
    assert r.returncode == 2 and b"--allow-frame-qp" in r.stderr
    r = run_cli(*args, "--allow-frame-qp", "--json")
    assert r.returncode == 0, r.stderr
    assert any("frame-level" in n for n in json.loads(r.stdout)["notes"])


def test_roi_map_lowers_qp_on_objects(bus_jpg, tmp_path):
    r = run_cli(
        "qpmap",
        str(bus_jpg),
        "--qpmap",
        "roi",
        "--qp",
        "32",
        "-o",
        str(tmp_path / "bus.qpm"),
        "--overlay",
        str(tmp_path / "ov.png"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    m = read_qpm(tmp_path / "bus.qpm").data[0]
    assert m.min() == 28 and m.max() == 38  # qp-4 inside objects, qp+6 outside
    assert 0.2 < (m == 28).mean() < 0.95  # the bus and people cover part of the picture
    from vcmtool.io import open_video
    from vcmtool.tasks import get_task_model

    img = next(open_video(str(bus_jpg)).frames()).to_bgr()
    det = get_task_model("yolov3-tiny").detect(img).filter(0.3)
    for x0, y0, x1, y1 in det.boxes:
        cy, cx = int((y0 + y1) / 2) // 64, int((x0 + x1) / 2) // 64
        assert m[cy, cx] == 28
    assert (tmp_path / "ov.png").read_bytes()[:4] == b"\x89PNG"
    # relative deltas follow the base QP; the same CTUs are objects
    r = run_cli(
        "qpmap", str(bus_jpg), "--qpmap", "roi", "--qp", "36", "--roi-delta-in", "0",
        "--roi-delta-out", "12", "-o", str(tmp_path / "rel.qpm"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rel = read_qpm(tmp_path / "rel.qpm").data[0]
    assert ((rel == 36) == (m == 28)).all() and ((rel == 48) == (m == 38)).all()
    # near QP 0 the inside QP stops at 0 instead of failing (base 2 - 4 = -2)
    r = run_cli("qpmap", str(bus_jpg), "--qpmap", "roi", "--qp", "2", "-o", str(tmp_path / "low.qpm"))
    assert r.returncode == 0, r.stderr
    low = read_qpm(tmp_path / "low.qpm").data[0]
    assert ((low == 0) == (m == 28)).all() and ((low == 8) == (m == 38)).all()


def test_doctor_json():
    r = run_cli("doctor", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["encoders"]["kvazaar"]["available"] and d["encoders"]["kvazaar"]["block_qp"] == 64
    assert d["encoders"]["vvenc"]["block_qp"] is None


def _truncate(d, src):
    return _write(d / "short.yuv", src.read_bytes()[:-7])


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


def test_10bit_input_to_8bit_encoder_is_noted(bikes_y4m_10bit, tmp_path):
    r = run_cli("encode", str(bikes_y4m_10bit), "-o", str(tmp_path / "t.hevc"), "--json", *FAST)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["pix_fmt"] == "yuv420p10le" and any("8-bit" in n for n in rep["notes"])
    assert 30 < rep["psnr_y"] < 60


def test_kvazaar_pads_sizes_that_are_not_multiples_of_8(bus_jpg, tmp_path):
    r = run_cli("encode", str(bus_jpg), "-o", str(tmp_path / "bus.hevc"), "--json", *FAST)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["width"] == 810 and any("816x1080" in n for n in rep["notes"])
    assert 25 < rep["psnr_y"] < 60  # measured on the real 810 columns, padding cropped off
