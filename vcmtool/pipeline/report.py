"""The encode report: what ``run_encode`` returns and ``vcmtool encode --json`` prints.

Typed as ``TypedDict`` so that it *is* the JSON object (bench, batch, goldens and users index it
by key, and it serialises as is) while type checkers know every key and its type. Keys are
stable: adding one is fine, renaming one breaks users' scripts and recorded goldens.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Timing(TypedDict):
    """Seconds. Without overlap ``map_s + encode_s + other_s == total_s``; with it the map ran in
    a background thread and only ``map_wait_s`` (the encoder waiting for a map) is on the clock."""

    map_s: float
    encode_s: float
    other_s: float
    total_s: float
    map_wait_s: float
    map_overlapped: bool
    measure_s: float  # within other_s
    frames_predicted: int
    predicted_why: dict[str, int]
    predict_s: float
    map_predict_fps: float | None
    map_fps: float | None
    encode_fps: float | None
    fps: float | None


class ResampleReport(TypedDict):
    """``--scale``: what was asked, what was used, and what the receiver is told."""

    requested: str
    scale: float
    sei_bits: int
    carrier: str  # "sei" or "none"
    auto: dict | None  # the rule's inputs and choice under --scale auto
    seconds: float
    original_width: NotRequired[int]
    original_height: NotRequired[int]
    coded_width: NotRequired[int]
    coded_height: NotRequired[int]
    filter: NotRequired[str]
    fps: NotRequired[float]


class SideStreamReport(TypedDict):
    """A post-encode side stream (``vcmtool.sidestreams``); its ``bits`` are in the report's."""

    name: str
    bits: int  # on the wire: SEI NAL units or the side file
    payload_bits: int
    frames: int
    frame_bits: list[int]  # payload bits per frame; 0 where none was sent
    skipped: int  # frames sent without a payload (--side-stream-budget)
    budget: str | None
    carrier: str  # "sei" or the side file
    model: str
    provider: str
    encode_s: float
    kbps: float


class EncodeReport(TypedDict):
    """One encode. ``width``/``height``/``bpp`` and every quality figure refer to the original
    size, scaled or not; ``bits`` is everything transmitted (video + side streams)."""

    input: str
    output: str
    codec: str
    encoder: str
    width: int
    height: int
    fps: float
    pix_fmt: str
    frames: int
    bytes: int
    bits: int
    bpp: float
    kbps: float
    bits_per_frame: list[int]  # video bits per access unit, decode order
    psnr_y: float | None
    psnr_y_per_frame: list[float] | None
    psnr_u: float | None
    psnr_u_per_frame: list[float] | None
    psnr_v: float | None
    psnr_v_per_frame: list[float] | None
    ssim_y: float | None
    ssim_y_per_frame: list[float] | None
    ssim: float | None
    ssim_per_frame: list[float] | None
    vmaf: NotRequired[float | None]
    vmaf_per_frame: NotRequired[list[float] | None]
    vmaf_model: NotRequired[str | None]
    qp: int
    qp_offset: int
    crf: float | None  # --crf: the frame QPs were the encoder's (maps are offsets from qp)
    scale: float
    coded_width: int
    coded_height: int
    original_width: int
    original_height: int
    qpmap: dict[str, Any]  # the source's description and versions, map statistics, overlay frame
    notes: list[str]
    md5: dict[str, str]  # every output file
    versions: dict[str, Any]
    timing: Timing
    options: dict[str, Any]  # the job's fields besides input and output
    resample: NotRequired[ResampleReport]
    side_stream: NotRequired[SideStreamReport]
    target: NotRequired[dict[str, Any]]  # MFIBA target rate (vcmtool.ratecontrol.target)


__all__ = ["EncodeReport", "ResampleReport", "SideStreamReport", "Timing"]
