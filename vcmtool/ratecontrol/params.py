"""The fitted MFIBA parameters shipped in ``vcmtool/models/mfiba_params.json`` (``vcmtool mfiba fit``).

What the target-rate allocator needs: the Cauchy task loss-rate exponent (alpha, beta), the
importance density of each unit class (task loss per unit area when only that class is degraded),
and per-encoder rate-QP priors. ``$VCMTOOL_MFIBA_PARAMS`` or an explicit path overrides the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vcmtool.errors import ModelError
from vcmtool.modelfiles import model_path
from vcmtool.ratecontrol.models import CauchyLossRate, RateQPModel

DEFAULT_PATH = model_path("mfiba_params.json")
CLASSES = ("background", "instance")  # class index 0 and 1 of a unit


@dataclass(frozen=True)
class MfibaParams:
    loss_rate: CauchyLossRate
    importance: dict[str, float]  # class name -> importance density (relative)
    rate_qp: dict[str, RateQPModel] = field(default_factory=dict)  # encoder -> prior (bpp)
    source: str = ""

    def class_weights(self) -> tuple[float, ...]:
        return tuple(float(self.importance[c]) for c in CLASSES)


def default_params_path() -> Path:
    return Path(os.environ.get("VCMTOOL_MFIBA_PARAMS") or DEFAULT_PATH)


def load_params(path: str | Path | None = None) -> MfibaParams:
    p = Path(path) if path else default_params_path()
    try:
        doc = json.loads(p.read_text())
        lr = doc["loss_rate"]["cauchy"]
        imp = {c: float(doc["importance"]["density"][c]) for c in CLASSES}
        rq = {k: RateQPModel(float(v["a"]), float(v["b"])) for k, v in doc.get("rate_qp", {}).items()}
        return MfibaParams(CauchyLossRate(float(lr["alpha"]), float(lr["beta"])), imp, rq, str(p))
    except FileNotFoundError:
        raise ModelError(f"{p}: MFIBA parameters missing; run `vcmtool mfiba fit -o {p}`") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{p}: malformed MFIBA parameters ({e}); re-run `vcmtool mfiba fit`") from None
