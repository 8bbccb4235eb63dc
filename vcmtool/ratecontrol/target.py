"""Target bitrate with QP maps: MFIBA allocation over units, then closed-loop rate control.

Units are (frame, CTU) cells; a QP-map source's map splits them into two classes: CTUs whose
map QP lies below the map's midpoint are the instance class, the rest background (a uniform map
is one class). A unit's importance is its class's importance density times its pixel count, so
eq. 6 gives every unit of a class the same bpp and the class gap follows from the weights and the
loss-rate exponent beta. Each class keeps the source map's finer structure as a residual.

Budget -> QP goes through a rate-QP model ``log bpp = a + b*QP`` fitted per clip and encoder from
two probe encodes at uniform QPs. The model is approximate, so the allocation is closed-loop: a
global fractional offset theta is applied to all unit QPs (rounded with a deterministic
low-discrepancy dither, so fractional offsets are realised and the rate moves in small steps),
and theta is corrected by secant steps on log-rate (bisection when a step leaves the bracket)
until the full-clip encode is within the tolerance. Every encode is counted in ``passes``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcmtool.decode import packet_bits
from vcmtool.encoders.base import Encoder, EncodeSettings
from vcmtool.errors import UsageError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps
from vcmtool.ratecontrol.allocate import allocate
from vcmtool.ratecontrol.models import RateQPModel
from vcmtool.ratecontrol.params import CLASSES, MfibaParams, load_params

GOLDEN = 0.6180339887498949
PRIOR_SLOPE = -0.115  # log-rate per QP when no fitted prior exists: rate halves every ~6 QP
MIN_PROBE_GAP = 3


@dataclass(frozen=True)
class Units:
    classes: np.ndarray  # (F, gh, gw) int: index into CLASSES
    residual: np.ndarray  # (F, gh, gw) float: source map minus its class mean
    sizes: np.ndarray  # (F, gh, gw) pixels of each CTU (edge CTUs are partial)


def split_units(maps: QPMaps, frames: int, height: int, width: int) -> Units:
    d = maps.extend(frames).data.astype(float)
    lo, hi = float(d.min()), float(d.max())
    classes = (d < (lo + hi) / 2).astype(np.int64) if hi > lo else np.zeros(d.shape, np.int64)
    residual = np.zeros_like(d)
    for c in np.unique(classes):
        sel = classes == c
        residual[sel] = d[sel] - d[sel].mean()
    ctu = maps.ctu
    gh, gw = d.shape[1:]
    rows = np.minimum(ctu, height - ctu * np.arange(gh))
    cols = np.minimum(ctu, width - ctu * np.arange(gw))
    sizes = np.broadcast_to((rows[:, None] * cols[None, :]).astype(float), d.shape).copy()
    return Units(classes, residual, sizes)


def dither_round(x: np.ndarray) -> np.ndarray:
    """Round with a fixed golden-ratio dither: a fractional offset moves that share of units up."""
    u = (np.arange(x.size) * GOLDEN) % 1.0
    return np.floor(x.ravel() + u).reshape(x.shape)


@dataclass
class Pass:
    kind: str  # "probe" or "closed-loop"
    qp: float  # uniform probe QP, or theta for closed-loop passes
    bits: int
    bpp: float

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "qp_or_theta": round(self.qp, 4),
            "bits": self.bits,
            "bpp": round(self.bpp, 6),
        }


@dataclass
class TargetOutcome:
    maps: QPMaps
    target_bpp: float
    bpp: float  # of the chosen pass
    passes: list[Pass] = field(default_factory=list)
    model: RateQPModel | None = None
    class_qp: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "target_bpp": round(self.target_bpp, 6),
            "passes": len(self.passes),
            "probe_passes": sum(p.kind == "probe" for p in self.passes),
            "history": [p.to_json() for p in self.passes],
            "rate_qp": None
            if self.model is None
            else {k: round(v, 6) for k, v in dataclasses.asdict(self.model).items()},
            "class_qp": {k: round(v, 3) for k, v in self.class_qp.items()},
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


class TargetController:
    """Produce QP maps that hit a bits-per-pixel target for one clip with one encoder."""

    def __init__(
        self,
        encoder: Encoder,
        settings: EncodeSettings,
        params: MfibaParams,
        tolerance: float = 0.05,
        max_passes: int = 8,
        probe_frames: int = 16,
    ) -> None:
        self.encoder, self.settings, self.params = encoder, settings, params
        self.tolerance, self.max_passes = tolerance, max_passes
        self.probe_frames = probe_frames
        self.qp_range = encoder.capabilities().qp_range

    def _encode_bits(self, clip: Clip, maps: QPMaps, n: int, tmp: Path) -> int:
        prepared = self.encoder.prepare_maps(maps, self.settings).extend(n)
        out = tmp / f"pass{time.perf_counter_ns()}{self.encoder.capabilities().extension}"
        self.encoder.encode(clip, prepared, self.settings, out)
        bits = sum(packet_bits(out))
        out.unlink(missing_ok=True)
        return bits

    def _probe_model(
        self, clip: Clip, maps: QPMaps, target_bpp: float, tmp: Path, passes: list[Pass]
    ) -> RateQPModel:
        """Two uniform-QP probes: the map's mean QP, then the QP a prior slope says hits the target,
        so the fitted line is local to the target rate."""
        info = clip.info
        n = min(clip.count(), self.probe_frames)
        sub = dataclasses.replace(clip, limit=n if clip.limit is None else min(n, clip.limit))
        lo, hi = self.qp_range
        gh, gw = maps.grid

        def probe(q: int) -> None:
            bits = self._encode_bits(sub, QPMaps(np.full((1, gh, gw), q), maps.ctu), n, tmp)
            passes.append(Pass("probe", q, bits, max(bits, 1) / (info.width * info.height * n)))

        q0 = int(np.clip(np.rint(maps.data.mean()), lo, hi))
        probe(q0)
        prior = self.params.rate_qp.get(self.encoder.name, RateQPModel(0.0, PRIOR_SLOPE)).b
        q1 = int(np.clip(np.rint(q0 + np.log(target_bpp / passes[-1].bpp) / prior), lo, hi))
        if abs(q1 - q0) < MIN_PROBE_GAP:  # too close to measure a slope
            q1 = q0 + MIN_PROBE_GAP if q0 + MIN_PROBE_GAP <= hi else q0 - MIN_PROBE_GAP
        probe(q1)
        model, _ = RateQPModel.fit([p.qp for p in passes], [p.bpp for p in passes])
        return model

    def process(self, clip: Clip, maps: QPMaps, target_bpp: float) -> TargetOutcome:
        t0 = time.perf_counter()
        info = clip.info
        n = clip.count()
        pixels = float(info.width * info.height * n)
        lo, hi = self.qp_range
        out = TargetOutcome(maps, target_bpp, float("nan"))
        units = split_units(maps, n, info.height, info.width)
        with tempfile.TemporaryDirectory(prefix="vcmtool-mfiba-") as td:
            tmp = Path(td)
            model = out.model = self._probe_model(clip, maps, target_bpp, tmp, out.passes)
            # eq. 6 over all units; the codec's QP range bounds each unit's rate
            dens = np.asarray(self.params.class_weights())[units.classes]
            lr = self.params.loss_rate
            r_min, r_max = float(model.rate(hi)), float(model.rate(lo))
            budget = target_bpp * pixels
            if budget <= r_min * pixels:  # below the highest QP: allocate at the floor, report it
                out.notes.append(
                    f"target {target_bpp:.5g} bpp is below the model's rate at QP {hi} ({r_min:.5g} bpp)"
                )
                budget = r_min * pixels * (1 + 1e-6)
            alloc = allocate(
                (dens * units.sizes).ravel(),
                units.sizes.ravel(),
                budget,
                lr.alpha,
                lr.beta,
                r_min=r_min,
                r_max=r_max,
            )
            base = model.qp(alloc.rates.reshape(units.sizes.shape)) + units.residual
            for c in np.unique(units.classes):
                out.class_qp[CLASSES[c]] = float(base[units.classes == c].mean())

            frame_only = self.encoder.capabilities().block_qp is None

            def make(theta: float) -> QPMaps:
                if frame_only:  # one QP per frame: dither across frames, not CTUs
                    per = (base * units.sizes).sum(axis=(1, 2)) / units.sizes.sum(axis=(1, 2))
                    q = np.broadcast_to(dither_round(per + theta)[:, None, None], base.shape)
                else:
                    q = dither_round(base + theta)
                return QPMaps(np.clip(q, lo, hi), maps.ctu, list(maps.notes))

            tried: list[tuple[float, float, QPMaps]] = []  # theta, log(bpp/target), maps
            theta = 0.0
            log_t = float(np.log(target_bpp))
            while True:
                cand = make(theta)
                bits = self._encode_bits(clip, cand, n, tmp)
                bpp = bits / pixels
                out.passes.append(Pass("closed-loop", theta, bits, bpp))
                err = float(np.log(max(bpp, 1e-12)) - log_t)
                tried.append((theta, err, cand))
                if abs(bpp / target_bpp - 1) <= self.tolerance or len(out.passes) >= self.max_passes:
                    break
                nxt = self._next_theta(tried, model.b)
                if nxt is None:
                    break
                theta = nxt
            best = min(tried, key=lambda t: abs(t[1]))
            out.maps = best[2]
            out.bpp = float(np.exp(best[1]) * target_bpp)
            if abs(out.bpp / target_bpp - 1) > self.tolerance:
                out.notes.append(
                    f"target not reached within {self.tolerance:.0%} after "
                    f"{len(out.passes)} passes (QP range {lo}-{hi} or pass limit)"
                )
        if alloc.clipped:
            out.notes.append(f"{alloc.clipped} units held at the QP-range bound by the allocation")
        out.seconds = time.perf_counter() - t0
        return out

    def _next_theta(self, tried: list[tuple[float, float, QPMaps]], slope: float) -> float | None:
        lo, hi = self.qp_range
        above = [t for t in tried if t[1] > 0]  # rate too high: theta must grow
        below = [t for t in tried if t[1] < 0]
        if len(tried) == 1:
            th, e, _ = tried[0]
            return th - e / slope
        (t1, e1, _), (t2, e2, _) = tried[-2], tried[-1]
        nxt = t2 - e2 * (t2 - t1) / (e2 - e1) if e2 != e1 and t2 != t1 else t2 - e2 / slope
        if above and below:
            a, b = max(t[0] for t in above), min(t[0] for t in below)  # bracket [a, b]
            if not (min(a, b) < nxt < max(a, b)):
                nxt = 0.5 * (a + b)
            if abs(b - a) < 1e-3:
                return None
        if any(abs(nxt - t[0]) < 1e-4 for t in tried) or abs(nxt) > (hi - lo):
            return None
        return float(nxt)


def apply_target(
    job, clip: Clip, encoder: Encoder, settings: EncodeSettings, maps: QPMaps
) -> tuple[QPMaps, dict]:
    """The pipeline hook: replace ``maps`` by MFIBA target-rate maps; returns them and a report."""
    # ranges and "one of kbps/bpp" are checked with every other option (vcmtool.jobcheck)
    if job.qp_offset:
        raise UsageError("--qp-offset and a target rate both set the rate; drop --qp-offset")
    info = clip.info
    if job.target_kbps is not None:
        target_bpp = job.target_kbps * 1000.0 / (float(info.fps) * info.width * info.height)
    else:
        target_bpp = float(job.target_bpp)
    opts = job.map_options or {}
    params = load_params(opts.get("mfiba_params"))
    ctl = TargetController(
        encoder,
        settings,
        params,
        float(opts.get("target_tolerance", 0.05)),
        int(opts.get("target_max_passes", 8)),
    )
    res = ctl.process(clip, maps, target_bpp)
    kbps = target_bpp * float(info.fps) * info.width * info.height / 1000.0
    info_out = {"kbps": round(kbps, 3), "bpp": round(target_bpp, 6), **res.to_json(), "params": params.source}
    return res.maps, info_out


def target_report(info: dict, report: dict) -> dict:
    """The report's ``target`` block, with the achieved rate of the final encode."""
    want = info["bpp"]
    got = report["bpp"]
    return {
        **info,
        "achieved_kbps": round(report["kbps"], 3),
        "achieved_bpp": round(got, 6),
        "error_pct": round(100.0 * (got / want - 1.0), 3),
    }
