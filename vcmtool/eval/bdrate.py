"""Bjontegaard deltas with the ``bjontegaard`` package (pchip, like the JVET spreadsheet).

Two figures per method-vs-anchor pair:

- BD-rate: average bit-rate difference in percent at equal quality (negative saves bits),
  integrated over the quality interval both curves cover;
- BD-quality (BD-mAP, BD-PSNR): average quality difference at equal rate (positive is better),
  integrated over the log-rate interval both curves cover;
- band BD-quality: the same average over a part of that interval only (its lower half, say),
  from the same pchip interpolants: a method that pays at low rates and costs at high ones (coding
  at a reduced size does) shows that here, where one figure over the whole range averages it away.

Task-accuracy curves are noisy and can bend backwards (a higher rate point with a lower mAP),
which a pchip interpolant in quality cannot take. Such curves are replaced by their isotonic
(least-squares monotone) fit, and the warnings say how many points were pooled. The integral
never extrapolates: it runs over the overlap only; a small overlap means the figure describes a
narrow band, and a warning says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

METHOD = "pchip"
MIN_OVERLAP = 0.75  # the bjontegaard package's own threshold for its overlap warning
MIN_POINTS = 2  # pchip needs two; docs/design.md ("Evaluation protocol") asks for four per curve


@dataclass
class BDResult:
    value: float  # nan when it cannot be computed
    overlap: float  # overlap interval / union interval along the integration axis, 0..1
    warnings: list[str] = field(default_factory=list)


def monotone_fit(rate: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The least-squares non-decreasing fit of quality over rate, as a strictly increasing curve.

    Points are sorted by rate; runs that violate monotonicity are pooled to their mean quality
    (pool-adjacent-violators, i.e. isotonic regression), and each pooled run becomes one point
    at the geometric mean of its rates. Returns (rate, quality, number of points pooled away).
    """
    r = np.asarray(rate, float)
    q = np.asarray(quality, float)
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    order = np.argsort(r[ok], kind="stable")
    r, q = r[ok][order], q[ok][order]
    blocks: list[list[float]] = []  # [sum of quality, sum of log-rate, count]
    for ri, qi in zip(r, q, strict=True):
        blocks.append([qi, float(np.log10(ri)), 1])
        # merge while the last block is not above the previous one in quality or in rate (ties
        # merge too: pchip needs strictly increasing values on both axes; two rate points that
        # clamp to the same map give the same bits, and their qualities may differ in the last bit)
        while len(blocks) > 1 and (
            blocks[-1][0] / blocks[-1][2] <= blocks[-2][0] / blocks[-2][2]
            or blocks[-1][1] / blocks[-1][2] <= blocks[-2][1] / blocks[-2][2]
        ):
            qs, ls, n = blocks.pop()
            blocks[-1][0] += qs
            blocks[-1][1] += ls
            blocks[-1][2] += n
    fr = np.array([10 ** (b[1] / b[2]) for b in blocks])
    fq = np.array([b[0] / b[2] for b in blocks])
    return fr, fq, int(len(np.asarray(rate))) - len(blocks)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    span = max(a.max(), b.max()) - min(a.min(), b.min())
    return float(max(hi - lo, 0.0) / span) if span > 0 else 0.0


def _prepare(rate_a, q_a, rate_t, q_t, what: str):
    msgs: list[str] = []
    ra, qa, da = monotone_fit(rate_a, q_a)
    rt, qt, dt = monotone_fit(rate_t, q_t)
    for name, d in (("anchor", da), ("test", dt)):
        if d:
            msgs.append(f"{what}: {name} curve not monotone; {d} point(s) pooled by isotonic regression")
    return ra, qa, rt, qt, msgs


def _delta(fn, prepared, rate_axis: bool, what: str) -> BDResult:
    ra, qa, rt, qt, msgs = prepared
    if len(ra) < MIN_POINTS or len(rt) < MIN_POINTS:
        return BDResult(float("nan"), 0.0, [*msgs, f"{what}: fewer than {MIN_POINTS} usable points"])
    # the integration axis: quality for BD-rate, log-rate for BD-quality
    ov = _overlap(np.log10(ra), np.log10(rt)) if rate_axis else _overlap(qa, qt)
    if ov == 0.0:
        return BDResult(float("nan"), 0.0, [*msgs, f"{what}: curves do not overlap"])
    if ov < MIN_OVERLAP:
        msgs = [*msgs, f"{what}: curves overlap on {ov:.0%} of their range only (< {MIN_OVERLAP:.0%})"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the overlap warning is ours, worded above
        value = float(fn(ra, qa, rt, qt, METHOD, require_matching_points=False, min_overlap=0.0))
    return BDResult(value, ov, msgs)


def bd_rate(rate_a, q_a, rate_t, q_t, what: str = "BD-rate") -> BDResult:
    """Percent rate change of test vs anchor at equal quality (negative: test saves bits)."""
    import bjontegaard as bd

    return _delta(bd.bd_rate, _prepare(rate_a, q_a, rate_t, q_t, what), False, what)


def bd_quality(rate_a, q_a, rate_t, q_t, what: str = "BD-quality") -> BDResult:
    """Average quality change of test vs anchor at equal rate (positive: test is better)."""
    import bjontegaard as bd

    return _delta(bd.bd_psnr, _prepare(rate_a, q_a, rate_t, q_t, what), True, what)


def bd_quality_band(
    rate_a, q_a, rate_t, q_t, what: str = "band BD-quality", *, band: tuple[float, float] = (0.0, 0.5)
) -> BDResult:
    """Average quality change of test vs anchor at equal rate over ``band`` of the log-rate
    interval both curves cover: ``(0, 0.5)`` is its lower (cheaper) half, ``(0, 1)`` equals
    :func:`bd_quality`. The overlap reported is the whole interval's, as for :func:`bd_quality`."""
    import bjontegaard as bd

    lo_f, hi_f = band
    if not 0.0 <= lo_f < hi_f <= 1.0:
        raise ValueError(f"band must satisfy 0 <= start < end <= 1, got {band}")

    def banded(ra, qa, rt, qt, method, require_matching_points, min_overlap):
        _, fa, ft = bd.bd_psnr(
            ra, qa, rt, qt, method, require_matching_points, interpolators=True, min_overlap=min_overlap
        )
        lo = max(np.log10(ra).min(), np.log10(rt).min())
        hi = min(np.log10(ra).max(), np.log10(rt).max())
        a, b = lo + lo_f * (hi - lo), lo + hi_f * (hi - lo)
        return (ft.integrate(a, b) - fa.integrate(a, b)) / (b - a)

    return _delta(banded, _prepare(rate_a, q_a, rate_t, q_t, what), True, what)
