"""A CT series as a voxel array with its geometry in patient coordinates (DICOM LPS, mm).

Index order is (k, j, i) = (slice, row, column). `affine` maps homogeneous indices
[k, j, i, 1] to LPS [x, y, z, 1], the convention highdicom's Volume uses, so the same
matrix serves resampling, overlays and SR coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, eq=False)
class Volume:
    voxels: npt.NDArray[np.int16] | npt.NDArray[np.float32]  # HU, shape (k, j, i)
    affine: npt.NDArray[np.float64]  # 4x4, index (k, j, i, 1) -> LPS mm
    frame_of_reference_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = "CT"
    sop_instance_uids: tuple[str, ...] = ()  # one per slice k (frame UIDs for enhanced CT)
    frame_numbers: tuple[int, ...] = ()  # 1-based frame per slice for multi-frame; else empty
    warnings: tuple[str, ...] = field(default_factory=tuple)  # irregularities found on load

    def __post_init__(self) -> None:
        if self.voxels.ndim != 3:
            raise ValueError(f"voxels must be 3-D (slices, rows, columns), got {self.voxels.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if self.sop_instance_uids and len(self.sop_instance_uids) != self.voxels.shape[0]:
            raise ValueError(
                f"{len(self.sop_instance_uids)} SOP Instance UIDs for {self.voxels.shape[0]} slices"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        k, j, i = self.voxels.shape
        return int(k), int(j), int(i)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along (k, j, i) in mm."""
        cols = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(cols[0]), float(cols[1]), float(cols[2])

    @property
    def direction(self) -> npt.NDArray[np.float64]:
        """Unit vectors (columns) of the k, j, i axes in LPS."""
        d: npt.NDArray[np.float64] = self.affine[:3, :3] / np.linalg.norm(
            self.affine[:3, :3], axis=0
        )
        return d

    def index_to_world(self, kji: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(..., 3) indices (k, j, i) -> (..., 3) LPS mm."""
        p = np.asarray(kji, dtype=np.float64)
        out: npt.NDArray[np.float64] = p @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out

    def world_to_index(self, xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(..., 3) LPS mm -> (..., 3) fractional indices (k, j, i)."""
        p = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        out: npt.NDArray[np.float64] = p @ inv[:3, :3].T + inv[:3, 3]
        return out

    @property
    def nbytes(self) -> int:
        return int(self.voxels.nbytes)


def affine_from_dicom(
    first_position: npt.ArrayLike,
    row_direction: npt.ArrayLike,
    column_direction: npt.ArrayLike,
    pixel_spacing: tuple[float, float],
    slice_step: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Affine from ImagePositionPatient of slice 0, ImageOrientationPatient (row and column
    direction cosines), PixelSpacing (row spacing, column spacing) and the vector from one
    slice position to the next (mm, LPS)."""
    row_dir = np.asarray(row_direction, dtype=np.float64)  # direction of increasing column i
    col_dir = np.asarray(column_direction, dtype=np.float64)  # direction of increasing row j
    a = np.eye(4)
    a[:3, 0] = np.asarray(slice_step, dtype=np.float64)
    a[:3, 1] = col_dir * float(pixel_spacing[0])
    a[:3, 2] = row_dir * float(pixel_spacing[1])
    a[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return a
