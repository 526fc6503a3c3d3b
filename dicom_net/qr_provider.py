"""Query/Retrieve SCP over the local archive: Loupe answers C-FIND, C-MOVE and C-GET itself,
as OsiriX and Horos do for theirs (used by `loupe demo` and by other workstations)."""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_net.archive import InstanceRecord, LocalArchive
from dicom_net.contexts import contexts_for_sending

log = logging.getLogger(__name__)

STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_SUCCESS = 0x0000
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000

_LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    "STUDY": (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
    ),
    "SERIES": (
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": (
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "SeriesInstanceUID",
        "StudyInstanceUID",
    ),
}

_DATE_TIME_KEYS = {"StudyDate", "StudyTime", "PatientBirthDate"}
_UID_KEYS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"}


def _entities(archive: LocalArchive, level: str) -> list[dict[str, str]]:
    """Every entity of a level as {keyword: text}, with counts computed."""
    if level == "PATIENT":
        rows = archive.query(
            """SELECT s.patient_id, MAX(s.patient_name) AS patient_name,
                      MAX(s.patient_birth_date) AS patient_birth_date,
                      MAX(s.patient_sex) AS patient_sex,
                      COUNT(DISTINCT s.study_instance_uid) AS n_studies,
                      (SELECT COUNT(*) FROM series r JOIN studies t USING(study_instance_uid)
                        WHERE t.patient_id = s.patient_id) AS n_series,
                      (SELECT COUNT(*) FROM instances i JOIN studies t USING(study_instance_uid)
                        WHERE t.patient_id = s.patient_id) AS n_instances
               FROM studies s GROUP BY s.patient_id"""
        )
        return [
            {
                "PatientID": r["patient_id"] or "",
                "PatientName": r["patient_name"] or "",
                "PatientBirthDate": r["patient_birth_date"] or "",
                "PatientSex": r["patient_sex"] or "",
                "NumberOfPatientRelatedStudies": str(r["n_studies"]),
                "NumberOfPatientRelatedSeries": str(r["n_series"]),
                "NumberOfPatientRelatedInstances": str(r["n_instances"]),
            }
            for r in rows
        ]
    if level == "STUDY":
        out = []
        for st in archive.studies():
            classes = archive.query(
                "SELECT DISTINCT sop_class_uid FROM instances WHERE study_instance_uid=?",
                (st.study_instance_uid,),
            )
            out.append(
                {
                    "StudyInstanceUID": st.study_instance_uid,
                    "StudyDate": st.study_date,
                    "StudyTime": st.study_time,
                    "StudyDescription": st.study_description,
                    "AccessionNumber": st.accession_number,
                    "StudyID": "",
                    "ReferringPhysicianName": "",
                    "ModalitiesInStudy": "\\".join(st.modalities),
                    "SOPClassesInStudy": "\\".join(sorted(r[0] for r in classes if r[0])),
                    "NumberOfStudyRelatedSeries": str(st.series_count),
                    "NumberOfStudyRelatedInstances": str(st.instance_count),
                    "PatientID": st.patient_id,
                    "PatientName": st.patient_name,
                    "PatientBirthDate": st.patient_birth_date,
                    "PatientSex": st.patient_sex,
                }
            )
        return out
    if level == "SERIES":
        rows = archive.query(
            """SELECT r.*, s.patient_id, (SELECT COUNT(*) FROM instances i
                   WHERE i.series_instance_uid = r.series_instance_uid) AS n
               FROM series r JOIN studies s USING(study_instance_uid)"""
        )
        return [
            {
                "SeriesInstanceUID": r["series_instance_uid"],
                "StudyInstanceUID": r["study_instance_uid"],
                "PatientID": r["patient_id"] or "",
                "Modality": r["modality"] or "",
                "SeriesNumber": "" if r["series_number"] is None else str(r["series_number"]),
                "SeriesDescription": r["series_description"] or "",
                "BodyPartExamined": r["body_part_examined"] or "",
                "NumberOfSeriesRelatedInstances": str(r["n"]),
            }
            for r in rows
        ]
    if level == "IMAGE":
        rows = archive.query(
            """SELECT i.*, s.patient_id FROM instances i JOIN studies s
               USING(study_instance_uid) ORDER BY i.series_instance_uid, i.instance_number"""
        )
        return [
            {
                "SOPInstanceUID": r["sop_instance_uid"],
                "SOPClassUID": r["sop_class_uid"] or "",
                "InstanceNumber": "" if r["instance_number"] is None else str(r["instance_number"]),
                "SeriesInstanceUID": r["series_instance_uid"],
                "StudyInstanceUID": r["study_instance_uid"],
                "PatientID": r["patient_id"] or "",
            }
            for r in rows
        ]
    raise ValueError(f"unknown query level {level!r}")


def matches(key: str, pattern: str, value: str) -> bool:
    """DICOM attribute matching (PS3.4 C.2.2.2): single value, list of UIDs, wildcards, ranges."""
    pattern = pattern.strip()
    if pattern in ("", "*"):
        return True
    value = value.strip()
    if key in _UID_KEYS:
        return value in {p.strip() for p in pattern.split("\\")}
    if key in _DATE_TIME_KEYS and "-" in pattern:
        lo, _, hi = pattern.partition("-")
        if not value:
            return False
        return (not lo or value >= lo) and (not hi or value <= hi)
    if key == "ModalitiesInStudy":
        wanted = {p.strip().upper() for p in pattern.split("\\")}
        return bool(wanted & {v.upper() for v in value.split("\\")})
    options = pattern.split("\\") if "\\" in pattern else [pattern]
    for option in options:
        if "*" in option or "?" in option:
            regex = fnmatch.translate(option.replace("[", "[[]"))
            if re.match(regex, value, flags=re.IGNORECASE if key == "PatientName" else 0):
                return True
        elif key == "PatientName":
            if option.upper() == value.upper():
                return True
        elif option == value:
            return True
    return False


def _as_text(value: Any) -> str:
    """An element's value as DICOM text: multiple values joined with backslashes (a list of
    UIDs in a C-MOVE identifier arrives as a MultiValue)."""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def find_entities(archive: LocalArchive, identifier: Dataset) -> list[dict[str, str]]:
    level = str(identifier.get("QueryRetrieveLevel", "")).upper()
    entities = _entities(archive, level)
    # Empty values decode as None for numeric VRs: those are return keys, not constraints.
    constraints = {
        elem.keyword: _as_text(elem.value)
        for elem in identifier
        if elem.keyword
        and elem.keyword != "QueryRetrieveLevel"
        and elem.VR != "SQ"
        and elem.value is not None
        and _as_text(elem.value) != ""
    }
    return [
        e
        for e in entities
        if all(matches(k, v, e.get(k, "")) for k, v in constraints.items() if k in e)
    ]


def _response(identifier: Dataset, entity: Mapping[str, str], level: str) -> Dataset:
    rsp = Dataset()
    rsp.QueryRetrieveLevel = level
    keys = [e.keyword for e in identifier if e.keyword and e.keyword != "QueryRetrieveLevel"]
    for key in keys:
        setattr(rsp, key, entity.get(key, ""))
    for key in _LEVEL_KEYS[level][:1]:  # the level's unique key is always returned
        setattr(rsp, key, entity.get(key, ""))
    rsp.RetrieveAETitle = ""
    return rsp


class QueryRetrieveProvider:
    """Handlers for EVT_C_FIND, EVT_C_MOVE and EVT_C_GET over one LocalArchive."""

    def __init__(self, archive: LocalArchive, destinations: Mapping[str, tuple[str, int]]):
        self.archive = archive
        self.destinations = dict(destinations)

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        identifier: Dataset = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        if level not in _LEVEL_KEYS:
            yield STATUS_IDENTIFIER_MISMATCH, None
            return
        for entity in find_entities(self.archive, identifier):
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            yield STATUS_PENDING, _response(identifier, entity, level)

    def _instances_for(self, identifier: Dataset) -> list[InstanceRecord]:
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        if level not in _LEVEL_KEYS:
            return []
        probe = Dataset()
        probe.QueryRetrieveLevel = "IMAGE"
        for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            value = identifier.get(key, "") or ""
            if value:
                setattr(probe, key, value)  # a list of UIDs stays a list
        wanted = {e["SOPInstanceUID"] for e in find_entities(self.archive, probe)}
        return [i for i in self.archive.instances() if i.sop_instance_uid in wanted]

    def _send_all(
        self, event: Any, instances: list[InstanceRecord]
    ) -> Iterator[tuple[int, Dataset | None]]:
        for inst in instances:
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            try:
                ds = pydicom.dcmread(inst.path)
            except (OSError, ValueError) as exc:
                log.error("cannot read archived file %s: %s", inst.path, exc)
                yield STATUS_PENDING, Dataset()  # counted as a failed sub-operation
                continue
            yield STATUS_PENDING, ds

    def on_move(self, event: Any) -> Iterator[Any]:
        destination = str(event.move_destination).strip()
        if destination not in self.destinations:
            log.warning("C-MOVE to unknown destination AE %r refused", destination)
            yield None, None  # pynetdicom answers 0xA801 (move destination unknown)
            return
        host, port = self.destinations[destination]
        instances = self._instances_for(event.identifier)
        pairs = {(i.sop_class_uid, i.transfer_syntax_uid) for i in instances}
        contexts = contexts_for_sending(sorted(pairs)) if pairs else None
        yield host, port, ({"contexts": contexts} if contexts else {})
        yield len(instances)
        yield from self._send_all(event, instances)

    def on_get(self, event: Any) -> Iterator[Any]:
        instances = self._instances_for(event.identifier)
        yield len(instances)
        yield from self._send_all(event, instances)
