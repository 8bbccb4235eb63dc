"""CDRE distillation training (issue #18): the real darknet YOLOv3-tiny as teacher and student."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vcmtool.lab.cdre.train import (
    TrainConfig,
    Trainer,
    export_models,
    feature_distill,
    head_distill,
    receiver_forward,
    to_tensor,
)
from vcmtool.sidestreams.cdre_model import CdreConfig
from vcmtool.sidestreams.cdre_receiver import placements


def _frames(bus_jpg, n: int = 2) -> np.ndarray:
    im = cv2.imread(str(bus_jpg))
    return np.stack(
        [cv2.resize(im[i * 40 : i * 40 + 960], (224, 288), interpolation=cv2.INTER_AREA) for i in range(n)]
    )


def _trainer(tmp_path, orig: np.ndarray, dec: np.ndarray, **kw) -> Trainer:
    np.savez(tmp_path / "train.npz", orig=orig, dec=dec)
    torch.manual_seed(0)
    return Trainer(
        [{"segment": "bus_t", "qp": 42, "npz": str(tmp_path / "train.npz")}],
        CdreConfig(),
        TrainConfig(threads=1, **kw),
    )


def test_distill_loss_is_zero_with_zero_gradient_at_identity(tmp_path, bus_jpg):
    """decoded == original and all s_i = 0: the receiver *is* the teacher, so the distillation
    loss is exactly 0 and no receiver parameter gets a gradient from it."""
    orig = _frames(bus_jpg)
    tr = _trainer(tmp_path, orig, orig.copy())
    tr.detector.requires_grad_(False)
    bits = tr.encoder(to_tensor(list(orig)), to_tensor(list(orig)))
    blob, lbs = tr.pipeline.preprocess(list(orig))
    heads, feats = receiver_forward(tr.receiver, tr.detector, torch.from_numpy(blob), bits, placements(lbs))
    th, tf = tr._teacher_outputs("bus_t", orig, [0, 1])
    loss, parts = tr.distill_loss(heads, feats, (th, tf))
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    assert parts["obj"] == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    grads = [p.grad for p in tr.receiver.parameters() if p.grad is not None]
    assert grads, "the loss must reach the receiver"
    assert max(float(g.abs().max()) for g in grads) < 1e-6
    # ... and it is not trivially zero: blurred inputs move both terms away from 0
    blurred = [cv2.GaussianBlur(f, (9, 9), 3) for f in orig]
    blob, lbs = tr.pipeline.preprocess(blurred)
    with torch.no_grad():
        heads, feats = tr.detector(torch.from_numpy(blob), return_features=True)
    assert float(feature_distill(feats, tf)) > 0.05
    assert float(head_distill(heads, th, tr.detector.heads)[0]) > 0.01


def test_few_distill_steps_reduce_the_loss_on_real_frames(tmp_path, bus_jpg):
    """Real frames, JPEG-degraded (a real codec's blocking), frozen darknet detector: a few
    Adam steps on one batch lower the distillation loss of that batch (the embedding learns)."""
    orig = _frames(bus_jpg)
    dec = np.stack([cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 8])[1], 1) for f in orig])
    tr = _trainer(tmp_path, orig, dec, steps=6, batch=2, lr=1e-2)
    tr.detector.requires_grad_(False)
    opt = torch.optim.Adam([*tr.encoder.parameters(), *tr.receiver.parameters()], lr=1e-2)
    first, info = tr.step_loss(0, [0, 1])
    assert info["feat"] > 0 and "det" not in info  # default: distill, no YOLO pseudo-label term
    losses = []
    for _ in range(6):
        loss, info = tr.step_loss(0, [0, 1])
        losses.append(info["distill"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.9 * losses[0], losses


def test_checkpoint_records_the_loss_config(tmp_path, bus_jpg):
    orig = _frames(bus_jpg, 1)
    tr = _trainer(tmp_path, orig, orig.copy(), steps=1, batch=1, rate_weight=0.01)
    tr.process(tmp_path / "ck.pt")
    ck = torch.load(tmp_path / "ck.pt", map_location="cpu", weights_only=False)
    assert ck["loss"]["loss"] == "distill" and ck["loss"]["rate_weight"] == 0.01
    assert ck["loss"]["lam"] == 0.1 and ck["loss"]["det_weight"] == 0.0
    # the exported sender names the objective (versions key caches: a yolo s1 is not a distill s1)
    import onnx

    paths = export_models(tmp_path / "ck.pt", tmp_path / "m")
    props = {p.key: p.value for p in onnx.load(str(paths["encoder"])).metadata_props}
    assert props["version"] == "cdre-fd-distill-s1"  # no validation: the last state
    assert torch.load(paths["decoder"], weights_only=False)["loss"]["loss"] == "distill"
    with pytest.raises(ValueError, match="loss must be one of"):
        _trainer(tmp_path, orig, orig, loss="l2")
