"""The bench grid: inputs x encoders x methods x rate points, as independent point specs.

A method is a QP-map source (``none`` is the anchor) or another kind from
:mod:`vcmtool.bench.methods` (``cdre-fd``: side stream + receiver); ``qpmaps`` holds their specs.
``scales`` crosses them with spatial scales: ``none`` at 0.75 is the method ``none@0.75`` (coded
at 0.75 of the size, upsampled before it is judged), a curve of its own; scale 1 keeps the plain
name, so a bench without ``--scales`` has the methods, keys and results it always had.

Rate points. ``qps`` are base QPs. The uniform anchor (``none``) always sweeps ``qps``. A map
source sweeps the same base QPs (its map is computed at each base: ``roi`` puts objects at
base-4 and the background at base+6) unless ``qp_offsets`` is given: then it follows the JRD
paper's QP-offset protocol instead, one map predicted at ``offset_base`` plus each offset k,
clamped to the codec range. The anchor is unaffected by offsets (a uniform map plus k is just
QP base+k, which ``qps`` already covers).

Frames are grouped for scoring: each multi-frame input is its own group; all single-frame
inputs (still images, coded intra) form one group ``images``, since one image is too few
objects for a curve of its own. ``pool`` adds a group ``all`` over every input (rates summed,
mAP over all frames), for a figure over a whole test set.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vcmtool.bench.methods import ANCHOR, resolve
from vcmtool.eval.coco import PSEUDO_GT_MIN_SCORE
from vcmtool.runner import Item, safe_key
from vcmtool.sidestreams.cdre import DEFAULT_MISSING

IMAGES_GROUP = "images"
POOL_GROUP = "all"


@dataclass
class BenchConfig:
    inputs: list[str]
    output: str
    codecs: list[str] = field(default_factory=lambda: ["kvazaar"])
    qpmaps: list[str] = field(default_factory=lambda: [ANCHOR, "roi"])
    qps: list[int] = field(default_factory=lambda: [22, 27, 32, 37])
    qp_offsets: list[int] | None = None
    offset_base: int = 32
    crf: bool = False  # qps are CRF values for encoders with CRF rate control (x264, x265)
    frames: int | None = None
    skip: int = 0
    size: str | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    preset: str = "medium"
    intra_period: int = 0
    threads: int = 1
    allow_frame_qp: bool = False
    ctu: int = 64
    map_interval: str | int = 1  # as the CLI; "auto" predicts some frames and moves the maps
    task_model: str = "yolov3-tiny"
    judges: list[str] | None = None  # detectors that score the decoded frames (None: see judges.py)
    map_options: dict = field(default_factory=dict)
    encoder_params: dict[str, str] = field(default_factory=dict)
    # options for one encoder only (--param CODEC:KEY=VALUE), over encoder_params
    codec_params: dict[str, dict[str, str]] = field(default_factory=dict)
    codec_presets: dict[str, str] = field(default_factory=dict)  # --preset CODEC:NAME, over preset
    gt: str | None = None
    gt_min_score: float = PSEUDO_GT_MIN_SCORE  # pseudo ground truth; not in any point's key
    gt_stable: int = 0  # pseudo ground truth: frames around an object that must see it too
    pool: bool = False
    bootstrap: int = 200
    workers: int = 1
    engine: str = "process"
    address: str | None = None
    # spatial scales ("1", "0.75", "auto"): each method runs at each; scale != 1 is method@scale
    scales: list[str] = field(default_factory=lambda: ["1"])
    side_stream_budget: str | None = None  # cap of the side-stream methods (sidestreams.budget)
    # the cdre receiver on frames without a payload (sidestreams.cdre)
    side_stream_missing: str = DEFAULT_MISSING

    def to_json(self) -> dict:
        return asdict(self)

    def params_for(self, codec: str) -> dict[str, str]:
        """The encoder options ``codec`` gets: the shared ones, then its own."""
        return {**self.encoder_params, **self.codec_params.get(codec, {})}

    def preset_for(self, codec: str) -> str:
        return self.codec_presets.get(codec, self.preset)


@dataclass(frozen=True)
class PointSpec:
    input: str
    codec: str
    qpmap: str
    qp: int
    qp_offset: int = 0
    crf: bool = False  # ``qp`` is a CRF value (the map's base QP is the same number)

    @property
    def method(self) -> str:
        return self.qpmap

    @property
    def rate_label(self) -> str:
        offset = f"{self.qp_offset:+d}" if self.qp_offset else ""
        return f"{'CRF' if self.crf else 'QP'}{self.qp}{offset}"


@functools.cache
def has_crf(codec: str) -> bool:
    from vcmtool.encoders import ENCODERS

    return ENCODERS.get(codec).crf_range is not None


def make_spec(cfg: BenchConfig, inp: str, codec: str, qpmap: str, qp: int, k: int = 0) -> PointSpec:
    """One point; under ``cfg.crf`` an encoder with CRF codes ``qp`` as its CRF, the others as a QP."""
    return PointSpec(inp, codec, qpmap, qp, k, bool(cfg.crf) and has_crf(codec))


def rate_points(cfg: BenchConfig, qpmap: str) -> list[tuple[int, int]]:
    """(base QP, offset) pairs of one method's curve (``qpmap``: a method spec, see methods.py)."""
    if not cfg.qp_offsets or not resolve(qpmap).follows_offsets:
        return [(q, 0) for q in cfg.qps]
    return [(cfg.offset_base, k) for k in cfg.qp_offsets]


def applies(cfg: BenchConfig, codec: str, qpmap: str) -> bool:
    """Whether ``codec`` can code method ``qpmap``: a map needs block QPs, or --allow-frame-qp
    (a frame-QP-only encoder would refuse every point of it)."""
    from vcmtool.encoders import get_encoder

    if resolve(qpmap).qpmap == ANCHOR or cfg.allow_frame_qp:
        return True
    return get_encoder(codec).capabilities().block_qp is not None


def point_specs(cfg: BenchConfig) -> list[PointSpec]:
    return [
        make_spec(cfg, inp, codec, src, qp, k)
        for inp in cfg.inputs
        for codec in cfg.codecs
        for src in cfg.qpmaps
        if applies(cfg, codec, src)
        for qp, k in rate_points(cfg, src)
    ]


def encode_settings_key(cfg: BenchConfig) -> str:
    """Everything besides the spec that changes a point's bytes or detections (resume key)."""
    return "|".join(
        str(v)
        for v in (
            cfg.frames,
            cfg.skip,
            cfg.size,
            cfg.fps,
            cfg.pix_fmt,
            cfg.preset,
            cfg.intra_period,
            cfg.threads,
            cfg.allow_frame_qp,
            cfg.ctu,
            cfg.map_interval,
            cfg.task_model,
            sorted(cfg.map_options.items()),
            sorted(cfg.encoder_params.items()),
            # old keys stay valid; the policy only matters where the budget skips payloads
            *([cfg.side_stream_budget, cfg.side_stream_missing] if cfg.side_stream_budget else []),
        )
    )


@functools.cache
def encoder_identity(codec: str) -> str:
    """Version and code path of an encoder: a new build (say a native driver) invalidates points."""
    from vcmtool.encoders import get_encoder

    p = get_encoder(codec).probe()
    return f"{p.version}|{p.detail}"


def _key(readable: str, hidden: str) -> str:
    # the runner's key keeps the tail of the text readable and hashes all of it
    digest = hashlib.md5(hidden.encode()).hexdigest()[:12]
    return safe_key(f"{digest}|{readable}")


def point_item(cfg: BenchConfig, spec: PointSpec, stream_dir: str) -> Item:
    readable = f"{Path(spec.input).stem}_{spec.codec}_{spec.qpmap}_{spec.rate_label}"
    hidden = (
        f"{spec.input}|{spec.codec}|{spec.qpmap}|{spec.qp}|{spec.qp_offset}|"
        f"{encode_settings_key(cfg)}|{encoder_identity(spec.codec)}"
    )
    if spec.crf:  # QP points keep the keys they always had
        hidden += "|crf"
    if cfg.codec_params.get(spec.codec):
        hidden += f"|{sorted(cfg.codec_params[spec.codec].items())}"
    if spec.codec in cfg.codec_presets:
        hidden += f"|preset={cfg.codec_presets[spec.codec]}"
    identity = resolve(spec.qpmap).identity
    if identity:  # only methods with model files carry one: the keys of the others stay as they were
        hidden += f"|{identity}"
    key = _key(readable, hidden)
    payload = {"spec": asdict(spec), "config": cfg.to_json(), "stream_dir": stream_dir, "key": key}
    return Item(key, payload)


def source_item(cfg: BenchConfig, inp: str, identity: str = "") -> Item:
    """The task model (``cfg.task_model``) on one uncompressed input; ``identity`` fingerprints
    its model file, if it has one (empty for the task model's own items: their keys stay put)."""
    hidden = f"source|{inp}|{cfg.frames}|{cfg.skip}|{cfg.size}|{cfg.fps}|{cfg.pix_fmt}|{cfg.task_model}"
    if identity:
        hidden += f"|{identity}"
    return Item(_key(f"{Path(inp).stem}_source", hidden), {"input": inp, "config": cfg.to_json()})


def groups(inputs: list[str], frame_counts: dict[str, int], pool: bool = False) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    names = [Path(i).name for i in inputs]
    for inp in inputs:
        short = Path(inp).name if names.count(Path(inp).name) == 1 else inp
        name = short if frame_counts[inp] > 1 else IMAGES_GROUP
        out.setdefault(name, []).append(inp)
    if pool and len(out) > 1:
        out[POOL_GROUP] = list(inputs)
    return out
