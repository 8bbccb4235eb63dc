"""``run_encode``: one encode as a short orchestration of stages.

    setup -> map stage (streamed or precomputed; rate control) -> encode -> post-encode
    (resample SEI, side streams) -> measurement -> extra outputs -> report

Each stage is a function over :class:`EncodeSetup` (what the job resolved to: encoder,
settings, clip, scale plan, map source) and the previous stages' results. Every output is staged
as a temp file beside its target and published together at the end: a failure anywhere (an
unwritable overlay folder, Ctrl-C, SIGTERM) leaves none of them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vcmtool.atomic import atomic_path
from vcmtool.decode import packet_bits
from vcmtool.encoders import EncodeSettings, get_encoder
from vcmtool.errors import UsageError
from vcmtool.io.open import open_video
from vcmtool.jobcheck import check_job
from vcmtool.outputs import check_outputs
from vcmtool.pipeline.job import EncodeJob, default_output, job_inputs, job_outputs
from vcmtool.pipeline.maps import (
    compute_scaled_maps,
    full_size_source,
    job_source,
    map_context,
    regrid_stream,
    streams_maps,
)
from vcmtool.pipeline.report import EncodeReport, SideStreamReport
from vcmtool.pipeline.scale import ScalePlan, apply_target_scaled, plan_scale
from vcmtool.provenance import base_versions, md5_file
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.sources import QPMapSource
from vcmtool.qpmap.stream import MapFeed, MapProducer
from vcmtool.quality import Quality, measure_quality, report_fields, write_frame_csv
from vcmtool.resample import SEI_CODECS
from vcmtool.resample import embed as embed_resample_sei
from vcmtool.sidestreams import get_side_stream
from vcmtool.sidestreams.budget import SideBudget

log = logging.getLogger(__name__)


@dataclass
class EncodeSetup:
    """What a job resolved to, checked before any work; every stage reads it."""

    job: EncodeJob
    encoder: Any  # an Encoder
    settings: EncodeSettings
    caps: Any  # the encoder's Capabilities
    probe: Any  # the encoder's Probe
    out: Path
    clip: Any  # the original Clip: rates and quality refer to it
    plan: ScalePlan  # plan.coded is what the encoder and the map source see
    n_frames: int
    src: QPMapSource
    side_stream: Any  # the post-encode hook, or None
    streamed: bool  # maps go to the encoder frame by frame
    tap: Any  # a closed-loop source's reader of the encoder's output, or None
    overlapped: bool  # maps are predicted in a background thread while encoding
    notes: list[str] = field(default_factory=list)


@dataclass
class MapStage:
    """The map stage's result: precomputed ``maps``, or a ``feed`` the encoder pulls from."""

    maps: QPMaps | None = None
    feed: MapFeed | None = None
    producer: MapProducer | None = None
    map_info: dict = field(default_factory=dict)
    target_info: dict | None = None
    t_map: float = 0.0  # time producing maps (in the background thread when overlapped)
    t_premap: float = 0.0  # map time spent before the encoder started (all of it without overlap)


@dataclass(frozen=True)
class WallClock:
    """Wall seconds of one encode: the encoder run (waits for maps included), the part of it spent
    waiting for streamed maps, and the whole encode."""

    encode_wall: float
    map_wait: float
    total: float


@dataclass
class Staged:
    """Temp files of the outputs, published together when the staging block ends."""

    bitstream: Path
    qpm: Path | None
    overlay: Path | None
    side: Path | None
    csv: Path | None


def setup(job: EncodeJob, source: QPMapSource | None = None) -> EncodeSetup:
    """Check the job, its outputs and the encoder; open the clip; plan the scale; build the map
    source (or take ``source``, built by the caller) and the side-stream hook. Nothing is encoded
    or written yet."""
    notes: list[str] = check_job(job)
    log.debug("job %s", job)
    encoder = get_encoder(job.codec)
    params = dict(job.encoder_params)
    settings = EncodeSettings(
        job.preset, job.intra_period, job.threads, job.allow_frame_qp, params, crf=job.crf, crf_base=job.qp
    )
    encoder.check_settings(settings)
    if job.crf is not None and job.qpmap != "none":
        notes.append(
            f"--crf {job.crf:g}: {job.codec}'s rate control set each frame's QP; the map's deviations "
            f"from QP {job.qp} rode on it as offsets (the reported maps are the requested QPs)"
        )
    caps = encoder.capabilities()
    out = Path(job.output or default_output(job, caps.extension))
    check_outputs(job_outputs(job, out), job_inputs(job))  # before any work: nothing is lost
    probe = encoder.probe()
    if not probe.available:
        raise UsageError(f"encoder {job.codec} is not available here: {probe.detail}")
    clip = open_video(job.input, job.size, job.fps, job.pix_fmt, job.skip, job.frames)
    info = clip.info
    notes += clip.notes
    # --scale: the encoder and the map source see the coded (scaled) clip; rates and quality are
    # measured against the original clip (vcmtool.resample)
    plan = plan_scale(job, clip)
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
    src = source if source is not None else job_source(job)
    streamed = streams_maps(job, src, caps)
    # a closed-loop source (``loop``) reads the encoder's own output as it is produced
    tap = getattr(src, "recon_tap", None) if streamed else None
    if tap is not None:
        tap.bind(encoder, caps.codec)
    overlapped = streamed and (job.overlap or tap is not None)
    return EncodeSetup(
        job, encoder, settings, caps, probe, out, clip, plan, n_frames, src, side_stream, streamed, tap,
        overlapped, notes,
    )  # fmt: skip


def stage_outputs(stack: contextlib.ExitStack, s: EncodeSetup) -> Staged:
    job = s.job

    def staged(path: str | None, when: bool = True) -> Path | None:
        return stack.enter_context(atomic_path(path, parents=False)) if path and when else None

    return Staged(
        stack.enter_context(atomic_path(s.out, parents=False)),
        staged(job.qpm_out),
        staged(job.overlay),
        staged(job.side_stream_out),
        staged(job.csv, job.measure),
    )


def map_stage(s: EncodeSetup, m: MapStage) -> None:
    """Fill ``m``. Streamed: a feed over the source's per-frame maps (a background producer when
    overlapped; ``m`` holds it from its start, so the caller closes it whatever fails next).
    Precomputed: every map first, offset, MFIBA target rate, reduced to what the encoder takes."""
    job, caps, cclip = s.job, s.caps, s.plan.coded
    if s.streamed:
        ctx = map_context(job, caps.qp_range, s.src)
        hint = s.src.qp_range_hint(ctx)
        if hint is not None:
            hint = (hint[0] + job.qp_offset, hint[1] + job.qp_offset)
        prep = s.encoder.frame_prep(s.settings, hint)
        if s.plan.info is not None and full_size_source(job):
            source_maps = regrid_stream(s.src.stream(s.clip, ctx), s.plan, job.ctu)
        else:
            source_maps = s.src.stream(cclip, ctx)
        if s.overlapped:
            m.producer = MapProducer(source_maps)
            grids = m.producer
        else:
            t0 = time.perf_counter()
            grids = list(source_maps)
            m.t_map = m.t_premap = time.perf_counter() - t0
        info = cclip.info
        m.feed = MapFeed(grids, job.ctu, info.height, info.width, prep, job.qp_offset)
        if s.tap is not None:  # the encoder hands over its bytes, or names its output file
            m.feed.on_bytes, m.feed.on_output = s.tap.push, s.tap.tail  # type: ignore[attr-defined]
        return
    raw_maps, map_info, t_map = compute_scaled_maps(job, s.clip, s.plan, caps.qp_range, s.src)
    maps = raw_maps.offset(job.qp_offset) if job.qp_offset else raw_maps
    target_info = None
    if job.target_kbps is not None or job.target_bpp is not None:
        maps, target_info = apply_target_scaled(job, cclip, s.plan, s.encoder, s.settings, maps)
    m.maps = s.encoder.prepare_maps(maps, s.settings).extend(s.n_frames)
    s.notes += m.maps.notes
    m.map_info, m.target_info, m.t_map, m.t_premap = map_info, target_info, t_map, t_map


def encode_stage(s: EncodeSetup, m: MapStage, tmp: Path) -> tuple[Any, float]:
    """The encoder run; returns its EncodeResult and the wall time. Afterwards ``m.maps`` are the
    maps that were applied (a streamed source's are known only now)."""
    job, cclip = s.job, s.plan.coded
    t0 = time.perf_counter()
    with tqdm(total=s.n_frames, desc=f"encode {job.codec}", unit="f", leave=False, disable=None) as bar:
        if m.feed is not None:
            result = s.encoder.encode_stream(cclip, m.feed, s.settings, tmp, bar.update)
        else:
            result = s.encoder.encode(cclip, m.maps, s.settings, tmp, bar.update)
    t_wall = time.perf_counter() - t0
    log.info("%s: %s", job.codec, " ".join(map(str, result.command)))
    if m.feed is not None:
        m.feed.finish()  # the source's own timings and versions are final after its end
        m.maps = result.maps
        s.notes += m.maps.notes
        m.map_info = {"source": s.src.describe(), **s.src.versions()}
        if m.producer is not None:
            m.t_map = m.producer.busy_s
    return result, t_wall


def post_encode(s: EncodeSetup, staged: Staged) -> tuple[int, list[int], SideStreamReport | None]:
    """What goes into or beside the finished bitstream: the original size under ``--scale``
    (SEI), then the side stream. Returns the resample SEI bits, the video bits per access unit
    and the side stream's report."""
    job, caps, plan, tmp = s.job, s.caps, s.plan, staged.bitstream
    sei_bits = 0
    if plan.info is not None:  # the original size goes into the bitstream (its bits count)
        if caps.codec in SEI_CODECS:
            sei_bits = 8 * embed_resample_sei(tmp, plan.info, caps.codec)
        else:
            info = s.clip.info
            s.notes.append(
                f"{caps.codec} bitstreams carry no SEI: the original size "
                f"{info.width}x{info.height} is not in the stream (vcmtool decode --size)"
            )
    bits = packet_bits(tmp)
    side = None
    if s.side_stream is not None:
        budget = {"budget": SideBudget.parse(job.side_stream_budget)} if job.side_stream_budget else {}
        out_file = str(staged.side) if staged.side else None
        side = s.side_stream(plan.coded, Path(tmp), caps.codec, out_file, **budget)
    return sei_bits, bits, side


def measure(s: EncodeSetup, tmp: Path) -> Quality | None:
    """PSNR/SSIM[/VMAF] against the original; scaled streams are upsampled first."""
    job, plan = s.job, s.plan
    if not job.measure:
        return None
    decoded = None
    if plan.info is not None:
        from vcmtool.decode import decoded_frames
        from vcmtool.resample import upsample

        decoded = upsample(decoded_frames(Path(tmp), s.clip.info.bit_depth), plan.info)
    return measure_quality(s.clip, tmp, job.vmaf, job.threads, decoded=decoded)


def write_extras(
    s: EncodeSetup,
    staged: Staged,
    maps: QPMaps,
    quality: Quality | None,
    bits: list[int],
    side: SideStreamReport | None,
) -> tuple[dict[str, str], int | None]:
    """The .qpm, overlay and CSV outputs; returns the md5 of every output and the overlay frame."""
    job = s.job
    outputs = {str(s.out): md5_file(staged.bitstream)}
    if staged.qpm is not None:
        from vcmtool.qpmap.qpm import write_qpm

        write_qpm(staged.qpm, maps)
        outputs[str(job.qpm_out)] = md5_file(staged.qpm)
    overlay_frame = None
    if staged.overlay is not None:
        from vcmtool.qpmap.overlay import write_clip_overlay

        overlay_frame = write_clip_overlay(str(staged.overlay), s.plan.coded, maps, s.caps.qp_range)
        outputs[str(job.overlay)] = md5_file(staged.overlay)
    if staged.side is not None:
        outputs[str(job.side_stream_out)] = md5_file(staged.side)
    if staged.csv is not None:
        side_bits = side.get("frame_bits") if side is not None else None
        write_frame_csv(staged.csv, quality, bits, maps, s.n_frames, job.vmaf, side_bits)
        outputs[str(job.csv)] = md5_file(staged.csv)
    return outputs, overlay_frame


def _fps(frames: int, seconds: float) -> float | None:
    return round(frames / seconds, 3) if seconds > 0 else None


def run_encode(job: EncodeJob, source: QPMapSource | None = None) -> EncodeReport:
    """Encode ``job`` end to end and return its report (the JSON of ``vcmtool encode --json``).

    ``source``: a QP-map source built by the caller (to inspect its state afterwards, or one not
    in the registry); by default the job's ``qpmap`` with its ``map_options``."""
    t_start = time.perf_counter()
    s = setup(job, source)
    m = MapStage()
    try:
        with contextlib.ExitStack() as stack:
            staged = stage_outputs(stack, s)
            map_stage(s, m)
            result, t_enc_wall = encode_stage(s, m, staged.bitstream)
            sei_bits, bits, side = post_encode(s, staged)
            quality = measure(s, staged.bitstream)
            s.notes += [n for n in result.notes if n not in s.notes]
            outputs, overlay_frame = write_extras(s, staged, m.maps, quality, bits, side)
            s.notes += [n for n in s.src.notes() if n not in s.notes]
            n_bytes = staged.bitstream.stat().st_size
        # leaving the block publishes every output (renames within their folders)
    finally:
        if s.tap is not None:
            s.tap.close()
        if m.producer is not None:
            m.producer.close()
    t_wait = m.feed.wait_s if s.overlapped and m.feed is not None else 0.0
    clock = WallClock(t_enc_wall, t_wait, time.perf_counter() - t_start)
    return build_report(s, m, bits, side, quality, outputs, overlay_frame, n_bytes, sei_bits, clock)


def build_report(
    s: EncodeSetup,
    m: MapStage,
    bits: list[int],
    side: SideStreamReport | None,
    quality: Quality | None,
    outputs: dict[str, str],
    overlay_frame: int | None,
    n_bytes: int,
    sei_bits: int,
    t: WallClock,
) -> EncodeReport:
    job, info, cinfo, plan, src, n_frames = s.job, s.clip.info, s.plan.coded.info, s.plan, s.src, s.n_frames
    t_enc = t.encode_wall - t.map_wait
    total_bits = sum(bits) + (side["bits"] if side else 0)  # everything transmitted
    pixels = info.width * info.height * n_frames  # the original size, scaled or not
    report: EncodeReport = {
        "input": job.input,
        "output": str(s.out),
        "codec": s.caps.codec,
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
        "crf": job.crf,
        # --scale: width/height above are the original size (bpp and quality refer to it)
        "scale": plan.scale if plan.info is not None else 1.0,
        "coded_width": cinfo.width,
        "coded_height": cinfo.height,
        "original_width": info.width,
        "original_height": info.height,
        "qpmap": {**m.map_info, **m.maps.stats(), "overlay_frame": overlay_frame},
        "notes": s.notes,
        "md5": outputs,
        "versions": {
            **base_versions(),
            "ffmpeg/encoder": s.probe.version,
            **m.map_info,
            "encoder_detail": s.probe.detail,
        },
        "timing": {
            "map_s": round(m.t_map, 4),
            "encode_s": round(t_enc, 4),
            "other_s": round(t.total - m.t_premap - t.encode_wall, 4),
            "total_s": round(t.total, 4),
            "map_wait_s": round(t.map_wait, 4),
            "map_overlapped": s.overlapped,
            "measure_s": round(quality.seconds, 4) if quality is not None else 0.0,
            "frames_predicted": src.predicted,
            "predicted_why": dict(src.keyframe_reasons),
            "predict_s": round(src.predict_s, 4),
            "map_predict_fps": _fps(src.predicted, src.predict_s),
            "map_fps": _fps(n_frames, m.t_map),
            "encode_fps": _fps(n_frames, t_enc),
            "fps": _fps(n_frames, t.total),
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
    if m.target_info is not None:
        from vcmtool.ratecontrol.target import target_report

        report["target"] = target_report(m.target_info, report)
    return report


__all__ = ["EncodeSetup", "MapStage", "build_report", "run_encode", "setup"]
