"""The outbox: objects to C-STORE to a node, kept in the archive DB until delivered.

Each object is copied into the archive's outbox folder when queued, so it survives a
restart and the caller may delete its own copy. Failed deliveries are retried with
exponential backoff; every state is visible (`loupe outbox`).

Several senders share one outbox (the workstation's or `loupe serve`'s worker, `loupe send`,
`loupe outbox --deliver`): a sender first claims an item (queued -> sending, in one
IMMEDIATE transaction, so exactly one sender wins it) and only then sends it; the claim
lapses after CLAIM_S so an item whose sender was killed mid-send is sent again, by whoever
comes next (its SOP Instance UID is the same: a PACS keeps one copy).
"""

from __future__ import annotations

import enum
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from dicom_net.ae import associate
from dicom_net.archive import LocalArchive, utc_now
from dicom_net.contexts import contexts_for_sending
from dicom_net.errors import ArchiveError, DicomNetError, SendFailed
from dicom_net.header import read_header
from dicom_net.nodes import LocalNode, RemoteNode

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 600.0
# Status codes after which sending the same object again cannot succeed.
_PERMANENT = {0x0122, 0x0124, 0xA900}


CLAIM_S = 600.0  # a claim (state sending) lapses after this: its sender is gone


class OutboxState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by one sender; next_attempt_at is when the claim lapses
    DELIVERED = "delivered"
    FAILED = "failed"  # refused permanently by the node; kept for the user to see


@dataclass(frozen=True)
class OutboxItem:
    id: int
    node: str
    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    state: OutboxState
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: str
    delivered_at: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "node": self.node,
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "state": self.state.value,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
        }


def backoff_seconds(attempts: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * (2 ** max(0, attempts - 1))))


class Outbox:
    def __init__(self, archive: LocalArchive):
        self.archive = archive

    def enqueue(self, node: str, files: Iterable[Path]) -> list[int]:
        """Queue files for `node`; each is checked and copied first, so a bad one names itself."""
        ids = []
        for f in files:
            f = Path(f)
            header = read_header(f, source=str(f))
            dest = self.archive.outbox_dir / f"{uuid.uuid4().hex}.dcm"
            try:
                shutil.copyfile(f, dest)
            except OSError as exc:
                raise ArchiveError(f"{f}: cannot queue it ({exc.strerror})") from exc
            with self.archive.transaction() as db:
                cur = db.execute(
                    """INSERT INTO outbox(node, path, sop_instance_uid, sop_class_uid,
                       transfer_syntax_uid, state, created_at) VALUES (?,?,?,?,?,?,?)""",
                    (
                        node,
                        str(dest.relative_to(self.archive.root)),
                        header.sop_instance_uid,
                        header.sop_class_uid,
                        header.transfer_syntax_uid,
                        OutboxState.QUEUED.value,
                        utc_now(),
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def items(
        self, *, state: OutboxState | None = None, ids: Iterable[int] | None = None
    ) -> list[OutboxItem]:
        sql, params = "SELECT * FROM outbox", []
        clauses = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state.value)
        id_list = list(ids) if ids is not None else None
        if id_list is not None:
            clauses.append(f"id IN ({','.join('?' * len(id_list))})" if id_list else "0")
            params.extend(str(i) for i in id_list)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self.archive.query(sql + " ORDER BY id", tuple(params))
        return [
            OutboxItem(
                id=r["id"],
                node=r["node"],
                path=self.archive.root / r["path"],
                sop_instance_uid=r["sop_instance_uid"] or "",
                sop_class_uid=r["sop_class_uid"] or "",
                transfer_syntax_uid=r["transfer_syntax_uid"] or "",
                state=OutboxState(r["state"]),
                attempts=r["attempts"],
                next_attempt_at=r["next_attempt_at"],
                last_error=r["last_error"],
                created_at=r["created_at"],
                delivered_at=r["delivered_at"],
            )
            for r in rows
        ]

    def counts(self) -> tuple[dict[OutboxState, int], str | None]:
        """Items per state, and the last error of an undelivered item (cheap: for a status
        bar polled every few seconds)."""
        rows = self.archive.query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        counts = {OutboxState(r[0]): int(r[1]) for r in rows}
        last = self.archive.query(
            "SELECT last_error FROM outbox WHERE state != ? AND last_error IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (OutboxState.DELIVERED.value,),
        )
        return counts, (last[0][0] if last else None)

    def due(self, now: float | None = None) -> list[OutboxItem]:
        """Queued items whose time has come, and items whose sender's claim has lapsed."""
        now = time.time() if now is None else now
        return [
            i
            for i in self.items()
            if i.state in (OutboxState.QUEUED, OutboxState.SENDING) and i.next_attempt_at <= now
        ]

    def claim(self, items: list[OutboxItem], *, even_if_not_due: bool = False) -> list[OutboxItem]:
        """The items this sender may send: each one still queued (or whose claim lapsed) is
        set to sending, atomically; items another sender holds, or that were delivered
        meanwhile, are left out. `even_if_not_due`: claim queued items whose backoff has not
        run out (an explicit `send` or `--deliver` now)."""
        now = time.time()
        won: list[int] = []
        with self.archive.transaction() as db:
            for item in items:
                cur = db.execute(
                    "UPDATE outbox SET state=?, next_attempt_at=? WHERE id=? AND "
                    "((state=? AND (next_attempt_at<=? OR ?)) OR (state=? AND next_attempt_at<=?))",
                    (
                        OutboxState.SENDING.value,
                        now + CLAIM_S,
                        item.id,
                        OutboxState.QUEUED.value,
                        now,
                        int(even_if_not_due),
                        OutboxState.SENDING.value,
                        now,
                    ),
                )
                if cur.rowcount == 1:
                    won.append(item.id)
        return self.items(ids=won) if won else []

    def _mark(
        self, item: OutboxItem, *, delivered: bool, error: str | None, permanent: bool = False
    ) -> None:
        with self.archive.transaction() as db:
            if delivered:
                db.execute(
                    "UPDATE outbox SET state=?, attempts=attempts+1, last_error=NULL, "
                    "delivered_at=? WHERE id=?",
                    (OutboxState.DELIVERED.value, utc_now(), item.id),
                )
            else:
                attempts = item.attempts + 1
                db.execute(
                    "UPDATE outbox SET state=?, attempts=?, last_error=?, next_attempt_at=? "
                    "WHERE id=?",
                    (
                        (OutboxState.FAILED if permanent else OutboxState.QUEUED).value,
                        attempts,
                        error,
                        time.time() + backoff_seconds(attempts),
                        item.id,
                    ),
                )

    def deliver(
        self,
        local: LocalNode,
        nodes: dict[str, RemoteNode],
        *,
        items: list[OutboxItem] | None = None,
    ) -> tuple[int, int]:
        """Try to send `items` (default: all due), those this sender can claim (another
        sender's are left to it). One association per node. Returns (delivered, still queued
        or failed)."""
        items = self.claim(self.due()) if items is None else self.claim(items, even_if_not_due=True)
        by_node: dict[str, list[OutboxItem]] = {}
        for item in items:
            by_node.setdefault(item.node, []).append(item)
        delivered = pending = 0
        for node_name, group in by_node.items():
            node = nodes.get(node_name)
            if node is None:
                for item in group:
                    self._mark(
                        item,
                        delivered=False,
                        error=f"node {node_name!r} is not "
                        "configured any more; add it to [[nodes]] in the settings",
                    )
                pending += len(group)
                continue
            d, p = self._deliver_to(local, node, group)
            delivered += d
            pending += p
        return delivered, pending

    def _deliver_to(
        self, local: LocalNode, node: RemoteNode, group: list[OutboxItem]
    ) -> tuple[int, int]:
        contexts = contexts_for_sending(
            sorted({(i.sop_class_uid, i.transfer_syntax_uid) for i in group})
        )
        try:
            assoc = associate(local, node, contexts)
        except DicomNetError as exc:
            for item in group:
                self._mark(item, delivered=False, error=str(exc))
            return 0, len(group)
        delivered = 0
        try:
            for item in group:
                try:
                    ds = pydicom.dcmread(item.path)
                    status = assoc.send_c_store(ds)
                    code = int(getattr(status, "Status", -1))
                except (OSError, ValueError, AttributeError, RuntimeError) as exc:
                    self._mark(item, delivered=False, error=f"{item.path.name}: {exc}")
                    if not assoc.is_established:
                        break
                    continue
                if code in (0x0000, 0xB000, 0xB006, 0xB007):
                    self._mark(item, delivered=True, error=None)
                    delivered += 1
                elif code == -1:
                    self._mark(item, delivered=False, error="connection lost during C-STORE")
                    break
                else:
                    self._mark(
                        item,
                        delivered=False,
                        error=f"node {node.describe()} answered C-STORE with status 0x{code:04X}",
                        permanent=code in _PERMANENT,
                    )
        finally:
            if assoc.is_established:
                assoc.release()
        return delivered, len(group) - delivered


class OutboxWorker:
    """Background thread that delivers due items every `interval_s` until stopped."""

    def __init__(
        self,
        outbox: Outbox,
        local: LocalNode,
        nodes: Callable[[], dict[str, RemoteNode]],
        interval_s: float = 2.0,
    ):
        self.outbox = outbox
        self.local = local
        self.nodes = nodes
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loupe-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.outbox.due():
                    self.outbox.deliver(self.local, self.nodes())
            except Exception:  # keep the worker alive; the DB keeps every item
                log.exception("outbox delivery round failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()


def send_now(
    outbox: Outbox, local: LocalNode, node: RemoteNode, files: list[Path]
) -> list[OutboxItem]:
    """Queue `files` for `node` and try once right away; returns the items' states."""
    ids = outbox.enqueue(node.name, files)
    outbox.deliver(local, {node.name: node}, items=outbox.items(ids=ids))
    items = outbox.items(ids=ids)
    failed = [i for i in items if i.state is not OutboxState.DELIVERED]
    if failed:
        raise SendFailed(
            f"{len(failed)} of {len(items)} objects not delivered to node {node.describe()}: "
            f"{failed[0].last_error}; they stay queued in the outbox and are retried "
            "(loupe outbox --deliver, or automatically while the workstation runs)"
        )
    return items
