"""The map stage's helpers: the QP-map source of a job, its context, maps computed for the
coded clip (``--scale``), whether maps stream frame by frame, and ``vcmtool qpmap``."""

from __future__ import annotations

import contextlib
import time

from vcmtool.atomic import atomic_path
from vcmtool.encoders import EncodeSettings, get_encoder
from vcmtool.errors import UsageError
from vcmtool.io.open import open_video
from vcmtool.jobcheck import check_job
from vcmtool.outputs import Output, check_outputs
from vcmtool.pipeline.job import EncodeJob, job_inputs
from vcmtool.pipeline.scale import ScalePlan, plan_scale, regrid_maps
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources import MapContext, QPMapSource, get_source


def map_context(job: EncodeJob, qp_range: tuple[int, int], src: QPMapSource | None = None) -> MapContext:
    """The run's MapContext; it hands ``src`` its typed options (built from ``job.map_options``
    by :func:`job_source`)."""
    return MapContext(
        qp=job.qp,
        ctu=job.ctu,
        qp_range=qp_range,
        task_model=job.task_model,
        map_interval=job.map_interval,
        intra_period=job.intra_period,
        options=job.map_options,
        source_options=src.options if src is not None else None,
    )


def job_source(job: EncodeJob) -> QPMapSource:
    """The QP-map source of ``job`` (``job.qpmap``), built with its options from ``map_options``."""
    return get_source(job.qpmap, job.map_options)


def compute_maps(
    job: EncodeJob, clip, qp_range: tuple[int, int], src: QPMapSource | None = None
) -> tuple[QPMaps, dict, float]:
    src = src or job_source(job)
    ctx = map_context(job, qp_range, src)
    t0 = time.perf_counter()
    maps = src.process(clip, ctx)
    dt = time.perf_counter() - t0
    maps.check_grid(clip.info.height, clip.info.width)
    return maps, {"source": src.describe(), **src.versions()}, dt


# Sources whose input is in original-size coordinates: their maps are made on the original frame
# and moved to the coded grid (vcmtool.resample, "QP maps").
_FULL_SIZE_SOURCES = ("dets",)


def full_size_source(job: EncodeJob) -> bool:
    return job.qpmap.partition(":")[0] in _FULL_SIZE_SOURCES


def compute_scaled_maps(
    job: EncodeJob, clip, plan: ScalePlan, qp_range: tuple[int, int], src: QPMapSource
) -> tuple[QPMaps, dict, float]:
    """:func:`compute_maps` for the coded clip of ``plan``: on the coded frames, or on the
    original frames and moved to the coded grid (``dets:``, and ``file:`` maps on the original
    grid)."""
    if plan.info is None:
        return compute_maps(job, clip, qp_range, src)
    if not full_size_source(job):
        try:
            return compute_maps(job, plan.coded, qp_range, src)
        except UsageError as e:
            if not job.qpmap.startswith("file:"):
                raise
            first = e
        try:
            maps, info, dt = compute_maps(job, clip, qp_range, src)
        except UsageError:
            ri = plan.info
            raise UsageError(
                f"{first}; with --scale a map file may be on the coded {ri.coded_width}x"
                f"{ri.coded_height} grid or on the original {ri.original_width}x{ri.original_height} grid"
            ) from None
        return regrid_maps(maps, plan), info, dt
    maps, info, dt = compute_maps(job, clip, qp_range, src)
    return regrid_maps(maps, plan), info, dt


def regrid_stream(grids, plan: ScalePlan, ctu: int):
    from vcmtool.resample import resample_grid

    ri = plan.info
    src_hw, dst_hw = (ri.original_height, ri.original_width), (ri.coded_height, ri.coded_width)
    for g in grids:
        yield resample_grid(g, ctu, src_hw, dst_hw)


def streams_maps(job: EncodeJob, src: QPMapSource, caps) -> bool:
    """Whether maps go to the encoder frame by frame as they are predicted."""
    return bool(caps.streams_maps and src.streams and job.target_kbps is None and job.target_bpp is None)


def run_qpmap(job: EncodeJob, output: str | None, overlay: str | None = None) -> tuple[QPMaps, dict]:
    """The maps an encode of ``job`` would apply (offset, clamped, reduced for ``job.codec``),
    written to ``output`` (.qpm) and ``overlay`` (PNG) when given: both files or neither."""
    from vcmtool.qpmap.overlay import write_clip_overlay
    from vcmtool.qpmap.qpm import write_qpm

    notes = check_job(job)
    outs = [Output(p, o) for p, o in ((output, "-o/--output"), (overlay, "--overlay")) if p]
    check_outputs(outs, job_inputs(job))
    enc = get_encoder(job.codec)
    caps = enc.capabilities()
    clip = open_video(job.input, job.size, job.fps, job.pix_fmt, job.skip, job.frames)
    plan = plan_scale(job, clip)  # --scale: the maps of the coded (scaled) clip
    src = job_source(job)
    maps, info, dt = compute_scaled_maps(job, clip, plan, caps.qp_range, src)
    notes += plan.notes + src.notes()
    if job.qp_offset:
        maps = maps.offset(job.qp_offset)
    maps = enc.prepare_maps(maps, EncodeSettings(allow_frame_qp=True))
    overlay_frame = None
    with contextlib.ExitStack() as staged:
        if output:
            write_qpm(staged.enter_context(atomic_path(output, parents=False)), maps)
        if overlay:
            tmp = staged.enter_context(atomic_path(overlay, parents=False))
            overlay_frame = write_clip_overlay(str(tmp), plan.coded, maps, caps.qp_range)
    stats = {
        "input": job.input,
        "output": output,
        **info,
        **maps.stats(),
        "map_s": round(dt, 4),
        "overlay_frame": overlay_frame,
        "notes": notes + clip.notes + maps.notes,
    }
    if plan.info is not None:
        stats["scale"] = {"scale": plan.scale, **plan.info.to_json(), "auto": plan.auto}
    return maps, stats
