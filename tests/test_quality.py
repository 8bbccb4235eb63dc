"""The report's quality measurement (vcmtool.quality): PSNR Y/U/V, SSIM, VMAF and --csv, through
the real CLI on real frames, checked against an independent decode and against ffmpeg's own
filters run directly on the bitstream."""

from __future__ import annotations

import csv
import json
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import crop_frame, run_cli
from vcmtool.decode import decoded_frames, psnr
from vcmtool.io import open_video
from vcmtool.io.frame import VideoInfo
from vcmtool.io.y4m import write_y4m

FAST = ("--preset", "ultrafast", "--frames", "4")


def _encode(src: Path, out: Path, *args: str) -> dict:
    r = run_cli("encode", str(src), "-o", str(out), "--json", "-y", *FAST, *args)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def _reference_psnr(src: Path, bitstream: Path) -> dict[str, list[float]]:
    """PSNR per plane the way vcmtool measured luma PSNR before SSIM existed: PyAV decode,
    crop to the source size, source bit depth, vcmtool.decode.psnr."""
    clip = open_video(str(src), frames=4)
    bd = clip.info.bit_depth
    peak = float((1 << bd) - 1)
    out: dict[str, list[float]] = {"y": [], "u": [], "v": []}
    for ref, dec in zip(clip.frames(), decoded_frames(bitstream, bd), strict=True):
        h, w = ref.height, ref.width
        out["y"].append(psnr(ref.y, dec.y[:h, :w], peak))
        out["u"].append(psnr(ref.u, dec.u[: h // 2, : w // 2], peak))
        out["v"].append(psnr(ref.v, dec.v[: h // 2, : w // 2], peak))
    return out


def _ffmpeg_direct(bitstream: Path, src: Path, filt: str, tmp: Path) -> str:
    """Run ffmpeg's ``filt`` on the bitstream against the source file, as a user would."""
    from vcmtool.encoders.ffmpeg import ffmpeg_exe

    stats = tmp / f"{filt}.direct.log"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(bitstream),
            "-i",
            str(src),
            "-lavfi",
            f"[0:v][1:v]{filt}=shortest=1:stats_file={stats.name}",
            "-f",
            "null",
            "-",
        ],
        check=True,
        cwd=tmp,
    )
    return stats.read_text()


@pytest.fixture(scope="module")
def qp_pair(bikes_y4m, tmp_path_factory):
    """The same 4 frames at QP 22 and QP 45, each with --csv."""
    d = tmp_path_factory.mktemp("quality")
    reps = {}
    for qp in (22, 45):
        out, table = d / f"q{qp}.hevc", d / f"q{qp}.csv"
        reps[qp] = (_encode(bikes_y4m, out, "--qp", str(qp), "--csv", str(table)), out, table)
    return reps


def test_ssim_and_chroma_psnr_in_report(qp_pair):
    for qp, (rep, _, _) in qp_pair.items():
        assert 0 < rep["ssim_y"] <= 1 and 0 < rep["ssim"] <= 1, qp
        assert len(rep["ssim_y_per_frame"]) == len(rep["ssim_per_frame"]) == 4
        assert all(0 < s <= 1 for s in rep["ssim_y_per_frame"] + rep["ssim_per_frame"])
        assert rep["ssim_y"] == pytest.approx(np.mean(rep["ssim_y_per_frame"]), abs=1e-6)
        for k in ("psnr_u", "psnr_v"):
            assert 25 < rep[k] < 70 and len(rep[f"{k}_per_frame"]) == 4
        assert "vmaf" not in rep  # only when asked
        assert rep["timing"]["measure_s"] > 0
    # Chroma is smoother than luma on this clip: at the same QP its PSNR is higher.
    assert qp_pair[22][0]["psnr_u"] > qp_pair[22][0]["psnr_y"]


def test_ssim_and_psnr_fall_when_qp_rises(qp_pair):
    lo, hi = qp_pair[22][0], qp_pair[45][0]
    assert lo["bits"] > hi["bits"]
    assert lo["ssim_y"] > hi["ssim_y"] + 0.02 and lo["ssim"] > hi["ssim"]
    for k in ("psnr_y", "psnr_u", "psnr_v"):
        assert lo[k] > hi[k] + 3, k
    assert all(a > b for a, b in zip(lo["ssim_y_per_frame"], hi["ssim_y_per_frame"], strict=True))


def test_psnr_identical_to_previous_implementation(qp_pair, bikes_y4m):
    for rep, out, _ in qp_pair.values():
        ref = _reference_psnr(bikes_y4m, out)
        assert rep["psnr_y_per_frame"] == [round(p, 4) for p in ref["y"]]
        assert rep["psnr_y"] == round(float(np.mean(ref["y"])), 4)
        assert rep["psnr_u_per_frame"] == [round(p, 4) for p in ref["u"]]
        assert rep["psnr_v_per_frame"] == [round(p, 4) for p in ref["v"]]


def test_matches_ffmpeg_filters_run_on_the_bitstream(qp_pair, bikes_y4m, tmp_path):
    """The stacked-pipe measurement gives what ffmpeg's ssim/psnr give on the files themselves."""
    for rep, out, _ in qp_pair.values():
        rows = [
            dict(re.findall(r"(\w+):(\S+)", ln))
            for ln in _ffmpeg_direct(out, bikes_y4m, "ssim", tmp_path).splitlines()
        ]
        assert [float(r["Y"]) for r in rows] == pytest.approx(rep["ssim_y_per_frame"], abs=1e-6)
        assert [float(r["All"]) for r in rows] == pytest.approx(rep["ssim_per_frame"], abs=1e-6)
        rows = [
            dict(re.findall(r"(\w+):(\S+)", ln))
            for ln in _ffmpeg_direct(out, bikes_y4m, "psnr", tmp_path).splitlines()
        ]
        # ffmpeg's psnr stats file has two decimals
        assert [float(r["psnr_u"]) for r in rows] == pytest.approx(rep["psnr_u_per_frame"], abs=0.006)
        assert [float(r["psnr_v"]) for r in rows] == pytest.approx(rep["psnr_v_per_frame"], abs=0.006)


def test_csv_one_row_per_frame(qp_pair):
    for qp, (rep, _, table) in qp_pair.items():
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == [
            "frame",
            "bits",
            "psnr_y",
            "psnr_u",
            "psnr_v",
            "ssim_y",
            "ssim",
            "qp_mean",
            "qp_min",
            "qp_max",
        ]
        assert [int(r["frame"]) for r in rows] == list(range(rep["frames"]))
        assert sum(int(r["bits"]) for r in rows) == rep["bits"]
        assert [int(r["bits"]) for r in rows] == rep["bits_per_frame"]
        assert [float(r["psnr_y"]) for r in rows] == rep["psnr_y_per_frame"]
        assert [float(r["ssim_y"]) for r in rows] == rep["ssim_y_per_frame"]
        assert {(float(r["qp_mean"]), int(r["qp_min"]), int(r["qp_max"])) for r in rows} == {(qp, qp, qp)}
        assert rep["md5"][str(table)]
        assert stat.S_IMODE(table.stat().st_mode) & 0o044  # published like the other outputs


def test_csv_qp_columns_follow_a_file_map(bikes_y4m, tmp_path):
    np.save(tmp_path / "m.npy", np.array([[22, 22, 42, 42], [22, 22, 42, 42]]))
    table = tmp_path / "f.csv"
    _encode(bikes_y4m, tmp_path / "f.hevc", "--qpmap", f"file:{tmp_path / 'm.npy'}", "--csv", str(table))
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert all((float(r["qp_mean"]), r["qp_min"], r["qp_max"]) == (32.0, "22", "42") for r in rows)


def test_vmaf(bikes_y4m, tmp_path):
    from vcmtool.quality import VMAF_MODEL, ffmpeg_filters

    if "libvmaf" not in ffmpeg_filters():
        pytest.skip("this ffmpeg has no libvmaf")
    table = tmp_path / "v.csv"
    rep = _encode(bikes_y4m, tmp_path / "v.hevc", "--vmaf", "--csv", str(table))
    assert 0 <= rep["vmaf"] <= 100 and rep["vmaf_model"] == VMAF_MODEL
    assert len(rep["vmaf_per_frame"]) == 4 and all(0 <= v <= 100 for v in rep["vmaf_per_frame"])
    assert rep["vmaf"] == pytest.approx(np.mean(rep["vmaf_per_frame"]), abs=1e-4)
    assert rep["vmaf"] > 50  # QP 32 on a clean clip is far from unwatchable
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["vmaf"]) for r in rows] == rep["vmaf_per_frame"]


def test_vmaf_missing_is_a_usage_error(bikes_y4m, tmp_path, monkeypatch):
    """An ffmpeg without libvmaf: one line, exit 2, before any encode, no output left."""
    from vcmtool.encoders.ffmpeg import ffmpeg_exe

    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$2" = "-filters" ]; then "{ffmpeg_exe()}" "$@" | grep -v libvmaf; exit 0; fi\n'
        f'exec "{ffmpeg_exe()}" "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    out = tmp_path / "o" / "x.hevc"
    r = run_cli(
        "encode", str(bikes_y4m), "-o", str(out), "--vmaf", "--csv", str(tmp_path / "o" / "x.csv"), *FAST
    )
    err = r.stderr.decode().strip()
    assert r.returncode == 2, err
    assert "libvmaf" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_10bit_source(bikes_y4m_10bit, tmp_path):
    out, table = tmp_path / "t.hevc", tmp_path / "t.csv"
    rep = _encode(bikes_y4m_10bit, out, "--csv", str(table))
    assert rep["pix_fmt"] == "yuv420p10le"
    assert 0 < rep["ssim_y"] <= 1 and rep["ssim_y"] > 0.9
    ref = _reference_psnr(bikes_y4m_10bit, out)  # at 10 bits, peak 1023
    assert rep["psnr_y_per_frame"] == [round(p, 4) for p in ref["y"]]
    assert rep["psnr_u_per_frame"] == [round(p, 4) for p in ref["u"]]
    assert 30 < rep["psnr_u"] < 70
    with open(table, newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_padded_coded_size_is_cropped(bikes_y4m, tmp_path):
    """kvazaar codes 250x126 as 256x128; every metric is taken on the real 250x126."""
    src = tmp_path / "odd.y4m"
    clip = open_video(str(bikes_y4m), frames=4)
    info = VideoInfo(250, 126, clip.info.fps, "yuv420p")
    with open(src, "wb") as f:
        write_y4m(f, info, (crop_frame(fr, 2, 0, 250, 126) for fr in clip.frames()))
    rep = _encode(src, tmp_path / "odd.hevc")
    assert any("256x128" in n for n in rep["notes"])
    ref = _reference_psnr(src, tmp_path / "odd.hevc")
    assert rep["psnr_v_per_frame"] == [round(p, 4) for p in ref["v"]]
    from vcmtool.encoders.ffmpeg import ffmpeg_exe

    stats = tmp_path / "ssim.log"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(tmp_path / "odd.hevc"),
            "-i",
            str(src),
            "-lavfi",
            "[0:v]crop=250:126:0:0[d];[d][1:v]ssim=stats_file=ssim.log",
            "-f",
            "null",
            "-",
        ],
        check=True,
        cwd=tmp_path,
    )
    direct = [float(re.search(r"Y:(\S+)", ln).group(1)) for ln in stats.read_text().splitlines()]
    assert direct == pytest.approx(rep["ssim_y_per_frame"], abs=1e-6)


def test_no_measure_skips_everything(bikes_y4m, tmp_path):
    rep = _encode(bikes_y4m, tmp_path / "n.hevc", "--no-measure")
    for k in ("psnr_y", "psnr_u", "psnr_v", "ssim_y", "ssim"):
        assert rep[k] is None and rep[f"{k}_per_frame"] is None, k
    assert rep["timing"]["measure_s"] == 0.0
    for extra in (["--csv", str(tmp_path / "n.csv")], ["--vmaf"]):
        r = run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / "m.hevc"), "--no-measure", *FAST, *extra)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and "--no-measure" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "n.csv").exists() and not (tmp_path / "m.hevc").exists()


def test_csv_goes_through_the_output_policy(bikes_y4m, bikes_yuv, tmp_path):
    out = tmp_path / "a.hevc"
    cases = [
        (["--csv", str(out)], "also"),  # the bitstream's own path
        (["--csv", str(bikes_y4m)], "input"),  # the input
        (["--csv", str(tmp_path / "no" / "such" / "x.csv")], "does not exist"),
    ]
    for args, msg in cases:
        r = run_cli("encode", str(bikes_y4m), "-o", str(out), "-y", *FAST, *args)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and msg in err and len(err.splitlines()) == 1, (args, err)
    assert not out.exists()
    r = run_cli("encode", str(bikes_y4m), str(bikes_yuv), "--csv", str(tmp_path / "two.csv"), *FAST)
    assert r.returncode == 2 and b"--csv" in r.stderr


def test_failed_measurement_leaves_no_output(bikes_y4m, tmp_path, monkeypatch):
    """The CSV is staged with the bitstream: ffmpeg failing in the measurement (after the encode)
    is one line, exit 1, and publishes neither file."""
    from vcmtool.encoders.ffmpeg import ffmpeg_exe

    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *ssim=stats_file*) echo "boom: no ssim today" >&2; exit 3;; esac\n'
        f'exec "{ffmpeg_exe()}" "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    out, table = tmp_path / "f.hevc", tmp_path / "f.csv"
    r = run_cli("encode", str(bikes_y4m), "-o", str(out), "--csv", str(table), *FAST)
    err = r.stderr.decode().strip()
    assert r.returncode == 1, err
    assert "boom" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not table.exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_report_fields_and_parsers():
    """Planes below ffmpeg's 8x8 SSIM window give no number: None in JSON, never NaN."""
    from vcmtool.quality import Quality, parse_ssim_log, report_fields

    rows = parse_ssim_log(
        "n:1 Y:0.950000 U:0.990000 V:0.980000 All:0.961667 (14.2)\nn:2 Y:nan U:nan V:nan All:nan (nan)\n"
    )
    assert rows[0] == {"Y": 0.95, "U": 0.99, "V": 0.98, "All": 0.961667}
    assert rows[1] == {"Y": None, "U": None, "V": None, "All": None}
    q = Quality(psnr_y=[40.0], psnr_u=[45.0], psnr_v=[46.0], ssim_y=[None], ssim=[None])
    f = report_fields(q)
    assert f["ssim_y"] is None and f["ssim_y_per_frame"] == [None] and f["psnr_u"] == 45.0
    json.dumps(f, allow_nan=False)
    assert set(report_fields(None, vmaf=True)) >= {"vmaf", "vmaf_per_frame", "ssim", "psnr_v"}
