"""JRD annotation rules: distances (eq. 2-4), matching, l_max (eq. 1), label maps.

The real-image tests code a real frame with kvazaar and run the real YOLOv3-tiny on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcmtool.lab.jrd.labels import (
    Instance,
    Thresholds,
    box_iou,
    box_mask,
    distances,
    first_failure,
    l_max,
    mask_iou,
    match,
    pixel_label,
    reference_instances,
    size_class,
)
from vcmtool.qpmap.raster import pool_ctu


def test_box_iou_and_box_mask_agree():
    a = (10.0, 20.0, 50.0, 60.0)
    b = np.array([[30.0, 20.0, 70.0, 60.0], [10.0, 20.0, 50.0, 60.0], [100, 100, 120, 120]])
    ious = box_iou(a, b)
    assert ious[0] == pytest.approx(800 / 2400)
    assert ious[1] == pytest.approx(1.0) and ious[2] == 0.0
    ma, mb = box_mask(a, 100, 100), box_mask(b[0], 100, 100)
    assert ma.sum() == 40 * 40
    assert mask_iou(ma, mb) == pytest.approx(ious[0])
    assert box_mask((-5, -5, 500, 3), 10, 10).sum() == 3 * 10  # clipped to the image


def test_match_prefers_same_class_then_iou():
    ref = Instance((0, 0, 100, 100), 0.9, 2)
    other_class = Instance((0, 0, 100, 100), 0.8, 7)
    same_class = Instance((0, 0, 100, 90), 0.5, 2)
    far = Instance((200, 200, 300, 300), 0.99, 2)
    assert match(ref, [other_class, same_class, far]) == 1
    assert match(ref, [other_class, far]) == 0  # only a wrong-class overlap: class distance 1
    assert match(ref, [far]) is None
    d = distances(ref, [other_class], 300, 300)
    assert d.matched and d.cls == 1.0 and not d.within(Thresholds())
    d = distances(ref, [far], 300, 300)
    assert not d.matched and d.box == 1.0 and d.score == pytest.approx(0.9)


def test_distances_eq4_and_thresholds():
    ref = Instance((0, 0, 100, 100), 0.9, 1)
    cand = Instance((0, 0, 100, 93), 0.87, 1)
    d = distances(ref, [cand], 200, 200)
    assert d.box == pytest.approx(0.07) and d.mask == pytest.approx(0.07)
    assert d.score == pytest.approx(0.03) and d.cls == 0.0
    assert d.within(Thresholds()) is False  # box 0.07 <= 0.1 but mask 0.07 > 0.05
    assert d.within(Thresholds(mask=0.08)) is True
    assert d.within(Thresholds(mask=0.08, score=0.02)) is False
    # masks given: the mask distance uses them, not the boxes
    m_ref = np.zeros((200, 200), bool)
    m_ref[10:60, 10:60] = True
    m_c = m_ref.copy()
    m_c[10:60, 55:60] = False
    d = distances(Instance(ref.box, 0.9, 1, m_ref), [Instance(ref.box, 0.9, 1, m_c)], 200, 200)
    assert d.box == 0.0 and d.mask == pytest.approx(0.1)


def test_l_max_eq1():
    levels = list(range(10))
    assert l_max(levels, [True] * 6 + [False] * 4) == 5
    assert l_max(levels, [True] * 10) == 9  # nothing fails: the largest level
    assert l_max(levels, [False] * 10) == 0  # nothing passes: the finest level
    # non-monotonic: eq. 1 takes the largest l that passes with l+1 failing
    p = [True, True, True, False, True, True, False, False, False, False]
    assert l_max(levels, p) == 5 and first_failure(levels, p) == 3
    assert l_max(levels, p, c=2) == 5
    assert l_max([0, 10, 20, 30], [True, True, False, False]) == 10  # sparse levels: l+c = next
    with pytest.raises(ValueError):
        l_max([3, 1], [True, True])


def test_label_maps_min_overlap_and_ctu_pooling():
    h, w = 100, 150
    a, b = box_mask((0, 0, 80, 60), h, w), box_mask((40, 30, 150, 100), h, w)
    px = pixel_label(h, w, [(a, 30), (b, 20)], 51)
    assert px.dtype == np.uint8 and px.shape == (h, w)
    assert px[0, 0] == 30 and px[99, 149] == 20 and px[45, 60] == 20  # overlap takes the min
    assert px[90, 10] == 51  # background keeps the maximum QP
    grid = pool_ctu(px, 64)
    assert grid.shape == (2, 3)  # ceil(100/64), ceil(150/64)
    assert grid[0, 0] == 20  # min inside the CTU
    bg = pixel_label(h, w, [], 63)
    assert (pool_ctu(bg, 64) == 63).all()


def test_reference_instances_and_size_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 200, 200]], np.float32)
    refs = reference_instances(boxes, np.array([0.3, 0.31, 0.9]), np.array([0, 1, 2]))
    assert [r.cls for r in refs] == [1, 2]  # score must exceed 0.3
    assert [size_class(a) for a in (31 * 31, 32 * 32, 95 * 95, 96 * 96)] == [
        "small",
        "medium",
        "medium",
        "large",
    ]


@pytest.fixture(scope="module")
def real_curves(tmp_path_factory):
    """Real bus.jpg through kvazaar at a few QPs and YOLOv3-tiny on each decode."""
    from vcmtool.lab.jrd.dataset import BuildConfig, _QPDetector
    from vcmtool.lab.jrd.sources import load_frame
    from vcmtool.tasks import get_task_model

    frame = load_frame("ultralytics:bus.jpg")
    model = get_task_model("yolov3-tiny", score_threshold=0.1)
    det = model.detect(frame.to_bgr())
    refs = reference_instances(det.boxes, det.scores, det.classes, det.masks)
    qps = [0, 20, 32, 40, 46, 51]
    cfg = BuildConfig(qps=tuple(qps)).resolved()
    work = Path(tmp_path_factory.mktemp("jrdwork"))
    q = _QPDetector(cfg, frame, model, work)
    per_qp = [q.process(qp) for qp in qps]
    h, w = frame.height, frame.width
    curves = [[distances(r, cands, h, w) for cands, _ in per_qp] for r in refs]
    return qps, refs, curves, per_qp, work


def test_real_image_qp0_distance_near_zero(real_curves):
    qps, refs, curves, per_qp, _ = real_curves
    assert len(refs) >= 3  # bus.jpg: people and the bus
    for c in curves:
        d0 = c[0]
        assert d0.matched and d0.cls == 0.0
        assert d0.box < 0.02 and d0.mask < 0.02 and d0.score < 0.02
    bits = [b for _, b in per_qp]
    assert bits == sorted(bits, reverse=True)  # coarser QP, fewer bits
    # at QP 51 the image is wrecked: some instance must fail there
    assert any(not c[-1].within(Thresholds()) for c in curves)


def test_real_image_lmax_consistent_with_curve(real_curves):
    qps, refs, curves, _, work = real_curves
    thr = Thresholds()
    for c in curves:
        passed = [d.within(thr) for d in c]
        lm = l_max(qps, passed)
        i = qps.index(lm)
        if any(passed):
            assert passed[i] and (i == len(qps) - 1 or not passed[i + 1])
            assert not any(passed[j] and not passed[j + 1] for j in range(i + 1, len(qps) - 1))
        else:
            assert lm == qps[0]
    assert len(list(work.glob("qp*.npz"))) == len(qps)  # each QP coded once and kept


def test_monotone_label_stops_at_first_failure_where_eq1_skips_the_dip():
    from vcmtool.lab.jrd.labels import label_of, monotone_label

    levels = [10, 20, 30, 40, 50, 51]
    flicker = [True, True, False, True, False, True]  # pass, pass, fail, pass, fail, pass
    assert monotone_label(levels, flicker) == 20  # first failure (30) - 1 level
    assert l_max(levels, flicker) == 51  # eq. 1: the top passes and nothing above it fails
    assert label_of("eq1", levels, flicker) == 51 and label_of("monotone", levels, flicker) == 20
    dip = [True, True, False, True, True, False]
    assert monotone_label(levels, dip) == 20 and l_max(levels, dip) == 50
    assert monotone_label(levels, [True] * 6) == 51 == l_max(levels, [True] * 6)
    assert monotone_label(levels, [False] + [True] * 5) == 10  # nothing safe: the finest level
    assert first_failure(levels, flicker) == 30
    with pytest.raises(ValueError):
        label_of("median", levels, flicker)
    # monotone <= eq. 1 on every curve
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = list(rng.random(6) < 0.7)
        assert monotone_label(levels, p) <= l_max(levels, p)


def test_detected_label_fails_only_when_the_object_is_lost():
    from vcmtool.lab.jrd.labels import curve_passes, detected, label_of

    levels = [10, 20, 30, 40, 50]
    # reference score 0.6: the score moves by 0.1 at QP 20 (a strict pass fails), the box and
    # class hold until QP 40, where the score has fallen by 0.35 (below 0.3); QP 50 unmatched
    curve = {
        "matched": [True, True, True, True, False],
        "cls": [0.0, 0.0, 0.0, 0.0, 1.0],
        "score": [0.01, 0.1, 0.2, 0.35, 0.6],
        "passed": [True, False, True, False, False],
    }
    assert detected(curve, 0.6) == [True, True, True, False, False]
    assert label_of("detected", levels, curve_passes("detected", curve, 0.6)) == 30
    assert label_of("monotone", levels, curve_passes("monotone", curve, 0.6)) == 10
    relabelled = dict(curve, cls=[0.0, 0.0, 1.0, 0.0, 1.0])  # the class flips at QP 30
    assert detected(relabelled, 0.6) == [True, True, False, False, False]
    # the margin is the reference's distance to the threshold: a score of 0.31 has almost none
    assert detected(curve, 0.31) == [True, False, False, False, False]


def test_track_linking_and_low_percentile_smoothing():
    from vcmtool.lab.jrd.labels import link_tracks, smooth_track

    car = (10, 10, 60, 40)
    frames = [
        [(car, 2), ((100, 100, 140, 180), 0)],
        [((102, 101, 142, 181), 0), ((11, 10, 61, 40), 2)],  # both moved a little, order swapped
        [((12, 10, 62, 40), 7), ((103, 101, 143, 181), 0)],  # the car became class 7: a new track
        [((200, 0, 220, 20), 0)],  # the person vanished, something new appeared
    ]
    ids = link_tracks(frames)
    assert ids[0] == [0, 1] and ids[1] == [1, 0] and ids[2] == [2, 1] and ids[3] == [3]
    # a person track whose label flickers down in one frame out of six
    levels = list(range(52))
    track = [40, 41, 40, 12, 42, 40]
    assert smooth_track(track, levels, 20) == 40  # the flicker does not set it
    assert smooth_track(track, levels, 0) == 12  # the strictest frame
    assert smooth_track([30, 38], [22, 32, 42, 51], 20) == 22  # rounded down to a coded level
    assert smooth_track([30, 38], [22, 30, 42, 51], 20) == 30
