"""Read a DICOM Segmentation (any producer) into per-segment summaries in patient space, for
showing prior segmentations as read-only marks: label, centre (LPS mm), equivalent diameter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom


@dataclass(frozen=True)
class SegmentSummary:
    number: int
    label: str
    center_mm: tuple[float, float, float]
    diameter_mm: float  # of the sphere with the same volume
    voxels: int
    frame_of_reference_uid: str
    producer: str


def summarize_segments(ds: pydicom.Dataset) -> list[SegmentSummary]:
    """Per segment: centroid and equivalent diameter from the frames' plane positions.

    Works on BINARY and FRACTIONAL (threshold 0.5) SEGs with per-frame plane positions; a SEG
    without them (e.g. on a slide) gives an empty list.
    """
    labels = {
        int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {s.SegmentNumber}"))
        for s in ds.get("SegmentSequence", [])
    }
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    if not per_frame:
        return []

    def group(fg: pydicom.Dataset | None, seq: str) -> pydicom.Dataset | None:
        for source in (fg, shared):
            if source is not None and seq in source:
                item: pydicom.Dataset = source[seq].value[0]
                return item
        return None

    pixels = ds.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[None]
    fractional = ds.get("SegmentationType", "BINARY") == "FRACTIONAL"
    scale = float(ds.get("MaximumFractionalValue", 255)) if fractional else 1.0
    sums: dict[int, list[np.ndarray]] = {}
    voxel_mm3 = 0.0
    for n, fg in enumerate(per_frame):
        seg_id = group(fg, "SegmentIdentificationSequence")
        plane = group(fg, "PlanePositionSequence")
        orient = group(fg, "PlaneOrientationSequence")
        measures = group(fg, "PixelMeasuresSequence")
        if seg_id is None or plane is None or orient is None or measures is None:
            return []
        mask = pixels[n] / scale >= 0.5 if fractional else pixels[n] > 0
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            continue
        iop = np.asarray(orient.ImageOrientationPatient, dtype=float)
        ipp = np.asarray(plane.ImagePositionPatient, dtype=float)
        dr, dc = (float(v) for v in measures.PixelSpacing)
        thickness = float(measures.get("SliceThickness", 0) or 0) or min(dr, dc)
        voxel_mm3 = dr * dc * thickness
        # PS3.3 C.7.6.2.1.1: position = IPP + col * dc * row_cosine + row * dr * col_cosine
        pts = ipp + np.outer(cols, iop[:3] * dc) + np.outer(rows, iop[3:] * dr)
        sums.setdefault(int(seg_id.ReferencedSegmentNumber), []).append(pts)
    producer = (
        " ".join(str(v) for v in (ds.get("Manufacturer", ""), ds.get("SoftwareVersions", "")) if v)
        or "unknown producer"
    )
    out = []
    for number, chunks in sorted(sums.items()):
        pts = np.concatenate(chunks)
        volume = pts.shape[0] * voxel_mm3
        c = pts.mean(axis=0)
        out.append(
            SegmentSummary(
                number=number,
                label=labels.get(number, f"segment {number}"),
                center_mm=(float(c[0]), float(c[1]), float(c[2])),
                diameter_mm=float((6 * volume / np.pi) ** (1 / 3)),
                voxels=int(pts.shape[0]),
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
                producer=producer,
            )
        )
    return out
