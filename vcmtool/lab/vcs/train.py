"""Label-free training of the VCS sender (Sem-Enc + factorized prior) and receiver (LFN).

Loss per step (the VCS paper, eq. 2-3, reduced to what trains on a CPU):

    L = L1(X^, X) + alpha * L_sem + lam * R

* ``X^ = LFN(X~, round(Sem-Enc(X, X~)))``: the fused clip; ``X``: the original; ``X~``: the
  codec's reconstruction (kvazaar, QPs 37/42/47, :mod:`vcmtool.lab.vcs.data`).
* ``L_sem``: bottleneck contrastive consistency. A small BM-Net condenses a clip into a one-bit
  map (stride 4, sigmoid + straight-through round), a CNN ``A`` pools it to a 2x2 grid of
  vectors per clip, and two 2-layer MLPs (``phi`` on the fused clip, ``rho`` on the original)
  project them; InfoNCE (temperature 0.2) pulls each fused cell to the same cell of its own
  original and pushes it from every other cell of every clip chunk in the batch (in-batch
  negatives instead of the paper's 65536-entry MoCo queue: the data here is three clips).
* ``R``: ``-log2 p`` of the transmitted bits under the learned per-channel Bernoulli prior, in
  bits per pixel (the coder spends within a word of that).
* Two phases. Measured: with the rate term (ramped from step 0) and semantic dropout from the
  start, every bit was 0 by step 250 and stayed there (the receiver learnt that zeros are the
  safe input before it learnt to use the bits); with neither, the stream was in use by step 200
  (+0.2 dB over LFN-only at step 300). So the first ``warmup`` share of the steps trains without
  rate and dropout, then the rate weight ramps up over another ``warmup`` share, dropout on.
* The pixel term is L1 instead of LPIPS + GAN (no perceptual network on this machine's budget).
* ``lam`` is small (0.02 per bpp) because of a measurement: with 0.2 (and a prior that lagged
  the bits) the stream, +0.07 dB over LFN-only at 0.018 bpp before the ramp, was switched off
  (all bits 0) as soon as the rate weight reached full strength: at that exchange rate the
  pixel gain of these bits is worth far less than they cost.
* Semantic dropout (phase 2): with probability ``zero_p`` a chunk's bits are replaced by zeros, so the
  same receiver is also the LFN-only baseline (semantic stream = zeros) and must not fall apart
  without the stream.

Selection: among the states validated under the full rate weight, the one with the best
validation PSNR of ``X^`` (full validation frames, QP 42) is kept; the history records, per
validation, PSNR of codec only, LFN-only and VCS, and the rate of the stream.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from vcmtool.sidestreams.vcs_model import (
    STRIDE,
    BernoulliPrior,
    LatentFusion,
    SemanticEncoder,
    VcsConfig,
    binarize_logits,
    n_params,
)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 4  # clip chunks per step
    frames: int = 4  # frames per chunk
    crop: int = 128
    lr: float = 1e-3
    alpha: float = 0.1  # L_sem weight (the paper's alpha)
    lam: float = 0.02  # rate weight on the sender, per bpp (L1 is in [0, 1] units)
    prior_lr: float = 0.05
    tau: float = 0.2
    zero_p: float = 0.1
    warmup: float = 0.25  # share of the steps without rate and dropout; the rate then ramps up
    threads: int = 1
    val_every: int = 250
    seed: int = 0
    max_minutes: float = 0.0  # stop early (and keep the best state) after this long; 0 = no limit


class BMNet(nn.Module):
    """One-bit bottleneck map of a clip (stride 4) and its grid embedding for the contrast."""

    def __init__(self, bits: int = 4, dim: int = 32) -> None:
        super().__init__()
        lk = nn.LeakyReLU(0.1)
        self.enc = nn.Sequential(
            nn.Conv2d(3, 12, 3, 2, 1), lk, nn.Conv2d(12, 12, 3, 2, 1), lk, nn.Conv2d(12, bits, 1)
        )
        self.agg = nn.Sequential(nn.Conv2d(bits, 16, 3, 2, 1), lk, nn.Conv2d(16, dim, 3, 2, 1), lk)
        self.phi = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, dim))
        self.rho = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, dim))

    def cells(self, clips: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B * 4, dim): the 2x2 grid cells of each clip, time-averaged."""
        b, t = clips.shape[:2]
        m = binarize_logits(self.enc(clips.flatten(0, 1)))
        f = self.agg(m)
        f = F.adaptive_avg_pool2d(f, 2).view(b, t, -1, 4).mean(1)  # (B, dim, 4)
        return f.transpose(1, 2).reshape(b * 4, -1)


def contrastive(bm: BMNet, fused: Tensor, original: Tensor, tau: float) -> Tensor:
    q = F.normalize(bm.phi(bm.cells(fused)), dim=1)
    k = F.normalize(bm.rho(bm.cells(original)), dim=1)
    logits = q @ k.t() / tau
    return F.cross_entropy(logits, torch.arange(len(q)))


def to_rgb(bgr: np.ndarray) -> Tensor:
    """uint8 BGR (..., H, W, 3) -> float RGB (..., 3, H, W) in [0, 1]."""
    a = np.ascontiguousarray(np.moveaxis(bgr[..., ::-1], -1, -3))
    return torch.from_numpy(a).float().div_(255.0)


def pad16(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def psnr(a: Tensor, b: Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


class Trainer:
    def __init__(self, train: list, val: list, cfg: VcsConfig, tc: TrainConfig) -> None:
        torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        self.rng = random.Random(tc.seed)
        self._step = 0
        self.train, self.val, self.cfg, self.tc = train, val, cfg, tc
        self.enc, self.lfn = SemanticEncoder(cfg), LatentFusion(cfg)
        self.prior, self.bm = BernoulliPrior(cfg.channels), BMNet()
        params = [p for m in (self.enc, self.lfn, self.bm) for p in m.parameters()]
        # the prior must track the bits' statistics as they change (measured: at the common rate
        # its logits lagged by thousands of steps and priced the bits wrongly), so it gets its own
        # fast rate
        self.opt = torch.optim.Adam(
            [{"params": params}, {"params": self.prior.parameters(), "lr": tc.prior_lr}], lr=tc.lr
        )
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, tc.steps, eta_min=tc.lr * 0.05)

    def sample(self) -> tuple[Tensor, Tensor]:
        """(B, T, 3, crop, crop) originals and reconstructions: random item, start, crop, flip."""
        tc = self.tc
        o, d = [], []
        for _ in range(tc.batch):
            orig, dec, _ = self.rng.choice(self.train)
            t0 = self.rng.randrange(orig.shape[0] - tc.frames + 1)
            y = self.rng.randrange(orig.shape[1] - tc.crop + 1)
            x = self.rng.randrange(orig.shape[2] - tc.crop + 1)
            sl = np.s_[t0 : t0 + tc.frames, y : y + tc.crop, x : x + tc.crop]
            a, b = orig[sl], dec[sl]
            if self.rng.random() < 0.5:
                a, b = a[:, :, ::-1], b[:, :, ::-1]
            o.append(to_rgb(a))
            d.append(to_rgb(b))
        return torch.stack(o), torch.stack(d)

    def step(self) -> dict:
        tc = self.tc
        orig, dec = self.sample()
        fused, rate, fit, pix = [], 0.0, 0.0, 0.0
        # phase 1 (warmup share of the steps): no rate, no dropout, the stream learns to help;
        # phase 2: the rate weight ramps up over another warmup share, dropout on
        ramp = (self._step - tc.warmup * tc.steps) / max(1.0, tc.warmup * tc.steps)
        warm = ramp > 0
        lam = tc.lam * min(1.0, max(0.0, ramp))
        for o, d in zip(orig, dec, strict=True):
            bits = binarize_logits(self.enc.logits(o, d))
            rate = rate + self.prior.bits(bits)
            fit = fit + self.prior.bits(bits.detach())
            if warm and self.rng.random() < tc.zero_p:
                bits = torch.zeros_like(bits)
            y = self.lfn(d, bits)
            pix = pix + F.l1_loss(y, o)
            fused.append(y)
        pixels = orig.shape[0] * orig.shape[1] * orig.shape[-1] * orig.shape[-2]
        bpp = rate / pixels
        pix = pix / len(fused)
        sem = contrastive(self.bm, torch.stack(fused), orig, tc.tau)
        # the prior fits the bits at full weight (its own parameters only); the sender pays lam
        loss = pix + tc.alpha * sem + lam * bpp + (1 - lam) * fit / pixels
        self._step += 1
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sched.step()
        return {"loss": loss.item(), "l1": pix.item(), "sem": sem.item(), "train_bpp": bpp.item()}

    @torch.no_grad()
    def validate(self) -> dict:
        """Whole validation frames: PSNR of codec only, LFN-only and VCS; stream bpp (prior)."""
        self.enc.eval()
        self.lfn.eval()
        acc = {"psnr_codec": [], "psnr_lfn": [], "psnr_vcs": [], "bpp": [], "ones": []}
        for orig, dec, _ in self.val:
            o, d = to_rgb(orig), to_rgb(dec)
            h, w = o.shape[-2:]
            op, dp = pad16(o), pad16(d)
            bits = (self.enc(op, dp) > 0.5).float()
            acc["bpp"].append(self.prior.bits(bits).item() / (o.shape[0] * h * w))
            acc["ones"].append(bits.mean().item())
            acc["psnr_codec"].append(psnr(d, o))
            acc["psnr_lfn"].append(psnr(self.lfn(dp, None)[..., :h, :w], o))
            acc["psnr_vcs"].append(psnr(self.lfn(dp, bits)[..., :h, :w], o))
        self.enc.train()
        self.lfn.train()
        return {k: float(np.mean(v)) for k, v in acc.items()}

    def state(self) -> dict:
        return {
            "encoder": {k: v.clone() for k, v in self.enc.state_dict().items()},
            "receiver": {k: v.clone() for k, v in self.lfn.state_dict().items()},
            "prior": {k: v.clone() for k, v in self.prior.state_dict().items()},
        }

    def process(self, out: str | Path, log=print) -> list[dict]:
        from vcmtool.atomic import atomic_path

        tc = self.tc
        history: list[dict] = []
        best, best_state = None, None
        t0 = time.time()
        log(f"params: encoder {n_params(self.enc)}, lfn {n_params(self.lfn)}, bm {n_params(self.bm)}")
        run = []
        for s in range(tc.steps + 1):
            over = tc.max_minutes and (time.time() - t0) > tc.max_minutes * 60
            if s % tc.val_every == 0 or s == tc.steps or over:
                v = {"step": s, "minutes": round((time.time() - t0) / 60, 2), **self.validate()}
                if run:
                    v.update({k: float(np.mean([r[k] for r in run])) for k in run[0]})
                    run = []
                history.append(v)
                log(" ".join(f"{k}={x:.4f}" if isinstance(x, float) else f"{k}={x}" for k, x in v.items()))
                # only states trained under the full rate weight compete (earlier ones send more)
                v["full_rate"] = s >= 2 * tc.warmup * tc.steps
                if best is None or (v["full_rate"], v["psnr_vcs"]) > (best["full_rate"], best["psnr_vcs"]):
                    best, best_state = v, self.state()
                ck = {
                    "config": self.cfg.to_dict(),
                    "train": asdict(tc),
                    "history": history,
                    "best": best,
                    "steps": best["step"],
                    **best_state,
                }
                with atomic_path(Path(out)) as tmp:
                    torch.save(ck, tmp)
            if s == tc.steps or over:
                break
            run.append(self.step())
        return history


class _OnnxSender(nn.Module):
    """(window, 3, H, W) original and decoded -> P(1) of the last frame's bits (C, H/16, W/16)."""

    def __init__(self, enc: SemanticEncoder) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, original: Tensor, decoded: Tensor) -> Tensor:
        return self.enc(original, decoded)[-1]


def export_models(checkpoint: str | Path, out_dir: str | Path, prefix: str = "vcs") -> dict[str, Path]:
    """Checkpoint -> ``<prefix>_encoder.onnx`` (sender, with ``window`` and ``probs`` metadata)
    and ``<prefix>_decoder.pt`` (LFN state, config and the same ``probs``)."""
    import io
    import warnings

    import onnx

    from vcmtool.atomic import atomic_path, write_bytes_atomic

    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = VcsConfig.from_dict(ck["config"])
    enc, prior = SemanticEncoder(cfg), BernoulliPrior(cfg.channels)
    enc.load_state_dict(ck["encoder"])
    prior.load_state_dict(ck["prior"])
    enc.eval()
    probs = prior.quantized()
    version = f"vcs-c{cfg.channels}-s{ck.get('steps', '?')}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = torch.rand(cfg.window, 3, 64, 96)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _OnnxSender(enc),
            (x, x),
            buf,
            input_names=["original", "decoded"],
            output_names=["bits"],
            dynamic_axes={
                "original": {2: "height", 3: "width"},
                "decoded": {2: "height", 3: "width"},
                "bits": {1: "rows", 2: "cols"},
            },
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load_from_string(buf.getvalue())
    meta = {
        "channels": str(cfg.channels),
        "stride": str(STRIDE),
        "window": str(cfg.window),
        "probs": ",".join(map(str, probs)),
        "version": version,
    }
    onnx.helper.set_model_props(model, meta)
    enc_path, dec_path = out_dir / f"{prefix}_encoder.onnx", out_dir / f"{prefix}_decoder.pt"
    write_bytes_atomic(enc_path, model.SerializeToString())
    blob = {
        "config": cfg.to_dict(),
        "receiver": ck["receiver"],
        "probs": probs,
        "version": version,
        "steps": ck.get("steps"),
    }
    with atomic_path(dec_path) as tmp:
        torch.save(blob, tmp)
    return {"encoder": enc_path, "decoder": dec_path}
