"""Parametric Map of the AI's probability heatmap on the CT grid (32-bit float, 0..1)."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.sr.codedict import codes

from core.heatmap import ProbabilityVolume, resample_to_grid
from core.reports.ct_grid import CtGrid

PMAP_SERIES_NUMBER = 905


def probabilities_on_grid(heatmap: ProbabilityVolume, grid: CtGrid) -> npt.NDArray[np.float32]:
    """The model's probability volume resampled (trilinear) onto the CT grid; the resampler
    codes 0..255, so values are multiples of 1/255."""
    coded = resample_to_grid(heatmap.probabilities, heatmap.affine, grid.shape, grid.affine)
    out: npt.NDArray[np.float32] = coded.astype(np.float32) / np.float32(255.0)
    return out


def build_probability_map(
    heatmap: ProbabilityVolume | npt.NDArray[np.float32],
    *,
    source_images: Sequence[pydicom.Dataset],
    model_id: str,
    model_version: str,
    manufacturer: str = "Loupe",
    series_number: int = PMAP_SERIES_NUMBER,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.pm.ParametricMap:
    """A Parametric Map of per-voxel probability. `heatmap` is a ProbabilityVolume (any grid)
    or an array already on the CT grid, slices ordered along the slice normal."""
    grid = CtGrid.from_headers(source_images)
    if isinstance(heatmap, ProbabilityVolume):
        values = probabilities_on_grid(heatmap, grid)
    else:
        values = np.asarray(heatmap, dtype=np.float32)
    if values.shape != grid.shape:
        raise ValueError(f"heatmap shape {values.shape} differs from the CT grid {grid.shape}")
    if values.size and (float(values.min()) < 0.0 or float(values.max()) > 1.0):
        raise ValueError("probabilities must be in [0, 1]")
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="PROBABILITY",
        lut_explanation=f"{model_id} {model_version} probability"[:64],
        unit=codes.UCUM.NoUnits,
        value_range=(0.0, 1.0),
        slope=1.0,
        intercept=0.0,
        quantity_definition=codes.DCM.Probability,
    )
    pmap = hd.pm.ParametricMap(
        source_images=list(grid.headers),
        pixel_array=values,
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        manufacturer_model_name=f"{model_id}"[:64],
        software_versions=model_version,
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="PROBABILITY",
        content_description=f"AI probability map {model_id} {model_version}"[:64],
    )
    # General Series Laterality is Type 2C and dciodvfy wants it present; only R and L are
    # allowed and a chest map covers both lungs, so it is empty (dciodvfy warns, see tests).
    pmap.Laterality = ""
    return pmap
