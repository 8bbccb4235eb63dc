"""The encoder-backend interface: capabilities, availability, and one ``encode`` call.

A backend is one file with one ``@ENCODERS.register(name)`` class. It declares what it can
do (block-QP granularity, QP range, bit depths) so the CLI refuses or explains instead of
silently dropping a map; ``prepare_maps`` applies the backend's own constraints (kvazaar's
delta window, a frame-only encoder's single QP) and records what it changed in ``notes``.

Backends that take maps frame by frame while they encode (``Capabilities.streams_maps``) also
implement ``encode_stream``: the pipeline then predicts maps in a background thread and the
encoder pulls each one from a :class:`~vcmtool.qpmap.stream.MapFeed` when it needs it;
``frame_prep`` is ``prepare_maps`` applied one frame at a time.

``--param KEY=VALUE`` is checked by ``check_settings`` against the backend's allow-list
(``param_keys``): backends ignore unknown keys silently (ffmpeg's libkvazaar only warns), keys the
backend sets itself (``owned_params``: base QP, GOP, threads, the ROI file) would make the report
lie or let an untrusted manifest point kvazaar's ``roi=`` at any file, and a separator inside a
value (``rd=1,qp=20``) would inject further parameters. Every name in the allow-lists was checked
against the encoder in the imageio-ffmpeg build.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from vcmtool.errors import UsageError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.stream import FramePrep, MapFeed
from vcmtool.registry import Registry

ProgressFn = Callable[[int], None]

# The preset names of x264, x265 and kvazaar (kvazaar copied x264's list).
X264_STYLE_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class Capabilities:
    codec: str  # "hevc" | "avc" | "vvc" | "av1"
    block_qp: int | None  # block size of per-block QP control in pixels; None = frame QP only
    qp_range: tuple[int, int]
    bit_depths: tuple[int, ...] = (8,)
    extension: str = ".bin"
    bit_exact: bool = True  # same bytes across runs with the settings we force
    streams_maps: bool = False  # takes each frame's map as it arrives (prediction can overlap)

    def to_json(self) -> dict:
        return {
            "codec": self.codec,
            "block_qp": self.block_qp,
            "qp_range": list(self.qp_range),
            "bit_depths": list(self.bit_depths),
            "extension": self.extension,
            "bit_exact": self.bit_exact,
            "streams_maps": self.streams_maps,
        }


@dataclass(frozen=True)
class Probe:
    available: bool
    version: str = ""
    detail: str = ""  # where it was found, or why not


@dataclass
class EncodeSettings:
    preset: str = "medium"
    intra_period: int = 0  # 0: one I frame then P frames (low delay); 1: all intra
    threads: int = 1  # 1 keeps the bytes reproducible across machines
    allow_frame_qp: bool = False
    params: dict[str, str] = field(default_factory=dict)
    # rate control by constant rate factor (backends with ``crf_range``): the encoder picks each
    # frame's QP; a map's per-block offsets are its QPs minus ``crf_base`` (the map's base QP)
    crf: float | None = None
    crf_base: int = 32


@dataclass
class EncodeResult:
    path: Path
    maps: QPMaps  # the maps as the encoder applied them
    notes: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


class Encoder(ABC):
    name: str = ""
    #: tuning keys ``--param`` may set; everything else is refused
    param_keys: ClassVar[frozenset[str]] = frozenset()
    #: keys the backend sets itself -> the vcmtool option that controls them
    owned_params: ClassVar[dict[str, str]] = {}
    #: characters that would split a value into further parameters on this backend's command line
    param_separators: ClassVar[str] = ",:="
    #: preset names the backend accepts (empty: any name, checked by the encoder itself)
    presets: ClassVar[tuple[str, ...]] = ()
    #: CRF values the backend's rate control takes (None: no CRF; ``--crf`` is refused)
    crf_range: ClassVar[tuple[float, float] | None] = None

    def check_settings(self, settings: EncodeSettings) -> None:
        """Refuse presets and ``--param`` keys/values this backend would ignore or misread."""
        if self.presets and settings.preset not in self.presets:
            raise UsageError(f"--preset {settings.preset}: {self.name} presets are {', '.join(self.presets)}")
        if settings.crf is not None:
            if self.crf_range is None:
                with_crf = ", ".join(n for n in ENCODERS.names() if ENCODERS.get(n).crf_range is not None)
                raise UsageError(
                    f"--crf: {self.name} has no CRF rate control ({with_crf} have); use --qp or --target-kbps"
                )
            lo, hi = self.crf_range
            if not lo <= settings.crf <= hi:
                raise UsageError(f"--crf {settings.crf:g}: {self.name} takes {lo:g}..{hi:g}")
        for key, value in settings.params.items():
            if key in self.owned_params:
                raise UsageError(
                    f"--param {key}: set by vcmtool for {self.name}; use {self.owned_params[key]}"
                )
            if key not in self.param_keys:
                allowed = ", ".join(sorted(self.param_keys)) or "none"
                raise UsageError(
                    f"--param {key}: not a {self.name} option vcmtool passes on (allowed: {allowed})"
                )
            bad = [c for c in value if c in self.param_separators or not c.isprintable() or c.isspace()]
            if not value or bad:
                raise UsageError(
                    f"--param {key}={value!r}: values must be non-empty without "
                    f"spaces or {' '.join(self.param_separators)} for {self.name}"
                )

    @classmethod
    @abstractmethod
    def capabilities(cls) -> Capabilities: ...

    @classmethod
    @abstractmethod
    def probe(cls) -> Probe: ...

    def prepare_maps(self, maps: QPMaps, settings: EncodeSettings) -> QPMaps:
        """Clamp to the codec range and reduce to what the backend can apply."""
        caps = self.capabilities()
        lo, hi = caps.qp_range
        out = maps.clamp(lo, hi)
        if int(maps.data.max()) > hi:
            out.notes.append(f"QPs above {hi} clamped to the {caps.codec.upper()} range")
        if caps.block_qp is None and not out.is_uniform_per_frame():
            if not settings.allow_frame_qp:
                raise UsageError(
                    f"{self.name} has no per-block QP control (frame QP only) and the map is not "
                    "uniform; use --allow-frame-qp for one QP per frame (mean of the map), "
                    "or an encoder with block QPs (kvazaar, x265, x264, svtav1)"
                )
            qps = out.frame_qps()
            flat = np.broadcast_to(qps[:, None, None], out.data.shape).copy()
            out = QPMaps(flat, out.ctu, out.notes)
            out.notes.append(f"{self.name}: frame-level QP only; used the mean QP of each frame's map")
        return out

    def frame_prep(self, settings: EncodeSettings, hint: tuple[int, int] | None = None) -> FramePrep:
        """Per-frame ``prepare_maps`` for streamed maps. ``hint``: the QP range the maps are
        expected to span (offset included), when the source knows it up front."""
        caps = self.capabilities()
        if not caps.streams_maps:
            raise UsageError(f"{self.name} needs every map before encoding (no streamed maps)")
        return ClampPrep(caps)

    def encode_stream(
        self,
        clip: Clip,
        feed: MapFeed,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None = None,
    ) -> EncodeResult:
        """Encode ``clip`` taking frame ``i``'s map from ``feed.frame(i)`` only when frame ``i``
        is encoded. The result's ``maps`` and notes are complete once it returns."""
        raise UsageError(f"{self.name} needs every map before encoding (no streamed maps)")

    def encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None = None,
    ) -> EncodeResult:
        """Encode ``clip`` with the already-prepared ``maps`` into ``out_path``.

        A map sequence shorter than the clip repeats its last map, for every backend alike.
        """
        return self._encode(clip, maps.extend(clip.count()), settings, out_path, progress)

    @abstractmethod
    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        """Backend work: ``maps`` holds exactly one map per frame of ``clip``."""


class ClampPrep(FramePrep):
    """Clamp each frame to the codec's QP range, as ``Encoder.prepare_maps`` does for a clip."""

    def __init__(self, caps: Capabilities) -> None:
        self.lo, self.hi = caps.qp_range
        self.codec = caps.codec
        self.above = False

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        if int(grid.max()) > self.hi:
            self.above = True
        return np.clip(grid, self.lo, self.hi)

    def notes(self) -> list[str]:
        return [f"QPs above {self.hi} clamped to the {self.codec.upper()} range"] if self.above else []


ENCODERS: Registry[type[Encoder]] = Registry("encoder")


def get_encoder(name: str) -> Encoder:
    return ENCODERS.get(name)()
