"""The one conversion between Loupe's grids and SimpleITK images.

A Loupe array is indexed (k, j, i) with a 4x4 affine mapping (k, j, i, 1) to LPS mm (the
columns of its 3x3 part are the k, j and i axes, their lengths the spacings). SimpleITK
indexes (i, j, k): its spacing is (si, sj, sk) and its direction matrix has the i, j and k
unit axes as columns. Every place that hands a volume, a mask or a heatmap to SimpleITK
goes through here, so the axis order is decided once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk


def _geometry(image: sitk.Image, affine: npt.NDArray[np.float64]) -> sitk.Image:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)  # along k, j, i
    direction = affine[:3, :3] / spacing
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    image.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    image.SetDirection(tuple(float(v) for v in direction[:, [2, 1, 0]].flatten()))
    return image


def array_to_image(arr: npt.NDArray[Any], affine: npt.NDArray[np.float64]) -> sitk.Image:
    """An image of a (k, j, i) array on the grid `affine` describes."""
    return _geometry(sitk.GetImageFromArray(np.ascontiguousarray(arr)), affine)


def empty_image(
    shape: tuple[int, int, int], affine: npt.NDArray[np.float64], pixel: int = sitk.sitkFloat32
) -> sitk.Image:
    """An image of the (k, j, i) grid `shape`/`affine` (a resampling reference)."""
    return _geometry(sitk.Image([int(shape[2]), int(shape[1]), int(shape[0])], pixel), affine)
