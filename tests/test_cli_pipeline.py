"""vcmtool in shell pipelines and from Python: stdout bitstreams, JSON-only stdout, --quiet,
overwrite refusal, flags that do not apply to self-describing inputs, the Python API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import run_cli

import vcmtool
from vcmtool.errors import UsageError

FAST = ("--preset", "ultrafast", "--frames", "3")


def test_stdout_bitstream_equals_the_file_encode(bikes_y4m, tmp_path):
    r = run_cli("encode", str(bikes_y4m), "-o", "-", "--json", *FAST, "--no-measure")
    assert r.returncode == 0, r.stderr
    f = run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / "f.hevc"), "--json", *FAST, "--no-measure")
    assert f.returncode == 0, f.stderr
    assert r.stdout == (tmp_path / "f.hevc").read_bytes()
    # the report went to stderr, as one JSON line among the human text
    rep = json.loads(next(ln for ln in r.stderr.decode().splitlines() if ln.startswith("{")))
    assert rep["output"] == "-" and rep["md5"]["-"] == hashlib.md5(r.stdout).hexdigest()
    assert rep["bytes"] == len(r.stdout)


def test_pipe_output_with_json_out_file(bikes_y4m, tmp_path):
    rep_file = tmp_path / "rep.json"
    r = run_cli("encode", str(bikes_y4m), "-o", "pipe:", "--json-out", str(rep_file), *FAST, "--no-measure")
    assert r.returncode == 0, r.stderr
    rep = json.loads(rep_file.read_text())
    assert rep["bytes"] == len(r.stdout) > 0
    assert list(tmp_path.iterdir()) == [rep_file]  # no bitstream file anywhere


def test_existing_output_is_refused_without_overwrite(bikes_y4m, tmp_path):
    out = tmp_path / "x.hevc"
    out.write_bytes(b"keep")
    r = run_cli("encode", str(bikes_y4m), "-o", str(out), *FAST)
    assert r.returncode == 2 and b"-y/--overwrite" in r.stderr
    assert out.read_bytes() == b"keep"
    r = run_cli("encode", str(bikes_y4m), "-o", str(out), "-y", *FAST)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"keep"
    q = tmp_path / "m.qpm"
    q.write_bytes(b"keep")
    r = run_cli("qpmap", str(bikes_y4m), "-o", str(q), "--frames", "2")
    assert r.returncode == 2 and q.read_bytes() == b"keep"


def test_quiet_prints_nothing_but_verbose_logs(bikes_y4m, tmp_path):
    r = run_cli("-q", "encode", str(bikes_y4m), "-o", str(tmp_path / "q.hevc"), *FAST)
    assert r.returncode == 0 and r.stderr == b"" and r.stdout == b""
    r = run_cli("-v", "encode", str(bikes_y4m), "-o", str(tmp_path / "v.hevc"), *FAST)
    assert r.returncode == 0 and b"libkvazaar" in r.stderr  # the encoder command is logged
    r = run_cli("-q", "encode", str(bikes_y4m), "-o", str(tmp_path / "e.hevc"), "--qp", "99")
    assert r.returncode == 2 and b"--qp" in r.stderr  # errors still print


@pytest.mark.parametrize(
    "argv",
    [
        ("doctor", "--json"),
        ("detect", "{clip}", "--frames", "1", "--json"),
        ("qpmap", "{clip}", "-o", "{tmp}/m.qpm", "--frames", "2", "--json"),
        ("encode", "{clip}", "-o", "{tmp}/e.hevc", "--json", *FAST),
        ("verify", "{tmp}/g.json", "--json"),
        ("media", "skimage:coffee", "--json"),
        ("fetch-models", "--json"),
        ("mfiba", "show", "--json"),
        ("batch", "{tmp}/m.csv", "--outdir", "{tmp}/bo", "-j", "1"),
    ],
)
def test_json_commands_print_only_json_on_stdout(bikes_y4m, tmp_path, argv):
    if argv[0] == "verify":
        r = run_cli(
            "encode",
            str(bikes_y4m),
            "-o",
            str(tmp_path / "g.hevc"),
            "--record",
            str(tmp_path / "g.json"),
            *FAST,
        )
        assert r.returncode == 0, r.stderr
    if argv[0] == "batch":  # batch's rows are JSON lines on stdout, with or without --json
        (tmp_path / "m.csv").write_text(f"input,qp,frames,preset,measure\n{bikes_y4m},34,2,ultrafast,no\n")
    args = [a.format(clip=bikes_y4m, tmp=tmp_path) for a in argv]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.decode().splitlines():
        json.loads(line)  # every stdout line is JSON
    assert r.stdout.strip()


def test_doctor_table_goes_to_stdout_unwrapped():
    r = run_cli("doctor")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "kvazaar" in out and "…" not in out  # not cut at 80 columns off a terminal
    assert max(len(ln) for ln in out.splitlines()) > 80


def test_size_and_pix_fmt_on_self_describing_input(bikes_y4m, tmp_path):
    r = run_cli("encode", str(bikes_y4m), "--size", "640x480", "-o", str(tmp_path / "a.hevc"), *FAST)
    assert r.returncode == 2 and b"--size applies to raw YUV" in r.stderr
    r = run_cli("encode", str(bikes_y4m), "--pix-fmt", "yuv420p10le", "-o", str(tmp_path / "a.hevc"), *FAST)
    assert r.returncode == 2 and b"--pix-fmt applies to raw YUV" in r.stderr
    r = run_cli("encode", str(bikes_y4m), "--fps", "50", "-o", str(tmp_path / "a.hevc"), "--json", *FAST)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["fps"] == 50 and any("--fps 50 overrides" in n for n in rep["notes"])


def test_python_api_matches_the_cli(bikes_y4m, tmp_path):
    rep = vcmtool.encode(bikes_y4m, tmp_path / "api.hevc", qp=34, preset="ultrafast", frames=3)
    r = run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / "cli.hevc"), "--qp", "34", "--json", *FAST)
    cli = json.loads(r.stdout)
    assert rep["bits_per_frame"] == cli["bits_per_frame"] and rep["psnr_y"] == cli["psnr_y"]
    assert (tmp_path / "api.hevc").read_bytes() == (tmp_path / "cli.hevc").read_bytes()
    with pytest.raises(UsageError, match="overwrite=True"):
        vcmtool.encode(bikes_y4m, tmp_path / "api.hevc", qp=34)
    with pytest.raises(UsageError, match="unknown option"):
        vcmtool.encode(bikes_y4m, tmp_path / "z.hevc", qpp=34)
    maps, stats = vcmtool.qpmaps(
        bikes_y4m, tmp_path / "m.qpm", qpmap="roi", qp=30, frames=2, roi_qp_in=24, roi_qp_out=40
    )
    assert maps.data.shape[0] == 2 and set(maps.data.ravel()) <= {24, 40}
    assert Path(stats["output"]).exists()
    clip = vcmtool.open_video(bikes_y4m, frames=2)
    assert [f.index for f in clip.frames()] == [0, 1] and clip.info.width == 256
