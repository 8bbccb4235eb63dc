"""Build an ONNX graph straight from a parsed darknet net (numpy + the ``onnx`` package).

This is the torch-free route to OpenCV DNN (OpenCV >= 5 dropped its darknet importer) and to
onnxruntime. Batch norm is folded into the convolutions; outputs are the raw YOLO conv maps
(B, A*(5+C), h, w), decoded by :mod:`vcmtool.tasks.postprocess`.

:func:`cached_onnx` keeps built graphs in the user cache: importing ``onnx`` and building the
YOLOv3-tiny graph cost about 1 s per process (measured on 2 cores: import 0.7 s, build 0.3 s),
reading the cached file a few ms, which matters to every short ``vcmtool encode --qpmap roi``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from vcmtool.errors import ModelError
from vcmtool.tasks.darknet import (
    LEAKY_SLOPE,
    Conv,
    DarknetNet,
    MaxPool,
    Route,
    Upsample,
    Yolo,
    onnx_metadata,
)

log = logging.getLogger(__name__)

OPSET = 13
INPUT_NAME = "images"
BUILDER = 1  # bump whenever build_onnx's output changes: cached graphs of older builds are ignored


def head_output_names(net: DarknetNet) -> list[str]:
    return [f"yolo{k}" for k in range(len(net.heads))]


def build_onnx(
    net: DarknetNet,
    input_size: tuple[int, int] | None = None,
    model_name: str = "yolov3-tiny",
    feature_outputs: bool = False,
    check: bool = False,
) -> bytes:
    """Serialized ONNX model with a dynamic batch and a fixed (w, h) input size.

    ``feature_outputs`` adds the trunk feature maps (see ``DarknetNet.feature_layers``) as
    extra outputs named ``feat_s{stride}``. ``check`` runs the ONNX checker (slow-ish, the
    graph is built deterministically so the tests do it once).
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ModelError(
            "building the ONNX graph needs the onnx package; fix: pip install 'onnx>=1.15'"
        ) from None
    w, h = input_size or (net.width, net.height)
    if w % 32 or h % 32:
        raise ModelError(f"input size {w}x{h} must be a multiple of 32")
    nodes, inits = [], []
    names: list[str] = []  # output tensor name of each layer
    sizes: list[tuple[int, int]] = []  # spatial (h, w) of each layer output
    cur, cur_hw = INPUT_NAME, (h, w)
    for i, layer in enumerate(net.layers):
        out = f"l{i}"
        if isinstance(layer, Conv):
            kernel, bias = net.weights[i].folded()
            inits += [
                numpy_helper.from_array(kernel, f"l{i}.w"),
                numpy_helper.from_array(bias, f"l{i}.b"),
            ]
            p, s, k = layer.pad, layer.stride, layer.size
            conv_out = out if layer.activation == "linear" else f"l{i}.conv"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [cur, f"l{i}.w", f"l{i}.b"],
                    [conv_out],
                    kernel_shape=[k, k],
                    strides=[s, s],
                    pads=[p, p, p, p],
                )
            )
            if layer.activation == "leaky":
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [out], alpha=LEAKY_SLOPE))
            cur_hw = tuple((d + 2 * p - k) // s + 1 for d in cur_hw)
        elif isinstance(layer, MaxPool):
            k, s = layer.size, layer.stride
            total = layer.pad_begin + layer.pad_end
            new_hw = tuple((d + total - k) // s + 1 for d in cur_hw)
            # Leave out padding that no window reaches: runtimes differ in how well they
            # support asymmetric pooling pads, and the result is identical.
            unpadded = tuple((d - k) // s + 1 for d in cur_hw)
            src = cur
            if new_hw != unpadded or layer.pad_begin:
                # darknet's padded cells never win the max; edge padding is equivalent for
                # that purpose and every runtime supports it
                pads = [0, 0, layer.pad_begin, layer.pad_begin, 0, 0, layer.pad_end, layer.pad_end]
                inits.append(numpy_helper.from_array(np.asarray(pads, np.int64), f"l{i}.pads"))
                src = f"l{i}.padded"
                nodes.append(helper.make_node("Pad", [cur, f"l{i}.pads"], [src], mode="edge"))
            nodes.append(helper.make_node("MaxPool", [src], [out], kernel_shape=[k, k], strides=[s, s]))
            cur_hw = new_hw
        elif isinstance(layer, Route):
            srcs = [names[r] for r in layer.layers]
            if len(srcs) == 1:
                nodes.append(helper.make_node("Identity", srcs, [out]))
            else:
                nodes.append(helper.make_node("Concat", srcs, [out], axis=1))
            cur_hw = sizes[layer.layers[0]]
        elif isinstance(layer, Upsample):
            st = float(layer.stride)
            inits.append(numpy_helper.from_array(np.asarray([1, 1, st, st], np.float32), f"l{i}.scales"))
            inits.append(numpy_helper.from_array(np.zeros(0, np.float32), f"l{i}.roi"))
            nodes.append(
                helper.make_node(
                    "Resize",
                    [cur, f"l{i}.roi", f"l{i}.scales"],
                    [out],
                    mode="nearest",
                    coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor",
                )
            )
            cur_hw = tuple(d * layer.stride for d in cur_hw)
        elif isinstance(layer, Yolo):
            out = cur  # the head's raw conv map is the output; decoding happens outside
        names.append(out)
        sizes.append(cur_hw)
        cur = out
    head_names = head_output_names(net)
    outputs = []
    for name, li, layer in zip(head_names, net.yolo_layers, net.heads, strict=True):
        gh, gw = sizes[li]
        ch = len(layer.anchors) * (5 + layer.classes)
        nodes.append(helper.make_node("Identity", [names[li]], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", ch, gh, gw]))
    if feature_outputs:
        for stride, li in net.feature_layers().items():
            fname = f"feat_s{stride}"
            nodes.append(helper.make_node("Identity", [names[li]], [fname]))
            fh, fw = sizes[li]
            outputs.append(
                helper.make_tensor_value_info(
                    fname, TensorProto.FLOAT, ["batch", net.out_channels[li], fh, fw]
                )
            )
    graph = helper.make_graph(
        nodes,
        model_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, h, w])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vcmtool")
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntime / OpenCV
    helper.set_model_props(model, onnx_metadata(net, (w, h), head_names, model_name))
    data = model.SerializeToString()
    if check:
        onnx.checker.check_model(data)
    return data


def cached_onnx(net: DarknetNet, input_size: tuple[int, int], model_name: str = "yolov3-tiny") -> bytes:
    """:func:`build_onnx` (default outputs), read from the user cache when an earlier process
    built the same graph (``<cache>/darknet-onnx/<key>.onnx``). The key covers everything the
    graph depends on: this builder, the cfg text, the weights' md5, the class names, the input
    size and the model name. A cache that cannot be written is skipped (the graph is built)."""
    from vcmtool.modelfiles import cache_dir

    try:
        cfg_text = Path(net.cfg_path).read_bytes() if getattr(net, "cfg_path", None) else b""
    except OSError:
        cfg_text = b""
    cfg = cfg_text.decode("latin-1")
    ident = json.dumps([BUILDER, OPSET, cfg, net.weights_md5, net.class_names, list(input_size), model_name])
    key = hashlib.md5(ident.encode()).hexdigest()
    path = cache_dir() / "darknet-onnx" / f"{key}.onnx"
    if cfg_text and net.weights_md5:
        try:
            return path.read_bytes()
        except OSError:
            pass
    data = build_onnx(net, input_size, model_name=model_name)
    if cfg_text and net.weights_md5:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".part", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # atomic: readers see the whole file or none
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as e:
            log.debug("ONNX graph cache %s not written: %s", path, e)
    return data
