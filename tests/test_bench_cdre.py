"""``vcmtool bench --qpmap cdre``: plain kvazaar + CDRE side stream + CDRE receiver vs plain kvazaar.

Real encoder, real SEI transport, real receiver. Three 256x128 frames, two QPs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli, write_crop_y4m

from vcmtool.bench.methods import resolve
from vcmtool.decode import decoded_frames
from vcmtool.sidestreams.cdre import CDRE_MODELS, DECODER_PT, bits_by_frame, extract_from_bitstream
from vcmtool.sidestreams.cdre_receiver import CdreDetector

QPS = (32, 42)


@pytest.fixture(scope="module")
def cdre_bench(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_cdre")
    clip = write_crop_y4m(d / "bikes3.y4m", "bikes", 3)
    out = d / "report"
    args = [
        "bench",
        str(clip),
        "--qpmap",
        "cdre",
        "--qps",
        ",".join(map(str, QPS)),
        "--preset",
        "ultrafast",
        "--bootstrap",
        "0",
        "-o",
        str(out),
        "--json",
    ]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return out, json.loads(r.stdout)


def _stored(out, method: str) -> dict[int, dict]:
    """Point results as the runner stored them (with detections), by QP."""
    found = {}
    for p in (out / "state" / "points").glob("*.json"):
        if p.name.endswith(".error.json"):
            continue
        r = json.loads(p.read_text())
        if r["spec"]["qpmap"] == method:
            found[r["spec"]["qp"]] = r
    return found


def test_side_stream_bits_are_in_the_rate(cdre_bench):
    out, res = cdre_bench
    pts = {(p["method"], p["qp"]): p for p in res["points"]}
    plain_stored, cdre_stored = _stored(out, "none"), _stored(out, "cdre-fd")
    for qp in QPS:
        plain, cdre = pts[("none", qp)], pts[("cdre-fd", qp)]
        assert plain["side_bits"] == 0
        # 6 maps of 4x8 blocks per frame: 192 raw bits, plus the SEI and payload headers
        assert cdre["side_bits"] >= 3 * 8 * 20
        # the same main encode plus the SEI NAL units, and the file carries them
        assert cdre["bits"] == plain["bits"] + cdre["side_bits"]
        assert 8 * (cdre_stored[qp]["bytes"] - plain_stored[qp]["bytes"]) == cdre["side_bits"]
        assert cdre["bpp"] > plain["bpp"]
        side = cdre_stored[qp]["side_stream"]
        assert side["frames"] == 3 and side["carrier"] == "sei" and side["bits"] == cdre["side_bits"]
        assert cdre["task_model"].startswith("yolov3-tiny-torch+cdre-fd")
    curves = [c for c in res["curves"] if c["method"] == "cdre-fd"]
    assert len(curves) == len(QPS) and all(c["side_bits"] > 0 for c in curves)
    (bd,) = res["bd"]
    assert (bd["method"], bd["anchor"]) == ("cdre-fd", "none")


def test_detections_come_from_the_receiver_with_the_extracted_bits(cdre_bench):
    out, _ = cdre_bench
    stored = _stored(out, "cdre-fd")
    assert sorted(stored) == list(QPS)
    det = CdreDetector(DECODER_PT, score_threshold=0.05)
    differs, found = False, 0
    for r in stored.values():
        stream = out / "streams" / r["stream"].rsplit("/", 1)[-1]
        bits = bits_by_frame(extract_from_bitstream(stream, "hevc"))
        assert sorted(bits) == [0, 1, 2]
        frames = [f.to_bgr() for f in decoded_frames(stream, 8)]
        with_bits = det.process(frames, [bits[i] for i in range(3)])
        plain = det.process(frames, None)
        found += sum(len(d) for d in r["detections"])
        for rows, d, p in zip(r["detections"], with_bits, plain, strict=True):
            assert len(rows) == len(d)
            if len(rows):
                np.testing.assert_allclose(np.array(rows)[:, 4], d.scores, atol=1e-4)
            differs |= len(d) != len(p) or not np.allclose(d.scores, p.scores, atol=1e-4)
    assert found > 0
    assert differs  # the embedding moved the detector: the bits were used


def test_method_specs_and_errors(tmp_path):
    assert resolve("cdre").name == resolve("cdre:fd").name == resolve("cdre-fd").name == "cdre-fd"
    assert resolve("cdre").side_stream == "cdre:fd" and resolve("cdre").qpmap == "none"
    assert not resolve("cdre").follows_offsets and resolve("roi").follows_offsets
    assert resolve("roi").receiver is None and resolve("roi").identity == ""
    if CDRE_MODELS["joint"].decoder.is_file():
        assert resolve("cdre:joint").name == "cdre-joint"
    from vcmtool.bench.grid import groups

    assert groups(["a/x.y4m", "b/y.y4m"], {"a/x.y4m": 8, "b/y.y4m": 8}, pool=True) == {
        "x.y4m": ["a/x.y4m"],
        "y.y4m": ["b/y.y4m"],
        "all": ["a/x.y4m", "b/y.y4m"],
    }
    clip = tmp_path / "missing.y4m"
    r = run_cli("bench", str(clip), "--qpmap", f"cdre:{tmp_path}", "-o", str(tmp_path / "o"))
    assert r.returncode != 0 and b"Traceback" not in r.stderr and b"cdre_decoder.pt" in r.stderr


def test_side_free_oracle_rescores_the_stored_run_without_side_bits(cdre_bench):
    """benchmarks/side_free.py: the stored run scored again with the side stream's bits left out;
    nothing is encoded or detected again."""
    import subprocess
    import sys
    from pathlib import Path

    out, res = cdre_bench
    before = sorted(p.name for p in (out / "state").rglob("*.json"))
    script = Path(__file__).parents[1] / "benchmarks" / "side_free.py"
    cmd = [sys.executable, str(script), str(out / "results.json"), "--json"]
    r = subprocess.run(cmd, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    rows = json.loads(r.stdout)
    cdre = [p for p in res["points"] if p["method"] == "cdre-fd"]
    share = sum(p["side_bits"] for p in cdre) / sum(p["bits"] for p in cdre)
    assert [(x["method"], round(x["side_share"], 9)) for x in rows] == [("cdre-fd", round(share, 9))]
    assert 0 < share < 1
    assert sorted(p.name for p in (out / "state").rglob("*.json")) == before
