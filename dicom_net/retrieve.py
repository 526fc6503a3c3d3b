"""C-MOVE and C-GET as a service class user: bring a study or series into the local archive.

Progress comes from the pending responses (completed, remaining, failed). A retrieve that
ends short (failure, cancel, lost connection) marks the study incomplete in the archive, and
the next retrieve of it asks only for the missing instances.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

from dicom_net import scu
from dicom_net.ae import associate, local_address
from dicom_net.archive import LocalArchive, utc_now
from dicom_net.contexts import (
    MAX_PROPOSED_CONTEXTS,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)
from dicom_net.errors import (
    DicomNetError,
    MoveDestinationUnknown,
    PartialRetrieve,
    QueryFailed,
    RetrieveFailed,
)
from dicom_net.ingest import StoreIngest, discard_partial_spool
from dicom_net.nodes import LocalNode, RemoteNode, RetrieveMethod
from dicom_net.query import FindQuery, find, find_failure, find_identifier

log = logging.getLogger(__name__)

# After a C-CANCEL, how long to wait for the peer's final response before aborting
# (Orthanc 1.10 ignores C-CANCEL during a move: seen 13 of 200 still sent after a cancel).
CANCEL_GRACE_S = 2.0
# True: C-MOVE and its instance listing through pynetdicom even without TLS (tests and bench
# compare both paths).
PYNETDICOM_MOVE = False
# How many SOP Instance UIDs go into one instance-level C-MOVE/C-GET.
UID_BATCH = 200
# Parallel C-MOVEs (RemoteNode.move_streams) only for at least this many instances per stream:
# each stream costs an association and an instance list.
PARALLEL_MIN_PER_STREAM = 16

_GET_EXTRA_SYNTAXES = (
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)


@dataclass
class RetrieveProgress:
    """Sub-operation counts from the latest pending response."""

    completed: int = 0
    remaining: int | None = None
    failed: int = 0
    warning: int = 0


@dataclass
class RetrieveResult:
    node: str
    study_instance_uid: str
    series_instance_uid: str | None
    method: str
    expected: int | None
    present: int
    missing: int
    completed: int
    failed: int
    warning: int
    cancelled: bool
    fell_back_to_get: bool
    seconds: float
    bytes_received: int
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.missing == 0 and not self.cancelled and self.failed == 0

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["complete"] = self.complete
        return d


ProgressCallback = Callable[[RetrieveProgress], None]


class _Outcome:
    def __init__(self) -> None:
        self.progress = RetrieveProgress()
        self.final_status: int | None = None
        self.cancelled = False
        self.connection_lost = False
        self.error_comment = ""


def _retrieve_identifier(
    study_uid: str, series_uid: str | None, sop_uids: list[str] | None
) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    if sop_uids:
        ds.QueryRetrieveLevel = "IMAGE"
        if series_uid:
            ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = sop_uids if len(sop_uids) > 1 else sop_uids[0]
    elif series_uid:
        ds.QueryRetrieveLevel = "SERIES"
        ds.SeriesInstanceUID = series_uid
    else:
        ds.QueryRetrieveLevel = "STUDY"
    return ds


def _drive(
    assoc: Association,
    responses: Any,
    model: str,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None,
    msg_id: int,
) -> _Outcome:
    """Iterate C-MOVE/C-GET responses, reporting progress and honouring cancel."""
    out = _Outcome()
    cancel_sent_at: float | None = None
    context_id = next(
        (cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model), None
    )
    for status, _identifier in responses:
        code = int(getattr(status, "Status", -1))
        if code == -1:
            out.connection_lost = True
            break
        p = out.progress
        final = code not in (0xFF00, 0xFF01)
        # A final response without the count: nothing remains.
        p.remaining = _int(status, "NumberOfRemainingSuboperations", 0 if final else p.remaining)
        p.completed = _int(status, "NumberOfCompletedSuboperations", p.completed) or 0
        p.failed = _int(status, "NumberOfFailedSuboperations", p.failed) or 0
        p.warning = _int(status, "NumberOfWarningSuboperations", p.warning) or 0
        if on_progress is not None:
            on_progress(p)
        if code in (0xFF00, 0xFF01):
            if cancel is not None and cancel.is_set():
                if cancel_sent_at is None and context_id is not None:
                    out.cancelled = True
                    cancel_sent_at = time.monotonic()
                    assoc.send_c_cancel(msg_id, context_id)
                elif cancel_sent_at is not None and (
                    time.monotonic() - cancel_sent_at > CANCEL_GRACE_S
                ):
                    # The peer ignores C-CANCEL: stop it the hard way.
                    assoc.abort()
                    break
            continue
        out.final_status = code
        out.error_comment = str(status.get("ErrorComment", "") or "")
        if code == 0xFE00:
            out.cancelled = True
        break
    return out


def _int(ds: Dataset, key: str, default: int | None) -> int | None:
    value = ds.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _move(
    local: LocalNode,
    node: RemoteNode,
    identifier: Dataset,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None,
) -> tuple[_Outcome, str]:
    """One C-MOVE on its own association: scu.py's plain-socket requestor, or pynetdicom's
    for TLS nodes (and when PYNETDICOM_MOVE is set, for comparison)."""
    if node.tls is None and not PYNETDICOM_MOVE:
        return _move_plain(local, node, identifier, cancel, on_progress)
    model = STUDY_ROOT_MOVE
    assoc = associate(local, node, [build_context(model)])
    host_seen = local_address(assoc)
    try:
        responses = assoc.send_c_move(identifier, local.ae_title, model, msg_id=1)
        out = _drive(assoc, responses, model, cancel, on_progress, msg_id=1)
    finally:
        if assoc.is_established:
            assoc.release()
    return out, host_seen


def _move_plain(
    local: LocalNode,
    node: RemoteNode,
    identifier: Dataset,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None,
) -> tuple[_Outcome, str]:
    def counts(c: scu.MoveCounts) -> None:
        if on_progress is not None:
            on_progress(RetrieveProgress(c.completed, c.remaining, c.failed, c.warning))

    res = scu.move(
        local,
        node,
        identifier,
        STUDY_ROOT_MOVE,
        cancel,
        counts,
        cancel_grace_s=CANCEL_GRACE_S,
    )
    out = _Outcome()
    c = res.counts
    out.progress = RetrieveProgress(c.completed, c.remaining, c.failed, c.warning)
    out.final_status = res.final_status
    out.error_comment = res.error_comment
    out.cancelled = res.cancelled
    out.connection_lost = res.connection_lost
    return out, res.host_seen


@dataclass
class _StreamResult:
    outcomes: list[_Outcome] = field(default_factory=list)
    error: DicomNetError | None = None
    host_seen: str = ""


def _move_streams(
    local: LocalNode,
    node: RemoteNode,
    study_uid: str,
    groups: list[list[str]],
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None,
) -> list[_StreamResult]:
    """One thread per group of SOP Instance UIDs, each running instance-level C-MOVEs of up to
    UID_BATCH UIDs one after the other on its own associations.

    Why: during a C-MOVE the PACS waits for each C-STORE response before it sends the next
    instance, so one association leaves both machines idle half of the time; two keep the
    PACS reading while we write (bench/move_throughput.py measures it).
    """
    results = [_StreamResult() for _ in groups]
    lock = threading.Lock()
    finished = [RetrieveProgress() for _ in groups]  # completed sub-batches, per stream
    current = [RetrieveProgress() for _ in groups]

    def report() -> None:
        if on_progress is None:
            return
        remaining: int | None = 0
        total = RetrieveProgress()
        for i, group in enumerate(groups):
            f, c = finished[i], current[i]
            total.completed += f.completed + c.completed
            total.failed += f.failed + c.failed
            total.warning += f.warning + c.warning
            left = len(group) - (f.completed + f.failed + f.warning)
            left -= c.completed + c.failed + c.warning
            remaining = (remaining or 0) + max(left, 0)
        total.remaining = remaining
        on_progress(total)

    def run(i: int, uids: list[str]) -> None:
        res = results[i]

        def progress(p: RetrieveProgress) -> None:
            with lock:
                current[i] = RetrieveProgress(p.completed, p.remaining, p.failed, p.warning)
                report()

        try:
            for start in range(0, len(uids), UID_BATCH):
                identifier = _retrieve_identifier(study_uid, None, uids[start : start + UID_BATCH])
                out, res.host_seen = _move(local, node, identifier, cancel, progress)
                res.outcomes.append(out)
                with lock:
                    f = finished[i]
                    f.completed += out.progress.completed
                    f.failed += out.progress.failed
                    f.warning += out.progress.warning
                    current[i] = RetrieveProgress()
                if out.cancelled or out.connection_lost or out.final_status not in (0, None):
                    break
        except DicomNetError as exc:
            res.error = exc

    threads = [
        threading.Thread(target=run, args=(i, g), name=f"c-move-{i}", daemon=True)
        for i, g in enumerate(groups)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _get_contexts(sop_classes: list[str]) -> list[PresentationContext]:
    model_cx = build_context(STUDY_ROOT_GET)
    contexts = [model_cx]
    per_class = 1 + len(_GET_EXTRA_SYNTAXES)
    extras = (len(sop_classes) * per_class) + 1 <= MAX_PROPOSED_CONTEXTS
    for cls in sop_classes:
        # One context per compressed syntax, so the PACS can send each file as stored.
        contexts.append(build_context(cls, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        if extras:
            contexts.extend(build_context(cls, [ts]) for ts in _GET_EXTRA_SYNTAXES)
    if len(contexts) > MAX_PROPOSED_CONTEXTS:
        raise RetrieveFailed(
            f"the study holds {len(sop_classes)} SOP classes, more than one C-GET "
            f"association can negotiate ({MAX_PROPOSED_CONTEXTS - 1}); use C-MOVE"
        )
    return contexts


def _get(
    local: LocalNode,
    node: RemoteNode,
    identifier: Dataset,
    sop_classes: list[str],
    ingest: StoreIngest,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None,
) -> _Outcome:
    model = STUDY_ROOT_GET
    roles = [build_role(cls, scp_role=True) for cls in sop_classes]
    assoc = associate(
        local,
        node,
        _get_contexts(sop_classes),
        ext_neg=roles,
        handlers=[(evt.EVT_C_STORE, ingest)],
    )
    try:
        responses = assoc.send_c_get(identifier, model, msg_id=1)
        out = _drive(assoc, responses, model, cancel, on_progress, msg_id=1)
    finally:
        if assoc.is_established:
            assoc.release()
        discard_partial_spool(assoc)
    return out


def sop_classes_in(
    local: LocalNode, node: RemoteNode, study_uid: str, series_uid: str | None
) -> list[str]:
    """Every SOP class of the study (or series), from an image-level C-FIND."""
    rows = find(
        local,
        node,
        FindQuery(
            level="image", study_instance_uid=study_uid, series_instance_uid=series_uid or ""
        ),
    )
    return sorted({r["SOPClassUID"] for r in rows if r.get("SOPClassUID")})


def _remote_instances(
    local: LocalNode, node: RemoteNode, study_uid: str, series_uid: str | None
) -> dict[str, tuple[str, str]]:
    """SOP Instance UID -> (series UID, SOP class) for everything the PACS has."""
    query = FindQuery(
        level="image", study_instance_uid=study_uid, series_instance_uid=series_uid or ""
    )
    if node.tls is not None or PYNETDICOM_MOVE:
        rows = find(local, node, query)
    else:
        found = scu.find_instances(local, node, find_identifier(query), STUDY_ROOT_FIND)
        if found.final_status != 0x0000:
            raise QueryFailed(
                find_failure(local, node, query.level, found.final_status, len(found.rows))
            )
        rows = list(found.rows)
    return {
        r["SOPInstanceUID"]: (r.get("SeriesInstanceUID", ""), r.get("SOPClassUID", ""))
        for r in rows
        if r.get("SOPInstanceUID")
    }


# Used for C-GET when the PACS lists no SOP classes: what a chest CT or endoscopy study holds.
_DEFAULT_GET_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
)


def _study_level_facts(
    local: LocalNode, node: RemoteNode, study_uid: str, series_uid: str | None
) -> tuple[int | None, list[str]]:
    """Instance count and SOP classes from a study- or series-level C-FIND."""
    level = "series" if series_uid else "study"
    rows = find(
        local,
        node,
        FindQuery(level=level, study_instance_uid=study_uid, series_instance_uid=series_uid or ""),
    )
    if series_uid:
        rows = [r for r in rows if r.get("SeriesInstanceUID") == series_uid]
    if not rows:
        return 0, []
    key = "NumberOfSeriesRelatedInstances" if series_uid else "NumberOfStudyRelatedInstances"
    count = rows[0].get(key)
    return (int(count) if isinstance(count, int) else None), list(_DEFAULT_GET_CLASSES)


def _destination_advice(local: LocalNode, node: RemoteNode, host_seen: str) -> str:
    return (
        f"node {node.describe()} does not know our C-MOVE destination {local.ae_title!r}: "
        f"on the PACS, add a DICOM destination with AE title {local.ae_title!r}, host "
        f"{host_seen}, port {local.port} (Orthanc: DicomModalities), or set "
        f'retrieve = "get" for node {node.name!r}'
    )


def retrieve(
    local: LocalNode,
    node: RemoteNode,
    archive: LocalArchive,
    *,
    study_instance_uid: str,
    series_instance_uid: str | None = None,
    method: RetrieveMethod | None = None,
    allow_fallback: bool = True,
    cancel: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    ingest: StoreIngest | None = None,
) -> RetrieveResult:
    """Retrieve into `archive`. For C-MOVE our storage SCP must be listening (the caller runs it).

    Raises PartialRetrieve when instances are missing at the end, MoveDestinationUnknown when
    the PACS refuses our destination and no fallback is allowed, other DicomNetErrors otherwise.
    """
    started = time.perf_counter()
    method = method or node.retrieve
    notes: list[str] = []
    try:
        remote: dict[str, tuple[str, str]] | None = _remote_instances(
            local, node, study_instance_uid, series_instance_uid
        )
    except QueryFailed as exc:
        # Some PACS refuse instance-level queries; retrieve the whole study and count.
        log.warning("instance-level C-FIND refused (%s); retrieving without an instance list", exc)
        remote = None
    if remote:
        expected: int | None = len(remote)
        have_before = archive.sop_instance_uids(study_instance_uid)
        wanted = [uid for uid in remote if uid not in have_before]
        sop_classes = sorted({cls for _, cls in remote.values() if cls})
    else:
        expected, sop_classes = _study_level_facts(
            local, node, study_instance_uid, series_instance_uid
        )
        wanted = [""] * (expected or 1)  # unknown UIDs: ask for everything
        notes.append("the PACS gave no instance list; completeness checked by count")
    if expected == 0:
        raise RetrieveFailed(
            f"node {node.describe()} has no instances for study {study_instance_uid}"
            + (f" series {series_instance_uid}" if series_instance_uid else "")
        )
    ingest = ingest or StoreIngest(archive, node_for_ae=lambda _ae: node.name)
    since = utc_now()

    # Ask for the whole study/series the first time; only the missing instances afterwards.
    if not wanted:
        batches: list[list[str] | None] = []
        notes.append("all instances already in the local archive")
    elif remote is None or len(wanted) == expected:
        batches = [None]
    else:
        batches = [wanted[i : i + UID_BATCH] for i in range(0, len(wanted), UID_BATCH)]
        notes.append(f"completing: {len(wanted)} of {expected} instances were missing")

    fell_back = False
    totals = RetrieveProgress()
    cancelled = False
    lost = False
    failed_status: int | None = None
    error_comment = ""
    done_before = 0

    streams = min(node.move_streams, len(wanted) // PARALLEL_MIN_PER_STREAM)
    if method is RetrieveMethod.MOVE and remote and streams > 1:
        groups = [wanted[i::streams] for i in range(streams)]
        results = _move_streams(local, node, study_instance_uid, groups, cancel, on_progress)
        outcomes = [o for r in results for o in r.outcomes]
        for o in outcomes:
            totals.completed += o.progress.completed
            totals.failed += o.progress.failed
            totals.warning += o.progress.warning
            if o.final_status not in (None, 0x0000, 0xFE00, 0xB000):
                failed_status, error_comment = o.final_status, o.error_comment
            cancelled = cancelled or o.cancelled
            lost = lost or o.connection_lost
        done_before = totals.completed
        errors = [r.error for r in results if r.error is not None]
        if len(errors) == len(results):
            raise errors[0]  # no stream got an association: the node's problem, say it
        have_now = archive.sop_instance_uids(study_instance_uid)
        still = [uid for uid in wanted if uid not in have_now]
        if cancelled or lost or not still:
            batches = []
        elif len(still) == len(wanted):
            # Nothing arrived: the PACS may refuse instance lists, parallel associations or
            # our destination. The ordinary study/series-level C-MOVE decides (and words it).
            why = "; ".join(str(e) for e in errors) or (
                f"status 0x{failed_status:04X}" if failed_status is not None else "no instances"
            )
            notes.append(f"parallel instance-level C-MOVEs brought nothing ({why}); one C-MOVE")
            log.info("parallel C-MOVEs brought nothing (%s); one C-MOVE instead", why)
            batches = [None] if len(wanted) == expected else batches
            failed_status, error_comment = None, ""
            totals = RetrieveProgress()
            done_before = 0
        else:
            # Some streams fell short (a PACS limit on associations, a failed sub-operation):
            # ask for the rest on one association.
            notes.append(f"{streams} parallel C-MOVEs; {len(still)} instances fetched again on one")
            batches = [still[i : i + UID_BATCH] for i in range(0, len(still), UID_BATCH)]
            failed_status, error_comment = None, ""
            totals.failed = 0
        if not batches and not still:
            notes.append(f"{streams} parallel C-MOVEs")

    def progress(p: RetrieveProgress) -> None:
        if on_progress is not None:
            on_progress(
                RetrieveProgress(
                    completed=done_before + p.completed,
                    remaining=p.remaining,
                    failed=totals.failed + p.failed,
                    warning=totals.warning + p.warning,
                )
            )

    for batch in batches:
        identifier = _retrieve_identifier(
            study_instance_uid, series_instance_uid if batch is None else None, batch
        )
        if method is RetrieveMethod.MOVE:
            out, host_seen = _move(local, node, identifier, cancel, progress)
            refused = (
                out.final_status in (0xA801, 0xC000)
                and out.progress.completed == 0
                and (out.progress.remaining in (None, 0))
            )
            # Some PACS answer an unknown move destination by aborting the association (not
            # with status 0xA801): an abort before anything arrived is treated the same way.
            aborted_empty = out.connection_lost and out.progress.completed == 0
            if (refused or aborted_empty) and not out.cancelled:
                advice = _destination_advice(local, node, host_seen)
                if aborted_empty and not refused:
                    advice = (
                        f"node {node.describe()} aborted the C-MOVE before sending anything "
                        f"(the usual cause: {advice})"
                    )
                if not allow_fallback:
                    raise MoveDestinationUnknown(
                        advice + f" (C-MOVE status 0x{out.final_status or 0:04X})"
                    )
                log.warning("%s; falling back to C-GET", advice)
                notes.append(advice + "; fell back to C-GET")
                fell_back = True
                method = RetrieveMethod.GET
        if method is RetrieveMethod.GET:
            out = _get(local, node, identifier, sop_classes, ingest, cancel, progress)
        p = out.progress
        done_before += p.completed
        totals.completed += p.completed
        totals.failed += p.failed
        totals.warning += p.warning
        if out.final_status not in (None, 0x0000, 0xFE00, 0xB000):
            failed_status = out.final_status
            error_comment = out.error_comment
        if out.cancelled:
            cancelled = True
        if out.connection_lost:
            lost = True
        if cancelled or lost:
            break

    have_after = archive.sop_instance_uids(study_instance_uid)
    if remote:
        present = len(set(remote) & have_after)
    else:
        present = len(have_after)  # whole study: what we hold now
    missing = max(0, (expected or present) - present)
    state = "complete" if missing == 0 else ("cancelled" if cancelled else "incomplete")
    if series_instance_uid is None or state != "complete":
        archive.set_retrieve_state(
            study_instance_uid,
            state=state,
            expected_instances=expected if series_instance_uid is None else None,
            source_node=node.name,
        )
    result = RetrieveResult(
        node=node.name,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        method=method.value,
        expected=expected,
        present=present,
        missing=missing,
        completed=totals.completed,
        failed=totals.failed,
        warning=totals.warning,
        cancelled=cancelled,
        fell_back_to_get=fell_back,
        seconds=time.perf_counter() - started,
        bytes_received=archive.bytes_received_since(study_instance_uid, since),
        notes=notes,
    )
    if missing:
        why = (
            "cancelled"
            if cancelled
            else "connection to the PACS lost"
            if lost
            else f"PACS reported {totals.failed} failed sub-operations"
            + (f", status 0x{failed_status:04X}" if failed_status is not None else "")
            + (f" ({error_comment})" if error_comment else "")
        )
        raise PartialRetrieve(
            f"retrieve from node {node.describe()} incomplete: {missing} of {expected} "
            f"instances missing ({why}); run the retrieve again to fetch only the missing ones",
            received=present,
            missing=missing,
            cancelled=cancelled,
            result=result,
        )
    if failed_status is not None:
        raise DicomNetError(
            f"node {node.describe()} ended the retrieve with status 0x{failed_status:04X}"
            + (f" ({error_comment})" if error_comment else "")
        )
    return result
