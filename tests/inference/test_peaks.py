"""Peak finding, 3-D NMS, sliding-window planning and Gaussian blending."""

from __future__ import annotations

import numpy as np

from inference.peaks import local_maxima, nms_by_distance, refine_centroid
from inference.sliding_window import gaussian_weights, plan_patches, run_sliding_window


def test_local_maxima_and_centroid() -> None:
    p = np.zeros((10, 10, 10), dtype=np.float32)
    p[2, 3, 4] = 0.9
    p[2, 3, 5] = 0.9  # plateau: one peak only
    p[7, 7, 7] = 0.5
    p[7, 7, 8] = 0.4
    p[5, 5, 5] = 0.05  # below threshold
    peaks = local_maxima(p, 0.1)
    assert peaks.tolist() == [[2, 3, 4], [7, 7, 7]]
    c = refine_centroid(p, peaks[0])
    assert np.allclose(c, [2, 3, 4.5])  # halfway between the plateau voxels


def test_nms_by_distance() -> None:
    pts = np.array([[0, 0, 0], [5, 0, 0], [20, 0, 0], [30, 0, 0]], dtype=np.float64)
    scores = np.array([0.5, 0.9, 0.3, 0.8])
    assert nms_by_distance(pts, scores, 8.0, 10) == [1, 3, 2]
    assert nms_by_distance(pts, scores, 8.0, 2) == [1, 3]


def test_gaussian_blending_reconstructs_a_constant() -> None:
    w = gaussian_weights((8, 8, 8))
    assert w.max() == 1.0 and w.min() > 0
    x = np.zeros((40, 36, 20), dtype=np.float32)
    grid = plan_patches(x.shape, (16, 16, 16), 0.5, align=4)
    assert grid.padded_shape == (40, 36, 20)
    assert all(s % 4 == 0 for st in grid.starts for s in st)
    calls = []

    def infer(tile: np.ndarray) -> list[np.ndarray]:
        calls.append(tile.shape)
        return [np.full((1, 8, 8, 8), 0.25, dtype=np.float32)]

    out, covered = run_sliding_window(x, grid, (16, 16, 16), 2, infer, 1, 0.0)
    assert out.shape == (1, 20, 18, 10)
    assert covered.all()
    assert np.allclose(out, 0.25, atol=1e-5)
    assert len(calls) == len(grid.starts) and calls[0] == (16, 16, 16)


def test_plan_patches_skips_patches_without_lung() -> None:
    grid = plan_patches((64, 64, 64), (32, 32, 32), 0.25, align=4, keep=lambda s: s[0] == 0)
    assert grid.starts and all(s[0] == 0 for s in grid.starts)
