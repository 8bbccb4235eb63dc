"""CDRE side stream: ONNX encoder, payloads, SEI transport, CLI, receiver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from vcmtool.decode import decoded_frames
from vcmtool.errors import InputError
from vcmtool.lab.cdre.train import TrainConfig, export_models
from vcmtool.sidestreams.cdre import (
    CODERS,
    DECODER_PT,
    ENCODER_ONNX,
    CdreSideEncoder,
    bits_by_frame,
    extract_from_bitstream,
    frame_rgb,
    make_payload,
    parse_payload,
)
from vcmtool.sidestreams.cdre_model import CdreConfig, CdreEncoder, CdreReceiver, count_macs, n_params
from vcmtool.sidestreams.cdre_receiver import load_receiver
from vcmtool.sidestreams.transport import read_side_file


def _pair(h: int = 100, w: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_encoder_size_matches_paper_scale():
    enc = CdreEncoder(CdreConfig())
    assert 10_000 < n_params(enc) < 25_000  # paper: about 18K
    x = torch.rand(1, 3, 128, 256)
    macs_per_px = count_macs(enc, x, x) / (128 * 256)
    assert 500 < macs_per_px < 1500  # paper: 0.89K
    assert enc(x, x).shape == (1, 6, 4, 8)


def test_onnx_encoder_matches_torch(tmp_path):
    torch.manual_seed(1)
    cfg = CdreConfig()
    enc, rec = CdreEncoder(cfg), CdreReceiver(cfg)
    ck = tmp_path / "ck.pt"
    torch.save(
        {
            "config": cfg.to_dict(),
            "train": TrainConfig().__dict__,
            "history": [],
            "encoder": enc.state_dict(),
            "receiver": rec.state_dict(),
        },
        ck,
    )
    paths = export_models(ck, tmp_path / "models")
    onnx_enc = CdreSideEncoder(paths["encoder"])
    enc.eval()
    for h, w in ((100, 150), (64, 96), (130, 70)):
        a, b = _pair(h, w)
        got = onnx_enc.process(a, b)
        assert got.shape == (6, -(-h // 32), -(-w // 32))
        assert set(np.unique(got)) <= {0, 1}
        with torch.no_grad():
            y = enc(torch.from_numpy(frame_rgb(a)), torch.from_numpy(frame_rgb(b)))[0].numpy()
        assert (got == y).mean() >= 0.99  # only logits within float noise of 0 may flip
    rec2, _ = load_receiver(paths["decoder"])
    for k, v in rec.state_dict().items():
        assert torch.equal(v, rec2.state_dict()[k])


def test_payload_roundtrip_and_errors():
    bits = (np.random.default_rng(0).random((6, 23, 40)) > 0.5).astype(np.uint8)
    for name in (*CODERS, "auto"):
        idx, back = parse_payload(make_payload(17, bits, name))
        assert idx == 17 and np.array_equal(back, bits)
    # "auto" never costs more than the raw bits, and uses zlib on redundant bits
    skewed = np.zeros((6, 23, 40), np.uint8)
    skewed[0, :3] = 1
    assert len(make_payload(0, skewed)) < len(make_payload(0, skewed, "none"))
    assert len(make_payload(0, bits)) <= len(make_payload(0, bits, "none"))
    with pytest.raises(InputError):
        parse_payload(b"CD\x09\x00\x00\x00\x00\x00")
    with pytest.raises(InputError):
        parse_payload(b"xx")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, bikes_y4m):
    d = tmp_path_factory.mktemp("cdre")
    out = {}
    for name, extra in (
        ("plain", []),
        ("sei", ["--side-stream", "cdre"]),
        ("file", ["--side-stream", "cdre", "--side-stream-out", str(d / "file.side")]),
    ):
        bs = d / f"{name}.hevc"
        r = run_cli("encode", str(bikes_y4m), "-o", str(bs), "--qp", "37", "--json", *extra)
        assert r.returncode == 0, r.stderr.decode()
        out[name] = (bs, json.loads(r.stdout))
    return d, out


def test_sei_stream_decodes_bit_identical(encoded):
    _, out = encoded
    plain, sei = out["plain"][0], out["sei"][0]
    assert sei.stat().st_size > plain.stat().st_size
    a, b = list(decoded_frames(plain)), list(decoded_frames(sei))
    assert len(a) == len(b) == 8
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.y, fb.y) and np.array_equal(fa.u, fb.u) and np.array_equal(fa.v, fb.v)
    # the side-file encode leaves the bitstream untouched
    assert out["file"][0].read_bytes() == plain.read_bytes()


def test_extract_recovers_exact_payloads(encoded):
    d, out = encoded
    from_sei = extract_from_bitstream(out["sei"][0], "hevc")
    from_file = read_side_file(d / "file.side")
    assert from_sei == from_file and len(from_sei) == 8
    frames = bits_by_frame(from_sei)
    assert sorted(frames) == list(range(8))
    assert all(b.shape == (6, 4, 8) and set(np.unique(b)) <= {0, 1} for b in frames.values())
    r = run_cli("side-stream", "extract", str(out["sei"][0]), "-o", str(d / "x.side"), "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert read_side_file(d / "x.side") == from_sei
    assert json.loads(r.stdout)["payloads"] == 8


def test_extract_without_side_stream_fails_cleanly(encoded, tmp_path):
    _, out = encoded
    r = run_cli("side-stream", "extract", str(out["plain"][0]), "-o", str(tmp_path / "x.side"))
    assert r.returncode == 1
    assert "no CDRE side-stream" in r.stderr.decode()
    assert not (tmp_path / "x.side").exists()


def test_side_stream_bits_counted_in_bpp(encoded):
    _, out = encoded
    for name in ("sei", "file"):
        rep = out[name][1]
        side = rep["side_stream"]
        assert side["name"] == "cdre" and side["bits"] > side["payload_bits"] > 0
        assert rep["bits"] == sum(rep["bits_per_frame"]) + side["bits"]
        assert rep["bpp"] == pytest.approx(rep["bits"] / (256 * 128 * 8))
        assert side["kbps"] == pytest.approx(side["bits"] * rep["fps"] / 8 / 1000)
    # SEI bits are exactly the growth of the file
    grow = out["sei"][0].stat().st_size - out["plain"][0].stat().st_size
    assert out["sei"][1]["side_stream"]["bits"] == 8 * grow
    assert out["sei"][1]["bits"] == out["plain"][1]["bits"] + 8 * grow


@pytest.mark.skipif(not (ENCODER_ONNX.exists() and DECODER_PT.exists()), reason="models/ not shipped")
def test_receiver_runs_with_shipped_models(encoded):
    from vcmtool.sidestreams.cdre_receiver import CdreDetector

    _, out = encoded
    frames = [f.to_bgr() for f in decoded_frames(out["sei"][0])][:2]
    bits = bits_by_frame(extract_from_bitstream(out["sei"][0], "hevc"))
    det = CdreDetector(DECODER_PT)
    with_cdre = det.process(frames, [bits[0], bits[1]])
    plain = det.process(frames, None)
    assert len(with_cdre) == len(plain) == 2
    for d in with_cdre:
        assert d.boxes.shape[1] == 4 and (d.scores >= 0.25).all()


def test_encode_rejects_unknown_side_stream(bikes_y4m, tmp_path):
    out = tmp_path / "x.hevc"
    r = run_cli("encode", str(bikes_y4m), "-o", str(out), "--side-stream", "bogus")
    assert r.returncode == 2
    assert not out.exists()


def test_model_files_paths():
    assert Path(ENCODER_ONNX).name == "cdre_encoder.onnx"


def test_cdre_detect_cli_reads_sei_and_side_file(encoded):
    d, out = encoded
    a = run_cli("cdre", "detect", str(out["sei"][0]))
    b = run_cli("cdre", "detect", str(out["file"][0]), "--side-stream", str(d / "file.side"))
    assert a.returncode == 0, a.stderr.decode()
    assert a.stdout == b.stdout  # same bits whichever way they travelled
    lines = [json.loads(x) for x in a.stdout.decode().splitlines()]
    assert [x["frame"] for x in lines] == list(range(8))
    r = run_cli("cdre", "detect", str(out["plain"][0]))
    assert r.returncode == 1 and "no CDRE side stream" in r.stderr.decode()


def test_train_selection_keeps_identity_start_unless_val_map_beats_it(tmp_path, bus_jpg):
    """Real detector and frames: with decoded == original on the validation frames the identity
    start scores the pseudo GT perfectly, so no later state can beat it and step 0 must ship."""
    import cv2

    from vcmtool.lab.cdre.train import Trainer

    # bus.jpg: dense, sure detections (the first dev-clip frames have almost none at 0.3)
    im = cv2.imread(str(bus_jpg))
    frames = [
        cv2.resize(im[i * 40 : i * 40 + 960], (256, 320), interpolation=cv2.INTER_AREA) for i in range(4)
    ]
    orig = np.stack(frames)
    blurred = np.stack([cv2.GaussianBlur(f, (9, 9), 3) for f in frames])
    np.savez(tmp_path / "train.npz", orig=orig, dec=blurred)
    np.savez(tmp_path / "val.npz", orig=orig, dec=orig)
    item = {"segment": "bikes_t", "qp": 37}
    torch.manual_seed(0)
    trainer = Trainer(
        [{**item, "npz": str(tmp_path / "train.npz")}],
        CdreConfig(),
        TrainConfig(steps=2, batch=2, lr=0.05, threads=1, val_every=1, select="map"),
        val_items=[{**item, "npz": str(tmp_path / "val.npz")}],
    )
    start = {k: v.clone() for k, v in trainer.receiver.state_dict().items()}
    ck = tmp_path / "ck.pt"
    history = trainer.process(ck)
    curve = [h for h in history if "val_map50" in h]
    assert [h["step"] for h in curve] == [0, 1, 2]
    assert curve[0]["val_map50"] == pytest.approx(1.0)
    blob = torch.load(ck, map_location="cpu", weights_only=False)
    assert blob["selected"]["step"] == 0 and blob["selected"]["by"] == "map"
    assert [v["step"] for v in blob["validation"]] == [0]  # saved when step 0 was chosen
    for k, v in start.items():
        assert torch.equal(blob["receiver"][k], v)
    last = torch.load(f"{ck}.last.pt", map_location="cpu", weights_only=False)
    assert [v["step"] for v in last["validation"]] == [0, 1, 2]
    assert export_models(ck, tmp_path / "m")["decoder"].exists()
    assert load_receiver(tmp_path / "m" / "cdre_decoder.pt")[1]["steps"] == 0
