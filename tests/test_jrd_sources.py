"""``--qpmap auto`` / ``eljrd``: the shipped ONNX predictors end to end through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from vcmtool.qpmap.jrd_model import DEFAULT_MODELS, LOWDELAY_MODELS, SHIPPED_MODELS, regrid, to_codec_domain
from vcmtool.qpmap.qpm import read_qpm


def test_encode_auto_end_to_end_gives_a_non_uniform_map(bikes_y4m, tmp_path):
    out, qpm = tmp_path / "b.hevc", tmp_path / "b.qpm"
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--qpmap",
        "auto",
        "--qp",
        "32",
        "-o",
        str(out),
        "--qpm-out",
        str(qpm),
        "--json",
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    rep = json.loads(r.stdout)
    assert rep["qpmap"]["source"] == "auto" and rep["qpmap"]["jrd_model"].startswith("snn:")
    assert out.stat().st_size > 0
    maps = read_qpm(qpm)
    assert maps.data.shape == (8, 2, 4)  # 256x128 -> ceil(128/64) x ceil(256/64)
    assert maps.data.min() < maps.data.max()  # objects and background differ
    assert rep["qpmap"]["uniform"] is False
    assert rep["qpmap"]["jrd_labels"] == "intra" and "snn_jrd.onnx" in rep["qpmap"]["jrd_model"]
    # on a low-delay encode, --jrd-labels match runs the model trained on low-delay labels
    r = run_cli(
        "encode", str(bikes_y4m), "--qpmap", "auto", "--jrd-labels", "match", "-o", str(out), "-y", "--json"
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    rep = json.loads(r.stdout)
    assert rep["qpmap"]["jrd_labels"] == "lowdelay" and "snn_jrd_lowdelay.onnx" in rep["qpmap"]["jrd_model"]


def test_qpmap_eljrd_with_map_interval_reuses_maps(bikes_y4m, tmp_path):
    qpm = tmp_path / "e.qpm"
    r = run_cli("qpmap", str(bikes_y4m), "--qpmap", "eljrd", "--map-interval", "4", "-o", str(qpm), "--json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    d = read_qpm(qpm).data
    assert len(d) == 8
    assert (d[1:4] == d[0]).all() and (d[5:8] == d[4]).all()


@pytest.mark.parametrize("content", [b"", b"this is not an onnx graph\n" * 50], ids=["missing", "corrupt"])
def test_corrupt_or_missing_model_is_a_one_line_error(bikes_y4m, tmp_path, content):
    bad = tmp_path / "bad.onnx"
    if content:
        bad.write_bytes(content)
    r = run_cli("qpmap", str(bikes_y4m), "--qpmap", f"auto:{bad}", "-o", str(tmp_path / "x.qpm"))
    err = r.stderr.decode().strip()
    assert r.returncode == 1
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(bad) in err and "vcmtool jrd export" in err
    assert not (tmp_path / "x.qpm").exists()


def test_shipped_models_carry_their_domain():
    from vcmtool.qpmap.jrd_model import JrdPredictor

    for coding, models in SHIPPED_MODELS.items():
        for kind, path in models.items():
            p = JrdPredictor(path)
            assert p.kind == kind and p.codec == "hevc" and p.qp_max == 51
            # each file was trained on the labels it is shipped for (the intra ones predate the key)
            assert p.meta.get("label_coding", "intra") == coding, path


def test_auto_picks_the_model_by_label_coding():
    """The intra models by default (the low-delay ones measured worse); --jrd-labels lowdelay
    forces the low-delay ones, match picks by the encode's coding (low delay for intra period 0
    or N > 1), and auto:PATH wins over all of them."""
    from vcmtool.qpmap.sources import MapContext, get_source

    auto, el = get_source("auto"), get_source("eljrd")
    for period in (0, 1, 16):
        assert auto.model_path(MapContext(intra_period=period)) == DEFAULT_MODELS["snn"]
        assert el.model_path(MapContext(intra_period=period)) == DEFAULT_MODELS["eljrd"]
        low = MapContext(intra_period=period, options={"jrd_labels": "lowdelay"})
        assert auto.model_path(low) == LOWDELAY_MODELS["snn"]
    match = {"jrd_labels": "match"}
    assert auto.model_path(MapContext(intra_period=0, options=match)) == LOWDELAY_MODELS["snn"]
    assert auto.model_path(MapContext(intra_period=16, options=match)) == LOWDELAY_MODELS["snn"]
    assert auto.model_path(MapContext(intra_period=1, options=match)) == DEFAULT_MODELS["snn"]
    assert el.model_path(MapContext(intra_period=0, options=match)) == LOWDELAY_MODELS["eljrd"]
    assert get_source("auto:/x/m.onnx").model_path(MapContext(intra_period=1)) == Path("/x/m.onnx")
    assert set(auto.model_files()) == {DEFAULT_MODELS["snn"], LOWDELAY_MODELS["snn"]}


def test_domain_conversion_and_regrid():
    q = np.array([[12.4, 49.6], [51.0, 30.5]], np.float32)
    # HEVC model, HEVC target: rounded, "no constraint" (qp_max) stays the maximum
    assert to_codec_domain(q, 51, (0, 51)).tolist() == [[12, 50], [51, 30]]
    # HEVC model, VVC target: same step sizes, background goes to VVC's maximum
    assert to_codec_domain(q, 51, (0, 63)).tolist() == [[12, 50], [63, 30]]
    # VVC model, HEVC target: clamped at 51
    assert to_codec_domain(np.array([[60.0, 40.0]]), 63, (0, 51)).tolist() == [[51, 40]]
    g = np.array([[30, 40], [45, 51]], np.int16)  # 128x100 frame on 64-CTUs
    assert regrid(g, 100, 128, 32).shape == (4, 4)
    assert regrid(g, 100, 128, 32)[0].tolist() == [30, 30, 40, 40]
    assert regrid(g, 100, 128, 128).tolist() == [[30]]


def test_shape_map_floors_objects_and_caps_the_background():
    from vcmtool.qpmap.sources.auto import JrdShape, shape_map

    grid = np.array([[51, 20, 30], [50, 26, 40], [45, 51, 51]], np.int16)
    objects = np.array([[0, 1, 1], [0, 1, 1], [0, 0, 0]], bool)  # labels 20, 26, 30, 40
    # floor at the 50th percentile (26, "lower"): 20 -> 26; median of 26, 26, 30, 40 is 28
    out = shape_map(grid, objects, JrdShape(floor_pct=50, background=12))
    assert out[objects].tolist() == [26, 30, 26, 40]
    assert out[~objects].tolist() == [40, 40, 40, 40, 40]  # min(prediction, 28 + 12)
    assert (shape_map(grid, objects, JrdShape()) == grid).all()  # off by default
    assert (shape_map(grid, np.zeros_like(objects), JrdShape(50, 12)) == grid).all()  # no object


def test_jrd_shape_options_reach_the_map(bikes_y4m):
    import vcmtool

    raw, _ = vcmtool.qpmaps(bikes_y4m, qpmap="auto", map_interval=1)
    shaped, _ = vcmtool.qpmaps(bikes_y4m, qpmap="auto", map_interval=1, jrd_floor_pct=100, jrd_background=0)
    # every object CTU at the frame's highest object QP and nothing above it: the background can
    # only come down, and the frames with a detection change
    assert (shaped.data.max(axis=(1, 2)) <= raw.data.max(axis=(1, 2))).all()
    assert (shaped.data != raw.data).any()
    for s, r in zip(shaped.data, raw.data, strict=True):
        assert len(np.unique(s)) <= len(np.unique(r))


def _texture_y4m(path, frames: int = 4, w: int = 256, h: int = 128):
    """Frames of smooth random texture: nothing a COCO detector finds, bits for an encoder."""
    import cv2

    rng = np.random.default_rng(7)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            y = cv2.GaussianBlur(rng.integers(40, 200, (h, w)).astype(np.uint8), (5, 5), 0)
            f.write(b"FRAME\n" + y.tobytes() + np.full(h * w // 2, 128, np.uint8).tobytes())
    return path


def test_auto_codes_a_frame_without_objects_above_the_base_qp(tmp_path):
    """The model finds nothing, so its map is the codec's maximum everywhere: by default the
    frame is coded 6 above --qp (+ offset), with --jrd-empty base at it, with max at the
    maximum, and the bytes say so."""
    clip = _texture_y4m(tmp_path / "texture.y4m")
    got = {}
    for empty in ("default", "base", "max"):
        qpm, out = tmp_path / f"{empty}.qpm", tmp_path / f"{empty}.hevc"
        args = ["--qpmap", "auto", "--qp", "30", "--qp-offset", "4", "--map-interval", "1"]
        if empty != "default":
            args += ["--jrd-empty", empty]
        r = run_cli("qpmap", str(clip), *args, "-o", str(qpm))
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        r = run_cli("encode", str(clip), *args, "-o", str(out))
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        got[empty] = (np.unique(read_qpm(qpm).data).tolist(), out.stat().st_size)
    assert got["default"][0] == [40] and got["base"][0] == [34] and got["max"][0] == [51]
    # the frames were really coded at those QPs: fewer bytes as the QP rises
    assert got["base"][1] > got["default"][1] > got["max"][1]


def test_fill_empty_touches_only_a_map_at_the_maximum():
    from vcmtool.qpmap.sources.auto import fill_empty

    top = np.full((2, 3), 51, np.int16)
    assert fill_empty(top, (0, 51), 30).tolist() == [[30] * 3] * 2
    assert fill_empty(top, (0, 51), 70).max() == 51  # the base is clamped into the codec's range
    mixed = top.copy()
    mixed[0, 0] = 20
    assert fill_empty(mixed, (0, 51), 30) is mixed  # an object: the prediction stands
    vvc = np.full((2, 3), 63, np.int16)
    assert fill_empty(vvc, (0, 63), 30).max() == 30 and fill_empty(top, (0, 63), 30) is top


def test_jrd_empty_values():
    from vcmtool.errors import UsageError
    from vcmtool.qpmap.sources.auto import JrdShape

    assert JrdShape().empty_delta == 6 and JrdShape(empty="base").empty_delta == 0
    assert JrdShape(empty="max").empty_delta is None
    for bad in ("base6", "base+", "base-2", "min", "base+100"):
        with pytest.raises(UsageError, match="--jrd-empty"):
            JrdShape(empty=bad)
