"""Label rules, track smoothing, relabelling and low-delay labels on a real (tiny) build.

Three frames (0, 2, 4) of one chunk of a five-frame clip (a crop of bus.jpg with two people,
panned 2 px a frame, written as Y4M) at four QPs, intra and low-delay, with the real encoder and
YOLOv3-tiny. The properties: monotone labels never exceed eq. 1's; relabelling
from the stored curves runs no encoder and gives exactly what a build with that rule gives;
tracks share one smoothed label; low-delay labels exist per clip frame and models can read them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from vcmtool.lab.jrd.format import load_dataset

QPS = "22,32,42,51"
OPTS = ["--qps", QPS, "--every", "2", "--max-frames", "3", "--workers", "1"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, bus_jpg) -> str:
    import cv2

    bus = cv2.imread(str(bus_jpg))
    path = tmp_path_factory.mktemp("clip") / "people.y4m"
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W320 H512 F25:1 Ip A1:1 C420jpeg\n")
        for k in range(5):
            crop = np.ascontiguousarray(bus[400:912, 2 * k : 320 + 2 * k])
            f.write(b"FRAME\n" + cv2.cvtColor(crop, cv2.COLOR_BGR2YUV_I420).tobytes())
    return str(path)


@pytest.fixture(scope="module")
def eq1_build(tmp_path_factory, clip) -> Path:
    out = tmp_path_factory.mktemp("jrdl") / "eq1"
    r = run_cli(
        "jrd", "build-dataset", clip, *OPTS, "-o", str(out), "--label", "eq1",
        "--track-percentile", "0", "--coding", "lowdelay", "--no-plots", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    summary = json.loads(r.stdout)
    assert summary["images"] == 3 and summary["lowdelay_failed"] == []
    return out


def _docs(root: Path) -> list[dict]:
    ds = load_dataset(root)
    return [json.loads((root / e["instances"]).read_text()) for e in ds.entries()]


def _relabel_without_ffmpeg(root: Path, *args: str) -> dict:
    """``vcmtool jrd relabel`` on a machine where no encoder can run: the ffmpeg it would use is
    /bin/false, so any encode (or decode through ffmpeg) would fail the command."""
    env = dict(os.environ, IMAGEIO_FFMPEG_EXE="/bin/false")
    r = subprocess.run(
        [sys.executable, "-m", "vcmtool", "jrd", "relabel", str(root), *args, "--no-plots", "--json"],
        capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return json.loads(r.stdout)


def test_manifest_records_labels_and_both_sets(eq1_build):
    m = json.loads((eq1_build / "manifest.json").read_text())
    assert m["version"] == 2
    assert m["labels"] == {"rule": "eq1", "track_percentile": 0.0, "codings": ["intra", "lowdelay"]}
    ds = load_dataset(eq1_build)
    n = 0
    for e, doc in zip(ds.entries(), _docs(eq1_build), strict=True):
        assert doc["lowdelay"]["qps"] == [22, 32, 42, 51] and doc["lowdelay"]["gop"] == 0
        assert len(doc["lowdelay"]["bits"]) == 4
        grid = ds.label(e, "lowdelay")
        assert grid.shape == ds.label(e).shape and grid.dtype == np.uint8
        for inst in doc["instances"]:
            n += 1
            ld = inst["lowdelay"]
            assert len(ld["curve"]["passed"]) == 4 and ld["label"] == ld["l_max"]  # eq1, unsmoothed
            assert inst["label"] == inst["l_max"]
    assert n >= 4  # two people in every frame
    # the first frame of the chunk is the I frame of the low-delay stream: same picture as intra
    first = min(_docs(eq1_build), key=lambda d: d["frame"])
    for inst in first["instances"]:
        assert inst["lowdelay"]["curve"]["passed"] == inst["curve"]["passed"]
    assert ds.entries("train", "lowdelay") == ds.entries("train")


def test_relabel_monotone_without_encoding(eq1_build, tmp_path):
    from vcmtool.lab.jrd.relabel import relabel

    out = tmp_path / "mono"
    shutil.copytree(eq1_build, out)
    res = _relabel_without_ffmpeg(out, "--label", "monotone", "--track-percentile", "0")
    assert res["labels"]["rule"] == "monotone" and res["previous"]["rule"] == "eq1"
    assert not (out / ".work").exists() or not any((out / ".work").iterdir())
    ds, ds_eq1 = load_dataset(out), load_dataset(eq1_build)
    for doc in _docs(out):
        qps = doc["qps"]
        for inst in doc["instances"]:
            for rec, q in ((inst, qps), (inst["lowdelay"], doc["lowdelay"]["qps"])):
                assert rec["label"] <= rec["l_max"]
                ff = rec["first_failure"]
                want = q[-1] if ff is None else max([q[0], *(v for v in q if v < ff)])
                assert rec["label"] == want  # the last level before the first failure
    for e, e1 in zip(ds.entries(), ds_eq1.entries(), strict=True):
        for coding in ("intra", "lowdelay"):
            assert (ds.label(e, coding) <= ds_eq1.label(e1, coding)).all()
    # and back: eq1 again reproduces the eq1 build byte for byte
    relabel(out, "eq1", 0.0)
    for sub in ("labels", "labels_lowdelay", "instances"):
        for p in sorted((eq1_build / sub).iterdir()):
            assert (out / sub / p.name).read_bytes() == p.read_bytes(), p.name


def test_relabel_detected_is_at_least_monotone(eq1_build, tmp_path):
    """The looser "still detected" pass can only move the first failure up, per instance and on
    both label sets, and the CTU maps follow."""
    mono, det = tmp_path / "mono", tmp_path / "det"
    shutil.copytree(eq1_build, mono)
    shutil.copytree(eq1_build, det)
    _relabel_without_ffmpeg(mono, "--label", "monotone", "--track-percentile", "0")
    res = _relabel_without_ffmpeg(det, "--label", "detected", "--track-percentile", "0")
    assert res["labels"]["rule"] == "detected"
    raised = 0
    for dm, dd in zip(_docs(mono), _docs(det), strict=True):
        for im, i_d in zip(dm["instances"], dd["instances"], strict=True):
            for rm, rd in ((im, i_d), (im["lowdelay"], i_d["lowdelay"])):
                assert rd["label"] >= rm["label"]
                raised += rd["label"] > rm["label"]
    assert raised > 0  # the strict pass fails early somewhere in this clip
    for em, ed in zip(load_dataset(mono).entries(), load_dataset(det).entries(), strict=True):
        for coding in ("intra", "lowdelay"):
            assert (load_dataset(det).label(ed, coding) >= load_dataset(mono).label(em, coding)).all()


def test_build_dataset_option_relabels_from_cache_and_matches_relabel(eq1_build, clip, tmp_path):
    from vcmtool.lab.jrd.relabel import relabel

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(eq1_build, a)
    shutil.copytree(eq1_build, b)
    r = run_cli(
        "jrd", "build-dataset", clip, *OPTS, "-o", str(a), "--label", "monotone",
        "--track-percentile", "20", "--coding", "lowdelay", "--no-plots", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert json.loads(r.stdout)["resumed"] == 3  # nothing coded again
    for p in (a / ".state").glob("*.json"):
        assert p.read_bytes() == (eq1_build / ".state" / p.name).read_bytes()
    relabel(b, "monotone", 20.0)
    for sub in ("labels", "labels_lowdelay", "instances"):
        for p in sorted((b / sub).iterdir()):
            assert (a / sub / p.name).read_bytes() == p.read_bytes(), p.name
    m = json.loads((a / "manifest.json").read_text())
    assert m["labels"]["rule"] == "monotone" and m["labels"]["track_percentile"] == 20.0
    # members of one track share the track's label, in each label set
    for key in ("label", "lowdelay"):
        by_track: dict[int, set[int]] = {}
        for doc in _docs(a):
            for inst in doc["instances"]:
                lab = inst["label"] if key == "label" else inst["lowdelay"]["label"]
                by_track.setdefault(inst["track"], set()).add(lab)
        assert all(len(v) == 1 for v in by_track.values())
    assert any(
        sum(inst["track"] == t for d in _docs(a) for inst in d["instances"]) > 1
        for t in {inst["track"] for d in _docs(a) for inst in d["instances"]}
    ), "no instance was tracked across the chunk's frames"


def test_version1_dataset_reads_as_eq1_and_relabels(eq1_build, tmp_path, monkeypatch):
    out = tmp_path / "v1"
    shutil.copytree(eq1_build, out)
    m = json.loads((out / "manifest.json").read_text())
    m["version"] = 1
    del m["labels"]
    for e in m["images"]:
        e.pop("label_lowdelay"), e.pop("pixel_label_lowdelay")
    (out / "manifest.json").write_text(json.dumps(m))
    ds = load_dataset(out)
    assert ds.labels == {"rule": "eq1", "track_percentile": 0.0, "codings": ["intra"]}
    r = run_cli("jrd", "relabel", str(out), "--no-plots", "--json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout)
    assert res["labels"]["rule"] == "monotone" and res["labels"]["track_percentile"] == 20.0
    assert load_dataset(out).manifest["version"] == 2


def test_low_delay_labels_train_and_export_metadata(eq1_build, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from vcmtool.lab.jrd.export import export_onnx
    from vcmtool.lab.jrd.train import TrainOptions, train

    m = json.loads((eq1_build / "manifest.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(eq1_build, data)
    for e in m["images"]:  # a tiny model run needs a train and a val image
        e["split"] = "val" if e["frame"] == 2 else "train"
    (data / "manifest.json").write_text(json.dumps(m))
    opts = TrainOptions(kind="eljrd", epochs=1, coding="lowdelay", cache=str(tmp_path / "cache"))
    train(data, tmp_path / "run", opts, log=lambda s: None)
    res = export_onnx(tmp_path / "run" / "last.pt", tmp_path / "m.onnx")
    assert res["label_coding"] == "lowdelay" and res["label_rule"] == "eq1"


def test_label_failures_summary_reads_both_label_sets(eq1_build):
    """benchmarks/jrd_label_failures.py on a real low-delay build: it counts every clip instance,
    its means are those of the stored labels, and its failure reasons are a distribution."""
    script = Path(__file__).parents[1] / "benchmarks" / "jrd_label_failures.py"
    r = subprocess.run([sys.executable, str(script), str(eq1_build)], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    out = json.loads(r.stdout)
    insts = [i for d in _docs(eq1_build) for i in d["instances"]]
    assert out["instances"] == len(insts) >= 4
    for coding in ("intra", "lowdelay"):
        labels = [i["label"] if coding == "intra" else i["lowdelay"]["label"] for i in insts]
        assert out[coding]["mean_label"] == pytest.approx(np.mean(labels), abs=0.005)
        assert sum(out[coding]["first_failure_reason"].values()) == pytest.approx(1.0, abs=0.01)
        assert 0 <= out[coding]["share_failing_at_20_or_below"] <= 1


def test_label_failure_reason_follows_the_thresholds(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from jrd_label_failures import failure_reason

    from vcmtool.lab.jrd.labels import Thresholds

    curve = {
        "matched": [True, True, True, False],
        "cls": [0, 0, 0, 0],
        "score": [0.01, 0.2, 0.01, 0.0],
        "box": [0.5, 0.0, 0.0, 0.0],
        "mask": [0.0, 0.0, 0.3, 0.0],
    }
    thr = Thresholds()
    assert [failure_reason(curve, k, thr) for k in range(4)] == ["box", "score", "region", "lost"]
