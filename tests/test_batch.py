"""vcmtool batch: manifests, failure isolation, kill -9 + resume, the Ray engine (real encodes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from vcmtool.batch import parse_manifest
from vcmtool.errors import UsageError


def results(stdout: bytes) -> dict[int, dict]:
    """JSON lines by manifest line."""
    return {r["line"]: r for r in map(json.loads, stdout.decode().splitlines())}


def bitstream_md5s(res: dict[int, dict]) -> dict[int, str]:
    return {line: r["report"]["md5"][r["output"]] for line, r in res.items() if r["ok"]}


def leftover_parts(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if ".part" in p.name]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- manifest parsing -----------------------------------------------------------------------


def test_csv_and_jsonl_give_the_same_jobs(tmp_path):
    csv_text = (
        "# comment\ninput,codec,qp,frames,allow_frame_qp,encoder_params\n"
        'a.y4m,x264,30,4,yes,"{""ref"": ""2""}"\n\nsub/b.y4m,,,,,\n'
    )
    jsonl = (
        '{"input": "a.y4m", "codec": "x264", "qp": 30, "frames": 4, "allow_frame_qp": true, '
        '"encoder_params": {"ref": "2"}}\n{"input": "sub/b.y4m"}\n'
    )
    a = parse_manifest(csv_text, "m.csv", tmp_path, tmp_path / "out")
    b = parse_manifest(jsonl, "m.jsonl", tmp_path, tmp_path / "out")
    assert [r.job for r in a] == [r.job for r in b]
    assert [r.line for r in a] == [3, 5]
    j = a[0].job
    assert (j.input, j.qp, j.frames, j.allow_frame_qp) == (str(tmp_path / "a.y4m"), 30, 4, True)
    assert j.encoder_params == {"ref": "2"}
    assert a[1].job.codec == "kvazaar" and a[1].job.qp == 32  # empty cells keep the defaults
    assert Path(a[0].job.output).parent == tmp_path / "out" and a[0].job.output.endswith(".h264")
    assert a[0].key != a[1].key


@pytest.mark.parametrize(
    "text, message",
    [
        ("input,qpp\nx.y4m,3\n", "m:2: unknown key 'qpp'"),
        ('{"input": "x.y4m"}\n{"input": "y.y4m", "bogus": 1}\n', "m:2: unknown key 'bogus'"),
        ("input,qp\nx.y4m,abc\n", "m:2: qp='abc' is not an integer"),
        ('{"input": "x.y4m", "qp": 3.5}\n', "m:1: qp=3.5 is not an integer"),
        ("input,codec\nx.y4m,h266\n", "m:2: unknown codec 'h266'"),
        ("codec\nkvazaar\n", "m:2: no input"),
        ("input,qp\nx.y4m,30\nx.y4m,30\n", "m:3: same job as line 2"),
        ("input,qp,output\nx.y4m,30,o.hevc\nx.y4m,31,o.hevc\n", "o.hevc like line 2"),
        ('{"input": "x.y4m"\n', "m:1: not a JSON object"),
        ("# only a comment\n", "m: the manifest has no rows"),
    ],
)
def test_bad_manifest_one_line_error_naming_the_line(tmp_path, text, message):
    with pytest.raises(UsageError) as e:
        parse_manifest(text, "m", Path("."), tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_manifest_exits_2_before_any_work(tmp_path, bikes_y4m):
    m = tmp_path / "m.csv"
    m.write_text(f"input,qp\n{bikes_y4m},30\n{bikes_y4m},3x\n")
    r = run_cli("batch", str(m))
    assert r.returncode == 2 and r.stdout == b""
    assert b"m.csv:3: qp='3x' is not an integer" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "m.csv.out").exists() or not any((tmp_path / "m.csv.out").iterdir())


# --- real batches ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corrupt_inputs(tmp_path_factory, bikes_y4m) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("corrupt")
    truncated = d / "truncated.y4m"
    truncated.write_bytes(bikes_y4m.read_bytes()[:30000])  # header fine, frame 0 cut short
    garbage = d / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    return truncated, garbage


def test_corrupt_inputs_in_the_middle_do_not_stop_the_rest(tmp_path, bikes_y4m, corrupt_inputs):
    truncated, garbage = corrupt_inputs
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"input": str(bikes_y4m), "qp": 30, "frames": 4},
            {"input": str(truncated)},
            {"input": str(garbage), "codec": "x264"},
            {"input": str(bikes_y4m), "qp": 36, "frames": 4, "codec": "x264"},
        ],
    )
    r = run_cli("batch", str(m), "-j", "2")
    assert r.returncode == 1, r.stderr.decode()
    res = results(r.stdout)
    assert sorted(res) == [1, 2, 3, 4]
    assert [res[i]["ok"] for i in (1, 2, 3, 4)] == [True, False, False, True]
    assert "truncated.y4m" in res[2]["error"] and "garbage.mp4" in res[3]["error"]
    for i in (1, 4):
        out = Path(res[i]["output"])
        assert out.exists() and out.stat().st_size == res[i]["report"]["bytes"] > 0
    err = r.stderr.decode()
    assert "2 encoded" in err and "2 failed" in err and "line 2" in err and "line 3" in err
    assert "Traceback" not in err
    assert not Path(res[2]["output"]).exists()  # a failed row leaves no output at all
    assert leftover_parts(tmp_path) == []

    # The re-run keeps the finished rows and retries only the failed ones.
    again = run_cli("batch", str(m), "-j", "2")
    res2 = results(again.stdout)
    assert again.returncode == 1
    assert [res2[i]["cached"] for i in (1, 4)] == [True, True]
    assert not res2[2]["ok"] and not res2[2]["cached"]
    assert bitstream_md5s(res2) == bitstream_md5s(res)

    # A finished row whose bitstream was deleted is encoded again, not trusted from the state.
    Path(res[4]["output"]).unlink()
    third = results(run_cli("batch", str(m), "-j", "1").stdout)
    assert third[1]["cached"] and not third[4]["cached"] and third[4]["ok"]
    assert bitstream_md5s(third) == bitstream_md5s(res)


def kill_test_manifest(d: Path, clip: Path) -> Path:
    d.mkdir()
    return write_jsonl(
        d / "m.jsonl", [{"input": str(clip), "qp": 24 + 2 * i, "preset": "slow"} for i in range(6)]
    )


def test_kill_9_then_resume_gives_the_same_results(tmp_path, bikes_y4m):
    ref_m = kill_test_manifest(tmp_path / "ref", bikes_y4m)
    ref = run_cli("batch", str(ref_m), "-j", "1")
    assert ref.returncode == 0, ref.stderr.decode()
    want = bitstream_md5s(results(ref.stdout))
    assert len(want) == 6 and len(set(want.values())) == 6

    m = kill_test_manifest(tmp_path / "killed", bikes_y4m)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "vcmtool", "batch", str(m), "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    first = p.stdout.readline()
    # Kill while the next bitstream is half-written, the case atomic outputs exist for.
    deadline = time.monotonic() + 20
    while not leftover_parts(m.parent / "m.jsonl.out") and time.monotonic() < deadline:
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    p.stdout.close()
    assert json.loads(first)["ok"]
    assert leftover_parts(m.parent), "no half-written file at the kill; the batch ran past it"
    state = m.parent / "m.jsonl.state"
    done_at_kill = len(list(state.glob("*.json")))
    assert 1 <= done_at_kill < 6, "the batch finished before the kill; make the items slower"

    time.sleep(0.2)  # let the killed run's ffmpeg notice the closed pipe and exit
    resumed = run_cli("batch", str(m), "-j", "1")
    assert resumed.returncode == 0, resumed.stderr.decode()
    res = results(resumed.stdout)
    assert sum(r["cached"] for r in res.values()) == done_at_kill
    assert bitstream_md5s(res) == want
    for r in res.values():  # the bytes on disk are the reported ones, none half-written
        from vcmtool.provenance import md5_file

        assert md5_file(r["output"]) == r["report"]["md5"][r["output"]]
    assert leftover_parts(m.parent) == []


def test_ray_engine_matches_the_process_pool(tmp_path, bikes_y4m, corrupt_inputs):
    pytest.importorskip("ray")
    rows = [
        {"input": str(bikes_y4m), "qp": 30, "frames": 4},
        {"input": str(corrupt_inputs[0])},
        {"input": str(bikes_y4m), "qp": 34, "frames": 4, "codec": "x264"},
    ]
    pool = run_cli("batch", str(write_jsonl(tmp_path / "pool.jsonl", rows)), "-j", "2")
    ray = run_cli("batch", str(write_jsonl(tmp_path / "ray.jsonl", rows)), "--engine", "ray", "-j", "2")
    assert pool.returncode == ray.returncode == 1, ray.stderr.decode()[-2000:]
    rp, rr = results(pool.stdout), results(ray.stdout)
    assert bitstream_md5s(rr) == bitstream_md5s(rp) and len(bitstream_md5s(rr)) == 2
    assert not rr[2]["ok"] and "truncated" in rr[2]["error"]
