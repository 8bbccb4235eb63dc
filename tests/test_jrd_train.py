"""`vcmtool jrd train`: real training on a 4-image slice of the shipped JRD dataset, resume, recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vcmtool.lab.jrd.train import TrainOptions, WeightEma, _lr_at, _mirror, train  # noqa: E402

DATASET = Path(__file__).resolve().parents[1] / "data" / "jrd-hevc"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Three skimage images to train on and one to validate, with their real labels."""
    root = tmp_path_factory.mktemp("jrd-tiny")
    manifest = json.loads((DATASET / "manifest.json").read_text())
    picks = [e for e in manifest["images"] if e["source"].startswith("skimage:")][:4]
    assert len(picks) == 4
    for i, e in enumerate(picks):
        e["split"] = "val" if i == 3 else "train"
        for key in ("label", "instances"):
            (root / e[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(DATASET / e[key], root / e[key])
    manifest["images"] = picks
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_train_resume_and_recipe(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    cache = str(tmp_path / "inputs")
    opts = TrainOptions(
        kind="snn",
        epochs=2,
        config={"stem": 16},
        ema=0.9,
        schedule="cosine",
        instance_weight=2.0,
        augment=True,
        clip=5.0,
        cache=cache,
    )
    res = train(tiny_dataset, out, opts, log=lambda m: None)
    assert [r["epoch"] for r in res["history"]] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["val"]["E_total"] is not None for r in res["history"])
    ck = torch.load(out / "last.pt", weights_only=False)
    # the shipped state is the weight average; the optimiser's own weights are kept to resume
    raw, avg = ck["raw_state"], ck["state"]
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].dtype.is_floating_point)
    assert ck["recipe"]["schedule"] == "cosine" and (out / "best.pt").is_file()

    opts.epochs, opts.resume = 3, True
    res = train(tiny_dataset, out, opts, log=lambda m: None)
    assert [r["epoch"] for r in res["history"]] == [1, 2, 3]


def test_mirror_keeps_input_and_label_grid_aligned():
    x = torch.arange(2 * 128 * 192, dtype=torch.float32).reshape(1, 2, 128, 192)
    y = torch.arange(2 * 3, dtype=torch.float32).reshape(1, 2, 3)
    mx, my = _mirror(x, y)
    # CTU column 0 of the mirrored input holds the pixels of the original's last CTU column
    assert torch.equal(mx[..., :64], torch.flip(x[..., 128:], dims=[-1]))
    assert torch.equal(my[..., 0], y[..., 2])


def test_cosine_schedule_and_ema():
    opts = TrainOptions(lr=1e-3, schedule="cosine")
    assert _lr_at(opts, 0, 100) == pytest.approx(1e-3)
    assert _lr_at(opts, 50, 100) == pytest.approx(5e-4)
    assert _lr_at(opts, 100, 100) == pytest.approx(0.0)
    lin = torch.nn.Linear(2, 1)
    ema = WeightEma(lin, 0.5)
    before = ema.state["weight"].clone()
    with torch.no_grad():
        lin.weight.add_(2.0)
    ema.update(lin)
    assert torch.allclose(ema.state["weight"], before + 1.0)


def test_bad_recipe_is_a_usage_error(tiny_dataset, tmp_path):
    from vcmtool.errors import UsageError

    with pytest.raises(UsageError):
        train(tiny_dataset, tmp_path / "x", TrainOptions(schedule="step"), log=lambda m: None)


def test_instance_weights_cover_labelled_instances(tiny_dataset, tmp_path):
    from vcmtool.lab.jrd.metrics import load_samples
    from vcmtool.lab.jrd.train import instance_weights

    samples = load_samples(tiny_dataset, "train", "yolov3-tiny", tmp_path)
    s = next(s for s in samples if s.instances)
    w = instance_weights(s, 3.0)
    assert set(np.unique(w)) <= {1.0, 4.0} and (w == 4.0).any()
    # weight 0 on every instance CTU reproduces eq. 5 restricted to the background
    from vcmtool.lab.jrd.snn import jrd_loss

    pred, y = torch.rand(1, *w.shape) * 51, torch.from_numpy(s.label)[None]
    bg = torch.from_numpy(w == 1.0)[None]
    assert torch.isclose(jrd_loss(pred, y, weight=bg.float()), jrd_loss(pred[bg], y[bg]))
