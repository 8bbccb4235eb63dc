"""CDRE networks (the CDRE paper, sec. II: Sun et al., "Embedding Compression Distortion in Video
Coding for Machines").

Encoder side (runs after the main encode, ~18K parameters, ~0.9K MACs per pixel):
  * :class:`CompressionSensitiveExtractor` - three Conv+InstanceNorm+LeakyReLU blocks, shared
    weights, applied to the original ``x`` and the decoded ``x_hat`` (eq. 2);
  * :class:`DistortionEncoder` - strided convs on ``cat(x, x_hat)`` whose first three blocks are
    modulated ``alpha_i * F_i + beta_i`` with ``alpha, beta = Conv(F_i^o, F_i^c)`` (eq. 4), then
    squeezed to ``channels`` maps at stride 32; ``round(sigmoid(y))`` gives the bits (eq. 5).
Decoder side (the receiver):
  * :class:`DistortionDecoder` - bits -> distortion feature ``F_d`` at stride 8 of the frame;
  * :class:`DistortionEmbedding` - ``d_i = ReLU(Norm(Conv(d_{i-1})))`` at the detector's four
    trunk strides and ``f_i' = f_i + CA(SA(f_i, d_i))`` (eq. 6), plugged into
    :class:`vcmtool.tasks.darknet_torch.DarknetYolo` through its ``feature_transform`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

STRIDE = 32  # one bit per channel per 32x32 block of the frame
LEAKY = 0.1


@dataclass(frozen=True)
class CdreConfig:
    channels: int = 6  # binary maps per 32x32 block (the paper's best)
    extractor: tuple[int, int, int] = (8, 16, 16)
    encoder: int = 16
    decoder: int = 32
    embed: int = 16
    stage_channels: tuple[int, ...] = (64, 128, 256, 256)  # YOLOv3-tiny trunk taps at strides 4..32
    stage_strides: tuple[int, ...] = (4, 8, 16, 32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CdreConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _block(cin: int, cout: int, stride: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    layers.append(nn.LeakyReLU(LEAKY))
    return nn.Sequential(*layers)


class CompressionSensitiveExtractor(nn.Module):
    """Multi-scale features F_1..3 (strides 2, 4, 8) of one image; shared for x and x_hat."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        cins = (3, *widths[:-1])
        self.blocks = nn.ModuleList(_block(a, b, 2) for a, b in zip(cins, widths, strict=True))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats


class DistortionEncoder(nn.Module):
    """cat(x, x_hat) -> compact representation y (B, channels, H/32, W/32), pre-sigmoid."""

    def __init__(self, cfg: CdreConfig) -> None:
        super().__init__()
        c = cfg.encoder
        self.blocks = nn.ModuleList([_block(6, c, 2, False), _block(c, c, 2, False), _block(c, c, 2, False)])
        # alpha and beta from the extractor features of both images (1x1: cheap on the encoder)
        self.modulation = nn.ModuleList(nn.Conv2d(2 * e, 2 * c, 1) for e in cfg.extractor)
        self.tail = nn.Sequential(_block(c, c, 2, False), nn.Conv2d(c, cfg.channels, 3, 2, 1))

    def forward(self, x: Tensor, x_hat: Tensor, fo: Sequence[Tensor], fc: Sequence[Tensor]) -> Tensor:
        h = torch.cat([x, x_hat], 1)
        for block, mod, a, b in zip(self.blocks, self.modulation, fo, fc, strict=True):
            h = block(h)
            alpha, beta = mod(torch.cat([a, b], 1)).chunk(2, 1)
            h = (1.0 + alpha) * h + beta  # 1+alpha: starts as the identity modulation
        return self.tail(h)


class BinaryRound(torch.autograd.Function):
    """round() with a straight-through gradient (the bits must stay exactly 0/1)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        return g


def pad_to_stride(x: Tensor, stride: int = STRIDE) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class CdreEncoder(nn.Module):
    """Encoder side: (original, decoded) RGB in [0, 1] -> bits (B, channels, ceil(H/32), ceil(W/32)).

    ``forward`` returns the hard 0/1 bits; ``encode`` also returns the extractor features the
    cosine term of the loss needs.
    """

    def __init__(self, cfg: CdreConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.extractor = CompressionSensitiveExtractor(cfg.extractor)
        self.encoder = DistortionEncoder(cfg)

    def encode(self, x: Tensor, x_hat: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        x, x_hat = pad_to_stride(x), pad_to_stride(x_hat)
        fo, fc = self.extractor(x), self.extractor(x_hat)
        y = self.encoder(x, x_hat, fo, fc)
        bits = BinaryRound.apply(torch.sigmoid(y))
        return bits, fo, fc

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return self.encode(x, x_hat)[0]


class DistortionDecoder(nn.Module):
    """bits -> F_d (B, decoder, 4*gh, 4*gw), i.e. at stride 8 of the (padded) frame."""

    def __init__(self, cfg: CdreConfig) -> None:
        super().__init__()
        c = cfg.decoder
        self.net = nn.Sequential(
            nn.Conv2d(cfg.channels, c, 3, 1, 1),
            nn.LeakyReLU(LEAKY),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(c, c, 3, 1, 1),
            nn.LeakyReLU(LEAKY),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(c, c, 3, 1, 1),
            nn.LeakyReLU(LEAKY),
        )

    def forward(self, bits: Tensor) -> Tensor:
        return self.net(2.0 * bits - 1.0)


class SpatialChannelAttention(nn.Module):
    """CA(SA(f, d)): a spatial gate from (f statistics, d), then a squeeze-excite channel gate."""

    def __init__(self, channels: int, embed: int) -> None:
        super().__init__()
        self.spatial = nn.Sequential(nn.Conv2d(2 + embed, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 1, 3, 1, 1))
        self.value = nn.Conv2d(embed, channels, 1)
        hidden = max(4, channels // 8)
        self.channel = nn.Sequential(
            nn.Linear(channels + embed, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )
        # zero-initialised output scale: at the start the embedding is exactly the identity, so a
        # frozen detector begins at its own accuracy and training can only move from there
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, f: Tensor, d: Tensor) -> Tensor:
        stats = torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], 1)
        gate = torch.sigmoid(self.spatial(torch.cat([stats, d], 1)))
        sa = gate * (f + self.value(d))
        pooled = torch.cat([sa.mean((2, 3)), d.mean((2, 3))], 1)
        ca = torch.sigmoid(self.channel(pooled))[:, :, None, None] * sa
        return f + self.scale * ca


@dataclass
class Placement:
    """Where the frame sits in the detector input (the letterbox), in input pixels."""

    new_w: int
    new_h: int
    pad_x: int
    pad_y: int
    dst_w: int
    dst_h: int
    src_w: int = 0
    src_h: int = 0
    extra: dict = field(default_factory=dict)


def place(fd: Tensor, placements: Sequence[Placement], stride: int) -> Tensor:
    """Resample F_d (per-frame, frame-aligned) onto the detector's canvas at ``stride``.

    The side stream is computed on the coded frame at its own resolution; the detector sees it
    letterboxed, so F_d is cropped to the real frame area, resized to the letterboxed image and
    zero-padded like the canvas.
    """
    out = []
    for i, p in enumerate(placements):
        f = fd[i : i + 1]
        if p.src_w and p.src_h:  # drop the padding added to reach a multiple of 32
            gh, gw = f.shape[-2:]
            ph, pw = -(-p.src_h // STRIDE) * STRIDE, -(-p.src_w // STRIDE) * STRIDE
            f = f[..., : max(1, round(gh * p.src_h / ph)), : max(1, round(gw * p.src_w / pw))]
        h, w = max(1, round(p.new_h / stride)), max(1, round(p.new_w / stride))
        f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)
        H, W = p.dst_h // stride, p.dst_w // stride  # noqa: N806
        y0, x0 = min(round(p.pad_y / stride), H - h), min(round(p.pad_x / stride), W - w)
        out.append(F.pad(f, (x0, W - w - x0, y0, H - h - y0)))
    return torch.cat(out, 0)


class DistortionEmbedding(nn.Module):
    """d_1..4 at the detector trunk strides and the attention that adds them to f_1..4."""

    def __init__(self, cfg: CdreConfig) -> None:
        super().__init__()
        self.strides = tuple(cfg.stage_strides)
        e = cfg.embed
        first = nn.Sequential(
            nn.Conv2d(cfg.decoder, e, 3, 1, 1), nn.InstanceNorm2d(e, affine=True), nn.ReLU()
        )
        rest = [
            nn.Sequential(nn.Conv2d(e, e, 3, 2, 1), nn.InstanceNorm2d(e, affine=True), nn.ReLU())
            for _ in self.strides[1:]
        ]
        self.transforms = nn.ModuleList([first, *rest])
        self.attn = nn.ModuleList(SpatialChannelAttention(c, e) for c in cfg.stage_channels)

    def prepare(self, fd_canvas: Tensor) -> dict[int, Tensor]:
        """d_i per stride from F_d already placed on the canvas at the first stride."""
        ds, d = {}, fd_canvas
        for s, t in zip(self.strides, self.transforms, strict=True):
            d = t(d)
            ds[s] = d
        return ds

    def embed(self, stride: int, f: Tensor, ds: dict[int, Tensor]) -> Tensor:
        if stride not in ds:
            return f
        d = ds[stride]
        if d.shape[-2:] != f.shape[-2:]:
            d = F.interpolate(d, size=f.shape[-2:], mode="nearest")
        return self.attn[self.strides.index(stride)](f, d)


class CdreReceiver(nn.Module):
    """Decoder side: distortion decoder + embedding into a DarknetYolo."""

    def __init__(self, cfg: CdreConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = DistortionDecoder(cfg)
        self.embedding = DistortionEmbedding(cfg)

    def run_detector(
        self, detector: nn.Module, blob: Tensor, bits: Tensor, placements: Sequence[Placement]
    ) -> list[Tensor]:
        fd = self.decoder(bits)
        # F_d is at stride 8 of the frame; upsampling to the canvas happens in place()
        ds = self.embedding.prepare(place(fd, placements, self.cfg.stage_strides[0]))
        return detector(blob, feature_transform=lambda s, f: self.embedding.embed(s, f, ds))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, *inputs: Tensor) -> int:
    """Multiply-accumulates of convs and linears for one forward (hooks; norms/activations ignored)."""
    total = 0

    def hook(m: nn.Module, _inp, out) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            total += out.numel() * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    counted = [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in counted]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total
