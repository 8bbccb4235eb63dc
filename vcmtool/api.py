"""The Python API: what the CLI does, callable from a notebook or another program.

``encode`` and ``qpmaps`` take the CLI's options as keyword arguments (``qpmap="roi"``,
``qp=30``, ``codec="x265"``, ``params={"rd": "1"}``, a QP-map source's options by their
``map_options`` keys: ``roi_qp_in=26``, a plug-in's ``stripes_width=2``, ...) and return the same
report ``vcmtool encode --json`` prints. They apply the same checks (option ranges, the output
policy, ``overwrite=False`` refusing existing files) and raise :class:`vcmtool.errors.VcmError`
subclasses (``UsageError``, ``InputError``, ``EncoderError``) where the CLI prints one line.
``open_video`` opens any input the CLI reads and returns a re-iterable clip of frames.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from vcmtool.io.open import Clip
from vcmtool.io.open import open_video as _open_video
from vcmtool.outputs import refuse_existing
from vcmtool.pipeline import EncodeJob, crf_base, default_output, job_outputs, run_encode, run_qpmap
from vcmtool.qpmap.maps import QPMaps

_JOB_FIELDS = {f.name for f in fields(EncodeJob)} - {"input", "output", "map_options", "encoder_params"}
PathLike = str | os.PathLike[str]


def _job(
    input: PathLike, output: PathLike | None, params: dict[str, Any] | None, options: dict[str, Any]
) -> EncodeJob:
    from vcmtool.errors import UsageError
    from vcmtool.qpmap.sources import option_groups

    # the sources' own options, by their map_options keys (roi_qp_in=26, a plug-in's); checked
    # with the job (vcmtool.jobcheck), like the CLI's and a manifest's
    source_opts = {
        s.key: s for g in option_groups(load_plugins=bool(set(options) - _JOB_FIELDS)) for s in g.specs
    }
    map_opts = {k: options.pop(k) for k in list(options) if k in source_opts}
    unknown = sorted(set(options) - _JOB_FIELDS)
    if unknown:
        raise UsageError(
            f"unknown option(s) {', '.join(unknown)}; use: "
            f"{', '.join(sorted(_JOB_FIELDS | set(source_opts)))}, params"
        )
    for k, v in map_opts.items():
        if source_opts[k].kind is list and isinstance(v, str):  # "person,car" as on the CLI
            map_opts[k] = [c.strip() for c in v.split(",") if c.strip()] or None
    return EncodeJob(
        input=os.fspath(input),
        output=None if output is None else os.fspath(output),
        map_options=map_opts,
        encoder_params={k: str(v) for k, v in (params or {}).items()},
        **crf_base(options),
    )


def encode(
    input: PathLike,
    output: PathLike | None = None,
    *,
    overwrite: bool = False,
    params: dict[str, Any] | None = None,
    **options: Any,
) -> dict:
    """Encode ``input`` to ``output`` (default ``<stem>.<codec>.<ext>``); returns the report.

    >>> report = vcmtool.encode("clip.y4m", "clip.hevc", qpmap="roi", qp=32)   # doctest: +SKIP
    >>> report["bpp"], report["psnr_y"]                                          # doctest: +SKIP
    """
    job = _job(input, output, params, options)
    if not overwrite:
        from vcmtool.encoders import ENCODERS

        ext = ENCODERS.get(job.codec).capabilities().extension
        refuse_existing(job_outputs(job, job.output or default_output(job, ext)), "pass overwrite=True")
    return run_encode(job)


def qpmaps(
    input: PathLike,
    output: PathLike | None = None,
    *,
    overlay: PathLike | None = None,
    overwrite: bool = False,
    **options: Any,
) -> tuple[QPMaps, dict]:
    """The maps an encode would apply (and their statistics); written as .qpm when ``output``
    is given, with an overlay PNG when ``overlay`` is."""
    job = _job(input, None, None, options)
    out = None if output is None else os.fspath(output)
    ov = None if overlay is None else os.fspath(overlay)
    if not overwrite:
        from vcmtool.outputs import Output

        refuse_existing(
            [Output(p, o) for p, o in ((out, "output"), (ov, "overlay")) if p], "pass overwrite=True"
        )
    return run_qpmap(job, out, ov)


def open_video(
    path: PathLike,
    size: str | None = None,
    fps: float | None = None,
    pix_fmt: str | None = None,
    skip: int = 0,
    frames: int | None = None,
) -> Clip:
    """Open a .yuv (with ``size``), .y4m, image or any container; ``"-"`` reads stdin."""
    return _open_video(os.fspath(path), size, fps, pix_fmt, skip, frames)


__all__ = ["encode", "open_video", "qpmaps"]
