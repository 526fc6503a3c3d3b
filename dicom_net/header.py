"""Read the attributes the archive indexes from a DICOM object without touching its pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_net.errors import ArchiveError

# Tags read from each object; everything after Pixel Data is never parsed.
_INDEXED_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "FrameOfReferenceUID",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "NumberOfFrames",
    "Rows",
    "Columns",
)


@dataclass(frozen=True)
class InstanceHeader:
    """Browsing attributes of one instance (DICOM keywords in snake_case)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    study_id: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    frame_of_reference_uid: str = ""
    instance_number: int | None = None
    number_of_frames: int | None = None
    rows: int | None = None
    columns: int | None = None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def header_from_dataset(ds: Dataset, *, source: str) -> InstanceHeader:
    """Build the header; raises ArchiveError naming `source` when a required UID is missing."""
    missing = [
        k
        for k in ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID")
        if not _text(ds, k)
    ]
    if missing:
        raise ArchiveError(f"{source}: not storable, missing {', '.join(missing)}")
    meta = getattr(ds, "file_meta", None)
    ts = ""
    if meta is not None:
        ts = _text(meta, "TransferSyntaxUID")
    return InstanceHeader(
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        transfer_syntax_uid=ts,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        study_id=_text(ds, "StudyID"),
        modality=_text(ds, "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        instance_number=_int(ds, "InstanceNumber"),
        number_of_frames=_int(ds, "NumberOfFrames"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
    )


def read_header(data: bytes | Path, *, source: str | None = None) -> InstanceHeader:
    """Parse a Part 10 object (bytes or file) up to Pixel Data and return its header."""
    name = source or (str(data) if isinstance(data, Path) else "<bytes>")
    try:
        fp = io.BytesIO(data) if isinstance(data, bytes) else data
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(_INDEXED_KEYWORDS))
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ArchiveError(f"{name}: not a readable DICOM file ({exc})") from exc
    return header_from_dataset(ds, source=name)
