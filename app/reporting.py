"""Report objects from a stored review, and "sign and send": the AI result SR and the
reader's SR built from the review store, written, and queued in the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from core.findings import Finding, ReviewStatus
from core.reports.lung_rads import suggest_lung_rads
from core.review import ReviewStore
from dicom_net.archive import LocalArchive
from dicom_net.outbox import Outbox

DEVICE_UID_FILE = "device-uid"  # beside the archive: this installation's Device Observer UID


def installation_uid(storage: Path) -> str:
    """This installation's Device Observer UID (TID 1004), made once and kept in the storage
    folder: every report Loupe makes here names the same device, as a PACS and a registry
    expect of one piece of equipment."""
    import os
    import uuid

    path = Path(storage) / DEVICE_UID_FILE
    try:
        uid = path.read_text(encoding="ascii").strip()
        if uid:
            return uid
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"2.25.{uuid.uuid4().int}\n", encoding="ascii")
    try:
        os.link(tmp, path)  # first writer wins: two processes never get two UIDs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


class ReportError(Exception):
    """The report cannot be made (nothing reviewed, findings pending, no source images)."""


@dataclass(frozen=True)
class ReportFiles:
    ai_sr: Path | None
    review_sr: Path | None
    lung_rads: str | None
    pending: int
    kos: Path | None = None  # key images ("Of Interest")

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.ai_sr, self.review_sr, self.kos) if p is not None]


def source_headers(archive: LocalArchive, series_uid: str) -> list[pydicom.Dataset]:
    """Headers (no pixels) of the series the findings were made on, for SR references."""
    instances = archive.instances(series_instance_uid=series_uid)
    if not instances:
        raise ReportError(f"series {series_uid} is not in the local archive")
    return [pydicom.dcmread(i.path, stop_before_pixels=True) for i in instances]


def series_of_study(archive: LocalArchive, store: ReviewStore, study_uid: str) -> str:
    """The study's series that has AI findings or a review."""
    in_study = {s.series_instance_uid for s in archive.series(study_uid)}
    for series_uid in store.reviewed_series():
        if series_uid in in_study:
            return series_uid
    raise ReportError(
        f"study {study_uid} has no analysed or reviewed series: run `loupe analyze` or review "
        "it in the workstation first"
    )


def keep_report(
    archive: LocalArchive, store: ReviewStore, path: Path, series_uid: str, kind: str
) -> None:
    """A written SR joins its study in the local archive, and the review store remembers it
    (the reviewer SR names the AI SR that was really produced as its predecessor)."""
    stored = archive.store_file(path, source_node="loupe")
    store.record_report(series_uid, kind, stored.header.sop_instance_uid)


def ai_sr_of(
    archive: LocalArchive,
    store: ReviewStore,
    series_uid: str,
    findings: list[Finding],
    out: Path,
    operating_point: tuple[str, float] | None = None,
    known: str | None = None,
) -> Path:
    """The series' AI result SR: the one already made (`known`: its SOP Instance UID from the
    review snapshot; else looked up), else a new one (kept in the archive), recording the
    operating point (name, threshold) the findings were shown at."""
    from core.reports.ai_sr import build_ai_sr
    from core.uids import ai_result_uids

    if not findings:
        raise ReportError(f"series {series_uid}: the AI reported no findings, no SR to write")
    f0 = findings[0]
    if known is None:
        known = store.latest_report(series_uid, "ai")
    inst = archive.instance(known) if known else None
    if inst is not None and inst.path.exists() and _made_by(inst.path, f0):
        return inst.path
    sr_series, sr_sop = ai_result_uids(
        series_uid, f0.model_id, f0.model_version, operating_point[0] if operating_point else None
    )
    sr = build_ai_sr(
        findings,
        source_images=source_headers(archive, series_uid),
        model_id=f0.model_id,
        model_version=f0.model_version,
        model_name=f0.model_id,
        operating_point=operating_point,
        device_uid=installation_uid(archive.root),
        series_instance_uid=sr_series,
        sop_instance_uid=sr_sop,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(out)
    keep_report(archive, store, out, series_uid, "ai")
    return out


def _made_by(path: Path, finding: Finding) -> bool:
    """Whether the AI SR at `path` holds this model version's findings (its tracking UIDs)."""
    from core.reports.read import read_findings

    try:
        _, found = read_findings(pydicom.dcmread(path))
    except Exception:  # unreadable: make a new one
        return False
    return any(f.tracking_uid == finding.tracking_uid for f in found)


def build_reports(
    archive: LocalArchive,
    store: ReviewStore,
    series_uid: str,
    out_dir: Path,
    *,
    reader: str,
    lung_rads: str | None = None,
    allow_pending: bool = False,
    operating_point: tuple[str, float] | None = None,
    organization: str = "",
) -> ReportFiles:
    """AI SR (as the model produced it) and the reviewer SR (verified by `reader` of
    `organization`, predecessor the AI SR, same tracking UIDs; both name this installation's
    Device Observer UID)."""
    from core.reports.review_sr import build_review_sr

    snap = store.snapshot(series_uid)  # one consistent read of the review
    reviewed = snap.findings
    pending = snap.pending
    if pending and not allow_pending:
        raise ReportError(
            f"{len(pending)} of {len(reviewed)} findings are still pending: review them first "
            "(or allow pending findings explicitly)"
        )
    headers = source_headers(archive, series_uid)
    ai = snap.ai_findings
    ai_path = None
    ai_ds = None
    if ai:
        ai_path = ai_sr_of(
            archive,
            store,
            series_uid,
            ai,
            out_dir / "ai-result-sr.dcm",
            operating_point,
            known=snap.latest_reports.get("ai"),
        )
        ai_ds = pydicom.dcmread(ai_path)
    # Lung-RADS is for lung nodules in CT; endoscopy reviews have frame findings only.
    ct = any(f.center_mm is not None for f in reviewed) or (
        not reviewed and headers and str(headers[0].get("Modality", "")) == "CT"
    )
    category = (lung_rads or suggest_lung_rads(reviewed).category) if ct else None
    review = build_review_sr(
        reviewed,
        ai_sr=ai_ds,
        source_images=headers,
        reader_name=reader,
        lung_rads=category,
        organization=organization,
        device_uid=installation_uid(archive.root),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    review_path = out_dir / "review-sr.dcm"
    review.save_as(review_path)
    keep_report(archive, store, review_path, series_uid, "review")
    kos_path = _key_object_selection(
        snap.key_images, series_uid, reviewed, headers, reader, out_dir
    )
    return ReportFiles(ai_path, review_path, category, len(pending), kos_path)


def _key_object_selection(
    key_images: list[tuple[str, int]],
    series_uid: str,
    reviewed: list[Finding],
    headers: list[pydicom.Dataset],
    reader: str,
    out_dir: Path,
) -> Path | None:
    """KOS "Of Interest" of the kept findings' images and the frames the reader chose."""
    from core.reports.kos import build_kos

    kept = [
        f
        for f in reviewed
        if f.status in (ReviewStatus.ACCEPTED, ReviewStatus.MODIFIED, ReviewStatus.ADDED)
    ]
    have = {(f.sop_instance_uid, f.frame) for f in kept}
    for sop, frame in key_images:
        if (sop, frame) not in have:
            kept.append(
                Finding(
                    f"K{len(kept)}",
                    "reader",
                    reader,
                    series_uid,
                    1.0,
                    label="key image",
                    sop_instance_uid=sop,
                    frame=frame,
                    status=ReviewStatus.ACCEPTED,
                )
            )
    if not kept:
        return None
    kos = build_kos(kept, source_images=headers, reader_name=reader)
    path = out_dir / "key-images-kos.dcm"
    kos.save_as(path)
    return path


def queue_reports(
    archive: LocalArchive,
    store: ReviewStore,
    files: ReportFiles,
    node: str,
    *,
    reader: str,
    series_uid: str,
) -> list[int]:
    paths = files.paths
    ids = Outbox(archive).enqueue(node, paths)
    store.audit(
        reader,
        "report queued",
        series_uid,
        f"{len(paths)} objects to node {node} (outbox {ids}); Lung-RADS {files.lung_rads}",
    )
    return ids
