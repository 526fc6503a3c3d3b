"""Probability maps produced by models: a volume for CT, one map per frame for endoscopy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, eq=False)
class ProbabilityVolume:
    """Per-voxel probability in [0, 1] on its own grid (usually the model's spacing)."""

    probabilities: npt.NDArray[np.float32]  # (k, j, i)
    affine: npt.NDArray[np.float64]  # 4x4 index (k, j, i, 1) -> LPS mm, as Volume.affine
    series_instance_uid: str
    model_id: str
    model_version: str

    def __post_init__(self) -> None:
        if self.probabilities.ndim != 3:
            raise ValueError("probabilities must be 3-D (k, j, i)")


@dataclass(frozen=True, eq=False)
class FrameHeatmap:
    """Per-pixel probability in [0, 1] for one endoscopy frame (any resolution; the view
    stretches it over the frame)."""

    probabilities: npt.NDArray[np.float32]  # (rows, cols)
    sop_instance_uid: str
    frame: int  # 1-based
    model_id: str
    model_version: str


def resample_to_grid(
    probabilities: npt.NDArray[np.float32],
    source_affine: npt.NDArray[np.float64],
    target_shape: tuple[int, int, int],
    target_affine: npt.NDArray[np.float64],
) -> npt.NDArray[np.uint8]:
    """Probabilities on another grid (e.g. the model's 1.5 mm grid) resampled trilinearly
    onto the CT's voxel grid, coded 0..255 so each display slice is a plain array index."""
    import SimpleITK as sitk

    from core.sitk_grid import array_to_image, empty_image

    src = array_to_image(probabilities.astype(np.float32), source_affine)
    ref = empty_image(target_shape, target_affine)
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(out)
    coded: npt.NDArray[np.uint8] = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    return coded
