"""Read the attributes the archive indexes from a DICOM object without touching its pixels."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, data_element_generator
from pydicom.uid import UID

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


_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


def check_complete(data: bytes, *, source: str) -> None:
    """Walk every top-level element of a Part 10 object; raise ArchiveError if it is truncated.

    pydicom reads a cut-off file without complaint (the last value is just short), so a
    store from a sender that died mid-transfer would otherwise be archived as "complete".
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise ArchiveError(f"{source}: not a DICOM Part 10 object (no DICM prefix)")
    fp = io.BytesIO(data)
    fp.seek(132)
    try:
        meta = _read_file_meta_info(fp)
        ts = UID(str(meta.get("TransferSyntaxUID", "")))
        if not ts:
            raise ArchiveError(f"{source}: file meta has no TransferSyntaxUID")
        implicit = ts.is_implicit_VR if ts.is_transfer_syntax else False
        little = ts.is_little_endian if ts.is_transfer_syntax else True
        if ts == pydicom.uid.DeflatedExplicitVRLittleEndian:
            return  # compressed stream: completeness is checked when pydicom inflates it
        has_rows = has_pixels = False
        for raw in data_element_generator(fp, implicit, little, defer_size=None):
            tag = int(raw.tag)
            if tag == 0x00280010:
                has_rows = True
            elif tag in _PIXEL_TAGS:
                has_pixels = True
            if (
                isinstance(raw, RawDataElement)
                and raw.length != 0xFFFFFFFF
                and raw.value is not None
                and len(raw.value) != raw.length
            ):
                raise ArchiveError(
                    f"{source}: truncated in element {raw.tag} "
                    f"({len(raw.value)} of {raw.length} bytes)"
                )
    except ArchiveError:
        raise
    except (
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        NotImplementedError,
        OSError,
        struct.error,
    ) as exc:
        raise ArchiveError(f"{source}: truncated or malformed DICOM ({exc})") from exc
    if has_rows and not has_pixels:
        raise ArchiveError(f"{source}: image attributes present but no pixel data (truncated?)")
