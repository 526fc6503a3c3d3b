"""Read TID 1500 measurement reports back: Loupe's and other producers' (round trip).

highdicom parses the document (`MeasurementReport`, its planar and volumetric groups,
measurements, qualitative evaluations, observer contexts); the ROI geometry is read from the
group's SCOORD3D/SCOORD items so that any graphic type another producer uses (POINT,
ELLIPSOID, POLYGON, ELLIPSE, ...) gives a centre.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from core.findings import Finding, ReviewStatus
from core.reports import codes as c

__all__ = ["Producer", "ReadFinding", "read_findings"]

_Group = (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
)

_ALGORITHM_NAME = "111001"  # DCM
_ALGORITHM_VERSION = "111003"  # DCM
_PROBABILITY_PERCENT_UNITS = {"%"}


@dataclass(frozen=True)
class Producer:
    """Who made the report: equipment, observers, algorithms, verification."""

    manufacturer: str
    device_name: str | None
    device_uid: str | None
    person_name: str | None
    algorithms: tuple[tuple[str, str], ...]  # (name, version)
    verified: bool
    verifying_observer: str | None
    predecessors: tuple[str, ...]  # SOP Instance UIDs of the predecessor documents
    lung_rads: str | None = None

    def describe(self) -> str:
        who = self.person_name or self.device_name or self.manufacturer or "unknown producer"
        algos = ", ".join(f"{n} {v}".strip() for n, v in self.algorithms)
        state = f"verified by {self.verifying_observer}" if self.verified else "unverified"
        made = self.manufacturer or "no manufacturer"
        return f"{who} ({made}); {algos or 'no algorithm'}; {state}"


@dataclass(frozen=True)
class ReadFinding:
    tracking_uid: str | None
    tracking_identifier: str | None
    finding_type: str | None  # code meaning
    finding_site: str | None
    graphic_type: str | None = None  # None: no region (a rejected AI finding)
    center_mm: tuple[float, float, float] | None = None  # LPS, from SCOORD3D
    frame_of_reference_uid: str | None = None
    sop_instance_uid: str | None = None  # 2-D region's image (SCOORD)
    frame: int | None = None
    region: tuple[int, int, int, int] | None = None  # (row0, col0, row1, col1) bounding box
    diameter_mm: float | None = None
    probability: float | None = None  # from Certainty of Finding (%)
    status: ReviewStatus | None = None
    nodule_type: str | None = None
    comment: str = ""
    algorithm: tuple[str, str] | None = None
    measurements: dict[str, tuple[float, str]] = field(default_factory=dict)
    series_instance_uid: str | None = None  # of the referenced image, from the SR's evidence

    def to_finding(self) -> Finding:
        """A Finding to continue the review with (same Tracking UID). A finding without a
        certainty gets probability 1.0 when the reader added it, else 0.0."""
        if self.center_mm is None and self.sop_instance_uid is None:
            raise ValueError(f"finding {self.tracking_identifier} has no location")
        added = self.status is ReviewStatus.ADDED
        model_id, model_version = self.algorithm or (("reader", "") if added else ("", ""))
        attributes: dict[str, Any] = {}
        if self.nodule_type is not None:
            attributes["type"] = self.nodule_type
        solid = self.measurements.get(c.SOLID_COMPONENT_DIAMETER.meaning)
        if solid is not None and solid[1] == "mm":
            attributes["solid_component_mm"] = solid[0]
        kw: dict[str, Any] = {}
        if self.tracking_uid:
            kw["tracking_uid"] = self.tracking_uid
        return Finding(
            finding_id=self.tracking_identifier or self.tracking_uid or "",
            model_id=model_id,
            model_version=model_version,
            series_instance_uid=self.series_instance_uid or "",
            probability=self.probability
            if self.probability is not None
            else (1.0 if added else 0.0),
            label=(self.finding_type or "finding").lower(),
            center_mm=self.center_mm,
            diameter_mm=self.diameter_mm,
            sop_instance_uid=self.sop_instance_uid,
            frame=self.frame,
            region=self.region,
            attributes=attributes,
            status=self.status or ReviewStatus.PENDING,
            comment=self.comment,
            **kw,
        )


def _code(ds: Dataset, keyword: str = "ConceptNameCodeSequence") -> tuple[str, str, str] | None:
    seq = ds.get(keyword)
    if not seq:
        return None
    item = seq[0]
    return (str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def _walk(items: Iterator[Dataset] | list[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(list(item.get("ContentSequence", [])))


def _geometry(group: Dataset) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in _walk(list(group.get("ContentSequence", []))):
        vt = item.get("ValueType")
        if vt == "SCOORD3D" and "center_mm" not in out:
            pts = np.asarray(item.GraphicData, dtype=np.float64).reshape(-1, 3)
            if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
                pts = pts[:-1]  # closed polygon repeats its first point
            centre = pts.mean(axis=0)
            out["center_mm"] = (float(centre[0]), float(centre[1]), float(centre[2]))
            out["graphic_type"] = str(item.GraphicType)
            out["frame_of_reference_uid"] = str(item.get("ReferencedFrameOfReferenceUID", ""))
        elif vt == "SCOORD" and "region" not in out:
            pts = np.asarray(item.GraphicData, dtype=np.float64).reshape(-1, 2)  # (col, row)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            r0, c0, r1, c1 = (int(v) for v in np.rint([lo[1], lo[0], hi[1], hi[0]]))
            out["region"] = (r0, c0, r1, c1)
            out["graphic_type"] = str(item.GraphicType)
            for image in item.get("ContentSequence", []):
                ref = image.get("ReferencedSOPSequence")
                if image.get("ValueType") == "IMAGE" and ref:
                    out["sop_instance_uid"] = str(ref[0].ReferencedSOPInstanceUID)
                    frames = ref[0].get("ReferencedFrameNumber")
                    if frames is not None:
                        first = frames[0] if isinstance(frames, list | tuple) else frames
                        out["frame"] = int(first)
                    else:
                        out["frame"] = 1
    return out


def _is_rejected_group(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> bool:
    finding = group.finding_type
    return finding is not None and (finding.value, finding.scheme_designator) == (
        c.REJECTED_AI_FINDING.value,
        c.SCHEME,
    )


def _group_finding(group: _Group | hd.sr.MeasurementsAndQualitativeEvaluations) -> ReadFinding:
    root = group[0]
    measurements: dict[str, tuple[float, str]] = {}
    diameter = probability = None
    for m in group.get_measurements():
        unit = str(m.unit.value)
        measurements[str(m.name.meaning)] = (float(m.value), unit)
        if m.name == c.DIAMETER and unit == "mm":
            diameter = float(m.value)
        elif m.name == c.CERTAINTY_OF_FINDING and unit in _PROBABILITY_PERCENT_UNITS:
            probability = float(m.value) / 100.0
    status = nodule_type = None
    for q in group.get_qualitative_evaluations():
        value = _code(q[0], "ConceptCodeSequence")
        if value is None:
            continue
        if q.name == c.REVIEW_STATUS:
            status = c.status_from_code(value[0], value[1])
        elif q.name == c.NODULE_CONSISTENCY:
            nodule_type = next(
                (k for k, v in c.CONSISTENCY_VALUES.items() if v.value == value[0]), None
            )
    comment = ""
    for item in root.get("ContentSequence", []):
        name = _code(item)
        if name is not None and item.ValueType == "TEXT" and name[:2] == (c.COMMENT.value, "DCM"):
            comment = str(item.TextValue)
    # The group's algorithm, or else the first one a measurement names (TID 4019 may sit at
    # either level).
    algo_name = algo_version = None
    for item in _walk(list(root.get("ContentSequence", []))):
        name = _code(item)
        if name is None or name[1] != "DCM" or item.get("ValueType") != "TEXT":
            continue
        if name[0] == _ALGORITHM_NAME and algo_name is None:
            algo_name = str(item.TextValue)
        elif name[0] == _ALGORITHM_VERSION and algo_version is None:
            algo_version = str(item.TextValue)
    finding_type = group.finding_type
    sites = getattr(group, "finding_sites", None) or []
    geometry = _geometry(root)
    return ReadFinding(
        tracking_uid=None if group.tracking_uid is None else str(group.tracking_uid),
        tracking_identifier=group.tracking_identifier,
        finding_type=None if finding_type is None else str(finding_type.meaning),
        finding_site=str(sites[0].value.meaning) if sites else None,
        diameter_mm=diameter,
        probability=probability,
        status=status,
        nodule_type=nodule_type,
        comment=comment,
        algorithm=None if algo_name is None else (algo_name, algo_version or ""),
        measurements=measurements,
        **geometry,  # type: ignore[arg-type]
    )


def _document_evaluations(ds: Dataset) -> str | None:
    for item in ds.get("ContentSequence", []):
        name = _code(item)
        if name is None or name[:2] != (c.QUALITATIVE_EVALUATIONS.value, "UMLS"):
            continue
        for ev in item.get("ContentSequence", []):
            concept, value = _code(ev), _code(ev, "ConceptCodeSequence")
            if concept and value and concept[:2] == (c.LUNG_RADS.value, c.SCHEME):
                return next((k for k, v in c.LUNG_RADS_VALUES.items() if v.value == value[0]), None)
    return None


def _evidence_series(sr: Dataset) -> dict[str, str]:
    """SOP Instance UID -> Series Instance UID of every instance in the SR's evidence."""
    out: dict[str, str] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in sr.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for inst in series.get("ReferencedSOPSequence", []):
                    out[str(inst.ReferencedSOPInstanceUID)] = str(series.SeriesInstanceUID)
    return out


def _first_image(group: Dataset) -> str | None:
    for item in _walk(list(group.get("ContentSequence", []))):
        ref = item.get("ReferencedSOPSequence")
        if ref:
            return str(ref[0].ReferencedSOPInstanceUID)
    return None


def read_findings(sr: pydicom.Dataset) -> tuple[Producer, list[ReadFinding]]:
    """The producer and the measurement groups of a TID 1500 SR: planar and volumetric ROIs,
    then the AI findings a Loupe reviewer rejected (status REJECTED, no location)."""
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups: list[_Group] = [
        *report.get_volumetric_roi_measurement_groups(),
        *report.get_planar_roi_measurement_groups(),
    ]
    # Loupe's reviewer SR records AI findings the reader rejected as TID 1501 groups with no
    # ROI (measurement_groups.rejected_group): read back with status REJECTED, no location.
    rejected = [g for g in report.get_image_measurement_groups() if _is_rejected_group(g)]
    series_of = _evidence_series(sr)
    findings = [
        replace(f, series_instance_uid=series_of.get(ref or ""))
        for f, ref in ((_group_finding(g), _first_image(g[0])) for g in groups)
    ]
    findings += [_group_finding(g) for g in rejected]
    device_name = device_uid = person = None
    for ctx in report.get_observer_contexts():
        attrs = ctx.observer_identifying_attributes
        if isinstance(attrs, hd.sr.DeviceObserverIdentifyingAttributes):
            device_uid, device_name = str(attrs.uid), attrs.name
        elif isinstance(attrs, hd.sr.PersonObserverIdentifyingAttributes):
            person = str(attrs.name)
    algorithms = tuple(dict.fromkeys(f.algorithm for f in findings if f.algorithm is not None))
    verifiers = sr.get("VerifyingObserverSequence", [])
    predecessors = tuple(
        str(inst.ReferencedSOPInstanceUID)
        for study in sr.get("PredecessorDocumentsSequence", [])
        for series in study.get("ReferencedSeriesSequence", [])
        for inst in series.get("ReferencedSOPSequence", [])
    )
    producer = Producer(
        manufacturer=str(sr.get("Manufacturer", "") or ""),
        device_name=device_name,
        device_uid=device_uid,
        person_name=person,
        algorithms=algorithms,
        verified=sr.get("VerificationFlag") == "VERIFIED",
        verifying_observer=str(verifiers[0].VerifyingObserverName) if verifiers else None,
        predecessors=predecessors,
        lung_rads=_document_evaluations(sr),
    )
    return producer, findings
