"""Lung segmentation for the nodule detector: lungs separated from the airways, mediastinum,
chest wall and outside air, on both phantom styles and across scanner settings."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from core.synthetic.chest_ct import CtPhantom, make_chest_ct
from core.synthetic.validation_ct import make_validation_ct
from inference.ct_preprocess import resample_isotropic
from inference.lung_segmentation import LungSegmentation, segment_lungs
from inference.series_input import volume_from_phantom

pytestmark = pytest.mark.slow  # model runs on generated series: seconds to a minute each

SPACING = 2.0


def _segment(ph: CtPhantom, hu: np.ndarray | None = None) -> tuple[LungSegmentation, np.ndarray]:
    """Segmentation on the 2 mm grid and the phantom's true lung mask on the same grid."""
    vol = volume_from_phantom(ph.hu if hu is None else hu, ph.spacing_mm, ph.origin_mm)
    rs = resample_isotropic(vol, SPACING, antialias=True)
    truth_vol = volume_from_phantom(ph.lung_mask.astype(np.float32), ph.spacing_mm, ph.origin_mm)
    truth = resample_isotropic(truth_vol, SPACING).hu > 0.5
    return segment_lungs(rs.hu, SPACING), truth


def _fine(seg: LungSegmentation, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    f = seg.factor
    big = mask.repeat(f, 0).repeat(f, 1).repeat(f, 2)
    out = np.zeros(shape, dtype=bool)
    s = tuple(min(a, b) for a, b in zip(shape, big.shape, strict=True))
    out[: s[0], : s[1], : s[2]] = big[: s[0], : s[1], : s[2]]
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


@pytest.fixture(scope="module")
def phantom() -> CtPhantom:
    return make_chest_ct(
        seed=424242,
        slices=110,
        rows=256,
        cols=256,
        pixel_spacing_mm=1.4,
        slice_spacing_mm=2.5,
        nodule_count=6,
        min_nodule_mm=5.0,
        max_nodule_mm=14.0,
    )


def test_lungs_without_airways_mediastinum_or_outside_air(phantom: CtPhantom) -> None:
    seg, truth = _segment(phantom)
    lungs = _fine(seg, seg.lungs, truth.shape)
    assert _dice(lungs, truth) > 0.9
    assert not seg.warnings
    # Both lungs, left and right of the midline, of comparable size.
    mid = seg.lungs.shape[2] // 2
    left, right = seg.lungs[:, :, :mid].sum(), seg.lungs[:, :, mid:].sum()
    assert 0.6 < left / right < 1.6
    k = seg.lungs.shape[0] // 2
    centre = seg.lungs[k, :, mid - 1 : mid + 1]
    assert not centre.any(), "the mediastinum is not lung"
    # The trachea was grown and is not lung; outside air and the table are not body.
    assert seg.airways.any() and not (seg.airways & seg.lungs).any()
    assert not seg.body[:, 0, :].any() and not seg.body[:, :, 0].any()
    assert 0.8 < seg.lung_volume_ml / (truth.sum() * SPACING**3 / 1000.0) < 1.25


def test_nodules_inside_the_candidate_region(phantom: CtPhantom) -> None:
    """Every nodule centre, juxtapleural ones included, lies in lungs + pleural margin."""
    vol = volume_from_phantom(phantom.hu, phantom.spacing_mm, phantom.origin_mm)
    rs = resample_isotropic(vol, SPACING, antialias=True)
    seg = segment_lungs(rs.hu, SPACING)
    region = seg.region(6.0)
    inv = np.linalg.inv(rs.affine)
    kinds = set()
    for nd in phantom.nodules:
        kji = inv[:3, :3] @ np.array(nd.center_mm) + inv[:3, 3]
        a, b, c = (int(v) // seg.factor for v in kji)
        assert region[a, b, c], nd
        kinds.add(nd.kind)
    assert "juxtapleural" in kinds


@pytest.mark.parametrize(
    "case",
    ["thin-slices", "thick-slices", "noise-sharp-kernel", "small-fov", "partial", "contrast"],
)
def test_robust_to_scanner_settings(case: str) -> None:
    """Slice thickness 0.6-5 mm, field of view cutting the body, heavy noise with a sharp
    kernel, partial coverage and contrast: the lungs stay found and only the lungs."""
    params = {"rows": 192, "cols": 192, "pixel_spacing_mm": 1.9}
    dz = {"thin-slices": 0.625, "thick-slices": 5.0}.get(case, 2.5)
    params["slices"] = round(260.0 / dz)
    ph = make_chest_ct(seed=5150, slice_spacing_mm=dz, nodule_count=2, **params)  # type: ignore[arg-type]
    hu = ph.hu.astype(np.float32)
    if case == "noise-sharp-kernel":
        rng = np.random.default_rng(1)
        hu += rng.normal(0.0, 45.0, hu.shape).astype(np.float32)
        img = sitk.GetImageFromArray(hu)
        blur = sitk.GetArrayFromImage(sitk.DiscreteGaussian(img, [1.0, 1.0, 0.0]))
        hu = hu + 1.0 * (hu - blur)
    if case == "contrast":
        hu[ph.lung_mask & (hu > -300)] += 200.0
    if case == "small-fov":  # the body touches the image border on both sides
        cut = 32
        hu = hu[:, :, cut:-cut]
        mask = ph.lung_mask[:, :, cut:-cut]
        x0, y0, z0 = ph.origin_mm
        ph = CtPhantom(
            hu=hu.astype(np.int16),
            spacing_mm=ph.spacing_mm,
            origin_mm=(x0 + cut * ph.spacing_mm[2], y0, z0),
            nodules=ph.nodules,
            lung_mask=mask,
        )
    if case == "partial":  # the lower half of the chest only: no trachea in the scan
        n = ph.hu.shape[0] // 2
        ph = CtPhantom(
            hu=ph.hu[:n],
            spacing_mm=ph.spacing_mm,
            origin_mm=ph.origin_mm,
            nodules=(),
            lung_mask=ph.lung_mask[:n],
        )
        hu = hu[:n]
    seg, truth = _segment(ph, hu)
    lungs = _fine(seg, seg.lungs, truth.shape)
    assert _dice(lungs, truth) > 0.85, case
    assert seg.lung_volume_ml > 100.0


def test_second_phantom_style() -> None:
    """The validation style (other anatomy, kernels and noise model) segments as well."""
    ph = make_validation_ct(
        seed=77,
        slices=70,
        rows=192,
        cols=192,
        pixel_spacing_mm=1.9,
        slice_spacing_mm=4.0,
        kernel="lung",
        nodule_count=2,
    )
    seg, truth = _segment(ph)
    assert _dice(_fine(seg, seg.lungs, truth.shape), truth) > 0.85


def test_no_lungs_is_said() -> None:
    """A volume without lungs (soft tissue block in air) gives an empty mask and says so."""
    hu = np.full((40, 80, 80), -1000.0, dtype=np.float32)
    hu[5:35, 15:65, 15:65] = 40.0
    seg = segment_lungs(hu, SPACING)
    assert not seg.lungs.any() and "no lungs found in this series" in seg.warnings
