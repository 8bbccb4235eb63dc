"""MFIBA (the MFIBA paper, sec. 3): task loss-rate models, importance-weighted closed-form bit allocation, and
target-bitrate control of QP maps built on them."""

from vcmtool.ratecontrol.allocate import Allocation, allocate, unconstrained_lambda
from vcmtool.ratecontrol.models import CauchyLossRate, FitStats, QuadraticLossRate, RateQPModel, fit_stats

__all__ = [
    "Allocation",
    "CauchyLossRate",
    "FitStats",
    "QuadraticLossRate",
    "RateQPModel",
    "allocate",
    "fit_stats",
    "unconstrained_lambda",
]
