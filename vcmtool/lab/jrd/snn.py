"""SNN-JRD: the spiking-guided JRD predictor of the SNN-JRD paper, sec. 4 (PyTorch; training/export only).

Input: the PIA tensor ``F_p`` (N, 3, H, W) from :mod:`vcmtool.qpmap.prior`; output: the QP map
(N, ceil(H/64), ceil(W/64)) in the dataset codec's domain (0..qp_max).

Choices where the paper is ambiguous (each one is ours, not the paper's):

* **Spiking neurons (SN).** Leaky integrate-and-fire, tau = 2, threshold 0.5, hard reset, T = 10
  steps. Every SN receives its input as a constant current for the T steps (direct encoding, as in
  Spikformer) and outputs its firing *rate* (mean of the T spikes). The convolutions before an SN
  are therefore computed once, and the T-step loop runs only in the neuron; ONNX export unrolls it
  (10 elementwise steps per SN). Surrogate gradient: forward Heaviside, backward the derivative of
  ``sigmoid(4 x)`` (straight-through form ``s + (H - s).detach()``, so export needs no custom op).
* **Working resolution.** Full-resolution frames go in (no resize, no crop; the frame is padded
  by edge replication to a multiple of 64, :func:`vcmtool.qpmap.prior.pad_to_ctu`, so that every
  CTU, partial ones included, is whole). The network then works at 1/``stem`` of that (average
  pooling; the shipped model uses stem 8, i.e. 8x8 cells per CTU) because it is trained and run
  on 2 shared CPU cores.
* **SSB** (eq. 8-9). The spatial softmax is over the H*W positions and multiplied by H*W so the
  weight map averages 1 (a plain softmax over ~10^5 positions would scale features to ~0).
* **CIB / TPB** (eq. 10). Channel weights from a shared layer (CSL: Conv1x1 -> SN -> global
  AvgPool; PSL: Conv1x1 -> SN -> Conv1x1 on the global Avg/Max pooled features); softmax over
  channels, then Conv3x3 -> SN. The "Reshape"s are layout no-ops here.
* Block output dims {3, 3, 6, 6, 16, 64} for all three branches (``widths``).
* **MRR** (eq. 11-12). The sigmoid scaling vector has one entry per (scale, channel) for the
  scales 1, 2, 4; F_mrr = sum over scales of Upsample(AvgPool_s(F_s) * scale_s).
* **TAA** (eq. 14-15). Tokens are the working-map positions. Without a softmax the product
  ``Q K^T V`` is associative, so it is computed as ``Q (K^T V) / N`` (linear cost in N; dividing by
  N keeps the scale independent of frame size) and multiplied by S = 0.125 (Spikformer's
  convention for S). Two SABs, cascaded with residuals.
* **QP head** (eq. 16). Conv3x3 -> SN on concat(F_mrr, F_taa), then average- and max-pooling to
  the CTU grid (our addition: the paper does not say how H x W becomes the CTU grid), then
  Conv1x1 -> qp_max * sigmoid.

Ablation switches (section 5.5): ``tfd=False`` replaces each branch by plain Conv3x3+ReLU layers
of the same widths, ``mrr=False`` replaces MRR by one Conv3x3, ``taa=False`` replaces TAA by
concat(Q, K, V) -> Conv1x1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

CTU = 64


@dataclass
class SnnConfig:
    widths: tuple[int, ...] = (3, 3, 6, 6, 16, 64)
    steps: int = 10  # T
    stem: int = 8  # working resolution = input / stem
    qp_max: int = 51
    tfd: bool = True
    mrr: bool = True
    taa: bool = True
    sabs: int = 2
    head_width: int = 32
    attn_scale: float = 0.125  # S

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> SnnConfig:
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def spike_fn(x: Tensor, slope: float = 4.0) -> Tensor:
    """Heaviside forward, sigmoid-derivative surrogate backward (plain Heaviside without grad)."""
    if not torch.is_grad_enabled():
        return (x >= 0).to(x.dtype)
    soft = torch.sigmoid(slope * x)
    return soft + ((x >= 0).to(x.dtype) - soft).detach()


class LIF(nn.Module):
    """Leaky integrate-and-fire neuron driven by a constant current for T steps; emits the rate.

    ``unrolled=True`` runs the T-step membrane recursion (v = v*(1-1/tau) + x/tau, spike when
    v >= threshold, hard reset). Under a constant input that recursion is periodic: the neuron
    fires every k(x) steps, k(x) = the first k with x*(1-(1-1/tau)^k) >= threshold, so the spike
    count is floor(T/k(x)), a staircase in x. The default closed form sums one surrogate
    Heaviside per stair (5 for T = 10 instead of 10 sequential steps); it gives the same spikes
    as the recursion (``tests/test_jrd_snn.py`` checks) at a fraction of the cost on CPU.
    """

    def __init__(
        self, steps: int = 10, tau: float = 2.0, threshold: float = 0.5, unrolled: bool = False
    ) -> None:
        super().__init__()
        self.steps, self.decay, self.threshold = steps, 1.0 - 1.0 / tau, threshold
        self.inv_tau = 1.0 / tau
        self.unrolled = unrolled
        # stair k (fire every k steps) starts at x_k = threshold / (1 - decay^k)
        self.stairs: list[tuple[float, float]] = []
        for k in range(1, steps + 1):
            jump = steps // k - steps // (k + 1)
            if jump:
                self.stairs.append((threshold / (1.0 - self.decay**k), jump / steps))

    def forward(self, x: Tensor) -> Tensor:
        if not self.unrolled:
            if not torch.is_grad_enabled():
                # inference/export: plain Heavisides (no surrogate nodes in the ONNX graph)
                out = (x >= self.stairs[0][0]).to(x.dtype) * self.stairs[0][1]
                for x_k, jump in self.stairs[1:]:
                    out = out + (x >= x_k).to(x.dtype) * jump
                return out
            out = torch.zeros_like(x)
            for x_k, jump in self.stairs:
                out = out + jump * spike_fn(x - x_k)
            return out
        v = torch.zeros_like(x)
        total = torch.zeros_like(x)
        for _ in range(self.steps):
            v = v * self.decay + x * self.inv_tau
            s = spike_fn(v - self.threshold)
            total = total + s
            v = v * (1.0 - s)  # hard reset
        return total / self.steps


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, c)


class SSB(nn.Module):
    """Spatial structure block (eq. 8-9)."""

    def __init__(self, cin: int, cout: int, steps: int) -> None:
        super().__init__()
        self.w_conv = nn.Conv2d(2, 1, 7, padding=3)
        self.w_sn = LIF(steps)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = _gn(cout)
        self.sn = LIF(steps)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        w = self.w_sn(self.w_conv(pooled))
        # softmax over positions times H*W, written shape-free so ONNX keeps H, W dynamic
        e = torch.exp(w - w.amax((2, 3), keepdim=True))
        w = e / e.mean((2, 3), keepdim=True)
        return self.sn(self.norm(self.conv(w * x)))


class _ChannelWeighted(nn.Module):
    """Shared tail of CIB and TPB (eq. 10): softmax over channels of w1*w2*x, Conv3x3, SN."""

    def __init__(self, cin: int, cout: int, steps: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = _gn(cout)
        self.sn = LIF(steps)

    def tail(self, x: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
        return self.sn(self.norm(self.conv(torch.softmax(w1 * w2 * x, 1) * x.shape[1])))


class CIB(_ChannelWeighted):
    """Channel interaction block: DW and PW paths, channel-shared layer (CSL)."""

    def __init__(self, cin: int, cout: int, steps: int) -> None:
        super().__init__(cin, cout, steps)
        self.dw = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin), _gn(cin), LIF(steps))
        self.pw = nn.Sequential(nn.Conv2d(cin, cin, 1), _gn(cin), LIF(steps))
        self.csl_conv = nn.Conv2d(cin, cin, 1)
        self.csl_sn = LIF(steps)

    def csl(self, f: Tensor) -> Tensor:
        return self.csl_sn(self.csl_conv(f)).mean((2, 3), keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(x, self.csl(self.dw(x)), self.csl(self.pw(x)))


class TPB(_ChannelWeighted):
    """Temporal pattern block: global Avg/Max pooling, pattern-shared layer (PSL)."""

    def __init__(self, cin: int, cout: int, steps: int) -> None:
        super().__init__(cin, cout, steps)
        self.psl = nn.Sequential(nn.Conv2d(cin, cin, 1), LIF(steps), nn.Conv2d(cin, cin, 1))

    def forward(self, x: Tensor) -> Tensor:
        w1 = self.psl(x.mean((2, 3), keepdim=True))
        w2 = self.psl(x.amax((2, 3), keepdim=True))
        return self.tail(x, w1, w2)


class PlainBlock(nn.Module):
    """The ablation's replacement: a standard 3x3 convolution (+ ReLU)."""

    def __init__(self, cin: int, cout: int, steps: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))


def _branch(block: type[nn.Module], cin: int, widths: tuple[int, ...], steps: int) -> nn.Sequential:
    layers, c = [], cin
    for w in widths:
        layers.append(block(c, w, steps))
        c = w
    return nn.Sequential(*layers)


class TFD(nn.Module):
    """Tri-branch feature decoupling -> (F_s, F_c, F_t)."""

    def __init__(self, cfg: SnnConfig, cin: int = 3) -> None:
        super().__init__()
        blocks = (SSB, CIB, TPB) if cfg.tfd else (PlainBlock,) * 3
        self.s, self.c, self.t = (_branch(b, cin, cfg.widths, cfg.steps) for b in blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.s(x), self.c(x), self.t(x)


class MRR(nn.Module):
    """Multi-scale redundancy removal (eq. 11-12)."""

    scales = (1, 2, 4)

    def __init__(self, c: int, steps: int) -> None:
        super().__init__()
        k = len(self.scales) * c
        self.pw = nn.Conv2d(2 * c, k, 1)
        self.sn1 = LIF(steps)
        self.dw = nn.Conv2d(k, k, 3, padding=1, groups=k)
        self.sn2 = LIF(steps)
        self.c = c

    def forward(self, fs: Tensor, fc: Tensor) -> Tensor:
        z = self.sn2(self.dw(self.sn1(self.pw(torch.cat([fs, fc], 1)))))
        scale = torch.sigmoid(z.amax((2, 3), keepdim=True) * 4.0 - 2.0)
        out = fs * scale[:, : self.c]
        for i, s in enumerate(self.scales[1:], start=1):
            down = F.avg_pool2d(fs, s, s, ceil_mode=True) * scale[:, i * self.c : (i + 1) * self.c]
            out = out + F.interpolate(down, size=fs.shape[2:], mode="nearest")
        return out


class PlainMRR(nn.Module):
    def __init__(self, c: int, steps: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, fs: Tensor, fc: Tensor) -> Tensor:
        return F.relu(self.conv(fs))


class SAB(nn.Module):
    """Spiking attention block (eq. 14)."""

    def __init__(self, c: int, steps: int, scale: float) -> None:
        super().__init__()

        def proj() -> nn.Sequential:
            return nn.Sequential(_gn(c), LIF(steps), nn.Conv2d(c, c, 1), LIF(steps))

        self.q, self.k, self.v = proj(), proj(), proj()
        self.attn_sn = LIF(steps)
        self.out = nn.Sequential(nn.Conv2d(c, c, 1), _gn(c), LIF(steps))
        self.scale = scale

    def forward(self, fq: Tensor, fk: Tensor, fv: Tensor) -> Tensor:
        c = fq.shape[1]
        q = self.q(fq).flatten(2)  # (n, c, N)
        k = self.k(fk).flatten(2)
        v = self.v(fv).flatten(2)
        tokens = torch.ones_like(k[:, :1, :]).sum(-1, keepdim=True)  # N as a tensor (ONNX)
        kv = torch.bmm(k, v.transpose(1, 2)) / tokens  # (n, c, c) = K^T V / N
        a = torch.bmm(kv.transpose(1, 2), q) * (self.scale * c)  # (n, c, N)
        a = self.attn_sn(a.reshape_as(fq))
        return self.out(a)


class TAA(nn.Module):
    """Temporal-based attention aggregation: cascaded SABs with residuals (eq. 15)."""

    def __init__(self, c: int, steps: int, sabs: int, scale: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SAB(c, steps, scale) for _ in range(sabs))

    def forward(self, fs: Tensor, fc: Tensor, ft: Tensor) -> Tensor:
        x = self.blocks[0](fs, fc, ft)
        for b in self.blocks[1:]:
            x = x + b(x, x, ft)
        return x


class PlainTAA(nn.Module):
    """The ablation's simple attention: concat(Q, K, V) -> Conv."""

    def __init__(self, c: int, *_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3 * c, c, 1)

    def forward(self, fs: Tensor, fc: Tensor, ft: Tensor) -> Tensor:
        return F.relu(self.conv(torch.cat([fs, fc, ft], 1)))


class QPHead(nn.Module):
    """Eq. 16: Conv(SN(Conv(concat))) -> CTU grid."""

    def __init__(self, cin: int, width: int, steps: int, cells: int, qp_max: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, padding=1)
        self.sn = LIF(steps)
        self.conv2 = nn.Conv2d(2 * width, 1, 1)
        self.cells, self.qp_max = cells, qp_max

    def forward(self, x: Tensor) -> Tensor:
        z = self.sn(self.conv1(x))
        g = torch.cat([F.avg_pool2d(z, self.cells), F.max_pool2d(z, self.cells)], 1)
        return self.qp_max * torch.sigmoid(self.conv2(g))[:, 0]


class SnnJrd(nn.Module):
    def __init__(self, cfg: SnnConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SnnConfig()
        if CTU % cfg.stem:
            raise ValueError(f"stem {cfg.stem} must divide the CTU size {CTU}")
        c = cfg.widths[-1]
        self.tfd = TFD(cfg)
        self.mrr = (MRR if cfg.mrr else PlainMRR)(c, cfg.steps)
        self.taa = TAA(c, cfg.steps, cfg.sabs, cfg.attn_scale) if cfg.taa else PlainTAA(c)
        self.head = QPHead(2 * c, cfg.head_width, cfg.steps, CTU // cfg.stem, cfg.qp_max)

    def forward(self, fp: Tensor) -> Tensor:
        """``fp`` (N, 3, H, W) with H, W multiples of 64 (:func:`vcmtool.qpmap.prior.pad_to_ctu`)."""
        x = F.avg_pool2d(fp, self.cfg.stem) if self.cfg.stem > 1 else fp
        fs, fc, ft = self.tfd(x)
        return self.head(torch.cat([self.mrr(fs, fc), self.taa(fs, fc, ft)], 1))


def jrd_loss(
    pred: Tensor, target: Tensor, alpha: float = 0.3, theta: float = 3.0, weight: Tensor | None = None
) -> Tensor:
    """Eq. 5: alpha * mean|d| + (1 - alpha) * sum(|d| * [|d| > theta]) / sum([|d| > theta]).

    ``||.||_1`` is taken as the mean absolute error (per CTU) so both terms are in QP units; the
    masked term is 0 when no CTU is off by more than theta. ``weight`` (per CTU, broadcastable)
    turns both means into weighted means; None is the paper's unweighted loss.
    """
    diff = (pred - target).abs()
    w = torch.ones_like(diff) if weight is None else weight.expand_as(diff).to(diff.dtype)
    mask = (diff > theta).to(diff.dtype) * w
    masked = (diff * mask).sum() / mask.sum().clamp_min(1.0)
    return alpha * (diff * w).sum() / w.sum() + (1.0 - alpha) * masked
