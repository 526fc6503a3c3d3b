"""One TID 1500 measurement group per finding, shared by the AI SR and the reviewer's SR.

CT findings: TID 1411 (volumetric ROI) with a 3-D POINT at the centre (SCOORD3D, patient LPS
mm) in the CT's frame of reference, Nodule in Lung, diameter in mm. Endoscopy findings:
TID 1410 (planar ROI) with a closed POLYLINE rectangle (SCOORD, pixel column/row) on the
referenced frame, Lesion in Esophagus. Both carry the finding's Tracking UID and id, the
algorithm (TID 4019) and the AI's certainty as Certainty of Finding (DCM 111012) in percent.
A finding the reader modified keeps the algorithm on its certainty only: its ROI and size are
the reader's. A finding the reader rejected is, in the reviewer SR, a TID 1501 group with no
ROI and no size whose Finding is "AI finding rejected by reader" (`rejected_group`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr.templates import Template
from pydicom.sr.coding import Code

from core.findings import Finding, ReviewStatus
from core.reports import codes as c

READER_MODEL_ID = "reader"  # model_id of findings the reader added (core.review)


@dataclass(frozen=True)
class GroupOptions:
    manufacturer: str
    with_status: bool  # the reviewer's SR records each finding's review status
    with_comment: bool
    # TID 4019 Algorithm Parameters (DCM 111002) of the AI's findings, e.g. the operating
    # point and threshold the findings were shown at.
    algorithm_parameters: tuple[str, ...] = ()


class SourceImages:
    """The referenced images indexed by SOP Instance UID, with the CT slice positions."""

    def __init__(self, datasets: Sequence[pydicom.Dataset]):
        if not datasets:
            raise ValueError("source_images must contain at least the referenced images")
        self.datasets = list(datasets)
        self.by_uid = {str(ds.SOPInstanceUID): ds for ds in self.datasets}
        self._ct = [ds for ds in self.datasets if "ImagePositionPatient" in ds]

    def get(self, sop_instance_uid: str) -> pydicom.Dataset:
        try:
            return self.by_uid[sop_instance_uid]
        except KeyError:
            raise ValueError(
                f"source_images lacks the referenced image {sop_instance_uid}"
            ) from None

    def nearest_slice(self, center_mm: tuple[float, float, float]) -> pydicom.Dataset:
        """The image whose plane is closest to a point (distance along the slice normal)."""
        if not self._ct:
            raise ValueError("source_images has no image with ImagePositionPatient")
        p = np.asarray(center_mm, dtype=np.float64)

        def distance(ds: pydicom.Dataset) -> float:
            iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
            normal = np.cross(iop[:3], iop[3:])
            return abs(float(np.dot(p - np.asarray(ds.ImagePositionPatient, float), normal)))

        return min(self._ct, key=distance)


def _group_algorithm(
    f: Finding, algorithm: hd.sr.AlgorithmIdentification | None, options: GroupOptions
) -> hd.sr.AlgorithmIdentification | None:
    reader_edited = options.with_status and f.status is ReviewStatus.MODIFIED
    return None if reader_edited else algorithm


def algorithm_of(
    f: Finding, manufacturer: str, parameters: Sequence[str] = ()
) -> hd.sr.AlgorithmIdentification | None:
    if f.model_id == READER_MODEL_ID or f.status is ReviewStatus.ADDED:
        return None
    return hd.sr.AlgorithmIdentification(
        name=f.model_id,
        version=f.model_version,
        manufacturer=manufacturer,
        parameters=list(parameters) or None,
    )


def _measurements(
    f: Finding, algorithm: hd.sr.AlgorithmIdentification | None
) -> list[hd.sr.Measurement]:
    out: list[hd.sr.Measurement] = []
    if f.diameter_mm is not None:
        out.append(
            hd.sr.Measurement(name=c.DIAMETER, value=float(f.diameter_mm), unit=c.MILLIMETER)
        )
    solid = f.attributes.get("solid_component_mm")
    if solid is not None:
        out.append(
            hd.sr.Measurement(
                name=c.SOLID_COMPONENT_DIAMETER, value=float(solid), unit=c.MILLIMETER
            )
        )
    if algorithm is not None:
        out.append(_certainty(f, algorithm))
    return out


def _certainty(f: Finding, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    """The AI's probability as a CAD-style certainty (DCM 111012, 0-100 %)."""
    return hd.sr.Measurement(
        name=c.CERTAINTY_OF_FINDING,
        value=round(100.0 * f.probability, 4),
        unit=c.PERCENT,
        algorithm_id=algorithm,
    )


def _evaluations(f: Finding, options: GroupOptions) -> list[hd.sr.QualitativeEvaluation]:
    out: list[hd.sr.QualitativeEvaluation] = []
    kind = f.attributes.get("type")
    if isinstance(kind, str) and kind in c.CONSISTENCY_VALUES:
        out.append(hd.sr.QualitativeEvaluation(c.NODULE_CONSISTENCY, c.CONSISTENCY_VALUES[kind]))
    if options.with_status:
        out.append(hd.sr.QualitativeEvaluation(c.REVIEW_STATUS, c.STATUS_VALUES[f.status]))
    return out


def _add_comment(group: Template, f: Finding, options: GroupOptions) -> None:
    if options.with_comment and f.comment:
        # TID 1410/1411: "CONTAINS TEXT" qualitative evaluation beside the coded ones.
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=c.COMMENT,
                value=f.comment[:1024],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )


def _tracking(f: Finding) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=f.tracking_uid, identifier=f.finding_id)


def ct_group(
    f: Finding, images: SourceImages, options: GroupOptions
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    assert f.center_mm is not None
    ref = images.nearest_slice(f.center_mm)
    algorithm = algorithm_of(f, options.manufacturer, options.algorithm_parameters)
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(f),
        referenced_volume_surface=hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.array([f.center_mm], dtype=np.float64),  # LPS mm
            frame_of_reference_uid=str(ref.FrameOfReferenceUID),
            source_images=[
                hd.sr.SourceImageForSegmentation(str(ref.SOPClassUID), str(ref.SOPInstanceUID))
            ],
        ),
        finding_type=c.NODULE,
        algorithm_id=_group_algorithm(f, algorithm, options),
        finding_sites=[hd.sr.FindingSite(c.LUNG)],
        measurements=_measurements(f, algorithm),
        qualitative_evaluations=_evaluations(f, options) or None,
    )
    _add_comment(group, f, options)
    return group


def frame_group(
    f: Finding, images: SourceImages, options: GroupOptions
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    assert f.sop_instance_uid is not None
    ds = images.get(f.sop_instance_uid)
    rows, cols = int(ds.Rows), int(ds.Columns)
    # No region: the finding is the whole frame (a frame-level classification).
    r0, c0, r1, c1 = f.region if f.region is not None else (0, 0, rows, cols)
    # SCOORD graphic data are (column, row) pairs; a closed POLYLINE repeats its first point.
    corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]
    multi_frame = int(ds.get("NumberOfFrames", 1) or 1) > 1
    source = hd.sr.SourceImageForRegion(
        str(ds.SOPClassUID),
        str(ds.SOPInstanceUID),
        referenced_frame_numbers=[f.frame or 1] if multi_frame else None,
    )
    algorithm = algorithm_of(f, options.manufacturer, options.algorithm_parameters)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(f),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array(corners, dtype=np.float64),
            source_image=source,
        ),
        finding_type=c.LESION,
        algorithm_id=_group_algorithm(f, algorithm, options),
        finding_sites=[hd.sr.FindingSite(c.ESOPHAGUS)],
        measurements=_measurements(f, algorithm) or None,
        qualitative_evaluations=_evaluations(f, options) or None,
    )
    _add_comment(group, f, options)
    return group


def rejected_group(
    f: Finding, options: GroupOptions
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """An AI finding the reader rejected, as the reviewer SR records it: a TID 1501 group
    (no image region, no size) whose Finding is "AI finding rejected by reader", with the AI
    finding's Tracking UID and identifier, the AI's certainty (its algorithm named) and the
    reader's comment. Nothing in it says nodule or lesion, and nothing in it can be drawn, so a
    standard TID 1500 reader lists it as what it is and never as a nodule."""
    algorithm = algorithm_of(f, options.manufacturer, options.algorithm_parameters)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(f),
        finding_type=c.REJECTED_AI_FINDING,
        measurements=None if algorithm is None else [_certainty(f, algorithm)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(c.REVIEW_STATUS, c.STATUS_VALUES[ReviewStatus.REJECTED])
        ],
    )
    _add_comment(group, f, options)
    return group


def groups_for(
    findings: Sequence[Finding], images: SourceImages, options: GroupOptions
) -> list[
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
]:
    """One group per finding in order; in the reviewer SR (`with_status`) a rejected AI
    finding gets a `rejected_group`, never a nodule or lesion group."""
    out: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    for f in findings:
        if options.with_status and f.status is ReviewStatus.REJECTED:
            out.append(rejected_group(f, options))
        elif f.center_mm is not None:
            out.append(ct_group(f, images, options))
        else:
            out.append(frame_group(f, images, options))
    return out


def procedure_for(findings: Sequence[Finding]) -> Code:
    return c.CT_CHEST if any(f.center_mm is not None for f in findings) else c.EGD


def add_document_evaluations(
    report: hd.sr.MeasurementReport,
    evaluations: Sequence[tuple[Code, Code]],
    comment: str | None = None,
) -> None:
    """TID 1500 row 12: document-level qualitative evaluations (e.g. the Lung-RADS category)
    and an optional free-text comment."""
    if not evaluations and not comment:
        return
    container = hd.sr.ContainerContentItem(
        name=c.QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence()
    for name, value in evaluations:
        container.ContentSequence.append(
            hd.sr.CodeContentItem(
                name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        )
    if comment:
        container.ContentSequence.append(
            hd.sr.TextContentItem(
                name=c.COMMENT,
                value=comment[:1024],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    report[0].ContentSequence.append(container)
