"""3-D lung segmentation for chest CT from any scanner: both lungs, without the airways, the
mediastinum, the chest wall and the air outside the patient.

The nodule detector keeps candidates only inside these lungs plus a pleural margin, and masks
its heatmap with the same region. The steps are the classic threshold / connected-component /
morphology pipeline for lung CT (threshold the air inside the body, take the airways out by
region growing from the trachea, close the lungs so juxtapleural and juxtavascular nodules stay
inside); SimpleITK does every heavy step. It runs on the model's isotropic grid (2 mm for the
reference model), after anti-aliased resampling, so slice thickness, pixel spacing, field of
view, noise and reconstruction kernel reach it already normalised.

Why hand-written: the lung segmentation networks in the field (e.g. U-nets trained on
thousands of clinical scans) need weights that cannot be shipped or downloaded here, and this
pipeline needs nothing but SimpleITK and is explainable step by step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

F32 = npt.NDArray[np.float32]
Bool = npt.NDArray[np.bool_]

# Air inside the patient. Lung parenchyma is about -900..-700 HU, soft tissue > -100 HU; the
# midpoint -400 HU (LUNA16's and most pipelines' choice) separates them whatever the kernel,
# once noise has been smoothed away by the anti-aliased resampling.
AIR_HU = -400.0
# The airway lumen is pure air (about -1000 HU, less after smoothing); aerated lung is denser
# (-900..-700 HU) because of its tissue and blood. Region growing from the trachea below a
# threshold a little above the lumen's own value follows the airways and not the lungs; the
# threshold is raised in steps while the airways grow without leaking into the lungs.
AIRWAY_STEP_HU = 15.0
AIRWAY_CEILING_HU = -800.0
# A trachea plus main and lobar bronchi hold 60-150 ml in adults; growing beyond this has
# leaked into the lungs (emphysema, a very smooth kernel), so a stricter threshold is tried.
AIRWAY_MAX_ML = 250.0
# A lung (even partly covered) is at least this big; smaller air pockets inside the body are
# bowel gas, the oesophagus or a hiatus hernia.
MIN_LUNG_ML = 15.0


# The masks are computed on a grid of about this spacing: the pleural margin and the closing
# are several mm anyway, and a 4 mm grid keeps the whole segmentation well under a second.
SEGMENTATION_GRID_MM = 4.0


@dataclass(frozen=True, eq=False)
class LungSegmentation:
    """Masks on a grid `factor` times coarser than the HU they were computed from, with what
    was found."""

    lungs: Bool  # both lungs, airways out, closed over vessels and juxtapleural nodules
    airways: Bool  # trachea and bronchi grown from the trachea (empty when not found)
    body: Bool  # the patient (table and outside air excluded)
    spacing_mm: float  # of these masks
    factor: int  # mask voxel = factor**3 voxels of the input HU
    lung_volume_ml: float
    warnings: tuple[str, ...] = ()

    def region(self, margin_mm: float) -> Bool:
        """The lungs grown by `margin_mm` (the pleural margin where candidates are kept)."""
        if margin_mm <= 0 or not self.lungs.any():
            return self.lungs
        img = _img(self.lungs)
        img.SetSpacing((self.spacing_mm,) * 3)
        dist = sitk.SignedMaurerDistanceMap(
            img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        return sitk.GetArrayFromImage(dist) <= margin_mm


def _img(mask: Bool) -> sitk.Image:
    return sitk.GetImageFromArray(mask.astype(np.uint8))


def _arr(img: sitk.Image) -> Bool:
    return sitk.GetArrayFromImage(img).astype(bool)


def _fill_holes_per_slice(mask: Bool) -> Bool:
    """Fill holes in each axial slice: vessels, nodules and airway walls inside the lungs are
    holes of the air mask; in 2-D a hole is anything not connected to the slice's border.

    All slices are filled in one 2-D pass (one call instead of one per slice, which costs
    about 9 ms each in SimpleITK): they are stacked into one tall image with a background row
    between them, so whatever touches a slice's edge reaches the tall image's border."""
    k, j, i = mask.shape
    tall = np.zeros((k, j + 1, i), dtype=np.uint8)
    tall[:, 1:, :] = mask
    flat = np.concatenate([tall.reshape(k * (j + 1), i), np.zeros((1, i), np.uint8)])
    filled = sitk.GetArrayFromImage(
        sitk.BinaryFillhole(sitk.GetImageFromArray(flat), fullyConnected=False, foregroundValue=1)
    )
    out: Bool = filled[:-1].reshape(k, j + 1, i)[:, 1:, :].astype(bool)
    return out


def _close_at_border(mask: Bool) -> Bool:
    """Extend the body along each image edge between the first and the last place it touches
    that edge. When the field of view cuts the body (large patient, small or off-centre FOV,
    a cardiac reconstruction), lungs reach the image edge; closing the body there keeps them
    holes of the body instead of outside air."""
    out = mask.copy()
    for edge in (
        out[:, 0, :],
        out[:, -1, :],
        out[:, :, 0],
        out[:, :, -1],
    ):  # views: writing into them writes into `out`
        n = edge.shape[1]
        has: Bool = np.asarray(edge.any(axis=1))
        first = np.argmax(edge, axis=1)
        last = n - 1 - np.argmax(edge[:, ::-1], axis=1)
        idx = np.arange(n)[None, :]
        edge |= has[:, None] & (idx >= first[:, None]) & (idx <= last[:, None])
    return out


def body_mask(hu: F32) -> Bool:
    """The patient: the largest connected object above the air threshold, holes (lungs,
    airways, bowel gas) filled slice by slice. Excludes the table (a separate object, or thin
    and cut off by a small opening) and the outside air, including air inside the FOV but
    outside the patient, which an 'air touching the image border' rule misses when the body
    touches the border (large patients, small FOV, partial coverage)."""
    dense = sitk.BinaryThreshold(sitk.GetImageFromArray(hu), AIR_HU, 1e9, 1, 0)
    # Opening with a 1-voxel ball detaches the table and blankets from the skin.
    dense = sitk.BinaryMorphologicalOpening(dense, [1, 1, 1], sitk.sitkBall)
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(dense), sortByObjectSize=True)
    body = sitk.GetArrayFromImage(labels) == 1
    return _fill_holes_per_slice(_close_at_border(body))


def _trachea_seed(air: Bool, body: Bool, spacing_mm: float) -> tuple[int, int, int] | None:
    """A voxel of the trachea: on the most cranial slices, the air region inside the body
    nearest the body's left-right centre with a tracheal cross-section (1-6 cm²)."""
    k_top = np.nonzero(air.any(axis=(1, 2)))[0]
    if len(k_top) == 0:
        return None
    voxel_cm2 = (spacing_mm / 10.0) ** 2
    # The first slice of a scan is often partial (half a voxel, padding): start one below.
    top = max(int(k_top[-1]) - 1, 0)
    for k in range(top, max(top - round(60.0 / spacing_mm), -1), -1):
        sl = air[k]
        if not sl.any():
            continue
        lab = sitk.GetArrayFromImage(
            sitk.ConnectedComponent(sitk.GetImageFromArray(sl.astype(np.uint8)))
        )
        cols = np.nonzero(body[k].any(axis=0))[0]
        if len(cols) == 0:
            continue
        centre_i = (cols[0] + cols[-1]) / 2.0
        best: tuple[float, tuple[int, int, int]] | None = None
        for n in range(1, int(lab.max()) + 1):
            jj, ii = np.nonzero(lab == n)
            area = len(jj) * voxel_cm2
            if not 1.0 <= area <= 6.0:
                continue
            off = abs(float(ii.mean()) - centre_i) * spacing_mm
            if off > 30.0:
                continue
            seed = (k, int(jj[len(jj) // 2]), int(ii[len(ii) // 2]))
            if best is None or off < best[0]:
                best = (off, seed)
        if best is not None:
            return best[1]
    return None


def _airways(hu_img: sitk.Image, seed: tuple[int, int, int], spacing_mm: float) -> Bool:
    """Trachea and bronchi grown from `seed` (k, j, i): the threshold starts just above the
    lumen's value and rises in AIRWAY_STEP_HU steps; growth stops at the last step before a
    leak (the volume passes AIRWAY_MAX_ML or jumps more than 3-fold in one step)."""
    voxel_ml = spacing_mm**3 / 1000.0
    k, j, i = seed
    hu = sitk.GetArrayFromImage(hu_img)
    lumen = float(np.median(hu[k, max(j - 1, 0) : j + 2, max(i - 1, 0) : i + 2]))
    best = np.zeros(hu.shape, dtype=np.bool_)
    best_ml = 0.0
    thr = lumen + AIRWAY_STEP_HU
    while thr <= AIRWAY_CEILING_HU:
        grown = _arr(
            sitk.ConnectedThreshold(hu_img, seedList=[(i, j, k)], lower=-3000.0, upper=thr)
        )
        ml = float(grown.sum() * voxel_ml)
        if ml > AIRWAY_MAX_ML or (best_ml > 5.0 and ml > 3.0 * best_ml):
            break
        best, best_ml = grown, ml
        thr += AIRWAY_STEP_HU
    return best


def _shrink(hu: F32, factor: int) -> F32:
    """Block mean by `factor` on every axis (the trailing partial blocks are dropped)."""
    if factor == 1:
        return hu
    img = sitk.BinShrink(sitk.GetImageFromArray(hu), [factor] * 3)
    return sitk.GetArrayFromImage(img)


def segment_lungs(hu: F32, spacing_mm: float, close_mm: float = 10.0) -> LungSegmentation:
    """Segment both lungs in HU on an isotropic grid of `spacing_mm`; the masks come on a grid
    about SEGMENTATION_GRID_MM coarse (see LungSegmentation.factor).

    `close_mm`: radius of the closing that brings juxtapleural nodules (sitting in a dent of
    the lung surface) and the hilar vessels into the lungs; smaller than half the narrowest
    mediastinum, so the two lungs are not bridged.
    """
    warnings: list[str] = []
    factor = max(1, int(SEGMENTATION_GRID_MM / spacing_mm + 1e-6))
    sp = spacing_mm * factor
    voxel_ml = sp**3 / 1000.0
    # Airways on the fine grid: a block mean mixes the lumen with its wall and hides it from
    # the strict airway thresholds. Light smoothing (half a voxel) first, so that noise of a
    # sharp kernel or a low-dose scan neither stops the growing nor opens leaks.
    fine_img = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(hu), spacing_mm * 0.5)
    fine = sitk.GetArrayFromImage(fine_img)
    coarse = _shrink(fine, factor)
    shape = coarse.shape
    body = body_mask(coarse)
    air = (coarse < AIR_HU) & body
    airways = np.zeros_like(air)
    seed = _trachea_seed(air, body, sp)
    if seed is not None:
        # The darkest fine voxel around the seed's block: lumen, not wall or partial volume.
        k0, j0, i0 = (max(int(v) * factor - factor, 0) for v in seed)
        block = fine[k0 : k0 + 3 * factor, j0 : j0 + 3 * factor, i0 : i0 + 3 * factor]
        dk, dj, di = np.unravel_index(int(np.argmin(block)), block.shape)
        grown = _airways(fine_img, (k0 + int(dk), j0 + int(dj), i0 + int(di)), spacing_mm)
        airways = mask_to_grid(grown, factor, shape)
    else:
        warnings.append("trachea not found (partial coverage?): airways not separated")
    lungs_air = air & ~airways
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(_img(lungs_air)), sortByObjectSize=True)
    lab = sitk.GetArrayFromImage(labels)
    counts = np.bincount(lab.ravel())
    keep = [n for n in range(1, min(len(counts), 3)) if counts[n] * voxel_ml >= MIN_LUNG_ML]
    # A third component as big as a lung: one lung cut in two by partial coverage.
    if len(counts) > 3 and keep and counts[3] >= 0.2 * counts[1]:
        keep.append(3)
    lungs = np.isin(lab, keep) if keep else np.zeros_like(air)
    if lungs.any():
        # Vessels, nodules and bronchial walls inside the lungs are holes of the air mask.
        lungs = _fill_holes_per_slice(lungs)
        r = max(1, round(close_mm / sp))
        closed = _arr(sitk.BinaryMorphologicalClosing(_img(lungs), [r] * 3, sitk.sitkBall))
        # Closing must not put back the trachea and main bronchi, nor leave the body.
        lungs = (closed | lungs) & body & ~airways
        lungs = _fill_holes_per_slice(lungs) & ~airways
    volume = float(lungs.sum() * voxel_ml)
    if volume < MIN_LUNG_ML:
        warnings.append("no lungs found in this series")
    return LungSegmentation(lungs, airways, body, sp, factor, volume, tuple(warnings))


def mask_to_grid(mask: Bool, factor: int, shape: tuple[int, ...]) -> Bool:
    """A mask on a grid `factor` times finer -> `shape` (a coarse voxel is in when any fine
    voxel of its block is)."""
    if factor == 1:
        out = np.zeros(shape, dtype=np.bool_)
        s = tuple(min(a, b) for a, b in zip(shape, mask.shape, strict=True))
        out[: s[0], : s[1], : s[2]] = mask[: s[0], : s[1], : s[2]]
        return out
    padded_shape = tuple(n * factor for n in shape)
    big = np.zeros(padded_shape, dtype=np.bool_)
    s = tuple(min(a, b) for a, b in zip(padded_shape, mask.shape, strict=True))
    big[: s[0], : s[1], : s[2]] = mask[: s[0], : s[1], : s[2]]
    f = factor
    out_any: Bool = np.asarray(
        big.reshape(shape[0], f, shape[1], f, shape[2], f).any(axis=(1, 3, 5))
    )
    return out_any


def antialias_sigma_mm(source_mm: float, target_mm: float) -> float:
    """Gaussian pre-filter SD (mm) before resampling from `source_mm` to `target_mm` voxels:
    what the source lacks to match a box of the target's width (SD of a box = width / sqrt 12),
    so every scanner's data reach the model at the same effective resolution and noise."""
    return math.sqrt(max(target_mm**2 - source_mm**2, 0.0) / 12.0)
