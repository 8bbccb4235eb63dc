"""Checkpoint -> ONNX for onnxruntime inference (imports torch).

The LIF neurons are exported in their closed form (one surrogate-free Heaviside per stair of the
T = 10 step spike count, :class:`vcmtool.lab.jrd.snn.LIF`), which is the T-step recursion unrolled
and summed analytically: the same spikes, fewer nodes. ``unrolled=True`` exports the literal
10-step recursion instead (same outputs; larger, slower graph). H and W are dynamic axes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vcmtool.atomic import atomic_path
from vcmtool.lab.jrd.snn import LIF
from vcmtool.lab.jrd.train import load_checkpoint

OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path, unrolled: bool = False) -> dict:
    import onnx

    model, ck = load_checkpoint(checkpoint)
    for m in model.modules():
        if isinstance(m, LIF):
            m.unrolled = unrolled
    x = torch.zeros(1, 3, 128, 192)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(
            model,
            (x,),
            str(tmp),
            input_names=["fp"],
            output_names=["qp"],
            dynamic_axes={"fp": {2: "H", 3: "W"}, "qp": {1: "gh", 2: "gw"}},
            opset_version=OPSET,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        meta = {
            "kind": ck["kind"],
            "codec": ck.get("codec", "hevc"),
            "qp_max": str(ck["qp_max"]),
            "ctu": "64",
            "epoch": str(ck["epoch"]),
            "config": json.dumps(ck["config"]),
            "val": json.dumps(ck["history"][ck["epoch"] - 1]["val"] if ck["history"] else {}),
            "lif": "unrolled" if unrolled else "closed-form",
            # the label set it learnt (checkpoints before labels were recorded: eq. 1 intra)
            "label_coding": ck.get("labels", {}).get("coding", "intra"),
            "label_rule": ck.get("labels", {}).get("rule", "eq1"),
            "label_track_percentile": str(ck.get("labels", {}).get("track_percentile", 0.0)),
        }
        for k, v in meta.items():
            p = proto.metadata_props.add()
            p.key, p.value = k, v
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return {"onnx": str(out), "bytes": out.stat().st_size, **meta}
