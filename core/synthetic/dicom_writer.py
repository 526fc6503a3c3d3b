"""Shared DICOM Part 10 writing helpers for the synthetic generators.

Both generators build complete, standalone instances (no templates on disk) so that the files are
reproducible and validate with dciodvfy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

__all__ = [
    "IMPLEMENTATION_VERSION_NAME",
    "MANUFACTURER",
    "WrittenSeries",
    "add_common_modules",
    "make_uid",
    "save_part10",
]

MANUFACTURER = "Loupe synthetic"
# (0002,0013) is SH: at most 16 characters.
IMPLEMENTATION_VERSION_NAME = "LOUPE_SYNTH_1"


@dataclass(frozen=True)
class WrittenSeries:
    """UIDs and file paths of one series written to disk."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    paths: tuple[Path, ...]


def make_uid(uid_seed: str | None, *parts: str) -> str:
    """Return a UID derived from uid_seed and parts (deterministic), or a random one."""
    if uid_seed is None:
        return str(generate_uid())
    return str(generate_uid(entropy_srcs=[uid_seed, *parts]))


def add_common_modules(
    ds: Dataset,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str,
    study_date: str,
    study_time: str,
    accession_number: str,
    study_description: str,
    series_instance_uid: str,
    series_number: int,
    series_description: str,
    modality: str,
    instance_number: int,
) -> None:
    """Fill SOP Common, Patient, General Study, General Series and General Equipment."""
    # SOP Common. UTF-8 so that any (synthetic) patient name can be encoded.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = study_time
    # Patient module: Type 2 attributes may be empty but must be present.
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "NO"
    ds.PatientComments = "Synthetic phantom, not a real patient"
    # General Study.
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = accession_number
    ds.StudyDescription = study_description
    # General Series.
    ds.Modality = modality
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate = study_date
    ds.SeriesTime = study_time
    # General Equipment (Manufacturer is Type 2).
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "Loupe phantom generator"
    ds.SoftwareVersions = "1"
    ds.InstitutionName = "Loupe synthetic data"
    # General Image.
    ds.InstanceNumber = instance_number


def save_part10(ds: Dataset, path: Path) -> None:
    """Write ds as a Part 10 file (preamble, complete group 0002) in Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
