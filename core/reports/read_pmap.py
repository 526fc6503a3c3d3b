"""Read a Parametric Map (e.g. an earlier AI heatmap) onto a CT volume's grid, for the heatmap
pane. Maps on the CT's own grid (Loupe's, and most producers') are placed frame by frame;
others are refused with the reason."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pydicom

from core.volume import Volume


def producer_of(ds: pydicom.Dataset) -> str:
    parts = [str(ds.get(k, "")) for k in ("Manufacturer", "ContentLabel", "SoftwareVersions")]
    return " ".join(p for p in parts if p) or "unknown producer"


def map_on_volume_grid(ds: pydicom.Dataset, volume: Volume) -> npt.NDArray[np.uint8]:
    """Values scaled 0..255 (1.0 -> 255, as probabilities) on the volume's voxel grid."""
    if str(ds.get("FrameOfReferenceUID", "")) not in ("", volume.frame_of_reference_uid):
        raise ValueError("the map is in another frame of reference than this CT")
    frames = np.asarray(ds.pixel_array, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    nk, nj, ni = volume.shape
    if frames.shape[1:] != (nj, ni):
        raise ValueError(f"map frames are {frames.shape[1:]}, the CT's slices {(nj, ni)}")
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    out = np.zeros(volume.shape, dtype=np.uint8)
    for n, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        transform = None
        for source in (fg, shared):
            if source is not None and "RealWorldValueMappingSequence" in source:
                transform = source.RealWorldValueMappingSequence[0]
                break
        plane = fg.PlanePositionSequence[0] if "PlanePositionSequence" in fg else None
        if plane is None:
            raise ValueError("the map has no per-frame plane positions")
        kji = volume.world_to_index(np.asarray(plane.ImagePositionPatient, dtype=float))
        k = round(float(kji[0]))
        if not (0 <= k < nk) or abs(kji[0] - k) > 0.1 or max(abs(kji[1]), abs(kji[2])) > 0.1:
            raise ValueError(f"frame {n + 1} does not lie on a slice of this CT")
        values = frames[n]
        if transform is not None:
            slope = float(transform.get("RealWorldValueSlope", 1.0))
            intercept = float(transform.get("RealWorldValueIntercept", 0.0))
            values = values * slope + intercept
        out[k] = np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
    return out
