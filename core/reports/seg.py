"""Segmentation (BINARY) of the reader's nodules: one sphere per nodule on the CT grid.

Nodules the reader accepted, modified or added become segments (diameter as given, centre in
LPS mm), each with the finding's Tracking UID and id so a viewer can link SR and SEG.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from core.findings import Finding, ReviewStatus
from core.reports.ct_grid import CtGrid

SEG_SERIES_NUMBER = 904
KEPT = (ReviewStatus.ACCEPTED, ReviewStatus.MODIFIED, ReviewStatus.ADDED)
# Recommended display colour (CIELab), the workstation's "accepted" green.
_GREEN = hd.color.CIELabColor(60.0, -60.0, 50.0)


def _description(n: int, f: Finding, manufacturer: str) -> hd.seg.SegmentDescription:
    by_reader = f.status is ReviewStatus.ADDED or f.model_id == "reader"
    return hd.seg.SegmentDescription(
        segment_number=n,
        segment_label=f"nodule {f.finding_id}"[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        # A sphere from the AI's detection that the reader checked: SEMIAUTOMATIC.
        algorithm_type="MANUAL" if by_reader else "SEMIAUTOMATIC",
        algorithm_identification=None
        if by_reader
        else hd.AlgorithmIdentificationSequence(
            name=f.model_id,
            family=codes.cid7162.ArtificialIntelligence,
            version=f.model_version,
            source=manufacturer,
        ),
        tracking_uid=f.tracking_uid,
        tracking_id=f.finding_id,
        anatomic_regions=[codes.SCT.Lung],
        display_color=_GREEN,
    )


def build_nodule_seg(
    findings: Sequence[Finding],
    *,
    source_images: Sequence[pydicom.Dataset],
    manufacturer: str = "Loupe",
    software_version: str = "0.1.0",
    series_number: int = SEG_SERIES_NUMBER,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.seg.Segmentation:
    """A BINARY SEG of the kept CT nodules as spheres on the grid of `source_images`."""
    kept = [f for f in findings if f.status in KEPT and f.center_mm is not None and f.diameter_mm]
    if not kept:
        raise ValueError("no accepted, modified or added nodule with a centre and diameter")
    grid = CtGrid.from_headers(source_images)
    masks = np.zeros((*grid.shape, len(kept)), dtype=np.uint8)
    for n, f in enumerate(kept):
        assert f.center_mm is not None and f.diameter_mm is not None
        masks[..., n] = grid.sphere_mask(f.center_mm, f.diameter_mm / 2.0)
    return hd.seg.Segmentation(
        source_images=list(grid.headers),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n + 1, f, manufacturer) for n, f in enumerate(kept)],
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        manufacturer_model_name="Loupe",
        software_versions=software_version,
        device_serial_number="0",
        content_label="NODULES",
        content_description="Nodules kept by the reader (spheres)",
    )
