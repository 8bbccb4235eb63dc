"""One validation path for an encode job, whether it came from the CLI, a batch manifest or a
golden file.

click's ranges only guard the CLI: a manifest row or a golden entry builds an ``EncodeJob``
directly, and before this module ``qp=1000``, ``map_interval=0``, ``threads=-5`` or a
``target_kbps`` of NaN went straight into the encoders. ``check_job`` is called by
``run_encode`` (so nothing reaches an encoder unchecked) and by the manifest parser (so a bad row
fails before hours of work). It returns notes for what it adjusted (threads above the machine's
cores are capped: kvazaar spawned ~32,000 threads for ``threads=100000``) and raises
:class:`UsageError` for everything else.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Any

from vcmtool.errors import UsageError
from vcmtool.qpmap.propagate import parse_map_interval
from vcmtool.qpmap.sources import check_source_options
from vcmtool.sidestreams.budget import SideBudget

if TYPE_CHECKING:
    from vcmtool.pipeline.job import EncodeJob

QP_MAX = 63  # the widest codec domain (VVC); backends clamp to their own range
CTUS = (16, 32, 64, 128)
PIX_FMTS = ("yuv420p", "yuv420p10le")
MAX_FPS = 1000.0
MAX_KBPS = 10_000_000.0  # 10 Gbit/s: beyond any real stream, still finite
MAX_BPP = 64.0
_SIZE = re.compile(r"^\d{1,5}x\d{1,5}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


def max_threads() -> int:
    """The machine's cores as this process sees them (cgroup/affinity aware where possible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _int(job_value: Any, name: str, lo: int | None, hi: int | None, opt: str) -> int:
    if isinstance(job_value, bool) or not isinstance(job_value, int):
        raise UsageError(f"{opt} {job_value!r}: not an integer")
    if (lo is not None and job_value < lo) or (hi is not None and job_value > hi):
        span = (
            f"{lo}..{hi}"
            if lo is not None and hi is not None
            else f">= {lo}"
            if lo is not None
            else f"<= {hi}"
        )
        raise UsageError(f"{opt} {job_value}: out of range ({span})")
    return job_value


def _positive(value: Any, opt: str, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{opt} {value!r}: not a number")
    if not math.isfinite(value) or value <= 0 or value > hi:
        raise UsageError(f"{opt} {value}: use a finite number in (0, {hi:g}]")


# MFIBA's target-rate knobs (manifests only; see ratecontrol/target.py): not a source's options
_TARGET_KEYS = ("mfiba_params", "target_tolerance", "target_max_passes")


def _check_map_options(o: Any) -> None:
    if not isinstance(o, dict):
        raise UsageError(f"map_options {o!r}: not a JSON object")
    # each key a source's option (roi_qp_in, a plug-in's), checked from the source's Options
    check_source_options(o, also_known=_TARGET_KEYS)
    if o.get("mfiba_params") is not None and not isinstance(o["mfiba_params"], str):
        raise UsageError(f"mfiba_params {o['mfiba_params']!r}: use a file path")
    tol = o.get("target_tolerance")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 < tol <= 0.5):
        raise UsageError(f"target_tolerance {tol!r}: use a fraction in (0, 0.5]")
    if o.get("target_max_passes") is not None:
        _int(o["target_max_passes"], "target_max_passes", 1, 50, "target_max_passes")


def check_job(job: EncodeJob) -> list[str]:
    """Refuse out-of-range options of ``job`` (one-line UsageError); return notes for what was
    adjusted. Mutates ``job`` only to cap ``threads`` and to write ``map_interval`` in its
    canonical form (``8``, ``"auto"``, ``"auto:4"``), and ``scale`` in its (``"0.75"``)."""
    notes: list[str] = []
    # before --qp: without one, qp is the CRF rounded (pipeline.crf_base), so a bad CRF is named
    if job.crf is not None and (
        isinstance(job.crf, bool) or not isinstance(job.crf, int | float) or not 0 <= job.crf <= QP_MAX
    ):
        raise UsageError(f"--crf {job.crf!r}: use a number in 0..{QP_MAX} (encoders check their own range)")
    _int(job.qp, "qp", 0, QP_MAX, "--qp")
    _int(job.qp_offset, "qp_offset", -QP_MAX, QP_MAX, "--qp-offset")
    if job.ctu not in CTUS:
        raise UsageError(f"--ctu {job.ctu!r}: use 16, 32, 64 or 128")
    job.map_interval = parse_map_interval(job.map_interval).value  # "8" from a CSV manifest -> 8
    _int(job.intra_period, "intra_period", 0, None, "--intra-period")
    _int(job.skip, "skip", 0, None, "--skip")
    if job.frames is not None:
        _int(job.frames, "frames", 1, None, "--frames")
    _int(job.threads, "threads", 0, None, "--threads")
    cores = max_threads()
    if job.threads > cores:
        notes.append(f"--threads {job.threads} capped at this machine's {cores} cores")
        job.threads = cores
    if job.size is not None and not (isinstance(job.size, str) and _SIZE.match(job.size)):
        raise UsageError(f"--size {job.size!r}: use WxH, e.g. 1280x720")
    if job.fps is not None:
        _positive(job.fps, "--fps", MAX_FPS)
    if job.pix_fmt is not None and job.pix_fmt not in PIX_FMTS:
        raise UsageError(f"--pix-fmt {job.pix_fmt!r}: use {' or '.join(PIX_FMTS)}")
    if job.target_kbps is not None:
        _positive(job.target_kbps, "--target-kbps", MAX_KBPS)
    if job.target_bpp is not None:
        _positive(job.target_bpp, "--target-bpp", MAX_BPP)
    if job.target_kbps is not None and job.target_bpp is not None:
        raise UsageError("--target-kbps and --target-bpp: give one of them")
    if job.crf is not None and (job.target_kbps is not None or job.target_bpp is not None):
        raise UsageError("--crf and --target-kbps/--target-bpp: give one rate control")
    if job.side_stream_budget is not None:
        if job.side_stream == "none":
            raise UsageError("--side-stream-budget limits a side stream: add --side-stream cdre")
        SideBudget.parse(str(job.side_stream_budget))
    if not isinstance(job.preset, str) or not _NAME.match(job.preset):
        raise UsageError(f"--preset {job.preset!r}: not a preset name")
    _check_map_options(job.map_options)
    _check_scale(job)
    params = job.encoder_params
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
        for k, v in params.items()
    ):
        raise UsageError(f"encoder_params {params!r}: use an object of KEY: VALUE strings")
    job.encoder_params = {k: str(v) for k, v in params.items()}
    _check_measure(job)
    return notes


def _check_scale(job: EncodeJob) -> None:
    """``scale``: a number in (0, 1] or "auto", written canonically ("1", "0.75", "auto");
    ``scale_filter``: a downscaling filter name (vcmtool.resample)."""
    from vcmtool.resample import canonical_scale, check_filter

    job.scale = canonical_scale(job.scale)
    if job.scale_filter is not None:
        check_filter(job.scale_filter)


def _check_measure(job: EncodeJob) -> None:
    """The measurement options (vcmtool.quality): types, and libvmaf before any encode."""
    for name in ("measure", "vmaf"):
        if not isinstance(getattr(job, name), bool):
            raise UsageError(f"{name} {getattr(job, name)!r}: use true or false")
    if job.csv is not None and (not isinstance(job.csv, str) or not job.csv or job.csv == "-"):
        raise UsageError(f"--csv {job.csv!r}: name a file path")
    if job.vmaf and job.measure:
        from vcmtool.quality import check_vmaf

        check_vmaf()  # a missing libvmaf must not cost an encode first


__all__ = ["CTUS", "QP_MAX", "check_job", "max_threads"]
