"""The CT series' grid from its headers: slices sorted along the normal, voxel positions in LPS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pydicom


@dataclass(frozen=True)
class CtGrid:
    headers: tuple[pydicom.Dataset, ...]  # sorted by position along the slice normal
    rows: int
    columns: int

    @classmethod
    def from_headers(cls, source_images: Sequence[pydicom.Dataset]) -> CtGrid:
        """Single-frame CT headers of one series (any order, pixel data not needed)."""
        if not source_images:
            raise ValueError("source_images is empty")
        iop = np.asarray(source_images[0].ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(iop[:3], iop[3:])
        ordered = sorted(
            source_images,
            key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)),
        )
        first = ordered[0]
        return cls(tuple(ordered), int(first.Rows), int(first.Columns))

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """4x4 index (k, j, i, 1) -> LPS mm, as core.volume.Volume.affine."""
        first = self.headers[0]
        iop = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
        dr, dc = (float(v) for v in first.PixelSpacing)
        ipp = np.asarray(first.ImagePositionPatient, dtype=np.float64)
        a = np.eye(4)
        if len(self.headers) > 1:
            a[:3, 0] = np.asarray(self.headers[1].ImagePositionPatient, float) - ipp
        else:
            a[:3, 0] = np.cross(iop[:3], iop[3:]) * float(first.get("SliceThickness", 1.0) or 1.0)
        a[:3, 1] = iop[3:] * dr
        a[:3, 2] = iop[:3] * dc
        a[:3, 3] = ipp
        return a

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.headers), self.rows, self.columns

    def slice_points(self, k: int) -> npt.NDArray[np.float64]:
        """(rows, columns, 3) LPS mm of every pixel centre of slice k."""
        ds = self.headers[k]
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        dr, dc = (float(v) for v in ds.PixelSpacing)  # row spacing, column spacing
        ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
        r = np.arange(self.rows, dtype=np.float64)[:, None, None]
        c = np.arange(self.columns, dtype=np.float64)[None, :, None]
        pts: npt.NDArray[np.float64] = ipp + c * dc * iop[:3] + r * dr * iop[3:]
        return pts

    def sphere_mask(self, center_mm: Sequence[float], radius_mm: float) -> npt.NDArray[np.bool_]:
        """(slices, rows, columns) True where the voxel centre is within the sphere."""
        centre = np.asarray(center_mm, dtype=np.float64)
        mask = np.zeros(self.shape, dtype=bool)
        for k, ds in enumerate(self.headers):
            iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
            normal = np.cross(iop[:3], iop[3:])
            offset = np.dot(np.asarray(ds.ImagePositionPatient, float) - centre, normal)
            if abs(float(offset)) > radius_mm:
                continue  # the slice plane misses the sphere
            pts = self.slice_points(k)
            mask[k] = np.sum((pts - centre) ** 2, axis=-1) <= radius_mm**2
        return mask
