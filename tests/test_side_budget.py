"""--side-stream-budget: the sender skips payloads that do not fit, the receiver embeds the last
payload it received on those frames (or, with --missing plain, falls back to the plain detector),
and every report counts what was sent."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli

from vcmtool.bitstream.annexb import extract_sei_by_au
from vcmtool.decode import packet_bits
from vcmtool.errors import UsageError
from vcmtool.sidestreams.budget import BudgetGate, SideBudget, frame_video_bits
from vcmtool.sidestreams.cdre import bits_by_frame, extract_from_bitstream, is_cdre_payload


@pytest.mark.parametrize(
    ("spec", "value", "unit"), [("5%", 5.0, "%"), ("8kbps", 8.0, "kbps"), (" 0.5 KBPS", 0.5, "kbps")]
)
def test_budget_specs(spec, value, unit):
    b = SideBudget.parse(spec)
    assert (b.value, b.unit) == (value, unit)


@pytest.mark.parametrize("spec", ["", "5", "0%", "-1%", "nan%", "5 mbps", "2000%", "1e9kbps"])
def test_bad_budget_specs_are_refused(spec):
    with pytest.raises(UsageError, match="--side-stream-budget"):
        SideBudget.parse(spec)


def test_gate_banks_unspent_allowance_for_one_second_only():
    # 10% of 1000-bit frames at 2 fps: 100 bits per frame, at most 200 banked
    gate = BudgetGate(SideBudget.parse("10%"), [1000] * 6, fps=2)
    assert not gate.admit(0, 150)  # 100 banked
    assert gate.admit(1, 150)  # 200 banked -> 50 left
    assert not gate.admit(2, 200)  # 150
    assert gate.admit(3, 200)  # 250 capped at 200 -> 0 left
    assert gate.admit(4, 100)
    assert not gate.admit(5, 101)


def test_frame_video_bits_falls_back_to_the_mean_for_hidden_frames():
    assert frame_video_bits([10, 20, 30], 3) == [10, 20, 30]
    assert frame_video_bits([10, 20, 30, 40], 2) == [50, 50]


@pytest.fixture(scope="module")
def budget_encodes(bikes_y4m, tmp_path_factory):
    d = tmp_path_factory.mktemp("budget")
    out = {}
    for name, extra in (("full", []), ("tight", ["--side-stream-budget", "10%"])):
        stream, csv_path = d / f"{name}.hevc", d / f"{name}.csv"
        r = run_cli(
            "encode", str(bikes_y4m), "-o", str(stream), "--qp", "37", "--side-stream", "cdre",
            "--csv", str(csv_path), "--json", *extra,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        out[name] = (stream, json.loads(r.stdout), csv_path)
    return out


def test_budget_skips_payloads_and_counts_only_what_was_sent(budget_encodes):
    stream, rep, csv_path = budget_encodes["tight"]
    full = budget_encodes["full"][1]["side_stream"]
    side = rep["side_stream"]
    assert side["budget"] == "10%" and full["budget"] is None and full["skipped"] == 0
    assert 0 < side["skipped"] < side["frames"] == 8  # the test needs a budget that bites
    sent = [i for i, b in enumerate(side["frame_bits"]) if b]
    assert len(sent) == side["frames"] - side["skipped"]
    # the SEI messages in the file are exactly the sent payloads, on their frames' access units
    payloads = [(au, p) for au, p in extract_sei_by_au(stream.read_bytes(), "hevc") if is_cdre_payload(p)]
    assert [au for au, _ in payloads] == sent
    assert [8 * len(p) for _, p in payloads] == [side["frame_bits"][i] for i in sent]
    assert sorted(bits_by_frame([p for _, p in payloads])) == sent
    # what was sent fits the budget: 10% of the video bits (unspent allowance banked <= 1 s)
    video = packet_bits(stream)
    assert sum(side["frame_bits"]) <= 0.10 * sum(video) + 1e-9
    assert side["bits"] < full["bits"]
    assert rep["bits"] == sum(rep["bits_per_frame"]) + side["bits"]
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["side_bits"]) for r in rows] == side["frame_bits"]


def test_receiver_holds_the_last_payload_or_detects_plainly_where_none_was_sent(budget_encodes):
    stream, rep, _ = budget_encodes["tight"]
    sent = [b > 0 for b in rep["side_stream"]["frame_bits"]]
    first = sent.index(True)
    assert not all(sent[first:])  # the test needs a skipped frame after a sent one

    def lines(*extra):
        r = run_cli("cdre", "detect", str(stream), *extra)
        assert r.returncode == 0, r.stderr.decode()
        return [json.loads(x) for x in r.stdout.decode().splitlines()]

    held, fallback, plain = lines(), lines("--missing", "plain"), lines("--plain")
    assert [x["frame"] for x in held] == list(range(8))
    assert [x["side"] for x in held] == [x["side"] for x in fallback] == sent
    assert [bool(x.get("held")) for x in held] == [not s and i > first for i, s in enumerate(sent)]
    for h, f, p, s in zip(held, fallback, plain, sent, strict=True):
        if s:  # a frame's own payload: both policies embed it
            assert h["detections"] == f["detections"]
        else:  # --missing plain: the anchor detector itself
            assert f["detections"] == p["detections"] and "held" not in f
    assert len(extract_from_bitstream(stream, "hevc")) == 8 - rep["side_stream"]["skipped"]


def test_hold_embeds_the_last_payload_received():
    import numpy as np

    from vcmtool.sidestreams.cdre import fill_missing

    a, b = np.zeros((6, 2, 3), np.uint8), np.ones((6, 2, 3), np.uint8)
    got = fill_missing({1: a, 4: b}, 7)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]  # frame 0 precedes every payload: plain
    assert all(got[i] is a for i in (1, 2, 3)) and all(got[i] is b for i in (4, 5, 6))
    assert fill_missing({1: a, 4: b}, 7, "plain") == {1: a, 4: b}
    with pytest.raises(UsageError, match="hold, plain"):
        fill_missing({}, 3, "nearest")


def test_budget_without_a_side_stream_is_refused(bikes_y4m, tmp_path):
    out = tmp_path / "x.hevc"
    r = run_cli("encode", str(bikes_y4m), "-o", str(out), "--side-stream-budget", "5%")
    assert r.returncode == 2 and "--side-stream" in r.stderr.decode()
    r = run_cli(
        "encode", str(bikes_y4m), "-o", str(out), "--side-stream", "cdre", "--side-stream-budget", "5"
    )
    assert r.returncode == 2 and "PCT%" in r.stderr.decode()
    assert not out.exists()


def test_a_payload_after_a_skipped_frame_refers_to_the_last_one_sent():
    import numpy as np

    from vcmtool.errors import InputError
    from vcmtool.sidestreams.cdre import make_payload, reference_index

    rng = np.random.default_rng(3)
    f0 = (rng.random((6, 9, 13)) < 0.3).astype(np.uint8)
    f3 = f0.copy()
    f3[:, 2, :] ^= 1  # mostly the same bits three frames later
    p0 = make_payload(0, f0, "ctx")
    p3 = make_payload(3, f3, "ctx", prev=f0, distance=3)
    assert reference_index(p0) is None and reference_index(p3) == 0
    assert len(p3) < len(make_payload(3, f3, "ctx"))  # the reference pays even 3 frames back
    got = bits_by_frame([p3, p0])  # any order: decoded in display order
    assert sorted(got) == [0, 3] and (got[3] == f3).all()
    with pytest.raises(InputError, match="coded against frame 0"):
        bits_by_frame([p3])
