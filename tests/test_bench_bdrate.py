"""Bjontegaard deltas and COCO scoring of the bench, on synthetic curves and boxes (pure math)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vcmtool.eval.bdrate import bd_quality, bd_quality_band, bd_rate, monotone_fit
from vcmtool.eval.coco import GroundTruth, bootstrap_samples, percentile_ci

RATE = np.array([0.01, 0.02, 0.04, 0.08])
MAP = np.array([40.0, 55.0, 66.0, 72.0])


def test_bd_rate_of_a_curve_against_itself_is_zero():
    r = bd_rate(RATE, MAP, RATE, MAP)
    assert r.value == pytest.approx(0.0, abs=1e-9)
    assert r.overlap == 1.0 and r.warnings == []
    assert bd_quality(RATE, MAP, RATE, MAP).value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.8, 0.5, 1.25])
def test_rate_scaled_curve_gives_the_known_bd_rate(factor):
    # same quality at factor x the bits: BD-rate is exactly (factor - 1) * 100 %
    r = bd_rate(RATE, MAP, RATE * factor, MAP)
    assert r.value == pytest.approx((factor - 1) * 100, abs=1e-6)


def test_quality_shifted_curve_gives_the_known_bd_quality():
    r = bd_quality(RATE, MAP, RATE, MAP + 3.0)
    assert r.value == pytest.approx(3.0, abs=1e-9)
    # and the same shift seen along the rate axis costs fewer bits
    assert bd_rate(RATE, MAP, RATE, MAP + 3.0).value < 0


def test_band_bd_quality_splits_the_whole_range_figure_and_sees_a_low_rate_gain():
    # a test curve better at low rates and worse at high ones: the halves have opposite signs,
    # they average to the whole-range figure, and the whole band is bd_quality itself
    qt = MAP + np.array([6.0, 3.0, -1.0, -4.0])
    whole = bd_quality(RATE, MAP, RATE, qt).value
    low = bd_quality_band(RATE, MAP, RATE, qt, band=(0.0, 0.5)).value
    high = bd_quality_band(RATE, MAP, RATE, qt, band=(0.5, 1.0)).value
    assert low > 2.0 and high < -1.0
    assert (low + high) / 2 == pytest.approx(whole, abs=1e-9)
    assert bd_quality_band(RATE, MAP, RATE, qt, band=(0.0, 1.0)).value == pytest.approx(whole, abs=1e-12)
    # the band is of the interval both curves cover: a shifted test curve moves it
    assert bd_quality_band(RATE, MAP, RATE, MAP + 3.0).value == pytest.approx(3.0, abs=1e-9)
    with pytest.raises(ValueError):
        bd_quality_band(RATE, MAP, RATE, qt, band=(0.5, 0.5))


def test_matches_the_bjontegaard_package_on_monotone_data():
    import bjontegaard as bd

    rt, qt = RATE * [0.9, 0.85, 0.95, 0.8], MAP + [1, -0.5, 2, 0.3]
    want = bd.bd_rate(RATE, MAP, rt, qt, "pchip", min_overlap=0)
    assert bd_rate(RATE, MAP, rt, qt).value == pytest.approx(want, rel=1e-12)


def test_non_monotone_curve_is_pooled_and_warned():
    q = np.array([40.0, 60.0, 55.0, 72.0])  # the third point dips
    fr, fq, pooled = monotone_fit(RATE, q)
    assert pooled == 1 and np.all(np.diff(fq) > 0) and np.all(np.diff(fr) > 0)
    assert fq[1] == pytest.approx(57.5)  # the violating pair pooled to its mean
    r = bd_rate(RATE, MAP, RATE, q)
    assert math.isfinite(r.value) and any("pooled" in w for w in r.warnings)


def test_disjoint_and_narrow_overlap_are_reported():
    none = bd_rate(RATE, MAP, RATE, MAP + 100)
    assert math.isnan(none.value) and any("do not overlap" in w for w in none.warnings)
    narrow = bd_rate(RATE, MAP, RATE, MAP + 25)
    assert math.isfinite(narrow.value) and 0 < narrow.overlap < 0.75
    assert any("overlap on" in w for w in narrow.warnings)
    assert "fewer than" in bd_rate(RATE[:1], MAP[:1], RATE, MAP).warnings[-1]


def _frames():
    # two frames; rows x0, y0, x1, y1, score, class
    return {
        ("clip", 0): [[10, 10, 50, 60, 0.9, 0], [100, 20, 140, 90, 0.35, 2], [5, 5, 9, 9, 0.1, 0]],
        ("clip", 1): [[12, 11, 52, 61, 0.8, 0], [60, 60, 90, 99, 0.06, 2]],
    }


def test_detections_score_one_against_their_own_pseudo_ground_truth():
    frames = _frames()
    gt = GroundTruth.from_detections(frames, {"clip": (160, 120)})
    assert len(gt.coco.getAnnIds()) == 3  # only score >= 0.3
    s = gt.match(frames).scores()
    assert s.map50 == pytest.approx(1.0) and s.map == pytest.approx(1.0)
    moved = {k: [[r[0] + 15, *r[1:]] for r in v] for k, v in frames.items()}
    assert gt.match(moved).scores().map < 1.0


def test_real_coco_ground_truth_file(tmp_path):
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 7, "file_name": "img.png", "width": 200, "height": 100},
                    {"id": 8, "file_name": "other.png", "width": 200, "height": 100},
                ],
                "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "zebra"}],
                "annotations": [
                    {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 50]},
                    {"id": 2, "image_id": 7, "category_id": 1, "bbox": [100, 10, 40, 50]},
                ],
            }
        )
    )
    gt = GroundTruth.from_coco_file(gt_file, [("/data/img.png", 0)], ["person", "bicycle"])
    assert gt.keys == [("/data/img.png", 0)]
    # one of two people found exactly, no false positive: recall 0.5 at precision 1
    s = gt.match({("/data/img.png", 0): [[10, 10, 50, 60, 0.9, 0]]}).scores()
    assert s.map50 == pytest.approx(51 / 101)
    with pytest.raises(Exception, match="no image entry"):
        GroundTruth.from_coco_file(gt_file, [("nothing.png", 0)], ["person"])


def test_bootstrap_resamples_frames():
    frames = _frames()
    gt = GroundTruth.from_detections(frames, {"clip": (160, 120)})
    m = gt.match({("clip", 0): frames[("clip", 0)]})  # frame 1 missed entirely
    full = m.scores().map50
    assert m.scores(np.array([0, 1])).map50 == pytest.approx(full)
    assert m.scores(np.array([0, 0])).map50 == pytest.approx(1.0)  # only the found frame
    samples = bootstrap_samples(2, 50)
    vals = [m.scores(s).map50 for s in samples]
    lo, hi = percentile_ci(vals)
    assert lo <= full <= hi and lo < hi
    assert np.array_equal(samples, bootstrap_samples(2, 50))  # seeded: reproducible


def test_flickering_objects_are_dont_care_regions_with_gt_stable():
    frames = _frames()  # the class-2 object (0.35) is on frame 0 only: it flickers
    plain = GroundTruth.from_detections(frames, {"clip": (160, 120)})
    stable = GroundTruth.from_detections(frames, {"clip": (160, 120)}, stable=1)
    crowd = [a for a in stable.coco.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["category_id"] == 3  # class 2, the one that flickers
    # detections that miss the flickering object lose recall against the plain ground truth,
    # nothing against the stable one; a detection on it is no false positive either
    missed = {("clip", 0): [frames[("clip", 0)][0]], ("clip", 1): frames[("clip", 1)]}
    assert plain.match(missed).scores().map50 < 1.0
    assert stable.match(missed).scores().map50 == pytest.approx(1.0)
    assert stable.match(frames).scores().map50 == pytest.approx(1.0)
    # the person, seen in both frames, still counts: losing it costs
    no_person = {k: [r for r in v if r[5] != 0] for k, v in frames.items()}
    assert stable.match(no_person).scores().map50 == 0.0


def test_equal_rates_pool_even_when_their_qualities_differ_in_the_last_bit():
    # two offsets that clamp to the same map give the same bits; a bootstrap replicate can give
    # their mAPs a last-bit difference, and pchip refuses a repeated rate
    rt = np.array([0.00527235, 0.00527235, 0.00788845])
    qt = np.array([11.84516717, 11.84516717 + 1e-13, 18.63964498])
    fr, fq, pooled = monotone_fit(rt, qt)
    assert pooled == 1 and np.all(np.diff(fr) > 0)
    ra = np.array([0.00697, 0.01111, 0.01905, 0.03882, 0.0887])
    qa = np.array([9.6, 56.5, 78.2, 82.5, 86.9])
    assert math.isfinite(bd_quality(ra, qa, rt, qt).value)


def test_rd_plot_draws_a_ci_that_leaves_out_its_point(tmp_path):
    # Measured (x265, office1, oracle maps at QP32+20): mAP 90.07 with a bootstrap CI of
    # [87.57, 90.05]. A percentile CI of mAP may leave out the full-sample figure; the plot
    # drew a negative error bar and matplotlib refused it, losing the whole report.
    from vcmtool.bench.report import plot_group

    def point(method, bpp, m, ci):
        fig = {"map50": m, "map": m, "map50_ci": ci, "map_ci": ci}
        return {"group": "g", "codec": "x265", "method": method, "bpp": bpp, "psnr_y": 35.0, **fig}

    curves = [
        point("none", 0.01, 80.0, [75.0, 85.0]),
        point("none", 0.02, 90.07, [87.57, 90.05]),
        point("roi", 0.015, 85.0, [80.0, 88.0]),
    ]
    out = tmp_path / "rd.png"
    plot_group(out, curves, "g")
    assert out.stat().st_size > 1000
