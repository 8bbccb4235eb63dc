"""Training of the CDRE modules (the CDRE paper, eq. 8): L = L_det + lambda * sum_i (1 + cos(F_i^o, F_i^c)).

``L_det`` is the YOLOv3 loss of the (frozen or jointly tuned) PyTorch YOLOv3-tiny on the
*decoded* frames with the CDRE embedding, against pseudo labels: the same detector's
detections on the *original* frames. Variants: ``fd`` (detector frozen, "Ours-FD") and
``joint`` (detector fine-tuned too, "Ours").
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor
from tqdm import tqdm

from vcmtool.eval.coco import EVAL_MIN_SCORE, GroundTruth
from vcmtool.sidestreams.cdre_model import CdreConfig, CdreEncoder, CdreReceiver
from vcmtool.sidestreams.cdre_receiver import placements
from vcmtool.tasks.darknet import Yolo
from vcmtool.tasks.darknet_torch import DarknetYolo
from vcmtool.tasks.yolov3_tiny import DEFAULT_INPUT, pipeline_for

PSEUDO_MIN_SCORE = 0.25


def to_tensor(bgrs: Sequence[np.ndarray]) -> Tensor:
    """uint8 BGR (H, W, 3) frames -> (B, 3, H, W) RGB in [0, 1]."""
    a = np.stack(bgrs)[..., ::-1].transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)


def _wh_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    inter = torch.minimum(wh[:, None], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def yolo_loss(
    outs: Sequence[Tensor],
    targets: Sequence[np.ndarray],
    heads: Sequence[Yolo],
    input_size: tuple[int, int],
    ignore_iou: float = 0.5,
) -> Tensor:
    """YOLOv3 loss; ``targets[b]`` = (N, 5) [x0, y0, x1, y1, class] in network-input pixels.

    Each box goes to the anchor (over all heads) whose shape fits it best; objectness of the
    other cells is pushed to 0 unless their prediction already overlaps a box (darknet's ignore).
    """
    in_w, in_h = input_size
    anchors = torch.tensor([a for h in heads for a in h.anchors], dtype=torch.float32)
    owner = [(k, j) for k, h in enumerate(heads) for j in range(len(h.anchors))]
    bsz = outs[0].shape[0]
    total = outs[0].new_zeros(())
    parsed = []
    for out, head in zip(outs, heads, strict=True):
        b, _, gh, gw = out.shape
        na, nc = len(head.anchors), head.classes
        parsed.append(out.view(b, na, 5 + nc, gh, gw).permute(0, 1, 3, 4, 2))
    for k, (t, head) in enumerate(zip(parsed, heads, strict=True)):
        _, na, gh, gw, _ = t.shape
        sx, sy = in_w / gw, in_h / gh
        anc = torch.tensor(head.anchors, dtype=torch.float32)
        gy, gx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        with torch.no_grad():
            cx = (torch.sigmoid(t[..., 0]) + gx) * sx
            cy = (torch.sigmoid(t[..., 1]) + gy) * sy
            bw = torch.exp(t[..., 2].clamp(max=10)) * anc[:, 0, None, None]
            bh = torch.exp(t[..., 3].clamp(max=10)) * anc[:, 1, None, None]
            pred = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        obj_t = torch.zeros(t.shape[:4])
        keep = torch.ones(t.shape[:4], dtype=torch.bool)
        pos: list[tuple[int, int, int, int, Tensor, int]] = []
        for bi in range(bsz):
            tb = torch.as_tensor(targets[bi], dtype=torch.float32).reshape(-1, 5)
            if not len(tb):
                continue
            keep[bi] &= ~(_box_iou(pred[bi].reshape(-1, 4), tb[:, :4]).amax(1) > ignore_iou).view(na, gh, gw)
            wh = (tb[:, 2:4] - tb[:, 0:2]).clamp(min=1.0)
            best = _wh_iou(wh, anchors).argmax(1)
            for n in range(len(tb)):
                hk, a = owner[int(best[n])]
                if hk != k:
                    continue
                c = (tb[n, 0:2] + tb[n, 2:4]) / 2
                i, j = int((c[1] / sy).clamp(0, gh - 1)), int((c[0] / sx).clamp(0, gw - 1))
                txy = torch.stack([c[0] / sx - j, c[1] / sy - i])
                twh = torch.log(wh[n] / anc[a])
                pos.append((bi, a, i, j, torch.cat([txy, twh]), int(tb[n, 4])))
                obj_t[bi, a, i, j] = 1.0
                keep[bi, a, i, j] = True
        obj_logit = t[..., 4]
        total = total + F.binary_cross_entropy_with_logits(obj_logit[keep], obj_t[keep], reduction="sum")
        if pos:
            idx = tuple(torch.tensor([p[q] for p in pos]) for q in range(4))
            sel = t[idx]
            box_t = torch.stack([p[4] for p in pos])
            total = total + F.binary_cross_entropy_with_logits(
                sel[:, 0:2], box_t[:, 0:2].clamp(0, 1), reduction="sum"
            )
            total = total + 0.5 * F.mse_loss(sel[:, 2:4], box_t[:, 2:4], reduction="sum")
            cls_t = torch.zeros_like(sel[:, 5:])
            cls_t[torch.arange(len(pos)), torch.tensor([p[5] for p in pos])] = 1.0
            total = total + F.binary_cross_entropy_with_logits(sel[:, 5:], cls_t, reduction="sum")
    return total / bsz


def cosine_term(fo: Sequence[Tensor], fc: Sequence[Tensor]) -> Tensor:
    """sum_i mean over pixels of (1 + cos(F_i^o, F_i^c)) along channels (eq. 8)."""
    return sum((1.0 + F.cosine_similarity(a, b, dim=1)).mean() for a, b in zip(fo, fc, strict=True))


@dataclass
class TrainConfig:
    variant: str = "fd"  # "fd": frozen detector; "joint": detector fine-tuned too
    steps: int = 400
    batch: int = 4
    lr: float = 2e-3
    detector_lr: float = 1e-5
    lam: float = 0.1  # the paper's value for object detection
    seed: int = 0
    threads: int = 2
    val_every: int = 25  # steps between validations (when validation items are given)
    # checkpoint selection on the validation frames: "map" keeps the highest mAP@.5 vs pseudo GT
    # (what the bench scores); "loss" the lowest detection loss, which suppressing detections
    # can lower while mAP falls, so it is kept only to reproduce older models
    select: str = "map"


def _better_map(v: dict, best: dict) -> bool:
    # strictly higher: ties keep the earlier state, so the identity start wins unless beaten
    return v["val_map50"] > best["val_map50"]


def _better_loss(v: dict, best: dict) -> bool:
    return v["val_det"] < best["val_det"]


SELECTORS = {"map": _better_map, "loss": _better_loss}


class Trainer:
    """Holds the nets, the pseudo labels and the data; ``process`` runs the training."""

    def __init__(
        self, items: list[dict], cfg: CdreConfig, tcfg: TrainConfig, val_items: list[dict] | None = None
    ) -> None:
        torch.set_num_threads(tcfg.threads)
        torch.manual_seed(tcfg.seed)
        random.seed(tcfg.seed)
        self.cfg, self.tcfg = cfg, tcfg
        self.detector = DarknetYolo.from_darknet()
        self.pipeline = pipeline_for(self.detector.net_spec, DEFAULT_INPUT, 0.25, 0.45, True, 300)
        # validation mAP uses the bench's convention: a low score threshold for the scored detections
        self.eval_pipeline = pipeline_for(
            self.detector.net_spec, DEFAULT_INPUT, EVAL_MIN_SCORE, 0.45, True, 300
        )
        self.encoder, self.receiver = CdreEncoder(cfg), CdreReceiver(cfg)
        self.data = [np.load(it["npz"]) for it in items]
        self.data = [{"orig": d["orig"], "dec": d["dec"]} for d in self.data]
        by_segment: dict[str, list[np.ndarray]] = {}  # the originals are the same at every QP
        for it, d in zip(tqdm(items, desc="pseudo labels", disable=None), self.data, strict=True):
            if it["segment"] not in by_segment:
                by_segment[it["segment"]] = self._pseudo_labels(d["orig"])
        self.labels = [by_segment[it["segment"]] for it in items]
        val_items = val_items or []
        self.val = [{"orig": d["orig"], "dec": d["dec"]} for d in (np.load(it["npz"]) for it in val_items)]
        val_labels: dict[str, list[np.ndarray]] = {}
        for it, d in zip(val_items, self.val, strict=True):
            if it["segment"] not in val_labels:
                val_labels[it["segment"]] = self._pseudo_labels(d["orig"])
        self.val_labels = [val_labels[it["segment"]] for it in val_items]
        self.val_keys = [(it["segment"], int(it["qp"])) for it in val_items]
        self.val_gt = self._val_ground_truth(val_items) if val_items else None

    def _val_ground_truth(self, val_items: list[dict]) -> GroundTruth:
        """Pseudo GT as in :mod:`vcmtool.lab.cdre.evaluate`: the plain detector on the originals
        (computed before training, so the joint variant's tuning does not move it)."""
        frames: dict[tuple[str, int], list] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for it, d in zip(val_items, self.val, strict=True):
            seg = it["segment"]
            if seg in sizes:
                continue
            sizes[seg] = (int(d["orig"].shape[2]), int(d["orig"].shape[1]))
            for s in range(0, len(d["orig"]), 4):
                blob, lbs = self.eval_pipeline.preprocess(list(d["orig"][s : s + 4]))
                with torch.no_grad():
                    heads = self.detector(torch.from_numpy(blob))
                dets = self.eval_pipeline.postprocess([h.numpy() for h in heads], lbs)
                for i, x in enumerate(dets, start=s):
                    frames[(seg, i)] = x.rows()
        return GroundTruth.from_detections(frames, sizes)

    def _pseudo_labels(self, frames: np.ndarray) -> list[np.ndarray]:
        """Detections on the originals, as (N, 5) canvas-pixel targets."""
        out = []
        blob, lbs = self.pipeline.preprocess(list(frames))
        with torch.no_grad():
            heads = self.detector(torch.from_numpy(blob))
        dets = self.pipeline.postprocess([h.numpy() for h in heads], lbs)
        for d, lb in zip(dets, lbs, strict=True):
            d = d.filter(min_score=PSEUDO_MIN_SCORE)
            b = d.boxes.copy()
            b[:, 0::2] = b[:, 0::2] * (lb.new_w / lb.src_w) + lb.pad_x
            b[:, 1::2] = b[:, 1::2] * (lb.new_h / lb.src_h) + lb.pad_y
            out.append(np.concatenate([b, d.classes[:, None].astype(np.float32)], 1))
        return out

    def _det_loss(
        self, d: dict, labels: list[np.ndarray], idx: list[int]
    ) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor]]:
        orig, dec = [d["orig"][i] for i in idx], [d["dec"][i] for i in idx]
        bits, fo, fc = self.encoder.encode(to_tensor(orig), to_tensor(dec))
        blob, lbs = self.pipeline.preprocess(dec)
        heads = self.receiver.run_detector(self.detector, torch.from_numpy(blob), bits, placements(lbs))
        det = yolo_loss(heads, [labels[i] for i in idx], self.detector.heads, self.pipeline.input_size)
        return det, bits, fo, fc

    def validate(self) -> dict:
        """On the validation items: ``val_det``, the mean detection loss per frame, and
        ``val_map50``, the mean over QPs of mAP@.5 (pycocotools) against the pseudo GT, with the
        modules in eval mode as shipped; ``val_map50_by_qp`` holds the per-QP values."""
        total, n = 0.0, 0
        by_qp: dict[int, dict[tuple[str, int], list]] = {}
        modules = (self.encoder, self.receiver)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            with torch.no_grad():
                for d, labels, (seg, qp) in zip(self.val, self.val_labels, self.val_keys, strict=True):
                    for s in range(0, len(d["orig"]), 4):
                        idx = list(range(s, min(s + 4, len(d["orig"]))))
                        dec = [d["dec"][i] for i in idx]
                        orig = to_tensor([d["orig"][i] for i in idx])
                        bits, _, _ = self.encoder.encode(orig, to_tensor(dec))
                        blob, lbs = self.eval_pipeline.preprocess(dec)
                        heads = self.receiver.run_detector(
                            self.detector, torch.from_numpy(blob), bits, placements(lbs)
                        )
                        total += float(
                            yolo_loss(
                                heads, [labels[i] for i in idx], self.detector.heads, self.pipeline.input_size
                            )
                        ) * len(idx)
                        n += len(idx)
                        dets = self.eval_pipeline.postprocess([h.numpy() for h in heads], lbs)
                        for i, x in zip(idx, dets, strict=True):
                            by_qp.setdefault(qp, {})[(seg, i)] = x.rows()
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.train(mode)
        maps = {qp: self.val_gt.match(frames).scores().map50 for qp, frames in sorted(by_qp.items())}
        return {
            "val_det": total / max(n, 1),
            "val_map50": float(np.mean(list(maps.values()))),
            "val_map50_by_qp": {str(q): v for q, v in maps.items()},
        }

    def step_loss(self, di: int, idx: list[int]) -> tuple[Tensor, dict]:
        det, bits, fo, fc = self._det_loss(self.data[di], self.labels[di], idx)
        cos = cosine_term(fo, fc)
        return det + self.tcfg.lam * cos, {
            "det": float(det.detach()),
            "cos": float(cos.detach()),
            "bits_mean": float(bits.detach().mean()),
        }

    def save(self, path: str | Path, history: list[dict], selected: dict | None = None) -> None:
        from vcmtool.atomic import atomic_path

        blob = {
            "config": self.cfg.to_dict(),
            "train": self.tcfg.__dict__,
            "history": history,
            "encoder": self.encoder.state_dict(),
            "receiver": self.receiver.state_dict(),
        }
        if selected is not None:
            blob["selected"] = selected
        blob["validation"] = [
            {k: h[k] for k in ("step", "val_map50", "val_det")} for h in history if "val_det" in h
        ]
        if self.tcfg.variant == "joint":
            blob["detector"] = self.detector.state_dict()
        with atomic_path(Path(path)) as tmp:
            torch.save(blob, tmp)

    def process(self, checkpoint: str | Path | None = None, every: int = 10) -> list[dict]:
        """Train; with validation items, ``checkpoint`` holds the best validated state by
        ``select`` (step 0, the identity embedding, included and kept on ties, so the selected
        model is never worse on validation than no embedding) and ``<checkpoint>.last.pt`` the latest."""
        t = self.tcfg
        if t.select not in SELECTORS:
            raise ValueError(f"select must be one of {sorted(SELECTORS)}, not {t.select!r}")
        better = SELECTORS[t.select]
        params = [{"params": [*self.encoder.parameters(), *self.receiver.parameters()], "lr": t.lr}]
        self.detector.requires_grad_(t.variant == "joint")
        if t.variant == "joint":
            params.append({"params": self.detector.parameters(), "lr": t.detector_lr})
        self.detector.eval()  # BN statistics stay darknet's; only weights move in "joint"
        opt = torch.optim.Adam(params)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, t.steps)
        history, t0 = [], time.perf_counter()
        best: dict | None = None
        last = Path(f"{checkpoint}.last.pt") if checkpoint and self.val else checkpoint

        def validate(done: int) -> None:
            nonlocal best
            v = self.validate()
            if t.select == "map" and np.isnan(v["val_map50"]):
                # NaN compares as never better: step 0 would ship silently whatever training did
                raise ValueError("the validation frames have no pseudo-GT detections; cannot select on mAP")
            history.append({"step": done, **v, "elapsed_s": round(time.perf_counter() - t0, 1)})
            if best is None or better(v, best):
                best = {"step": done, "by": t.select, "val_det": v["val_det"], "val_map50": v["val_map50"]}
                if checkpoint:
                    self.save(checkpoint, history, best)

        if self.val:
            validate(0)
        for step in tqdm(range(t.steps), desc=f"train cdre-{t.variant}", disable=None):
            di = random.randrange(len(self.data))
            n = len(self.data[di]["orig"])
            idx = random.sample(range(n), min(t.batch, n))
            loss, info = self.step_loss(di, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            history.append(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    **info,
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
            if self.val and (step % t.val_every == t.val_every - 1 or step == t.steps - 1):
                validate(step + 1)
            if last and (step % every == every - 1 or step == t.steps - 1):
                self.save(last, history, best)
        return history


class _OnnxEncoder(torch.nn.Module):
    """Bits as float 0/1; the host pads frames to a multiple of 32 (no shape arithmetic in the graph)."""

    def __init__(self, enc: CdreEncoder) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, original: Tensor, decoded: Tensor) -> Tensor:
        fo, fc = self.enc.extractor(original), self.enc.extractor(decoded)
        return torch.round(torch.sigmoid(self.enc.encoder(original, decoded, fo, fc)))


def _steps(ck: dict) -> int:
    """Training steps behind the checkpoint's weights (the selected step when validation chose)."""
    if "selected" in ck:
        return int(ck["selected"]["step"])
    return sum(1 for h in ck["history"] if "loss" in h)


def detector_delta(tuned: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fine-tuned minus darknet weights in float16: half the size of the full state, and the
    rounding error is relative to the (small) change, not to the weights."""
    base = DarknetYolo.from_darknet().state_dict()
    return {
        k: (v.float() - base[k].float()).half()
        for k, v in tuned.items()
        if v.is_floating_point() and not torch.equal(v, base[k])
    }


def export_models(checkpoint: str | Path, out_dir: str | Path, prefix: str = "cdre") -> dict[str, Path]:
    """Checkpoint -> ``<prefix>_encoder.onnx`` (sender) and ``<prefix>_decoder.pt`` (receiver
    modules; a jointly tuned detector travels as a float16 delta to the darknet weights)."""
    import io
    import warnings

    import onnx

    from vcmtool.atomic import atomic_path, write_bytes_atomic

    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = CdreConfig.from_dict(ck["config"])
    enc = CdreEncoder(cfg)
    enc.load_state_dict(ck["encoder"])
    enc.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    x = torch.rand(1, 3, 64, 96)
    axes = {n: {2: "height", 3: "width"} for n in ("original", "decoded", "bits")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _OnnxEncoder(enc),
            (x, x),
            buf,
            input_names=["original", "decoded"],
            output_names=["bits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load_from_string(buf.getvalue())
    variant = ck["train"].get("variant", "fd")
    onnx.helper.set_model_props(
        model, {"channels": str(cfg.channels), "stride": "32", "version": f"cdre-{variant}-s{_steps(ck)}"}
    )
    enc_path, dec_path = out_dir / f"{prefix}_encoder.onnx", out_dir / f"{prefix}_decoder.pt"
    write_bytes_atomic(enc_path, model.SerializeToString())
    blob = {"config": cfg.to_dict(), "variant": variant, "steps": _steps(ck), "receiver": ck["receiver"]}
    if "detector" in ck:
        blob["detector_delta"] = detector_delta(ck["detector"])
    with atomic_path(dec_path) as tmp:
        torch.save(blob, tmp)
    return {"encoder": enc_path, "decoder": dec_path}
