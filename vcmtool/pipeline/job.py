"""``EncodeJob``: every option of one encode, flat, as the CLI, manifests (``vcmtool batch``),
goldens (``vcmtool verify``), the bench and the Python API name them; and the files a job reads
and writes, for the output policy (:mod:`vcmtool.outputs`) to check before any work.

The fields are flat on purpose: they are the wire format of manifests and golden entries
(``dataclasses.asdict(job)`` is the report's ``options``), so a recorded job replays unchanged.
The stages read them through :mod:`vcmtool.pipeline.encode`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcmtool.outputs import Output


@dataclass
class EncodeJob:
    input: str
    output: str | None = None
    codec: str = "kvazaar"
    qpmap: str = "none"
    qp: int = 32
    qp_offset: int = 0
    # x264/x265 rate control by constant rate factor: the encoder picks each frame's QP and a
    # map's deviations from ``qp`` (its base) ride on it as per-block offsets
    crf: float | None = None
    ctu: int = 64
    size: str | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    frames: int | None = None
    skip: int = 0
    preset: str = "medium"
    intra_period: int = 0
    threads: int = 1
    allow_frame_qp: bool = False
    # 1: a map predicted on every frame; N, "auto" or "auto:N": fewer (vcmtool.qpmap.propagate)
    map_interval: str | int = 1
    task_model: str = "yolov3-tiny"
    map_options: dict = field(default_factory=dict)
    encoder_params: dict[str, str] = field(default_factory=dict)
    measure: bool = True  # decode and compute PSNR (Y, U, V) and SSIM (vcmtool.quality)
    vmaf: bool = False  # also VMAF (ffmpeg's libvmaf); needs measure
    csv: str | None = None  # per-frame CSV (bits, quality, QP map); written only when measured
    overlay: str | None = None
    qpm_out: str | None = None
    side_stream: str = "none"  # post-encode side stream ("cdre"), see vcmtool.sidestreams.cdre
    side_stream_out: str | None = None  # write it to this file instead of SEI in the bitstream
    side_stream_budget: str | None = None  # "5%" of each frame's video bits or "8kbps" (sidestreams.budget)
    target_kbps: float | None = None  # MFIBA target-rate allocation (vcmtool.ratecontrol.target)
    target_bpp: float | None = None
    overlap: bool = True  # predict streamed maps while encoding (False: all maps first; same bytes)
    scale: str = "1"  # code at this fraction of the size ("0.75"), or "auto" (vcmtool.resample)
    scale_filter: str | None = None  # downscaling filter (None: vcmtool.resample.DOWN_FILTER)


def crf_base(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (EncodeJob keyword arguments) with ``qp`` at the CRF rounded when ``crf`` comes
    without a ``qp``: a map's base then sits where CRF's frame QPs will be. The CLI, the Python API
    and manifests share this default (a bad ``crf`` is left for ``check_job`` to refuse)."""
    crf = fields.get("crf")
    number = isinstance(crf, int | float) and not isinstance(crf, bool)
    if fields.get("qp") is None and number and math.isfinite(crf):  # round() of inf or NaN raises
        return {**fields, "qp": round(crf)}
    return fields


def default_output(job: EncodeJob, ext: str) -> str:
    stem = Path(job.input).stem if job.input != "-" else "stdin"
    return str(Path(f"{stem}.{job.codec}{ext}"))


def job_outputs(job: EncodeJob, output: str | Path) -> list[Output]:
    """Every file an encode of ``job`` writes, with the option that named it."""
    named = [
        (str(output), "-o/--output"),
        (job.qpm_out, "--qpm-out"),
        (job.overlay, "--overlay"),
        (job.side_stream_out, "--side-stream-out"),
        (job.csv if job.measure else None, "--csv"),
    ]  # no measurement, no CSV
    return [Output(str(p), opt) for p, opt in named if p]


def job_inputs(job: EncodeJob) -> list[str]:
    """Files an encode of ``job`` reads (the clip, a map file, a task model)."""
    ins = [job.input]
    for spec, prefix in ((job.qpmap, "file:"), (job.qpmap, "dets:"), (job.task_model, "onnx:")):
        if isinstance(spec, str) and spec.startswith(prefix):
            ins.append(spec[len(prefix) :])
    return ins
