"""Closed-form MFIBA bit allocation (the MFIBA paper, eq. 4-6).

Units i (feature scales in the paper; here also CTU classes x frames) have importance w_i, size
s_i (pixels, or the paper's 1/k^i scale factor) and rate r_i per size unit (bpp). Minimising
``sum_i w_i*alpha*r_i**(-beta) + lambda * sum_i s_i*r_i`` gives, by setting the derivative to zero,

    r_i = (w_i * alpha * beta / (lambda * s_i)) ** (1 / (beta + 1))        (eq. 6, lambda' / k^i = lambda*s_i)

lambda is found by bisection so that ``sum_i s_i*r_i`` meets the budget; with per-unit rate bounds
(the codec's QP range) the clipped solution is still the KKT point of the bounded problem, and the
bisection handles it where the unconstrained closed form for lambda does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vcmtool.errors import UsageError


@dataclass(frozen=True)
class Allocation:
    rates: np.ndarray  # per-unit rate (bits per size unit)
    lam: float
    bits: float  # sum s_i * r_i actually allocated
    clipped: int  # units held at a bound


def _rates(lam: float, c: np.ndarray, inv: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip(np.power(c / lam, inv), lo, hi)


def unconstrained_lambda(weights, sizes, budget: float, alpha: float, beta: float) -> float:
    """lambda of eq. 6 without rate bounds: sum_i s_i (w_i a b/(lam s_i))^(1/(b+1)) = budget."""
    w, s = np.asarray(weights, float), np.asarray(sizes, float)
    inv = 1.0 / (beta + 1.0)
    return float(alpha * beta * (np.sum(s * np.power(w / s, inv)) / budget) ** (beta + 1.0))


def allocate(
    weights, sizes, budget: float, alpha: float, beta: float, r_min=0.0, r_max=np.inf, tol: float = 1e-9
) -> Allocation:
    """Split ``budget`` bits over units by importance; see the module doc for the model."""
    w = np.asarray(weights, float).ravel()
    s = np.asarray(sizes, float).ravel()
    if w.shape != s.shape or w.size == 0:
        raise UsageError(f"weights and sizes must be equal-length and non-empty ({w.size}, {s.size})")
    if (w < 0).any() or (s <= 0).any() or alpha <= 0 or beta <= 0:
        raise UsageError("allocation needs weights >= 0, sizes > 0, alpha > 0 and beta > 0")
    lo = np.broadcast_to(np.asarray(r_min, float), w.shape)
    hi = np.broadcast_to(np.asarray(r_max, float), w.shape)
    if budget <= 0 or budget < float(np.sum(s * lo)) * (1 - 1e-12):
        raise UsageError(
            f"budget {budget:.6g} bits is below the minimum the rate bounds allow "
            f"({float(np.sum(s * lo)):.6g})"
        )
    cap = float(np.sum(s * hi))
    if budget >= cap:
        return Allocation(hi.copy(), 0.0, cap, int(w.size))
    c = w * alpha * beta / s
    inv = 1.0 / (beta + 1.0)
    if not (c > 0).any():
        raise UsageError("all unit weights are zero; nothing to allocate by importance")
    # bracket lambda in the log domain: total bits fall monotonically as lambda grows
    lam0 = unconstrained_lambda(np.maximum(w, 1e-300), s, budget, alpha, beta)
    lo_l, hi_l = np.log(lam0) - 1.0, np.log(lam0) + 1.0
    total = lambda ll: float(np.sum(s * _rates(np.exp(ll), c, inv, lo, hi)))  # noqa: E731
    while total(lo_l) < budget:
        lo_l -= 2.0
    while total(hi_l) > budget:
        hi_l += 2.0
    for _ in range(200):
        mid = 0.5 * (lo_l + hi_l)
        if total(mid) > budget:
            lo_l = mid
        else:
            hi_l = mid
        if hi_l - lo_l < tol:
            break
    lam = float(np.exp(0.5 * (lo_l + hi_l)))
    rates = _rates(lam, c, inv, lo, hi)
    clipped = int(np.sum((rates <= lo) | (rates >= hi)))
    return Allocation(rates, lam, float(np.sum(s * rates)), clipped)
