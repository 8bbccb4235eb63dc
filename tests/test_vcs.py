"""VCS semantic stream: payload coding, ONNX sender, SEI/side-file transport, receiver CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from vcmtool.decode import decoded_frames
from vcmtool.errors import InputError
from vcmtool.io import open_video
from vcmtool.lab.vcs.train import export_models
from vcmtool.sidestreams.transport import read_side_file, write_side_file
from vcmtool.sidestreams.vcs import (
    DECODER_PT,
    ENCODER_ONNX,
    VcsSideEncoder,
    bits_by_frame,
    decode_payload,
    encode_payload,
    extract_from_bitstream,
    pad_frame,
)
from vcmtool.sidestreams.vcs_model import BernoulliPrior, LatentFusion, SemanticEncoder, VcsConfig, n_params
from vcmtool.sidestreams.vcs_receiver import VcsReceiver

PROBS = [3000, 30000, 60000, 100]


def test_payload_round_trip_is_bit_exact_and_entropy_coded():
    rng = np.random.default_rng(0)
    p1 = np.array(PROBS)[:, None, None] / 65536
    for shape in ((4, 8, 16), (4, 23, 40), (4, 0, 0)):
        bits = (rng.random(shape) < p1).astype(np.uint8)
        idx, back = decode_payload(encode_payload(41, bits, PROBS), PROBS)
        assert idx == 41 and back.dtype == np.uint8 and np.array_equal(back, bits)
    # skewed channels cost far less than one bit each under the factorized model
    bits = (rng.random((4, 23, 40)) < p1).astype(np.uint8)
    assert 8 * len(encode_payload(0, bits, PROBS)) < 0.6 * bits.size


def test_corrupt_payloads_raise_input_error():
    bits = (np.random.default_rng(1).random((4, 9, 17)) < 0.3).astype(np.uint8)
    good = encode_payload(3, bits, PROBS)
    bad = [b"VS", good[:5], b"XX" + good[2:], good[:2] + b"\x09" + good[3:], good + b"\x00"]
    flipped = bytearray(good)
    flipped[len(good) // 2 + 6] ^= 0x5A
    bad.append(bytes(flipped))
    for data in bad:
        with pytest.raises(InputError):
            decode_payload(data, PROBS)
    with pytest.raises(InputError):  # a receiver holding other probabilities than the sender
        decode_payload(good, [4000, 30000, 60000, 100])


def test_networks_are_cpu_sized_and_receiver_starts_as_identity():
    cfg = VcsConfig()
    enc, lfn = SemanticEncoder(cfg), LatentFusion(cfg)
    assert 10_000 < n_params(enc) < 100_000 and 10_000 < n_params(lfn) < 100_000
    x = torch.rand(3, 3, 64, 96)
    p = enc(x, x.flip(-1))
    assert p.shape == (3, cfg.channels, 4, 6) and ((p >= 0) & (p <= 1)).all()
    # near-zero tail: an untrained receiver gives the decoded frames back (within 1/255)
    assert (lfn(x, (p > 0.5).float()) - x).abs().max() < 1 / 255
    assert (lfn(x, None) - x).abs().max() < 1 / 255


def _random_checkpoint(path: Path) -> None:
    torch.manual_seed(3)
    cfg = VcsConfig()
    lfn = LatentFusion(cfg)
    torch.nn.init.normal_(lfn.tail.weight, std=0.01)  # a receiver that does something
    prior = BernoulliPrior(cfg.channels)
    torch.save(
        {
            "config": cfg.to_dict(),
            "encoder": SemanticEncoder(cfg).state_dict(),
            "receiver": lfn.state_dict(),
            "prior": prior.state_dict(),
            "steps": 0,
        },
        path,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vcsmodel")
    _random_checkpoint(d / "ck.pt")
    export_models(d / "ck.pt", d / "models")
    return d / "models"


def test_onnx_sender_matches_torch_on_a_clip(exported):
    """Frame by frame under onnxruntime (a causal window) = the whole clip at once in torch."""
    ck = torch.load(exported / "vcs_decoder.pt", weights_only=False)
    cfg = VcsConfig.from_dict(ck["config"])
    enc = SemanticEncoder(cfg)
    raw = torch.load(exported.parent / "ck.pt", weights_only=False)
    enc.load_state_dict(raw["encoder"])
    enc.eval()
    rng = np.random.default_rng(0)
    orig = [rng.integers(0, 256, (70, 100, 3), dtype=np.uint8) for _ in range(5)]
    dec = [np.clip(o.astype(int) + rng.integers(-20, 20, o.shape), 0, 255).astype(np.uint8) for o in orig]
    sender = VcsSideEncoder(exported / "vcs_encoder.onnx")
    assert sender.window == cfg.window and sender.probs == ck["probs"]
    got = np.stack([sender.process(o, d) for o, d in zip(orig, dec, strict=True)])
    with torch.no_grad():
        want = (
            enc(
                torch.from_numpy(np.stack([pad_frame(o) for o in orig])),
                torch.from_numpy(np.stack([pad_frame(d) for d in dec])),
            ).numpy()
            > 0.5
        )
    assert got.shape == (5, cfg.channels, 5, 7)
    assert (got == want).mean() >= 0.99  # only probabilities within float noise of 0.5 may flip


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, bikes_y4m, exported):
    d = tmp_path_factory.mktemp("vcs")
    out = {}
    for name, extra in (
        ("plain", []),
        ("sei", ["--side-stream", f"vcs:{exported}"]),
        ("file", ["--side-stream", f"vcs:{exported}", "--side-stream-out", str(d / "file.side")]),
    ):
        bs = d / f"{name}.hevc"
        r = run_cli("encode", str(bikes_y4m), "-o", str(bs), "--qp", "42", "--json", *extra)
        assert r.returncode == 0, r.stderr.decode()
        out[name] = (bs, json.loads(r.stdout))
    return d, out


def test_encode_side_stream_vcs_counts_bits(encoded):
    d, out = encoded
    for name in ("sei", "file"):
        rep = out[name][1]
        side = rep["side_stream"]
        assert side["name"] == "vcs" and side["frames"] == 8
        assert side["bits"] >= side["payload_bits"] > 8 * 13 * 8  # more than the 8 headers
        assert rep["bits"] == sum(rep["bits_per_frame"]) + side["bits"]
        assert rep["bpp"] == pytest.approx(rep["bits"] / (256 * 128 * 8))
    grow = out["sei"][0].stat().st_size - out["plain"][0].stat().st_size
    assert out["sei"][1]["side_stream"]["bits"] == 8 * grow
    # the SEI leaves the pictures bit-identical; the side-file encode leaves the bitstream alone
    for a, b in zip(decoded_frames(out["plain"][0]), decoded_frames(out["sei"][0]), strict=True):
        assert np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    assert out["file"][0].read_bytes() == out["plain"][0].read_bytes()
    sei = extract_from_bitstream(out["sei"][0], "hevc")
    assert sei == read_side_file(d / "file.side") and len(sei) == 8


def test_receive_writes_enhanced_y4m(encoded, exported, tmp_path):
    d, out = encoded
    a, b, z = tmp_path / "a.y4m", tmp_path / "b.y4m", tmp_path / "z.y4m"
    common = ["--model", str(exported), "--fps", "30", "--json"]
    r = run_cli("vcs", "receive", str(out["sei"][0]), "-o", str(a), *common)
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["frames"] == 8 and (rep["width"], rep["height"]) == (256, 128) and rep["payloads"] == 8
    r = run_cli("vcs", "receive", str(out["file"][0]), "--side", str(d / "file.side"), "-o", str(b), *common)
    assert r.returncode == 0, r.stderr.decode()
    assert a.read_bytes() == b.read_bytes()  # same bits whichever way they travelled
    r = run_cli("vcs", "receive", str(out["plain"][0]), "--lfn-only", "-o", str(z), *common)
    assert r.returncode == 0, r.stderr.decode()
    clip = open_video(str(a))
    assert (clip.info.width, clip.info.height) == (256, 128)
    frames = list(clip.frames())
    assert len(frames) == 8 and all(f.y.dtype == np.uint8 and f.y.shape == (128, 256) for f in frames)
    # the receiver changed the decoded pictures, and the semantic stream changed them further
    dec = [f.y for f in decoded_frames(out["sei"][0])]
    assert any(not np.array_equal(f.y, y) for f, y in zip(frames, dec, strict=True))
    assert a.read_bytes() != z.read_bytes()


def test_receive_rejects_corrupt_payload_in_one_line(encoded, exported, tmp_path):
    d, out = encoded
    payloads = read_side_file(d / "file.side")
    bad = bytearray(payloads[2])
    bad[0:2] = b"VS"
    bad[-1] ^= 0xFF
    bad[-3] ^= 0x3C
    write_side_file(tmp_path / "bad.side", [*payloads[:2], bytes(bad), *payloads[3:]])
    with pytest.raises(InputError):
        bits_by_frame([bytes(bad)], VcsReceiver(exported / "vcs_decoder.pt").probs)
    o = tmp_path / "o.y4m"
    r = run_cli(
        "vcs",
        "receive",
        str(out["file"][0]),
        "--side",
        str(tmp_path / "bad.side"),
        "-o",
        str(o),
        "--model",
        str(exported),
    )
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and "corrupt VCS payload" in err
    assert not o.exists()
    # a stream without the semantic stream: one line too
    r = run_cli("vcs", "receive", str(out["plain"][0]), "-o", str(o), "--model", str(exported))
    assert r.returncode == 1 and "no VCS semantic stream" in r.stderr.decode() and not o.exists()


@pytest.mark.skipif(not (ENCODER_ONNX.exists() and DECODER_PT.exists()), reason="models/ not shipped")
def test_shipped_model_round_trip(bikes_y4m, tmp_path):
    bs, y = tmp_path / "s.hevc", tmp_path / "s.y4m"
    r = run_cli("encode", str(bikes_y4m), "-o", str(bs), "--qp", "42", "--side-stream", "vcs", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["side_stream"]["model"].startswith("vcs-")
    r = run_cli("vcs", "receive", str(bs), "-o", str(y))
    assert r.returncode == 0, r.stderr.decode()
    assert len(list(open_video(str(y)).frames())) == 8


@pytest.mark.slow
def test_train_and_export_cli(tmp_path):
    """`vcs train` on the real dev-media cache (a few steps) and `vcs export` to a loadable model."""
    ck, out = tmp_path / "vcs.pt", tmp_path / "models"
    work = Path(__file__).resolve().parent.parent / ".cache" / "vcs-test-data"
    r = run_cli("vcs", "train", "-o", str(ck), "--work", str(work), "--steps", "4", "--val-every", "2")
    assert r.returncode == 0, r.stderr.decode()
    hist = torch.load(ck, weights_only=False)["history"]
    assert [h["step"] for h in hist] == [0, 2, 4] and all(h["psnr_codec"] > 20 for h in hist)
    r = run_cli("vcs", "export", str(ck), "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    sender = VcsSideEncoder(out / "vcs_encoder.onnx")
    assert sender.probs == VcsReceiver(out / "vcs_decoder.pt").probs


def test_budget_skips_vcs_payloads_and_the_receiver_fills_zeros(bikes_y4m, exported, tmp_path):
    bs, o = tmp_path / "b.hevc", tmp_path / "b.y4m"
    r = run_cli(
        "encode", str(bikes_y4m), "-o", str(bs), "--qp", "42", "--json",
        "--side-stream", f"vcs:{exported}", "--side-stream-budget", "3kbps",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    side = json.loads(r.stdout)["side_stream"]
    assert side["budget"] == "3kbps" and 0 < side["skipped"] < side["frames"] == 8
    assert len(extract_from_bitstream(bs, "hevc")) == 8 - side["skipped"]
    r = run_cli("vcs", "receive", str(bs), "-o", str(o), "--model", str(exported), "--json")
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["frames"] == 8 and rep["payloads"] == 8 - side["skipped"]


@pytest.mark.skipif(not (ENCODER_ONNX.exists() and DECODER_PT.exists()), reason="models/ not shipped")
def test_bench_judges_vcs_and_lfn_on_the_receivers_frames(bikes_y4m, tmp_path):
    """VCS is task-decoupled: in the bench, the task model and every judge score the receiver's
    enhanced frames; ``lfn`` is the same receiver without the stream, on the plain codec."""
    r = run_cli(
        "bench", str(bikes_y4m), "--qpmap", "none,lfn,vcs", "--qps", "42,47", "--preset", "veryfast",
        "-o", str(tmp_path / "rep"), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    pts = {(p["method"], p["qp"]): p for p in res["points"]}
    for qp in (42, 47):
        none, lfn, vcs = pts[("none", qp)], pts[("lfn", qp)], pts[("vcs", qp)]
        assert none["side_bits"] == lfn["side_bits"] == 0 < vcs["side_bits"]
        assert lfn["bits"] == none["bits"] and vcs["bits"] == none["bits"] + vcs["side_bits"]
        assert set(vcs["judges"]) == set(lfn["judges"]) == {"yolov3-tiny", "nanodet"}
    # the judges saw other frames than the decoded ones: some score differs from the anchor's
    assert any(
        pts[("lfn", qp)]["judges"][j]["map"] != pts[("none", qp)]["judges"][j]["map"]
        for qp in (42, 47)
        for j in ("yolov3-tiny", "nanodet")
    )
