"""Side-stream budget: how many side bits a frame may add (``--side-stream-budget``).

A side stream only pays when it is small next to the video at the rates where coding for
machines matters (measured: the raw CDRE bits were as large as a QP 37 kvazaar stream at 720p).
The budget caps it, per frame, in one of two units:

- ``PCT%`` (``5%``): a share of the frame's own video bits, i.e. of the access unit that carries
  the payload (decode order; the same as display order in the low-delay configurations vcmtool
  uses). Cheap frames get little side information, the intra frame gets more.
- ``Nkbps`` (``8kbps``): a constant rate; each frame is allowed ``N * 1000 / fps`` bits.

Unspent allowance carries over (a token bucket) for at most one second's worth of frames, so a
frame whose payload is a little over its own share can still be sent after cheap ones; a frame
whose payload does not fit is skipped whole (the CDRE receiver then embeds the last payload it
received, or with ``--missing plain`` runs the plain task model; holding measured 21.6 BD-rate
points better at 10%, docs/results.md). Skipping rather than coarsening keeps the payload format
and the receiver's model exactly as trained. The limit applies to the payload bytes; the SEI
wrapper (about 25 bytes) is counted in the report's ``bits`` but not budgeted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vcmtool.errors import UsageError

_SPEC = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%|kbps)\s*$", re.IGNORECASE)
MAX_PERCENT = 1000.0
MAX_KBPS = 1_000_000.0


@dataclass(frozen=True)
class SideBudget:
    """A parsed ``--side-stream-budget``: ``percent`` of the video bits or ``kbps``."""

    value: float
    unit: str  # "%" or "kbps"

    @classmethod
    def parse(cls, spec: str) -> SideBudget:
        m = _SPEC.match(spec or "")
        if not m:
            raise UsageError(f"--side-stream-budget {spec!r}: use PCT% (5%) or Nkbps (8kbps)")
        value, unit = float(m.group(1)), m.group(2).lower()
        limit = MAX_PERCENT if unit == "%" else MAX_KBPS
        if not (0 < value <= limit) or not math.isfinite(value):
            raise UsageError(f"--side-stream-budget {spec!r}: the value must be in (0, {limit:g}]")
        return cls(value, unit)

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"

    def allowances(self, video_bits: Sequence[int], fps: float) -> list[float]:
        """Bits each frame may add, before carry-over."""
        if self.unit == "%":
            return [self.value / 100.0 * b for b in video_bits]
        per_frame = self.value * 1000.0 / max(fps, 1e-9)
        return [per_frame] * len(video_bits)


class BudgetGate:
    """Decides frame by frame whether a payload of ``n`` bits may be sent (token bucket)."""

    def __init__(self, budget: SideBudget, video_bits: Sequence[int], fps: float) -> None:
        self._allow = budget.allowances(video_bits, fps)
        self._window = max(1, round(fps))  # carry-over horizon: one second of frames
        self._bucket = 0.0

    def admit(self, index: int, payload_bits: int) -> bool:
        """Add frame ``index``'s allowance; spend and return True when the payload fits."""
        lo = max(0, index - self._window + 1)
        cap = sum(self._allow[lo : index + 1])  # at most one second's allowance is banked
        self._bucket = min(self._bucket + self._allow[index], cap)
        if payload_bits <= self._bucket:
            self._bucket -= payload_bits
            return True
        return False


def gate_for(budget: SideBudget | None, bitstream, clip) -> BudgetGate | None:
    """The gate of one side stream over ``bitstream`` (the encode of ``clip``); None: no budget."""
    if budget is None:
        return None
    from vcmtool.decode import packet_bits

    return BudgetGate(budget, frame_video_bits(packet_bits(bitstream), clip.count()), float(clip.info.fps))


def frame_video_bits(packet_bits: Sequence[int], frames: int) -> list[int]:
    """One video-bit count per frame: the access units' bits when there is one per frame, else
    (hidden frames, e.g. AV1) the mean bits per frame for every frame."""
    if len(packet_bits) == frames:
        return list(packet_bits)
    mean = sum(packet_bits) // max(frames, 1)
    return [mean] * frames
