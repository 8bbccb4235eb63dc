"""``--scale``: the plan that makes the encoder and the map source see a downscaled clip while
rates and quality refer to the original (:mod:`vcmtool.resample` has the filters, the rule
behind ``auto`` and the SEI that tells the receiver the original size), and the target-rate
conversion between original and coded pixels."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from vcmtool.errors import UsageError
from vcmtool.pipeline.job import EncodeJob
from vcmtool.qpmap.maps import QPMaps
from vcmtool.resample import ResampleInfo


@dataclass
class ScalePlan:
    """How ``job.scale`` applies to one clip: the clip the encoder and the map source see
    (``coded``: a :class:`~vcmtool.resample.ScaledClip`, or the clip itself) and the metadata the
    receiver needs (None when nothing is scaled)."""

    coded: object  # a Clip
    scale: float = 1.0
    info: ResampleInfo | None = None
    auto: dict | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def plan_scale(job: EncodeJob, clip) -> ScalePlan:
    from vcmtool import resample as rs

    req = rs.parse_scale(job.scale)
    if req == 1:
        return ScalePlan(clip)
    t0 = time.perf_counter()
    auto = None
    if req == "auto":
        if job.target_kbps is not None or job.target_bpp is not None:
            raise UsageError("--scale auto chooses from the base QP; with a target rate give --scale F")
        scale, auto = rs.choose_scale(clip, job.qp + job.qp_offset, job.task_model)
    else:
        scale = float(req)
    info = clip.info
    cw, ch = rs.coded_size(info.width, info.height, scale)
    plan = ScalePlan(clip, scale, auto=auto, seconds=time.perf_counter() - t0)
    if (cw, ch) == (info.width, info.height):
        if scale < 1:
            plan.notes.append(f"--scale {scale:g} keeps the original size {info.width}x{info.height}")
        return plan
    filt = rs.check_filter(job.scale_filter)
    plan.coded = rs.ScaledClip.wrap(clip, cw, ch, filt)
    plan.info = ResampleInfo(info.width, info.height, cw, ch, filt, info.fps)
    return plan


def regrid_maps(maps: QPMaps, plan: ScalePlan) -> QPMaps:
    from vcmtool.resample import resample_grid

    ri = plan.info
    src_hw, dst_hw = (ri.original_height, ri.original_width), (ri.coded_height, ri.coded_width)
    data = np.stack([resample_grid(g, maps.ctu, src_hw, dst_hw) for g in maps.data])
    note = (
        f"QP maps made on the original {ri.original_width}x{ri.original_height} grid, moved to the "
        f"coded {ri.coded_width}x{ri.coded_height} grid (min QP over the covered CTUs)"
    )
    return QPMaps(data, maps.ctu, [*maps.notes, note])


def apply_target_scaled(job: EncodeJob, cclip, plan: ScalePlan, encoder, settings, maps: QPMaps):
    """MFIBA target rate on the coded clip. Every bpp vcmtool reports is per *original* pixel;
    the controller counts coded pixels, so ``--target-bpp`` is converted to coded pixels on the
    way in and the block's ``bpp`` back on the way out (kbps do not depend on the size)."""
    from vcmtool.ratecontrol.target import apply_target

    if plan.info is None:
        return apply_target(job, cclip, encoder, settings, maps)
    ri = plan.info
    ratio = (ri.original_width * ri.original_height) / (ri.coded_width * ri.coded_height)
    if job.target_bpp is not None:
        job = dataclasses.replace(job, target_bpp=job.target_bpp * ratio)
    maps, info = apply_target(job, cclip, encoder, settings, maps)
    info["bpp"] = round(info["bpp"] / ratio, 6)
    return maps, info
