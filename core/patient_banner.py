"""Who and what is on screen: the patient and study lines of the image corners and the window
title (the usual four-corner overlay), so that a reader never reads the wrong patient.

Top left: patient name, ID, sex and age (or birth date); top right: institution, study date
and description, series number and description. Built from one image header; Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pydicom


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def person_name(raw: str) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" as "FAMILY, Given Middle" (readers
    expect the family name first and unmistakable)."""
    if not raw:
        return ""
    alphabetic = raw.split("=")[0]
    parts = [p.strip() for p in alphabetic.split("^")]
    family = parts[0].upper()
    given = " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if given else family


def _date(raw: str) -> str:
    if len(raw) == 8 and raw.isdigit():
        return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    return raw


def _age(ds: pydicom.Dataset) -> str:
    """Patient Age ("054Y" -> "54 y"), else computed from birth and study dates."""
    raw = _text(ds, "PatientAge")
    if len(raw) == 4 and raw[:3].isdigit() and raw[3] in "DWMY":
        return f"{int(raw[:3])} {raw[3].lower()}"
    birth, study = _text(ds, "PatientBirthDate"), _text(ds, "StudyDate")
    if len(birth) == 8 and len(study) == 8 and birth.isdigit() and study.isdigit():
        b = date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
        s = date(int(study[:4]), int(study[4:6]), int(study[6:]))
        years = s.year - b.year - ((s.month, s.day) < (b.month, b.day))
        if years >= 0:
            return f"{years} y"
    return ""


@dataclass(frozen=True)
class PatientBanner:
    name: str
    patient_id: str
    sex: str
    age: str
    birth_date: str
    institution: str
    study_date: str
    study_description: str
    series: str  # "S3 Lung 1.0 mm"
    modality: str

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> PatientBanner:
        number = _text(ds, "SeriesNumber")
        series = " ".join(
            p for p in (f"S{number}" if number else "", _text(ds, "SeriesDescription")) if p
        )
        return cls(
            name=person_name(_text(ds, "PatientName")) or "(no patient name)",
            patient_id=_text(ds, "PatientID") or "(no patient ID)",
            sex=_text(ds, "PatientSex"),
            age=_age(ds),
            birth_date=_date(_text(ds, "PatientBirthDate")),
            institution=_text(ds, "InstitutionName"),
            study_date=_date(_text(ds, "StudyDate")),
            study_description=_text(ds, "StudyDescription"),
            series=series,
            modality=_text(ds, "Modality"),
        )

    @classmethod
    def from_file(cls, path: object) -> PatientBanner:
        return cls.from_dataset(pydicom.dcmread(str(path), stop_before_pixels=True))

    def top_left(self) -> list[str]:
        who = " ".join(p for p in (self.sex, self.age) if p)
        if self.birth_date:
            who = f"{who}  *{self.birth_date}".strip()
        return [line for line in (self.name, f"ID {self.patient_id}", who) if line]

    def top_right(self) -> list[str]:
        study = " ".join(p for p in (self.study_date, self.study_description) if p)
        series = " ".join(p for p in (self.modality, self.series) if p)
        return [line for line in (self.institution, study, series) if line]

    def title(self) -> str:
        parts = [self.name, f"ID {self.patient_id}"]
        if self.study_date:
            parts.append(self.study_date)
        if self.series:
            parts.append(f"{self.modality} {self.series}".strip())
        return "Loupe - " + " - ".join(parts)
