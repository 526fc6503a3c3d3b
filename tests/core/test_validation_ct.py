"""Tests of the validation-only chest CT phantom style (core.synthetic.validation_ct).

Noise is checked against a noise-free twin: the same seed with noise_sd_hu=0 gives the same
anatomy, MTF and noise pattern, so their difference is the noise field alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from core.synthetic.chest_ct import CtPhantom, write_ct_series
from core.synthetic.validation_ct import VALIDATION_NODULE_KINDS, make_validation_ct

# Small volumes: 2.8 mm pixels and 7 mm slices hold a whole chest in 40 x 128 x 128.
GRID: dict[str, Any] = {
    "slices": 40,
    "rows": 128,
    "cols": 128,
    "pixel_spacing_mm": 2.8,
    "slice_spacing_mm": 7.0,
    "nodule_count": 8,
    "min_nodule_mm": 8.0,
    "max_nodule_mm": 14.0,
}
NOISE = 25.0
SEED = 11


@pytest.fixture(scope="module")
def quiet() -> CtPhantom:
    return make_validation_ct(seed=SEED, noise_sd_hu=0.0, **GRID)


@pytest.fixture(scope="module")
def noisy() -> CtPhantom:
    return make_validation_ct(seed=SEED, noise_sd_hu=NOISE, **GRID)


@pytest.fixture(scope="module")
def quiet_lung() -> CtPhantom:
    return make_validation_ct(seed=SEED, kernel="lung", noise_sd_hu=0.0, **GRID)


@pytest.fixture(scope="module")
def noisy_lung() -> CtPhantom:
    return make_validation_ct(seed=SEED, kernel="lung", noise_sd_hu=NOISE, **GRID)


def _voxel(ph: CtPhantom, center_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    x, y, z = center_mm
    x0, y0, z0 = ph.origin_mm
    dz, dy, dx = ph.spacing_mm
    return round((z - z0) / dz), round((y - y0) / dy), round((x - x0) / dx)


def _noise(quiet: CtPhantom, noisy: CtPhantom) -> np.ndarray:
    return noisy.hu.astype(np.float32) - quiet.hu.astype(np.float32)


def _uniform(hu: np.ndarray) -> np.ndarray:
    """Soft-tissue voxels whose 5 x 5 in-plane neighbourhood is flat (range <= 2 HU)."""
    win = np.lib.stride_tricks.sliding_window_view(hu.astype(np.float32), (5, 5), axis=(1, 2))
    flat = np.zeros(hu.shape, dtype=np.bool_)
    flat[:, 2:-2, 2:-2] = (win.max(axis=(-1, -2)) - win.min(axis=(-1, -2))) <= 2.0
    return flat & (hu > -150) & (hu < 150)


def _central(hu: np.ndarray, spacing: float, radius_mm: float) -> np.ndarray:
    """Voxels within radius_mm of each slice's body centroid."""
    out = np.zeros(hu.shape, dtype=np.bool_)
    yy, xx = np.mgrid[0 : hu.shape[1], 0 : hu.shape[2]]
    for k in range(hu.shape[0]):
        ys, xs = np.nonzero(hu[k] > -500)
        if len(ys) > 100:
            out[k] = np.hypot(yy - ys.mean(), xx - xs.mean()) * spacing < radius_mm
    return out


def _lag1(field: np.ndarray, valid: np.ndarray) -> float:
    """Correlation of horizontally adjacent noise values."""
    a, b = field[:, :, :-1], field[:, :, 1:]
    v = valid[:, :, :-1] & valid[:, :, 1:]
    return float(np.corrcoef(a[v], b[v])[0, 1])


def test_deterministic_per_seed() -> None:
    kw: dict[str, Any] = {
        "slices": 10,
        "rows": 48,
        "cols": 48,
        "pixel_spacing_mm": 8.0,
        "slice_spacing_mm": 28.0,
        "nodule_count": 2,
        "min_nodule_mm": 12.0,
        "max_nodule_mm": 18.0,
    }
    a = make_validation_ct(seed=5, **kw)
    b = make_validation_ct(seed=5, **kw)
    c = make_validation_ct(seed=6, **kw)
    assert np.array_equal(a.hu, b.hu)
    assert np.array_equal(a.lung_mask, b.lung_mask)
    assert a.nodules == b.nodules
    assert (a.origin_mm, a.spacing_mm) == (b.origin_mm, b.spacing_mm)
    assert not np.array_equal(a.hu, c.hu)


def test_geometry_padding_and_stored_range(noisy: CtPhantom) -> None:
    hu = noisy.hu
    assert hu.shape == (40, 128, 128) and hu.dtype == np.int16
    assert noisy.lung_mask.shape == hu.shape and noisy.lung_mask.dtype == np.bool_
    assert noisy.spacing_mm == (7.0, 2.8, 2.8)
    # Outside the circular reconstruction field of view: the scanner's padding value.
    pad = int(hu[0, 0, 0])
    assert pad in (-2000, -3024)
    assert np.all(hu[:, 0, 0] == pad) and np.all(hu[:, -1, -1] == pad)
    yy, xx = np.mgrid[0:128, 0:128]
    inside = np.hypot(yy - 63.5, xx - 63.5) < 60
    assert hu[:, inside].min() >= -1024 and hu[:, inside].max() <= 3071
    assert not noisy.lung_mask[:, ~inside].any()


def test_lung_parenchyma_hu(noisy: CtPhantom, noisy_lung: CtPhantom) -> None:
    for ph in (noisy, noisy_lung):
        values = ph.hu[ph.lung_mask]
        hist, edges = np.histogram(values, bins=np.arange(-1000, -400, 10))
        mode = edges[hist.argmax()] + 5
        assert -900 <= mode <= -800
        assert np.mean(values < -500) > 0.75  # mostly aerated lung, few vessels and walls


def test_mediastinal_soft_tissue_and_bone_hu(quiet: CtPhantom) -> None:
    hu = quiet.hu.astype(np.float32)
    k = int(np.argmax(quiet.lung_mask.sum(axis=(1, 2))))  # slice with the most lung
    lung = quiet.lung_mask[k]
    between: list[np.ndarray] = []
    for i in np.nonzero(lung.any(axis=1))[0]:
        cols = np.nonzero(lung[i])[0]
        gaps = np.nonzero(np.diff(cols) > 3)[0]
        if len(gaps):  # the row crosses both lungs: take what lies between them
            g = gaps[np.argmax(np.diff(cols)[gaps])]
            between.append(hu[k, i, cols[g] + 1 : cols[g + 1]])
    med = np.concatenate(between)
    assert med.size > 100
    soft = med[(med > -30) & (med < 150)]  # heart, vessels, oesophagus, lymph nodes
    assert 20.0 <= float(np.median(soft)) <= 80.0
    assert float(np.median(med[med < -30])) < -60.0  # mediastinal fat
    # Spine on the midline: cancellous bone with a cortical shell.
    body_cols = np.nonzero((hu > -500).any(axis=(0, 1)))[0]
    xc = (body_cols[0] + body_cols[-1]) // 2
    spine = hu[:, :, xc - 2 : xc + 3]
    bone = spine[spine > 150]
    assert bone.size > 500
    assert 150.0 <= float(np.median(bone)) <= 450.0
    assert float(np.percentile(bone, 99)) > 350.0
    assert hu.max() < 2000


def test_noise_sd_as_requested_in_uniform_regions(
    quiet: CtPhantom, noisy: CtPhantom, quiet_lung: CtPhantom, noisy_lung: CtPhantom
) -> None:
    for q, n in ((quiet, noisy), (quiet_lung, noisy_lung)):
        noise = _noise(q, n)
        flat = _uniform(q.hu)
        centre = flat & _central(q.hu, 2.8, 35.0)
        assert centre.sum() > 200 and flat.sum() > 2000
        # Requested SD at the body centre; somewhat lower towards the surface.
        assert 0.85 * NOISE <= noise[centre].std() <= 1.1 * NOISE
        assert 0.7 * NOISE <= noise[flat].std() <= 1.05 * NOISE
        assert abs(float(noise[flat].mean())) < 1.5


def test_kernels_differ_in_noise_texture_and_sharpness(
    quiet: CtPhantom, noisy: CtPhantom, quiet_lung: CtPhantom, noisy_lung: CtPhantom
) -> None:
    lag = {}
    hf = {}
    for name, q, n in (("standard", quiet, noisy), ("lung", quiet_lung, noisy_lung)):
        noise = _noise(q, n)
        valid = (q.hu > -900) & (q.hu < 2000)  # no clipping at -1024, no padding
        lag[name] = _lag1(noise, valid)
        lap = noise[:, 1:-1, 1:-1] * 4 - noise[:, :-2, 1:-1] - noise[:, 2:, 1:-1]
        lap -= noise[:, 1:-1, :-2] + noise[:, 1:-1, 2:]
        v = valid[:, 1:-1, 1:-1]
        hf[name] = float(lap[v].var() / noise[valid].var())
    # The sharp kernel's noise is less correlated between neighbours: more high frequencies.
    assert lag["lung"] < lag["standard"] - 0.05
    assert hf["lung"] > 1.1 * hf["standard"]
    # Its MTF keeps small bright structures (ribs, cortex) brighter.
    assert np.percentile(quiet_lung.hu, 99.9) > np.percentile(quiet.hu, 99.9) + 5


def test_nodule_truth(quiet: CtPhantom) -> None:
    nods = quiet.nodules
    assert sorted(n.kind for n in nods) == sorted(VALIDATION_NODULE_KINDS)
    x0, y0, z0 = quiet.origin_mm
    dz, dy, dx = quiet.spacing_mm
    mode = -850.0
    for n in nods:
        assert 8.0 <= n.diameter_mm <= 14.0
        x, y, z = n.center_mm
        for c, o, d in ((x, x0, dx), (y, y0, dy), (z, z0, dz)):
            assert abs((c - o) / d - round((c - o) / d)) < 1e-6  # on a voxel centre
        k, i, j = _voxel(quiet, n.center_mm)
        assert quiet.lung_mask[k, i, j], n.kind  # the centre lies in the lungs
        assert quiet.hu[k, i, j] > mode + (80 if n.kind == "ground-glass" else 250), n.kind


def test_juxtapleural_nodule_touches_the_chest_wall(quiet: CtPhantom) -> None:
    hu = quiet.hu
    dy = quiet.spacing_mm[1]
    (n,) = [n for n in quiet.nodules if n.kind == "juxtapleural"]
    k, i, j = _voxel(quiet, n.center_mm)
    wall = (~quiet.lung_mask[k]) & (hu[k] > -500)
    ii, jj = np.nonzero(wall)
    dist = np.hypot(ii - i, jj - j) * dy
    a = int(np.argmin(dist))
    assert dist[a] <= n.diameter_mm / 2 + 1.5 * dy
    # The nearest non-lung tissue lies outward (chest wall), not towards the mediastinum.
    ys, xs = np.nonzero(hu[k] > -500)
    cy, cx = ys.mean(), xs.mean()
    assert np.hypot(ii[a] - cy, jj[a] - cx) > np.hypot(i - cy, j - cx)


def test_juxtavascular_nodule_touches_a_vessel(quiet: CtPhantom) -> None:
    dz, dy, dx = quiet.spacing_mm
    (n,) = [n for n in quiet.nodules if n.kind == "vessel-attached"]
    k, i, j = _voxel(quiet, n.center_mm)
    dense = sitk.GetImageFromArray((quiet.hu > -700).astype(np.uint8))
    grown = sitk.ConnectedThreshold(dense, seedList=[(j, i, k)], lower=1, upper=1)
    zz, ii, jj = np.nonzero(sitk.GetArrayFromImage(grown))
    reach = np.sqrt(((zz - k) * dz) ** 2 + ((ii - i) * dy) ** 2 + ((jj - j) * dx) ** 2).max()
    assert reach > n.diameter_mm / 2 + 10.0  # a vessel leaves the nodule


def test_lung_mask_covers_both_lungs_and_excludes_the_trachea(quiet: CtPhantom) -> None:
    hu, mask = quiet.hu, quiet.lung_mask
    body_cols = np.nonzero((hu > -500).any(axis=(0, 1)))[0]
    xc = (body_cols[0] + body_cols[-1]) // 2
    right, left = int(mask[:, :, :xc].sum()), int(mask[:, :, xc:].sum())
    assert min(left, right) > 0.3 * (left + right)
    assert np.mean(hu[mask] < -500) > 0.75
    # Above the carina the trachea is the air column on the midline inside the body.
    trachea = 0
    for k in range(28, 36):
        for col in range(xc - 5, xc + 6):
            rows = np.nonzero(hu[k, :, col] > -500)[0]
            if len(rows) < 2:
                continue
            inner = slice(rows[0], rows[-1])
            air = hu[k, inner, col] < -950
            trachea += int(air.sum())
            assert not mask[k, inner, col][air].any()
    assert trachea > 20


def test_partial_coverage_contrast_and_arguments() -> None:
    kw: dict[str, Any] = {
        "slices": 12,
        "rows": 64,
        "cols": 64,
        "pixel_spacing_mm": 6.0,
        "slice_spacing_mm": 10.0,
    }
    ph = make_validation_ct(seed=3, coverage="partial", contrast=True, nodule_count=0, **kw)
    assert ph.nodules == ()
    # Contrast: blood (aorta, heart) at 150-300 HU is present.
    assert np.mean((ph.hu > 140) & (ph.hu < 320)) > 0.002
    with pytest.raises(ValueError, match="kernel"):
        make_validation_ct(seed=1, kernel="bone", **kw)
    with pytest.raises(ValueError, match="coverage"):
        make_validation_ct(seed=1, coverage="half", **kw)


def test_written_with_the_chest_ct_writer(tmp_path: Path) -> None:
    ph = make_validation_ct(
        seed=2,
        slices=6,
        rows=48,
        cols=48,
        pixel_spacing_mm=8.0,
        slice_spacing_mm=40.0,
        nodule_count=0,
    )
    written = write_ct_series(ph, tmp_path, patient_id="VAL-1", patient_name="Validation^Ct")
    assert len(written.paths) == 6
    ds = pydicom.dcmread(written.paths[0])
    k = 0  # slice 0 is the most inferior; the writer keeps that order
    # Padding outside the reconstruction circle is stored as air (-1024).
    assert int(ds.pixel_array[0, 0]) + int(ds.RescaleIntercept) == -1024
    assert np.array_equal(
        ds.pixel_array.astype(np.int32) - 1024, np.clip(ph.hu[k], -1024, 3071).astype(np.int32)
    )
