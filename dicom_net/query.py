"""C-ECHO and C-FIND as a service class user: what is on the PACS."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom.presentation import build_context

from dicom_net.ae import associate
from dicom_net.contexts import PATIENT_ROOT_FIND, STUDY_ROOT_FIND, VERIFICATION
from dicom_net.errors import QueryFailed
from dicom_net.nodes import LocalNode, RemoteNode

LEVELS = ("patient", "study", "series", "image")

# Keys returned for each level (requested as empty = "return this").
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "patient": (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "study": (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "AccessionNumber",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ),
    "image": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ),
}

_DA = r"\d{8}"


def normalize_date_range(text: str, *, today: date | None = None) -> str:
    """DICOM date or range from user text: 20240131, 2024-01-31, 20240101-20240131,
    2024-01-01..2024-01-31, -20240131, 20240101-, today, yesterday, last7days."""
    t = text.strip().lower()
    today = today or date.today()
    named = {"today": (today, today), "yesterday": (today - timedelta(1), today - timedelta(1))}
    if t in named:
        lo, hi = named[t]
        return f"{lo:%Y%m%d}-{hi:%Y%m%d}"
    m = re.fullmatch(r"last(\d+)days?", t)
    if m:
        return f"{today - timedelta(int(m.group(1))):%Y%m%d}-{today:%Y%m%d}"
    if ".." in t:
        lo_s, _, hi_s = t.partition("..")
        t = f"{lo_s.replace('-', '')}-{hi_s.replace('-', '')}"
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        t = t.replace("-", "")
    if re.fullmatch(rf"{_DA}|{_DA}-|-{_DA}|{_DA}-{_DA}", t):
        for part in t.split("-"):
            if part:
                try:
                    date(int(part[:4]), int(part[4:6]), int(part[6:]))
                except ValueError:
                    raise ValueError(f"--study-date: {part} is not a calendar date") from None
        return t
    raise ValueError(
        f"--study-date {text!r}: use YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYY-MM-DD..YYYY-MM-DD, "
        "-YYYYMMDD, YYYYMMDD-, today, yesterday or lastNdays"
    )


@dataclass(frozen=True)
class FindQuery:
    level: str
    patient_id: str = ""
    patient_name: str = ""
    modality: str = ""
    study_date: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")


def echo(local: LocalNode, node: RemoteNode) -> float:
    """C-ECHO; returns the round trip in milliseconds (association included)."""
    start = time.perf_counter()
    assoc = associate(local, node, [build_context(VERIFICATION)])
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1))
    if code != 0x0000:
        raise QueryFailed(
            f"node {node.describe()} answered C-ECHO with status "
            f"{'none (connection lost)' if code == -1 else f'0x{code:04X}'}"
        )
    return (time.perf_counter() - start) * 1000.0


def find_identifier(query: FindQuery) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if query.level == "image" else query.level.upper()
    for key in RETURN_KEYS[query.level]:
        setattr(ds, key, "")
    if query.level in ("patient", "study"):
        if query.patient_id:
            ds.PatientID = query.patient_id
        if query.patient_name:
            ds.PatientName = query.patient_name
    if query.level == "study":
        if query.modality:
            ds.ModalitiesInStudy = query.modality
        if query.study_date:
            ds.StudyDate = normalize_date_range(query.study_date)
    if query.study_instance_uid:
        ds.StudyInstanceUID = query.study_instance_uid
    if query.level == "series" and query.modality:
        ds.Modality = query.modality
    if query.level in ("series", "image") and query.series_instance_uid:
        ds.SeriesInstanceUID = query.series_instance_uid
    return ds


def _as_dict(ds: Dataset, keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        value = ds.get(key, "")
        if value is None:
            value = ""
        if key.startswith("NumberOf"):
            try:
                out[key] = int(value)
            except (TypeError, ValueError):
                out[key] = None
        elif isinstance(value, MultiValue | list | tuple):
            out[key] = "\\".join(str(v) for v in value)
        else:
            out[key] = str(value).strip()
    return out


def find(local: LocalNode, node: RemoteNode, query: FindQuery) -> list[dict[str, Any]]:
    """C-FIND; series (and image) queries without a study UID first find the studies."""
    if query.level in ("series", "image") and not query.study_instance_uid:
        studies = find(
            local,
            node,
            FindQuery(
                level="study",
                patient_id=query.patient_id,
                patient_name=query.patient_name,
                study_date=query.study_date,
            ),
        )
        results: list[dict[str, Any]] = []
        for st in studies:
            sub = FindQuery(
                level=query.level,
                modality=query.modality,
                study_instance_uid=st["StudyInstanceUID"],
                series_instance_uid=query.series_instance_uid,
            )
            results.extend(find(local, node, sub))
        return results
    model = PATIENT_ROOT_FIND if query.level == "patient" else STUDY_ROOT_FIND
    identifier = find_identifier(query)
    assoc = associate(local, node, [build_context(model)])
    results = []
    try:
        for status, ds in assoc.send_c_find(identifier, model):
            code = int(getattr(status, "Status", -1))
            if code in (0xFF00, 0xFF01):
                if ds is not None:
                    results.append(_as_dict(ds, RETURN_KEYS[query.level]))
                continue
            if code == 0x0000:
                break
            raise QueryFailed(find_failure(local, node, query.level, code, len(results)))
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def find_failure(
    local: LocalNode, node: RemoteNode, level: str, status: int | None, results: int
) -> str:
    """What to tell the user when a C-FIND ends badly (status None or -1: connection lost)."""
    if status is None or status == -1:
        if not results:
            return (
                f"node {node.describe()} aborted the C-FIND from {local.ae_title!r}: "
                f"on the PACS, register AE title {local.ae_title!r} as a DICOM node "
                "allowed to query (Orthanc: DicomModalities)"
            )
        return f"node {node.describe()}: connection lost during C-FIND after {results} results"
    return (
        f"node {node.describe()} refused the {level}-level C-FIND "
        f"(status 0x{status:04X}); check the PACS allows queries from "
        f"{local.ae_title!r}"
    )
