"""Fitted models of MFIBA: task loss vs rate (Cauchy and quadratic) and rate vs QP.

* Cauchy task loss-rate model (eq. 3): ``d = w * alpha * R**(-beta)``. Fitted by least squares in
  the loss domain (so the reported RMSE is in loss units, as the paper's Table 1), started from
  the log-log line fit.
* Quadratic alternative: ``d = c0 + c1*R + c2*R**2``, the polynomial baseline the paper compares.
* Rate-QP model for standard encoders: ``log R = a + b*QP`` (rate roughly halves every 6 QP),
  fitted from measured encodes; it plays the role of the paper's rate-phi model (eq. 7/8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vcmtool.errors import UsageError


@dataclass(frozen=True)
class FitStats:
    r: float  # Pearson correlation between prediction and measurement
    rmse: float
    n: int

    def to_json(self) -> dict:
        return {"r": round(self.r, 6), "rmse": round(self.rmse, 6), "n": self.n}


def fit_stats(pred: np.ndarray, meas: np.ndarray) -> FitStats:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    r = float(np.corrcoef(pred, meas)[0, 1]) if len(meas) > 1 and np.std(meas) > 0 else float("nan")
    return FitStats(r, float(np.sqrt(np.mean((pred - meas) ** 2))), int(len(meas)))


def _points(rate, loss, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(rate, float).ravel(), np.asarray(loss, float).ravel()
    if x.shape != y.shape:
        raise UsageError(f"rate and loss have different lengths ({len(x)} vs {len(y)})")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if ok.sum() < min_points:
        raise UsageError(f"need at least {min_points} points with positive rate to fit, got {ok.sum()}")
    return x[ok], y[ok]


@dataclass(frozen=True)
class CauchyLossRate:
    alpha: float
    beta: float

    def predict(self, rate, weight=1.0) -> np.ndarray:
        return weight * self.alpha * np.power(np.asarray(rate, float), -self.beta)

    @classmethod
    def fit(cls, rate, loss) -> tuple[CauchyLossRate, FitStats]:
        from scipy.optimize import curve_fit

        x, y = _points(rate, loss, 2)
        pos = y > 0
        if pos.sum() >= 2:
            slope, icpt = np.polyfit(np.log(x[pos]), np.log(y[pos]), 1)
            p0 = [float(np.exp(icpt)), max(1e-3, float(-slope))]
        else:
            p0 = [float(max(y.mean(), 1e-6)), 0.5]
        try:
            (alpha, beta), _ = curve_fit(
                lambda r, a, b: a * np.power(r, -b),
                x,
                y,
                p0=p0,
                bounds=([1e-12, 1e-6], [np.inf, 20.0]),
                maxfev=20000,
            )
        except RuntimeError:  # no convergence: the log-log fit is still a valid Cauchy model
            alpha, beta = p0
        model = cls(float(alpha), float(beta))
        return model, fit_stats(model.predict(x), y)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QuadraticLossRate:
    c0: float
    c1: float
    c2: float

    def predict(self, rate) -> np.ndarray:
        r = np.asarray(rate, float)
        return self.c0 + self.c1 * r + self.c2 * r * r

    @classmethod
    def fit(cls, rate, loss) -> tuple[QuadraticLossRate, FitStats]:
        x, y = _points(rate, loss, 3)
        c2, c1, c0 = np.polyfit(x, y, 2)
        model = cls(float(c0), float(c1), float(c2))
        return model, fit_stats(model.predict(x), y)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RateQPModel:
    """``log(rate) = a + b * qp``; ``b < 0``. Rate in any unit (bpp, kbps) used consistently."""

    a: float
    b: float

    def rate(self, qp) -> np.ndarray:
        return np.exp(self.a + self.b * np.asarray(qp, float))

    def qp(self, rate) -> np.ndarray:
        return (np.log(np.asarray(rate, float)) - self.a) / self.b

    @classmethod
    def fit(cls, qps, rates) -> tuple[RateQPModel, FitStats]:
        q, r = np.asarray(qps, float).ravel(), np.asarray(rates, float).ravel()
        ok = np.isfinite(r) & (r > 0)
        if len(np.unique(q[ok])) < 2:
            raise UsageError("a rate-QP fit needs encodes at two or more distinct QPs")
        b, a = np.polyfit(q[ok], np.log(r[ok]), 1)
        if b >= 0:
            raise UsageError(f"measured rate does not fall with QP (slope {b:.4f}); cannot fit")
        model = cls(float(a), float(b))
        # stats in the log domain: RMSE is then a relative rate error
        return model, fit_stats(a + b * q[ok], np.log(r[ok]))

    def to_json(self) -> dict:
        return asdict(self)
