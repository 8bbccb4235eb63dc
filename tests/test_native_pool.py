"""CTU pooling and rasterization (vcmtool.qpmap.raster): native results against the numpy paths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import numpy_path
from vcmtool.qpmap.raster import grid_shape, pool_ctu, rasterize_boxes, rasterize_masks

pool_ctu_numpy = numpy_path(pool_ctu)
rasterize_boxes_numpy = numpy_path(rasterize_boxes)
rasterize_masks_numpy = numpy_path(rasterize_masks)

SIZES = [(1, 1), (1, 7), (7, 1), (63, 65), (64, 64), (65, 129), (130, 200), (2160 // 8, 3840 // 8)]
CTUS = [1, 3, 8, 16, 64, 128]


def _rand(shape, dtype, rng):
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return (rng.standard_normal(shape) * 100).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mode", ["min", "max", "mean"])
def test_pool_matches_numpy(dtype, mode):
    rng = np.random.default_rng(1)
    for h, w in SIZES:
        for ctu in CTUS:
            a = _rand((h, w), dtype, rng)
            got, ref = pool_ctu(a, ctu, mode), pool_ctu_numpy(a, ctu, mode)
            assert got.shape == grid_shape(h, w, ctu) == ref.shape
            assert got.dtype == ref.dtype
            if mode == "mean" and dtype == np.float32:
                np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-4)
            else:
                np.testing.assert_array_equal(got, ref)


def test_pool_full_4k_frame():
    a = np.random.default_rng(2).integers(0, 64, (2160, 3840), dtype=np.uint8)
    for mode in ("min", "max", "mean"):
        got = pool_ctu(a, 64, mode)
        assert got.shape == (34, 60)
        np.testing.assert_array_equal(got, pool_ctu_numpy(a, 64, mode))


def test_pool_strided_and_other_dtypes():
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    view = big[10:250:2, 5:300]  # row stride, contiguous rows
    np.testing.assert_array_equal(pool_ctu(view, 16, "min"), pool_ctu_numpy(view, 16, "min"))
    col_view = big[:, ::3]  # non-contiguous rows
    np.testing.assert_array_equal(pool_ctu(col_view, 16, "max"), pool_ctu_numpy(col_view, 16, "max"))
    for a in (
        rng.integers(-5, 70, (50, 70)).astype(np.int16),
        rng.random((50, 70)),
        rng.random((50, 70)) > 0.5,
    ):
        for mode in ("min", "max"):
            got = pool_ctu(a, 16, mode)
            assert got.dtype == a.dtype
            np.testing.assert_array_equal(got, pool_ctu_numpy(a, 16, mode))


def test_pool_nan_propagates_like_numpy():
    a = np.zeros((40, 40), np.float32)
    a[3, 5] = np.nan
    a[35, 35] = -np.inf
    for mode in ("min", "max", "mean"):
        np.testing.assert_array_equal(pool_ctu(a, 16, mode), pool_ctu_numpy(a, 16, mode))
    assert np.isnan(pool_ctu(a, 16, "min")[0, 0])


def test_pool_bad_arguments():
    a = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="pool mode"):
        pool_ctu(a, 4, "median")
    with pytest.raises(ValueError, match="ctu"):
        pool_ctu(a, 0)
    with pytest.raises(ValueError, match="2-D"):
        pool_ctu(np.zeros((2, 8, 8), np.uint8), 4)
    assert pool_ctu(np.zeros((0, 5), np.uint8), 4).shape == (0, 2)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    ctu=st.integers(1, 70),
    mode=st.sampled_from(["min", "max", "mean"]),
    seed=st.integers(0, 2**32 - 1),
    f32=st.booleans(),
)
def test_pool_fuzz(h, w, ctu, mode, seed, f32):
    a = _rand((h, w), np.float32 if f32 else np.uint8, np.random.default_rng(seed))
    got, ref = pool_ctu(a, ctu, mode), pool_ctu_numpy(a, ctu, mode)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-4)


def _random_boxes(rng, n, h, w):
    x = rng.uniform(-40, w + 40, (n, 2))
    y = rng.uniform(-40, h + 40, (n, 2))
    return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1).astype(np.float32)


def test_rasterize_boxes_matches_numpy():
    rng = np.random.default_rng(4)
    for h, w in [(1, 1), (64, 64), (100, 130), (1080, 1920)]:
        for ctu in (16, 64, 100):
            for n in (0, 1, 5, 40):
                boxes = _random_boxes(rng, n, h, w)
                qps = rng.integers(0, 52, n)
                got = rasterize_boxes(h, w, ctu, boxes, qps, 51)
                ref = rasterize_boxes_numpy(h, w, ctu, boxes, qps.astype(np.uint8), 51)
                np.testing.assert_array_equal(got, ref)


def test_rasterize_boxes_edges_and_overlap():
    # Exactly on CTU borders, overlapping (min wins), degenerate and fully outside boxes.
    boxes = [
        [0, 0, 64, 64],
        [32, 32, 96, 96],
        [64, 0, 64, 50],
        [500, 500, 600, 600],
        [-np.inf, 100, np.inf, 101],
    ]
    got = rasterize_boxes(130, 200, 64, boxes, [30, 20, 5, 1, 40], 51)
    expect = np.full((3, 4), 51, np.uint8)
    expect[0, 0] = 20
    expect[0:2, 0:2] = 20
    expect[1, 0:4] = np.minimum(expect[1, 0:4], 40)
    np.testing.assert_array_equal(got, expect)
    with pytest.raises(ValueError, match="NaN"):
        rasterize_boxes(64, 64, 16, [[np.nan, 0, 10, 10]], [3], 51)
    with pytest.raises(ValueError, match="QPs"):
        rasterize_boxes(64, 64, 16, [[0, 0, 10, 10]], [300], 51)
    with pytest.raises(ValueError, match="2 boxes but 1"):
        rasterize_boxes(64, 64, 16, [[0, 0, 10, 10]] * 2, [3], 51)


def test_rasterize_masks_matches_numpy():
    rng = np.random.default_rng(5)
    for h, w, ctu, n in [(1, 1, 64, 1), (70, 130, 16, 4), (200, 333, 64, 6), (64, 64, 64, 0)]:
        masks = rng.random((n, h, w)) > 0.995
        qps = rng.integers(0, 52, n)
        got = rasterize_masks(masks, qps, ctu, 63)
        np.testing.assert_array_equal(got, rasterize_masks_numpy(masks, qps, ctu, 63))
        # uint8 and non-contiguous masks give the same grid
        np.testing.assert_array_equal(rasterize_masks(masks.astype(np.uint8) * 7, qps, ctu, 63), got)
        if w > 1:
            wide = np.zeros((n, h, 2 * w), bool)
            wide[:, :, ::2] = masks
            np.testing.assert_array_equal(rasterize_masks(wide[:, :, ::2], qps, ctu, 63), got)


def test_rasterize_masks_overlap_takes_min():
    m = np.zeros((2, 100, 100), bool)
    m[0, 10:20, 10:20] = True
    m[1, 15:70, 15:70] = True
    got = rasterize_masks(m, [30, 12], 64, 51)
    np.testing.assert_array_equal(got, [[12, 12], [12, 12]])
    got = rasterize_masks(m[:1], [30], 64, 51)
    np.testing.assert_array_equal(got, [[30, 51], [51, 51]])
