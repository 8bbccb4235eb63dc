"""One encode, end to end: source -> QP maps -> encoder -> bitstream -> measured report.

``EncodeJob`` holds every option; ``run_encode`` does the work and returns the JSON report.
The CLI, batch runner and bench all call this, so an encode means the same thing everywhere.

Maps reach the encoder in one of two ways. *Streamed*: when the source predicts maps frame by
frame (``auto``, ``eljrd``, ``roi``) and the encoder takes them that way (kvazaar, native
x265/x264), a background thread predicts while the encoder encodes (``overlap``; without it the
same stream is drained first, which gives the same maps and bytes). *Precomputed*: every other
combination, and features that need all maps first (MFIBA targets, frame-QP-only encoders).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vcmtool.atomic import atomic_path
from vcmtool.decode import packet_bits
from vcmtool.encoders import EncodeSettings, get_encoder
from vcmtool.errors import UsageError
from vcmtool.io.open import open_video
from vcmtool.jobcheck import check_job
from vcmtool.outputs import Output, check_outputs
from vcmtool.provenance import base_versions, md5_file
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources import MapContext, QPMapSource, get_source
from vcmtool.qpmap.stream import MapFeed, MapProducer
from vcmtool.quality import measure_quality, report_fields, write_frame_csv
from vcmtool.resample import SEI_CODECS, ResampleInfo
from vcmtool.resample import embed as embed_resample_sei
from vcmtool.sidestreams import get_side_stream

log = logging.getLogger(__name__)


@dataclass
class EncodeJob:
    input: str
    output: str | None = None
    codec: str = "kvazaar"
    qpmap: str = "none"
    qp: int = 32
    qp_offset: int = 0
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
    map_interval: str | int = "auto"  # N, "auto" or "auto:N" (vcmtool.qpmap.propagate); 1: every frame
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
    target_kbps: float | None = None  # MFIBA target-rate allocation (vcmtool.ratecontrol.target)
    target_bpp: float | None = None
    overlap: bool = True  # predict streamed maps while encoding (False: all maps first; same bytes)
    scale: str = "1"  # code at this fraction of the size ("0.75"), or "auto" (vcmtool.resample)
    scale_filter: str | None = None  # downscaling filter (None: vcmtool.resample.DOWN_FILTER)


def default_output(job: EncodeJob, ext: str) -> str:
    stem = Path(job.input).stem if job.input != "-" else "stdin"
    return str(Path(f"{stem}.{job.codec}{ext}"))


def map_context(job: EncodeJob, qp_range: tuple[int, int], src: QPMapSource | None = None) -> MapContext:
    """The run's MapContext; it hands ``src`` its typed options (built from ``job.map_options``
    by :func:`job_source`)."""
    return MapContext(
        qp=job.qp,
        ctu=job.ctu,
        qp_range=qp_range,
        task_model=job.task_model,
        map_interval=job.map_interval,
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


def _regrid(maps: QPMaps, plan: ScalePlan) -> QPMaps:
    from vcmtool.resample import resample_grid

    ri = plan.info
    src_hw, dst_hw = (ri.original_height, ri.original_width), (ri.coded_height, ri.coded_width)
    data = np.stack([resample_grid(g, maps.ctu, src_hw, dst_hw) for g in maps.data])
    note = (
        f"QP maps made on the original {ri.original_width}x{ri.original_height} grid, moved to the "
        f"coded {ri.coded_width}x{ri.coded_height} grid (min QP over the covered CTUs)"
    )
    return QPMaps(data, maps.ctu, [*maps.notes, note])


# Sources whose input is in original-size coordinates: their maps are made on the original frame
# and moved to the coded grid (vcmtool.resample, "QP maps").
_FULL_SIZE_SOURCES = ("dets",)


def _full_size(job: EncodeJob) -> bool:
    return job.qpmap.partition(":")[0] in _FULL_SIZE_SOURCES


def compute_scaled_maps(
    job: EncodeJob, clip, plan: ScalePlan, qp_range: tuple[int, int], src: QPMapSource
) -> tuple[QPMaps, dict, float]:
    """:func:`compute_maps` for the coded clip of ``plan``: on the coded frames, or on the
    original frames and moved to the coded grid (``dets:``, and ``file:`` maps on the original
    grid)."""
    if plan.info is None:
        return compute_maps(job, clip, qp_range, src)
    if not _full_size(job):
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
        return _regrid(maps, plan), info, dt
    maps, info, dt = compute_maps(job, clip, qp_range, src)
    return _regrid(maps, plan), info, dt


def _regrid_stream(grids, plan: ScalePlan, ctu: int):
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


def _fps(frames: int, seconds: float) -> float | None:
    return round(frames / seconds, 3) if seconds > 0 else None


def run_encode(job: EncodeJob) -> dict:
    t_start = time.perf_counter()
    notes: list[str] = check_job(job)
    log.debug("job %s", job)
    encoder = get_encoder(job.codec)
    settings = EncodeSettings(
        job.preset, job.intra_period, job.threads, job.allow_frame_qp, dict(job.encoder_params)
    )
    encoder.check_settings(settings)
    caps = encoder.capabilities()
    out = Path(job.output or default_output(job, caps.extension))
    check_outputs(job_outputs(job, out), job_inputs(job))  # before any work: nothing is lost
    probe = encoder.probe()
    if not probe.available:
        raise UsageError(f"encoder {job.codec} is not available here: {probe.detail}")
    clip = open_video(job.input, job.size, job.fps, job.pix_fmt, job.skip, job.frames)
    info = clip.info
    notes += clip.notes
    # --scale: the encoder and the map source see the coded (scaled) clip ``cclip``; rates and
    # quality are measured against the original ``clip`` (vcmtool.resample)
    plan = plan_scale(job, clip)
    cclip, cinfo = plan.coded, plan.coded.info
    notes += plan.notes
    if info.bit_depth not in caps.bit_depths:
        # Every backend takes 8-bit; a 10-bit source loses its two low bits, and PSNR is still
        # measured against the 10-bit original so the report shows that cost.
        notes.append(f"{info.bit_depth}-bit input converted to 8-bit for {job.codec}")
    if caps.block_qp is not None and job.ctu % caps.block_qp and caps.block_qp > job.ctu:
        raise UsageError(
            f"{job.codec} sets QPs per {caps.block_qp}x{caps.block_qp}; use --ctu "
            f"{caps.block_qp} or a multiple"
        )
    n_frames = clip.count()
    side_stream = get_side_stream(job.side_stream)  # before encoding: a typo must not cost an encode
    src = job_source(job)
    streamed = streams_maps(job, src, caps)
    # a closed-loop source (``loop``) reads the encoder's own output as it is produced
    tap = getattr(src, "recon_tap", None) if streamed else None
    if tap is not None:
        tap.bind(encoder, caps.codec)
    overlapped = streamed and (job.overlap or tap is not None)
    target_info = None
    producer: MapProducer | None = None
    feed: MapFeed | None = None
    t_map = 0.0  # time producing maps (in the background thread when overlapped)
    t_premap = 0.0  # map time spent before the encoder started (all of it without overlap)
    # Every output is staged as a temp file beside its target and published together at the end:
    # a failure anywhere (an unwritable overlay folder, Ctrl-C, SIGTERM) leaves none of them.
    try:
        with contextlib.ExitStack() as staged:
            tmp = staged.enter_context(atomic_path(out, parents=False))
            tmp_qpm = staged.enter_context(atomic_path(job.qpm_out, parents=False)) if job.qpm_out else None
            tmp_overlay = (
                staged.enter_context(atomic_path(job.overlay, parents=False)) if job.overlay else None
            )
            tmp_side = (
                staged.enter_context(atomic_path(job.side_stream_out, parents=False))
                if job.side_stream_out
                else None
            )
            tmp_csv = (
                staged.enter_context(atomic_path(job.csv, parents=False)) if job.csv and job.measure else None
            )
            if streamed:
                ctx = map_context(job, caps.qp_range, src)
                hint = src.qp_range_hint(ctx)
                if hint is not None:
                    hint = (hint[0] + job.qp_offset, hint[1] + job.qp_offset)
                prep = encoder.frame_prep(settings, hint)
                if plan.info is not None and _full_size(job):
                    source_maps = _regrid_stream(src.stream(clip, ctx), plan, job.ctu)
                else:
                    source_maps = src.stream(cclip, ctx)
                if overlapped:
                    producer = MapProducer(source_maps)
                    grids = producer
                else:
                    t0 = time.perf_counter()
                    grids = list(source_maps)
                    t_map = t_premap = time.perf_counter() - t0
                feed = MapFeed(grids, job.ctu, cinfo.height, cinfo.width, prep, job.qp_offset)
                if tap is not None:  # the encoder hands over its bytes, or names its output file
                    feed.on_bytes, feed.on_output = tap.push, tap.tail  # type: ignore[attr-defined]
            else:
                raw_maps, map_info, t_map = compute_scaled_maps(job, clip, plan, caps.qp_range, src)
                maps = raw_maps.offset(job.qp_offset) if job.qp_offset else raw_maps
                if job.target_kbps is not None or job.target_bpp is not None:
                    maps, target_info = _apply_target(job, cclip, plan, encoder, settings, maps)
                maps = encoder.prepare_maps(maps, settings).extend(n_frames)
                notes += maps.notes
                t_premap = t_map

            t0 = time.perf_counter()
            with tqdm(total=n_frames, desc=f"encode {job.codec}", unit="f", leave=False, disable=None) as bar:
                if feed is not None:
                    result = encoder.encode_stream(cclip, feed, settings, tmp, bar.update)
                else:
                    result = encoder.encode(cclip, maps, settings, tmp, bar.update)
            t_enc_wall = time.perf_counter() - t0
            log.info("%s: %s", job.codec, " ".join(map(str, result.command)))
            if feed is not None:
                feed.finish()  # the source's own timings and versions are final after its end
                maps = result.maps
                notes += maps.notes
                map_info = {"source": src.describe(), **src.versions()}
                if producer is not None:
                    t_map = producer.busy_s
            sei_bits = 0
            if plan.info is not None:  # the original size goes into the bitstream (its bits count)
                if caps.codec in SEI_CODECS:
                    sei_bits = 8 * embed_resample_sei(tmp, plan.info, caps.codec)
                else:
                    notes.append(
                        f"{caps.codec} bitstreams carry no SEI: the original size "
                        f"{info.width}x{info.height} is not in the stream (vcmtool decode --size)"
                    )
            bits = packet_bits(tmp)
            side = None
            if side_stream is not None:
                side = side_stream(cclip, Path(tmp), caps.codec, str(tmp_side) if tmp_side else None)
            quality = None
            if job.measure:  # against the original: scaled streams are upsampled first
                decoded = None
                if plan.info is not None:
                    from vcmtool.decode import decoded_frames
                    from vcmtool.resample import upsample

                    decoded = upsample(decoded_frames(Path(tmp), info.bit_depth), plan.info)
                quality = measure_quality(clip, tmp, job.vmaf, job.threads, decoded=decoded)
            notes += [n for n in result.notes if n not in notes]
            outputs = {str(out): md5_file(tmp)}
            if tmp_qpm is not None:
                from vcmtool.qpmap.qpm import write_qpm

                write_qpm(tmp_qpm, maps)
                outputs[str(job.qpm_out)] = md5_file(tmp_qpm)
            overlay_frame = None
            if tmp_overlay is not None:
                from vcmtool.qpmap.overlay import write_clip_overlay

                overlay_frame = write_clip_overlay(str(tmp_overlay), cclip, maps, caps.qp_range)
                outputs[str(job.overlay)] = md5_file(tmp_overlay)
            if tmp_side is not None:
                outputs[str(job.side_stream_out)] = md5_file(tmp_side)
            if tmp_csv is not None:
                write_frame_csv(tmp_csv, quality, bits, maps, n_frames, job.vmaf)
                outputs[str(job.csv)] = md5_file(tmp_csv)
            notes += [n for n in src.notes() if n not in notes]
            n_bytes = tmp.stat().st_size
        # leaving the block publishes every output (renames within their folders)
    finally:
        if tap is not None:
            tap.close()
        if producer is not None:
            producer.close()
    t_wait = feed.wait_s if overlapped and feed is not None else 0.0
    t_enc = t_enc_wall - t_wait

    total_bits = sum(bits) + (side["bits"] if side else 0)  # everything transmitted
    pixels = info.width * info.height * n_frames  # the original size, scaled or not
    t_total = time.perf_counter() - t_start
    report = {
        "input": job.input,
        "output": str(out),
        "codec": caps.codec,
        "encoder": job.codec,
        "width": info.width,
        "height": info.height,
        "fps": float(info.fps),
        "pix_fmt": info.pix_fmt,
        "frames": n_frames,
        "bytes": n_bytes,
        "bits": total_bits,
        "bpp": total_bits / pixels,
        "kbps": total_bits * float(info.fps) / max(1, n_frames) / 1000.0,
        "bits_per_frame": bits,
        "psnr_y": None if quality is None else round(quality.mean_psnr_y, 4),
        "psnr_y_per_frame": None if quality is None else [round(p, 4) for p in quality.psnr_y],
        **report_fields(quality, job.vmaf),  # psnr_u/v, ssim_y, ssim (All), vmaf: see quality.py
        "qp": job.qp,
        "qp_offset": job.qp_offset,
        # --scale: width/height above are the original size (bpp and quality refer to it)
        "scale": plan.scale if plan.info is not None else 1.0,
        "coded_width": cinfo.width,
        "coded_height": cinfo.height,
        "original_width": info.width,
        "original_height": info.height,
        "qpmap": {**map_info, **maps.stats(), "overlay_frame": overlay_frame},
        "notes": notes,
        "md5": outputs,
        "versions": {
            **base_versions(),
            "ffmpeg/encoder": probe.version,
            **map_info,
            "encoder_detail": probe.detail,
        },
        # map_s + encode_s + other_s add up to total_s without overlap; with it, map_s ran in
        # the background and only map_wait_s (the encoder waiting for a map) is on the wall clock.
        "timing": {
            "map_s": round(t_map, 4),
            "encode_s": round(t_enc, 4),
            "other_s": round(t_total - t_premap - t_enc_wall, 4),
            "total_s": round(t_total, 4),
            "map_wait_s": round(t_wait, 4),
            "map_overlapped": overlapped,
            "measure_s": round(quality.seconds, 4) if quality is not None else 0.0,  # within other_s
            "frames_predicted": src.predicted,
            "predicted_why": dict(src.keyframe_reasons),
            "predict_s": round(src.predict_s, 4),
            "map_predict_fps": _fps(src.predicted, src.predict_s),
            "map_fps": _fps(n_frames, t_map),
            "encode_fps": _fps(n_frames, t_enc),
            "fps": _fps(n_frames, t_total),
        },
        "options": {k: v for k, v in asdict(job).items() if k not in ("input", "output")},
    }
    report["versions"].pop("source", None)
    if plan.info is not None or plan.auto is not None:
        report["resample"] = {
            "requested": job.scale,
            "scale": plan.scale,
            **(plan.info.to_json() if plan.info is not None else {}),
            "sei_bits": sei_bits,
            "carrier": "sei" if sei_bits else "none",
            "auto": plan.auto,
            "seconds": round(plan.seconds, 4),
        }
    if side is not None:
        side["kbps"] = side["bits"] * float(info.fps) / max(1, n_frames) / 1000.0
        report["side_stream"] = side
        if job.side_stream_out:
            side["carrier"] = str(job.side_stream_out)
    if target_info is not None:
        from vcmtool.ratecontrol.target import target_report

        report["target"] = target_report(target_info, report)
    return report


def _apply_target(job: EncodeJob, cclip, plan: ScalePlan, encoder, settings, maps: QPMaps):
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
