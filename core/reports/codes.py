"""Coded concepts used in Loupe's reports: standard codes and the private 99LOUPE scheme.

The private scheme is documented in core/reports/CODES.md and declared in each object's
Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from core.findings import ReviewStatus

SCHEME = "99LOUPE"  # private schemes start with "99" (PS3.16 section 8.2)
SCHEME_VERSION = "1"


def _loupe(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning, SCHEME_VERSION)


# Standard codes.
NODULE = codes.SCT.Nodule  # 27925004
LUNG = codes.SCT.Lung  # 39607008
DIAMETER = codes.SCT.Diameter  # 81827009
LESION = codes.SCT.Lesion  # 52988006: what the endoscopy model detects (not a diagnosis)
ESOPHAGUS = codes.SCT.Esophagus  # 32849002
CERTAINTY_OF_FINDING = codes.DCM.CertaintyOfFinding  # 111012, NUM in % as in CAD SRs
COMMENT = codes.DCM.Comment  # 121106
PERCENT = codes.UCUM.Percent
MILLIMETER = codes.UCUM.Millimeter
CT_CHEST = Code("24627-2", "LN", "CT Chest")  # CID 100
EGD = Code("76009000", "SCT", "Esophagogastroduodenoscopy")
# TID 1500 row 12: the document-level "Qualitative Evaluations" container.
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")

# Private codes (99LOUPE): no standard concept says "the reader accepted this AI finding".
REVIEW_STATUS = _loupe("REVIEW-STATUS", "Review status")
STATUS_VALUES: dict[ReviewStatus, Code] = {
    ReviewStatus.PENDING: _loupe("PENDING", "Not reviewed"),
    ReviewStatus.ACCEPTED: _loupe("ACCEPTED", "Accepted by reader"),
    ReviewStatus.REJECTED: _loupe("REJECTED", "Rejected by reader"),
    ReviewStatus.MODIFIED: _loupe("MODIFIED", "Modified by reader"),
    ReviewStatus.ADDED: _loupe("ADDED", "Added by reader"),
}
# The Finding (DCM 121071) of the reviewer SR's group for an AI finding the reader rejected:
# a TID 1501 group with no image region and no size, so that no TID 1500 reader shows it as a
# nodule or lesion, which still carries the AI finding's Tracking UID (see CODES.md).
REJECTED_AI_FINDING = _loupe("AI-REJECTED", "AI finding rejected by reader")
NODULE_CONSISTENCY = _loupe("CONSISTENCY", "Nodule consistency")
CONSISTENCY_VALUES: dict[str, Code] = {
    "solid": _loupe("SOLID", "Solid"),
    "part-solid": _loupe("PART-SOLID", "Part-solid"),
    "ground-glass": _loupe("GROUND-GLASS", "Ground-glass"),
}
SOLID_COMPONENT_DIAMETER = _loupe("SOLID-DIAMETER", "Solid component diameter")
LUNG_RADS = _loupe("LUNG-RADS-2022", "Lung-RADS v2022 category")
# The finding of the one TID 1501 group of a report with no finding to list (a negative
# study): highdicom (and TID 1500 row 6) wants at least one measurement group.
NO_FINDINGS = _loupe("NO-FINDINGS", "No finding to report")
LUNG_RADS_VALUES: dict[str, Code] = {
    c: _loupe(f"LR-{c}", f"Lung-RADS {c}") for c in ("0", "1", "2", "3", "4A", "4B", "4X")
}


def coding_scheme_identification() -> Dataset:
    """Item of the Coding Scheme Identification Sequence declaring 99LOUPE (Type 1C: a scheme
    not in PS3.16 Table 8-1 is used)."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeVersion = SCHEME_VERSION
    item.CodingSchemeName = "Loupe review and reporting codes"
    item.CodingSchemeResponsibleOrganization = "Loupe project (core/reports/CODES.md)"
    return item


def status_from_code(value: str, scheme: str) -> ReviewStatus | None:
    if scheme != SCHEME:
        return None
    for status, code in STATUS_VALUES.items():
        if code.value == value:
            return status
    return None
