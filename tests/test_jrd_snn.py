"""SNN-JRD model: spiking neuron, shapes, loss eq. 5, and ONNX export parity (real torch/ORT)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vcmtool.lab.jrd.eljrd import ElJrd  # noqa: E402
from vcmtool.lab.jrd.snn import LIF, SnnConfig, SnnJrd, jrd_loss, spike_fn  # noqa: E402
from vcmtool.qpmap.prior import instance_prior, model_input  # noqa: E402
from vcmtool.tasks.base import Detections  # noqa: E402


def _dets(boxes, scores) -> Detections:
    return Detections(
        np.array(boxes, np.float32), np.array(scores, np.float32), np.zeros(len(scores), np.int32), ["person"]
    )


def test_lif_closed_form_equals_unrolled_recursion():
    x = torch.linspace(-1.0, 4.0, 20001)
    unrolled = LIF(steps=10, unrolled=True)(x)
    closed = LIF(steps=10)(x)
    assert torch.equal(unrolled, closed)
    # a constant current above every stair fires at every step; below the threshold never
    assert closed[-1] == 1.0 and closed[0] == 0.0
    assert len(torch.unique(closed)) > 4  # a real staircase of rates


@pytest.mark.parametrize("unrolled", [False, True])
def test_lif_surrogate_gradient_is_nonzero(unrolled):
    x = torch.linspace(0.0, 2.0, 101, requires_grad=True)
    LIF(unrolled=unrolled)(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # the forward pass is still a hard spike
    s = spike_fn(torch.tensor([-0.01, 0.0, 0.01]))
    assert s.tolist() == [0.0, 1.0, 1.0]


def test_loss_eq5_hand_computed():
    pred = torch.tensor([10.0, 20.0, 30.0, 40.0])
    target = torch.tensor([10.0, 25.0, 31.0, 50.0])
    # |d| = 0, 5, 1, 10: mean 4; masked (|d| > 3): 5 and 10 -> 7.5; 0.3*4 + 0.7*7.5 = 6.45
    assert float(jrd_loss(pred, target)) == pytest.approx(6.45)
    # nothing above theta: only the l1 term remains
    assert float(jrd_loss(pred, pred + 1)) == pytest.approx(0.3)


def test_prior_channels_and_odd_size_grid():
    bgr = np.full((130, 250, 3), 128, np.uint8)
    det = _dets([[10, 10, 60, 50], [20, 20, 30, 30], [0, 0, 250, 130]], [0.9, 0.5, 0.05])
    fp = instance_prior(bgr, det)
    assert fp.shape == (3, 130, 250)
    assert fp[1, 25, 25] == pytest.approx(0.9)  # max-reduced score
    assert fp[2, 25, 25] > fp[2, 45, 55]  # the smaller box dominates the smallness channel
    assert fp[1, 100, 200] == 0.0  # score 0.05 is below the prior's threshold
    x = torch.from_numpy(model_input(bgr, det))
    assert tuple(x.shape) == (1, 3, 192, 256)
    for cfg in (SnnConfig(stem=16), SnnConfig(stem=8, tfd=False, mrr=False, taa=False)):
        with torch.no_grad():
            q = SnnJrd(cfg).eval()(x)
        assert tuple(q.shape) == (1, 3, 4)  # ceil(130/64) x ceil(250/64)
        assert float(q.min()) >= 0 and float(q.max()) <= 51


def _export(model, kind, tmp_path, unrolled=False):
    from vcmtool.lab.jrd.export import export_onnx

    ck = {
        "kind": kind,
        "config": model.cfg.to_json()
        if kind == "snn"
        else {"stem": 8, "fallback": 26.0, "pos_weight": [1.0] * 8},
        "state": model.state_dict(),
        "epoch": 1,
        "history": [{"val": {}}],
        "qp_max": 51,
        "codec": "hevc",
    }
    torch.save(ck, tmp_path / f"{kind}.pt")
    return export_onnx(tmp_path / f"{kind}.pt", tmp_path / f"{kind}.onnx", unrolled=unrolled)


def test_onnx_matches_pytorch(tmp_path):
    # the export uses the closed-form LIF; its equality with the T-step recursion is tested above
    # (exporting the unrolled graph works too, `jrd export --unrolled`, but loads ~10x slower)
    unrolled = False
    from vcmtool.qpmap.jrd_model import JrdPredictor

    torch.manual_seed(0)
    model = SnnJrd(SnnConfig(stem=16)).eval()
    meta = _export(model, "snn", tmp_path, unrolled)
    assert meta["lif"] == ("unrolled" if unrolled else "closed-form")
    pred = JrdPredictor(tmp_path / "snn.onnx")
    assert pred.kind == "snn" and pred.qp_max == 51 and pred.provider.endswith("ExecutionProvider")
    rng = np.random.default_rng(1)
    for h, w in ((128, 192), (192, 320)):  # H, W are dynamic in the graph
        x = rng.random((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x))[0].numpy()
        out = pred.predict(x)
        assert out.shape == ref.shape == (h // 64, w // 64)
        np.testing.assert_allclose(out, ref, atol=0.05)


def test_eljrd_onnx_matches_pytorch_and_decodes_levels(tmp_path):
    from vcmtool.qpmap.jrd_model import JrdPredictor

    torch.manual_seed(0)
    model = ElJrd().eval()
    _export(model, "eljrd", tmp_path)
    x = np.random.default_rng(2).random((1, 3, 128, 256), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))[0].numpy()
    np.testing.assert_array_equal(JrdPredictor(tmp_path / "eljrd.onnx").predict(x), ref)
    # decoding: consecutive passes from level 32 upward; a failure stops the climb
    logits = torch.full((1, 8, 1, 3), -1.0)
    logits[0, :3, 0, 1] = 1.0  # passes 32, 38, 41 -> 41
    logits[0, :, 0, 2] = 1.0
    logits[0, 1, 0, 2] = -1.0  # passes 32 only (38 fails) -> 32
    assert model.decode(logits)[0, 0].tolist() == [26.0, 41.0, 32.0]
