"""MFIBA: allocation math (budget, KKT closed form), model fits, and target-rate encodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import half_psnr_gap, run_cli
from vcmtool.errors import UsageError
from vcmtool.qpmap.maps import QPMaps
from vcmtool.qpmap.qpm import read_qpm
from vcmtool.ratecontrol import CauchyLossRate, QuadraticLossRate, RateQPModel, allocate, unconstrained_lambda
from vcmtool.ratecontrol.target import dither_round, split_units


def test_allocation_meets_budget_and_kkt():
    rng = np.random.default_rng(0)
    w, s = rng.uniform(0.1, 5, 40), rng.uniform(100, 4096, 40)
    alpha, beta, budget = 3.0, 0.8, 5000.0
    a = allocate(w, s, budget, alpha, beta)
    assert a.bits == pytest.approx(budget, rel=1e-6) and a.clipped == 0
    # stationarity of J: d/dr_i [w_i a r_i^-b] + lambda * s_i = 0 for every unit
    grad = w * alpha * beta * a.rates ** (-beta - 1)
    np.testing.assert_allclose(grad / s, a.lam, rtol=1e-6)
    # eq. 6 with the closed-form lambda of the unbounded problem
    lam = unconstrained_lambda(w, s, budget, alpha, beta)
    np.testing.assert_allclose(a.rates, (w * alpha * beta / (lam * s)) ** (1 / (beta + 1)), rtol=1e-6)
    # more importance -> more rate, at equal size
    b = allocate([1.0, 2.0, 4.0], [10, 10, 10], 30.0, 1.0, 0.5)
    assert b.rates[0] < b.rates[1] < b.rates[2]


def test_allocation_with_bounds_is_kkt_of_bounded_problem():
    w, s = np.array([10.0, 1.0, 1.0, 0.01]), np.array([100.0, 100.0, 100.0, 100.0])
    a = allocate(w, s, 200.0, 1.0, 1.0, r_min=0.2, r_max=0.8)
    assert a.bits == pytest.approx(200.0, rel=1e-6)
    assert a.rates[0] == pytest.approx(0.8) and a.rates[3] == pytest.approx(0.2) and a.clipped == 2
    free = (a.rates > 0.2) & (a.rates < 0.8)
    np.testing.assert_allclose((w * a.rates**-2.0 / s)[free], a.lam, rtol=1e-6)
    # a gradient at a bound must point outward (otherwise moving off the bound would help)
    g = w * a.rates**-2.0 / s
    assert g[0] >= a.lam and g[3] <= a.lam


def test_allocation_rejects_bad_input():
    with pytest.raises(UsageError):
        allocate([1, 1], [1, 1], -5, 1, 1)
    with pytest.raises(UsageError):
        allocate([1, 1], [1, 1], 1.0, 1, 1, r_min=1.0)  # below the bounded minimum
    with pytest.raises(UsageError):
        allocate([1], [1, 2], 1.0, 1, 1)


def test_cauchy_fit_recovers_parameters_and_beats_quadratic():
    rng = np.random.default_rng(1)
    r = np.geomspace(0.02, 2.0, 25)
    d = 2.5 * r**-0.7 * np.exp(rng.normal(0, 0.01, r.size))
    m, st = CauchyLossRate.fit(r, d)
    assert m.alpha == pytest.approx(2.5, rel=0.03) and m.beta == pytest.approx(0.7, rel=0.03)
    assert st.r > 0.999 and st.n == 25
    q, qst = QuadraticLossRate.fit(r, d)
    assert qst.rmse > st.rmse and qst.r < st.r


def test_rate_qp_fit_and_inverse():
    q = np.arange(22, 43, 5)
    rates = np.exp(1.5 - 0.11 * q)
    m, st = RateQPModel.fit(q, rates)
    assert m.b == pytest.approx(-0.11) and st.rmse < 1e-9
    assert float(m.qp(m.rate(31.3))) == pytest.approx(31.3)
    with pytest.raises(UsageError):
        RateQPModel.fit([30, 30], [1.0, 2.0])


def test_units_and_dither():
    d = np.full((2, 2, 3), 40, np.int16)
    d[:, 0, 0] = 30
    u = split_units(QPMaps(d, 64), 2, 100, 150)
    assert u.classes[0, 0, 0] == 1 and u.classes.sum() == 2
    assert u.sizes[0, 1, 2] == (100 - 64) * (150 - 128)
    x = np.full(1000, 30.0)
    assert dither_round(x + 0.3).mean() == pytest.approx(30.3, abs=0.01)


def _target(report: dict) -> dict:
    t = report["target"]
    assert abs(t["error_pct"]) <= 5.0, t
    assert t["achieved_kbps"] == pytest.approx(report["kbps"], abs=1e-2)
    assert t["passes"] == len(t["history"]) >= 3
    return t


def test_target_kbps_kvazaar_lands_within_5pct(bikes_y4m, tmp_path):
    out = tmp_path / "t.hevc"
    r = run_cli("encode", str(bikes_y4m), "--target-kbps", "150", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    t = _target(rep)
    assert t["kbps"] == 150.0 and out.stat().st_size * 8 >= rep["bits"] and rep["psnr_y"] > 25


def test_target_bpp_two_classes_favours_instances(bikes_y4m, tmp_path):
    # left half = "instance" class (low map QP), right half background
    maps = np.full((1, 2, 4), 40, np.int16)
    maps[:, :, :2] = 30
    np.save(tmp_path / "m.npy", maps)
    out, qpm = tmp_path / "c.hevc", tmp_path / "c.qpm"
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--qpmap",
        f"file:{tmp_path / 'm.npy'}",
        "--target-bpp",
        "0.1",
        "-o",
        str(out),
        "--qpm-out",
        str(qpm),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    t = _target(rep)
    assert t["class_qp"]["instance"] < t["class_qp"]["background"] - 1
    applied = read_qpm(qpm).data
    assert applied[:, :, :2].mean() < applied[:, :, 2:].mean()
    assert half_psnr_gap(bikes_y4m, out) > 1.0


def test_target_conflicting_options_exit_2(bikes_y4m, tmp_path):
    r = run_cli(
        "encode", str(bikes_y4m), "--target-kbps", "100", "--qp-offset", "2", "-o", str(tmp_path / "x.hevc")
    )
    assert r.returncode == 2 and "qp-offset" in r.stderr.decode() and not (tmp_path / "x.hevc").exists()
    r = run_cli("encode", str(bikes_y4m), "--target-kbps", "-3", "-o", str(tmp_path / "y.hevc"))
    assert r.returncode == 2 and "--target-kbps -3" in r.stderr.decode()


def test_feature_atlas_roundtrip_and_per_scale_qp():
    from vcmtool.lab.mfiba.features import CTU, Atlas, code_luma

    rng = np.random.default_rng(2)
    feats = {
        16: rng.normal(0, 2, (256, 26, 26)).astype(np.float32),
        32: rng.normal(1, 1, (256, 13, 13)).astype(np.float32),
    }
    atlas = Atlas({s: f.shape for s, f in feats.items()})
    assert atlas.height % CTU == 0 and atlas.width % CTU == 0
    y, ranges = atlas.pack(feats)
    back = atlas.unpack(y, ranges)
    for s, f in feats.items():
        step = (f.max() - f.min()) / 255
        assert np.abs(back[s] - f).max() <= step / 2 + 1e-5
    # real encode: the stride-32 region at a much higher QP must come back noisier
    bits, dec = code_luma(y, atlas.qp_grid({16: 22, 32: 45}), preset="ultrafast")
    assert bits > 0 and dec.shape == y.shape
    err = {
        r.stride: np.abs(dec[r.top : r.top + r.rows].astype(int) - y[r.top : r.top + r.rows]).mean()
        for r in atlas.regions
    }
    assert err[32] > 2 * err[16]


def test_unreachable_target_is_reported_not_hidden(bikes_y4m, tmp_path):
    r = run_cli(
        "encode",
        str(bikes_y4m),
        "--target-kbps",
        "1",
        "-o",
        str(tmp_path / "u.hevc"),
        "--json",
        "--preset",
        "ultrafast",
    )
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)["target"]
    assert t["error_pct"] > 5 and any("below" in n for n in t["notes"])
    assert any("not reached" in n for n in t["notes"])
