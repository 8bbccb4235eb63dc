"""Golden files: encode --record, verify (re-encode and --files), one-byte changes caught."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from vcmtool.golden import decoded_md5, load


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, bikes_y4m) -> Path:
    """A golden file with a kvazaar and an x264 entry, recorded by the real CLI."""
    d = tmp_path_factory.mktemp("golden")
    shutil.copy(bikes_y4m, d / "clip.y4m")
    g = d / "golden.json"
    for args in (
        ["-c", "kvazaar", "--qp", "30", "-o", str(d / "out/k.hevc")],
        ["-c", "x264", "--qp", "28", "--threads", "2", "-o", str(d / "out/x.h264")],
    ):
        r = run_cli("encode", str(d / "clip.y4m"), "--frames", "4", "--record", str(g), *args)
        assert r.returncode == 0, r.stderr.decode()
    return g


def copy_golden(recorded: Path, tmp_path: Path) -> Path:
    """A private copy (golden + clip + outputs) a test may damage."""
    dst = tmp_path / "g"
    shutil.copytree(recorded.parent, dst)
    return dst / "golden.json"


def verify_json(golden: Path, *args: str) -> tuple[int, dict]:
    r = run_cli("verify", str(golden), "--json", *args)
    assert b"Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout)


def test_record_entries(recorded):
    doc = load(recorded)
    assert [e["name"] for e in doc["entries"]] == [
        "clip.y4m kvazaar qp=30 frames=4",
        "clip.y4m x264 qp=28 frames=4",
    ]
    k, x = doc["entries"]
    assert k["input"] == "clip.y4m" and k["output"] == "out/k.hevc"  # relative: the folder travels
    assert x["options"]["threads"] == 1  # --threads 2 was overridden for reproducible bytes
    assert x["options"]["frames"] == 4 and len(x["frame_md5"]) == 4
    base = recorded.parent
    assert hashlib.md5((base / "out/k.hevc").read_bytes()).hexdigest() == k["bitstream_md5"]
    assert decoded_md5(base / "out/k.hevc")[0] == k["decoded_md5"]
    assert k["versions"]["ffmpeg/encoder"] and k["versions"]["vcmtool"]


def test_record_again_replaces_the_same_entry(recorded, tmp_path):
    g = copy_golden(recorded, tmp_path)
    r = run_cli(
        "encode",
        str(g.parent / "clip.y4m"),
        "--frames",
        "4",
        "--qp",
        "30",
        "-o",
        str(g.parent / "out/k.hevc"),
        "-y",  # the recorded output is replaced: re-recording is deliberate
        "--record",
        str(g),
    )
    assert r.returncode == 0
    assert len(load(g)["entries"]) == 2


def test_verify_reencodes_and_matches(recorded):
    r = run_cli("verify", str(recorded))
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "2 match, 0 not" in err and err.count("match") >= 3
    rc, doc = verify_json(recorded, "--files")
    assert rc == 0 and doc["ok"] and [c["status"] for c in doc["checks"]] == ["match", "match"]


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_files_catches_a_one_byte_change(recorded, tmp_path):
    g = copy_golden(recorded, tmp_path)
    flip_one_byte(g.parent / "out/k.hevc")
    rc, doc = verify_json(g, "--files")
    assert rc == 1 and not doc["ok"]
    k, x = doc["checks"]
    assert k["status"] == "mismatch" and k["bitstream"] == "differs"
    assert x["status"] == "match"


def test_verify_catches_an_encoder_that_now_differs_by_one_byte(recorded, tmp_path):
    """The golden describes a bitstream one byte away from what the encoder produces now."""
    g = copy_golden(recorded, tmp_path)
    other = g.parent / "out/x.h264"
    flip_one_byte(other)
    doc = json.loads(g.read_text())
    doc["entries"][1]["bitstream_md5"] = hashlib.md5(other.read_bytes()).hexdigest()
    g.write_text(json.dumps(doc))
    rc, out = verify_json(g)
    assert rc == 1 and [c["status"] for c in out["checks"]] == ["match", "mismatch"]
    assert out["checks"][1]["bitstream"] == "differs" and out["checks"][1]["decoded"] == "same"


def test_version_difference_is_reported(recorded, tmp_path):
    g = copy_golden(recorded, tmp_path)
    doc = json.loads(g.read_text())
    doc["entries"][0]["versions"]["ffmpeg/encoder"] = "libkvazaar 1.0"
    doc["entries"][1]["versions"]["ffmpeg/encoder"] = "libx264 0.1"
    doc["entries"][1]["decoded_md5"] = "0" * 32
    g.write_text(json.dumps(doc))
    rc, out = verify_json(g)
    k, x = out["checks"]
    assert k["status"] == "match" and any("libkvazaar 1.0" in v for v in k["versions"])
    assert x["status"] == "mismatch" and x["decoded"] == "differs"
    assert "versions differ" in x["detail"] and rc == 1


def test_changed_input_and_bad_golden(recorded, tmp_path):
    g = copy_golden(recorded, tmp_path)
    flip_one_byte(g.parent / "clip.y4m")
    rc, out = verify_json(g)
    assert rc == 1 and {c["status"] for c in out["checks"]} == {"input-changed"}

    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": 3}')
    r = run_cli("verify", str(bad))
    assert r.returncode == 1 and b"not a vcmtool-golden file" in r.stderr and b"Traceback" not in r.stderr
    r = run_cli("verify", str(tmp_path / "none.json"))
    assert r.returncode == 1 and b"no such golden file" in r.stderr
