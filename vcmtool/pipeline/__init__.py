"""One encode, end to end: source -> QP maps -> encoder -> bitstream -> measured report.

``EncodeJob`` (:mod:`.job`) holds every option; ``run_encode`` (:mod:`.encode`) runs the stages
and returns the typed report (:mod:`.report`). The CLI, batch runner, bench and Python API all
call it, so an encode means the same thing everywhere. :mod:`.maps` has the map stage's helpers
and ``run_qpmap`` (``vcmtool qpmap``), :mod:`.scale` the ``--scale`` plan.

Maps reach the encoder in one of two ways. *Streamed*: when the source predicts maps frame by
frame (``auto``, ``eljrd``, ``roi``, ``loop``) and the encoder takes them that way (kvazaar,
native x265/x264), a background thread predicts while the encoder encodes (``overlap``; without
it the same stream is drained first, which gives the same maps and bytes). *Precomputed*: every
other combination, and features that need all maps first (MFIBA targets, frame-QP-only encoders).
"""

from __future__ import annotations

from vcmtool.pipeline.encode import run_encode
from vcmtool.pipeline.job import EncodeJob, crf_base, default_output, job_inputs, job_outputs
from vcmtool.pipeline.maps import compute_maps, job_source, map_context, run_qpmap, streams_maps
from vcmtool.pipeline.report import EncodeReport
from vcmtool.pipeline.scale import ScalePlan, plan_scale

__all__ = [
    "EncodeJob",
    "EncodeReport",
    "ScalePlan",
    "compute_maps",
    "crf_base",
    "default_output",
    "job_inputs",
    "job_outputs",
    "job_source",
    "map_context",
    "plan_scale",
    "run_encode",
    "run_qpmap",
    "streams_maps",
]
