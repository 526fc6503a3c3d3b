"""The reader's review as a verified TID 1500 Comprehensive 3D SR that supersedes the AI SR.

Each finding keeps the Tracking UID the AI SR gave it and carries its review status
(accepted, modified, added by the reader; 99LOUPE codes, see CODES.md) and comment. Findings
the reader kept are TID 1410/1411 groups (Finding = Nodule or Lesion, with ROI and size). An AI
finding the reader rejected is a TID 1501 group with no ROI and no size whose Finding is
"AI finding rejected by reader", still under the AI's Tracking UID: a standard TID 1500 reader
lists only the kept findings as nodules, and the disagreement stays on record. It is never
a KOS "Rejected for Quality Reasons" (IOCM archives would hide the images).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from core.findings import Finding, ReviewStatus
from core.reports import codes as c
from core.reports.measurement_groups import (
    GroupOptions,
    SourceImages,
    add_document_evaluations,
    groups_for,
    procedure_for,
)

REVIEW_SR_SERIES_NUMBER = 902
UNSET_ORGANIZATION = "Organization not configured"  # [report] organization unset, no institution


def _tracking_uids(sr: pydicom.Dataset) -> set[str]:
    """Every Tracking Unique Identifier (DCM 112040) in an SR content tree."""
    found: set[str] = set()
    stack = list(sr.get("ContentSequence", []))
    while stack:
        item = stack.pop()
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == "112040" and "UID" in item:
            found.add(str(item.UID))
        stack.extend(item.get("ContentSequence", []))
    return found


def build_review_sr(
    findings: Sequence[Finding],
    *,
    ai_sr: pydicom.Dataset | None,
    source_images: Sequence[pydicom.Dataset],
    reader_name: str,
    reader_login: str | None = None,
    organization: str = "",
    lung_rads: str | None = None,
    impression: str | None = None,
    device_uid: str | None = None,
    device_name: str = "Loupe",
    manufacturer: str = "Loupe",
    series_number: int = REVIEW_SR_SERIES_NUMBER,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.sr.Comprehensive3DSR:
    """A verified Comprehensive 3D SR: person (the reader) and device (Loupe) observers,
    one group per finding with its review status, the Lung-RADS category when given, and
    the AI SR as predecessor (PredecessorDocumentsSequence).

    `reader_name` is a DICOM person name ("Family^Given"); reader-added findings are
    included; a finding taken from the AI SR must keep that SR's Tracking UID. A rejected AI
    finding is recorded as rejected and never as a nodule or lesion (`rejected_group`).
    `organization` is the reader's (settings); empty: the images' Institution Name, else
    UNSET_ORGANIZATION. `device_uid` is the installation's Device Observer UID.
    """
    if not findings and lung_rads is None and not impression:
        raise ValueError("nothing to report: no findings, no Lung-RADS category and no impression")
    if lung_rads is not None and lung_rads not in c.LUNG_RADS_VALUES:
        raise ValueError(
            f"lung_rads must be one of {sorted(c.LUNG_RADS_VALUES)}, got {lung_rads!r}"
        )
    if ai_sr is not None:
        known = _tracking_uids(ai_sr)
        lost = [
            f.finding_id
            for f in findings
            if f.status is not ReviewStatus.ADDED and f.tracking_uid not in known
        ]
        if lost:
            raise ValueError(f"findings not in the AI SR (Tracking UID unknown there): {lost}")
    images = SourceImages(source_images)
    # Verifying Organization is Type 1 in the Verifying Observer Sequence: the settings' value,
    # else the institution that made the images (where the reader reads them), else a
    # statement that nobody configured one (never our own product name).
    organization = (
        organization
        or str(images.datasets[0].get("InstitutionName", "") or "").strip()
        or UNSET_ORGANIZATION
    )
    options = GroupOptions(manufacturer=manufacturer, with_status=True, with_comment=True)
    context = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=reader_name,
                login_name=reader_login,
                organization_name=organization,
            ),
        ),
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=device_uid or hd.UID(), name=device_name, manufacturer_name=manufacturer
            ),
        ),
    )
    groups: list[Any] = list(groups_for(findings, images, options))
    if not groups:
        # A negative study: one TID 1501 group saying so (TID 1500 needs a group).
        groups = [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier="No finding to report"
                ),
                finding_type=c.NO_FINDINGS,
                finding_sites=[hd.sr.FindingSite(c.LUNG)] if lung_rads is not None else None,
            )
        ]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=procedure_for(findings) if findings else c.CT_CHEST,
        imaging_measurements=groups,
    )
    document = [] if lung_rads is None else [(c.LUNG_RADS, c.LUNG_RADS_VALUES[lung_rads])]
    add_document_evaluations(report, document, comment=impression)
    sr = hd.sr.Comprehensive3DSR(
        evidence=images.datasets,
        content=report[0],
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name=reader_name,
        verifying_organization=organization,
        previous_versions=[ai_sr] if ai_sr is not None else None,
        series_description="AI results reviewed",
    )
    sr.CodingSchemeIdentificationSequence = [c.coding_scheme_identification()]
    return sr
