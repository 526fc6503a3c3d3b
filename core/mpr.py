"""Multi-planar views of a Volume in voxel space: which array slice each pane shows, how it is
oriented on screen (radiological convention: patient left on screen right, superior up,
anterior left on sagittal), its pixel spacing, and the mapping between screen pixels and
voxel indices."""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from core.volume import Volume


class Plane(enum.StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


# Array axis (k=0, j=1, i=2) that each plane steps through.
_NORMAL_AXIS = {Plane.AXIAL: 0, Plane.CORONAL: 1, Plane.SAGITTAL: 2}


def slice_count(volume: Volume, plane: Plane) -> int:
    return volume.shape[_NORMAL_AXIS[plane]]


def _flip_k(volume: Volume) -> bool:
    # Screen rows go down; show superior (+z in LPS) at the top.
    return bool(volume.affine[2, 0] > 0)


def plane_image(
    array: npt.NDArray[np.generic], volume: Volume, plane: Plane, index: int
) -> npt.NDArray[np.generic]:
    """The 2-D screen-oriented image of `array` (shaped like the volume) at `index`."""
    img: npt.NDArray[np.generic]
    if plane is Plane.AXIAL:
        img = array[index]
        return img
    img = array[:, index, :] if plane is Plane.CORONAL else array[:, :, index]
    return img[::-1] if _flip_k(volume) else img


def pixel_spacing(volume: Volume, plane: Plane) -> tuple[float, float]:
    """(row height, column width) in mm of the plane image."""
    sk, sj, si = volume.spacing_mm
    if plane is Plane.AXIAL:
        return sj, si
    if plane is Plane.CORONAL:
        return sk, si
    return sk, sj


def pixel_to_index(
    volume: Volume, plane: Plane, index: int, row: float, col: float
) -> tuple[float, float, float]:
    """Screen image (row, col) of a plane at `index` -> voxel (k, j, i)."""
    nk = volume.shape[0]
    if plane is Plane.AXIAL:
        return float(index), row, col
    k = (nk - 1 - row) if _flip_k(volume) else row
    if plane is Plane.CORONAL:
        return k, float(index), col
    return k, col, float(index)


def index_to_pixel(
    volume: Volume, plane: Plane, kji: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Voxel (k, j, i) -> (slice index along the plane normal, row, col) in that plane."""
    k, j, i = kji
    nk = volume.shape[0]
    if plane is Plane.AXIAL:
        return k, j, i
    row = (nk - 1 - k) if _flip_k(volume) else k
    if plane is Plane.CORONAL:
        return j, row, i
    return i, row, j
