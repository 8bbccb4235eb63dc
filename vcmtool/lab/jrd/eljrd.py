"""EL-JRD baseline (Zhang et al. 2021) as the SNN-JRD paper, sec. 5.2, re-implemented it (PyTorch).

Binary discriminators at the distortion levels 32, 38, 41, 43, 45, 47, 49, 51: discriminator k
says whether the CTU's JRD QP is >= level k (i.e. the instances there still survive level k).
They share a small CNN on the same PIA input as SNN-JRD (F_p, :mod:`vcmtool.qpmap.prior`) and are
trained with class-balanced binary cross-entropy (positive weight = negatives / positives per
level, counted on the training labels), the class adjustment of the original.

Ensemble decoding (inside the exported graph, so ONNX outputs a QP map like SNN-JRD): the
predicted QP is the highest level k such that discriminators 1..k all say "survives"; when even
level 32 fails, the QP is ``fallback`` (the median of the training labels below 32). Levels are
HEVC-domain QPs (0..51).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

LEVELS = (32, 38, 41, 43, 45, 47, 49, 51)


class ElJrd(nn.Module):
    def __init__(
        self, widths: tuple[int, ...] = (16, 32, 48, 64), stem: int = 8, fallback: float = 26.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        # stem avg-pool, then stride-2 convs down to one cell per 64x64 CTU
        n_down = {8: 3, 4: 4, 16: 2}[stem]
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, stride=2 if i < n_down else 1, padding=1), nn.ReLU()]
            c = w
        self.stem = stem
        self.features = nn.Sequential(*layers)
        self.logits = nn.Conv2d(c, len(LEVELS), 1)
        self.register_buffer("table", torch.tensor((fallback, *LEVELS), dtype=torch.float32))

    def forward_logits(self, fp: Tensor) -> Tensor:
        """(N, 8, H/64, W/64) logits, one per level."""
        return self.logits(self.features(F.avg_pool2d(fp, self.stem)))

    def decode(self, logits: Tensor) -> Tensor:
        failed = (logits <= 0).to(logits.dtype)
        # consecutive passes from level 32 up (cumsum, not cumprod: ONNX has only CumSum)
        depth = (torch.cumsum(failed, 1) == 0).to(torch.int64).sum(1)
        return self.table[depth]

    def forward(self, fp: Tensor) -> Tensor:
        """QP map (N, H/64, W/64); ``fp`` H, W multiples of 64."""
        return self.decode(self.forward_logits(fp))


def level_targets(label: Tensor) -> Tensor:
    """(N, gh, gw) QP labels -> (N, 8, gh, gw) binary targets label >= level."""
    levels = torch.tensor(LEVELS, dtype=label.dtype, device=label.device).view(1, -1, 1, 1)
    return (label.unsqueeze(1) >= levels).to(torch.float32)


def balanced_bce(logits: Tensor, label: Tensor, pos_weight: Tensor, weight: Tensor | None = None) -> Tensor:
    """Class-balanced BCE over the 8 discriminators; ``pos_weight`` (8,); ``weight`` per CTU."""
    per = F.binary_cross_entropy_with_logits(
        logits, level_targets(label), pos_weight=pos_weight.view(1, -1, 1, 1), reduction="none"
    )
    if weight is None:
        return per.mean()
    w = weight.to(per.dtype).unsqueeze(1).expand_as(per)
    return (per * w).sum() / w.sum()
