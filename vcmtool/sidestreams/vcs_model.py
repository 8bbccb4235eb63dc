"""VCS networks (the VCS paper, "A Coding Framework and Benchmark towards Low-Bitrate Video
Understanding", sec. 3), sized to train on a CPU (tens of thousands of parameters).

Sender, :class:`SemanticEncoder` (Sem-Enc), on a clip of T frames:
  * a frame pathway on the original ``X`` and a 4x lighter difference pathway on
    ``D = X - X~`` (``X~``: the codec's reconstruction), four stride-2 stages each (stride 16);
    after each stage the difference features steer the frame features (``x += conv1x1(d)``, a
    light stand-in for the paper's difference-guided fusion);
  * a causal 3D convolution over the last ``window`` frames (replicate-padded at the start, so
    frame i depends on frames i-window+1..i only: what a low-delay sender has);
  * ``channels`` one-bit maps per 16x16 block: ``sigmoid`` then ``round`` with a straight-through
    gradient of constant slope (:func:`binarize_logits`);
  * :class:`BernoulliPrior`: the factorized entropy model of a binary map, one learned
    probability per channel; ``-log2 p`` of the bits is the rate term, and the same
    probabilities (quantized, :meth:`BernoulliPrior.quantized`) drive the arithmetic coder.
Receiver, :class:`LatentFusion` (LFN), on the decoded clip and the bits:
  * pixel-unshuffle by 4, a CNN encoder down by 4 more (stride 16, where the bits live),
    one temporal dense block (:class:`TDense`: dense 2D convs, then causal temporal convs of
    kernel 3 and 5 on the two halves of the channels);
  * affine fusion ``f * (1 + alpha) + beta`` with ``alpha, beta`` from the bits through a
    TDense block (``1 +``: all-zero alpha is the identity);
  * decoder TDense blocks (light down, heavier up, as in the paper), upsampling by 4 with a skip
    from the stride-4 features, pixel-shuffle by 4 back to RGB, added to the decoded frame. The
    last convolution starts near zero, so an untrained receiver returns (almost) the decoded frames.
Tensors are float RGB in [0, 1], (T, 3, H, W) with H and W multiples of :data:`STRIDE`; the
callers pad (edge) and crop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

STRIDE = 16  # one bit per channel per 16x16 block of the frame
LEAKY = 0.1


@dataclass(frozen=True)
class VcsConfig:
    channels: int = 4  # one-bit maps per 16x16 block
    frame: tuple[int, int, int, int] = (12, 16, 24, 24)  # frame pathway widths per stride-2 stage
    diff: tuple[int, int, int, int] = (3, 4, 6, 6)  # 4x lighter difference pathway
    window: int = 3  # frames the sender's causal 3D conv sees
    latent: int = 24  # LFN width at stride 16
    shallow: int = 16  # LFN width at stride 4
    growth: int = 8  # TDense growth rate
    up_blocks: int = 2  # TDense blocks after the fusion

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VcsConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def binarize(p: Tensor) -> Tensor:
    """``round(p)`` forward, identity backward (straight-through)."""
    return p + (torch.round(p) - p).detach()


def binarize_logits(z: Tensor) -> Tensor:
    """``round(sigmoid(z))`` forward; backward the slope of sigmoid at 0 (1/4) everywhere.

    Why not :func:`binarize` of ``sigmoid(z)``: measured in the first training run, the rate term
    drove every logit below -15 within 250 steps, where sigmoid's gradient vanishes, and the
    stream never recovered (all bits 0). A constant slope lets the pixel loss pull bits back."""
    lin = 0.5 + z / 4
    return lin + ((z > 0).to(z.dtype) - lin).detach()


def causal_pad_time(x: Tensor, k: int) -> Tensor:
    """(T, C, H, W) -> (T + k - 1, C, H, W), the first frame repeated in front."""
    if k <= 1:
        return x
    return torch.cat([x[:1].expand(k - 1, *x.shape[1:]), x], 0)


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(LEAKY))


class SemanticEncoder(nn.Module):
    """Sem-Enc: clip (T, 3, H, W) original and decoded -> bit probabilities (T, C, H/16, W/16)."""

    def __init__(self, cfg: VcsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fw, dw = cfg.frame, cfg.diff
        self.frame = nn.ModuleList(_conv(a, b, 2) for a, b in zip((3, *fw[:-1]), fw, strict=True))
        self.diff = nn.ModuleList(_conv(a, b, 2) for a, b in zip((3, *dw[:-1]), dw, strict=True))
        self.steer = nn.ModuleList(nn.Conv2d(d, f, 1) for d, f in zip(dw, fw, strict=True))
        c = fw[-1] + dw[-1]
        self.temporal = nn.Conv3d(c, c, (cfg.window, 3, 3), padding=(0, 1, 1))
        self.head = nn.Conv2d(c, cfg.channels, 1)

    def logits(self, original: Tensor, decoded: Tensor) -> Tensor:
        x, d = original, (original - decoded) * 4.0  # differences are small; scale into range
        for f, g, s in zip(self.frame, self.diff, self.steer, strict=True):
            x, d = f(x), g(d)
            x = x + s(d)
        y = torch.cat([x, d], 1)  # (T, C, h, w)
        y = causal_pad_time(y, self.cfg.window).transpose(0, 1)[None]  # (1, C, T + k - 1, h, w)
        y = F.leaky_relu(self.temporal(y), LEAKY)[0].transpose(0, 1)  # (T, C, h, w)
        return self.head(y)

    def forward(self, original: Tensor, decoded: Tensor) -> Tensor:
        """Probabilities of a one (T, C, h, w); :func:`binarize` gives the transmitted bits."""
        return torch.sigmoid(self.logits(original, decoded))


class BernoulliPrior(nn.Module):
    """Factorized entropy model of the binary map: P(bit = 1) per channel, learned."""

    SCALE = 1 << 16  # probabilities travel as integers 1..SCALE-1 (bit-exact on both sides)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.full((channels,), -1.0))

    def bits(self, b: Tensor) -> Tensor:
        """-log2 p of binary (or straight-through) maps (T, C, h, w), summed: the rate term."""
        lp1 = F.logsigmoid(self.logit)[None, :, None, None]
        lp0 = F.logsigmoid(-self.logit)[None, :, None, None]
        return -(b * lp1 + (1 - b) * lp0).sum() / torch.log(torch.tensor(2.0))

    def quantized(self) -> list[int]:
        """P(1) per channel as integers in [1, SCALE - 1], what the coder and metadata carry."""
        p = torch.sigmoid(self.logit.detach()).double()
        return [int(v) for v in (p * self.SCALE).round().clamp(1, self.SCALE - 1).tolist()]


class TDense(nn.Module):
    """Temporal dense block: two dense 3x3 convs, then causal temporal convs (kernels 3 and 5 on
    the two halves of the channels) and a 1x1 back to the block's width, residual."""

    def __init__(self, c: int, growth: int) -> None:
        super().__init__()
        self.c1 = _conv(c, growth)
        self.c2 = _conv(c + growth, growth)
        mid = c + 2 * growth
        self.half = mid // 2
        self.t3 = nn.Conv3d(self.half, self.half, (3, 1, 1))
        self.t5 = nn.Conv3d(mid - self.half, mid - self.half, (5, 1, 1))
        self.out = nn.Conv2d(mid, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([x, self.c1(x)], 1)
        y = torch.cat([y, self.c2(y)], 1)
        a, b = y[:, : self.half], y[:, self.half :]
        a = self.t3(causal_pad_time(a, 3).transpose(0, 1)[None])[0].transpose(0, 1)
        b = self.t5(causal_pad_time(b, 5).transpose(0, 1)[None])[0].transpose(0, 1)
        return x + self.out(F.leaky_relu(torch.cat([a, b], 1), LEAKY))


class LatentFusion(nn.Module):
    """LFN: decoded clip (T, 3, H, W) + bits (T, C, H/16, W/16) or None -> enhanced clip."""

    def __init__(self, cfg: VcsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s, c = cfg.shallow, cfg.latent
        self.stem = _conv(48, s)  # after pixel-unshuffle by 4
        self.down = nn.Sequential(_conv(s, c, 2), _conv(c, c, 2))
        self.enc = TDense(c, cfg.growth)
        self.sem = nn.Sequential(_conv(cfg.channels, c), TDense(c, cfg.growth), nn.Conv2d(c, 2 * c, 1))
        self.dec = nn.Sequential(*(TDense(c, cfg.growth) for _ in range(cfg.up_blocks)))
        self.up = nn.Sequential(nn.Conv2d(c, s * 16, 1), nn.PixelShuffle(4), nn.LeakyReLU(LEAKY))
        self.gate = nn.Sequential(nn.Conv2d(2 * s, s, 3, 1, 1), nn.Sigmoid())  # masks artefacts in the skip
        self.tail = nn.Conv2d(2 * s, 48, 3, 1, 1)
        # near zero, not zero: an exactly zero tail blocks every gradient to the fusion at the
        # start, and the rate term then switched the untrained stream off (first run)
        nn.init.normal_(self.tail.weight, std=1e-4)
        nn.init.zeros_(self.tail.bias)

    def forward(self, decoded: Tensor, bits: Tensor | None) -> Tensor:
        t, _, h, w = decoded.shape
        z = self.stem(F.pixel_unshuffle(decoded, 4))
        f = self.enc(self.down(z))
        if bits is None:  # LFN-only: the semantic stream replaced by zeros
            bits = decoded.new_zeros(t, self.cfg.channels, h // STRIDE, w // STRIDE)
        alpha, beta = self.sem(bits).chunk(2, 1)
        f = f * (1 + alpha) + beta
        u = self.up(self.dec(f))
        skip = torch.cat([z, u], 1)
        y = torch.cat([z * self.gate(skip), u], 1)
        return decoded + F.pixel_shuffle(self.tail(y), 4)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
