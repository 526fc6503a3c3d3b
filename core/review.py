"""The reader's review of AI findings: every decision durable the moment it is made.

A `ReviewSession` changes the FindingSet the panes show (accept, reject, edit, add, comment)
and writes each decision first to a `ReviewStore` (SQLite, synchronous commits), so a crash
or power cut after a decision never loses it. Reopening the series restores the review.
The store also keeps the audit log (decisions, sends).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.findings import Finding, FindingSet, ReviewStatus, numbers

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ai_findings (
    series_instance_uid TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    finding TEXT NOT NULL,            -- the AI's finding as produced (JSON)
    PRIMARY KEY (series_instance_uid, finding_id)
);
CREATE TABLE IF NOT EXISTS analyses (
    series_instance_uid TEXT NOT NULL,
    findings INTEGER NOT NULL,        -- how many the AI reported (0: a negative study)
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_instance_uid TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    finding TEXT NOT NULL,            -- the finding after the decision (JSON)
    status TEXT NOT NULL,
    user TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_series ON decisions(series_instance_uid);
CREATE TABLE IF NOT EXISTS reports (
    series_instance_uid TEXT NOT NULL,
    kind TEXT NOT NULL,               -- "ai" (the AI result SR) or "review" (the reader's SR)
    sop_instance_uid TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_images (
    series_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    frame INTEGER NOT NULL,
    chosen INTEGER NOT NULL,          -- 1 chosen, 0 unchosen (latest row wins)
    user TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS superseded (
    series_instance_uid TEXT NOT NULL,
    model TEXT NOT NULL,              -- "model_id version" whose review this was
    kind TEXT NOT NULL,               -- "ai_finding", "decision" or "report"
    row TEXT NOT NULL,                -- the row as it was (JSON)
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    series_instance_uid TEXT,
    detail TEXT
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def finding_to_json(f: Finding) -> str:
    d = asdict(f)
    d["status"] = f.status.value
    return json.dumps(d, sort_keys=True)


def finding_from_json(text: str) -> Finding:
    d: dict[str, Any] = json.loads(text)
    for key in ("center_mm", "region"):
        if d.get(key) is not None:
            d[key] = tuple(d[key])
    d["status"] = ReviewStatus(d["status"])
    return Finding(**d)


def _same_place(a: Finding, b: Finding) -> bool:
    """Whether two findings mark the same lesion: CT centres within max(5 mm, a's radius);
    frames the same image and frame."""
    if a.center_mm is not None and b.center_mm is not None:
        d = math.dist(a.center_mm, b.center_mm)
        return d <= max(5.0, 0.5 * (a.diameter_mm or 0.0))
    return a.sop_instance_uid is not None and (a.sop_instance_uid, a.frame) == (
        b.sop_instance_uid,
        b.frame,
    )


@dataclass(frozen=True)
class ReviewSnapshot:
    """One consistent read of a series' review (one transaction): what a report is made of."""

    series_instance_uid: str
    findings: list[Finding]  # the review: AI findings with decisions applied, reader-added
    ai_findings: list[Finding]  # the AI's findings as produced
    latest_reports: dict[str, str]  # kind ("ai", "review") -> SOP Instance UID
    key_images: list[tuple[str, int]]

    @property
    def pending(self) -> list[Finding]:
        return [f for f in self.findings if f.status is ReviewStatus.PENDING]


@dataclass(frozen=True)
class AuditEntry:
    at: str
    user: str
    action: str
    series_instance_uid: str | None
    detail: str


class ReviewStore:
    """SQLite file beside the archive (WAL, synchronous=FULL: a commit is on disk)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def remember_ai_findings(self, series_uid: str, findings: list[Finding]) -> None:
        """Keep the AI's output as produced. The review belongs to the analysis it reviewed:
        a re-run of the same model version finds its findings already there (same ids and
        tracking UIDs) and keeps the review; another version of the model starts a new review
        (`_supersede`), the old one kept in the `superseded` table."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            for model_id, version in dict.fromkeys((f.model_id, f.model_version) for f in findings):
                self._supersede(db, series_uid, model_id, version, findings)
            db.executemany(
                "INSERT OR IGNORE INTO ai_findings VALUES (?, ?, ?)",
                [(series_uid, f.finding_id, finding_to_json(f)) for f in findings],
            )
            db.execute("INSERT INTO analyses VALUES (?, ?, ?)", (series_uid, len(findings), _now()))

    def _supersede(
        self,
        db: sqlite3.Connection,
        series_uid: str,
        model_id: str,
        version: str,
        new: list[Finding],
    ) -> None:
        """Inside a transaction: if the series holds another version's findings of this
        model, move them, their decisions and the series' reports to `superseded`, and carry
        each decided AI finding's decision over to the new finding at the same place (CT:
        centres within max(5 mm, its radius); frames: same image and frame) and every
        reader-added finding as it was. Each carried decision says where it came from."""
        old_rows = [
            (fid, text)
            for fid, text in db.execute(
                "SELECT finding_id, finding FROM ai_findings WHERE series_instance_uid=?",
                (series_uid,),
            )
        ]
        old = {fid: finding_from_json(text) for fid, text in old_rows}
        stale = {
            fid for fid, f in old.items() if f.model_id == model_id and f.model_version != version
        }
        if not stale:
            return
        old_version = old[next(iter(stale))].model_version
        at = _now()
        tag = f"{model_id} {old_version}"
        latest: dict[str, tuple[Finding, str]] = {}
        for fid, text, user in db.execute(
            "SELECT finding_id, finding, user FROM decisions WHERE series_instance_uid=? "
            "ORDER BY id",
            (series_uid,),
        ):
            latest[fid] = (finding_from_json(text), user)
        moved: list[tuple[str, str, str, str, str]] = [
            (series_uid, tag, "ai_finding", text, at) for fid, text in old_rows if fid in stale
        ]
        for row in db.execute(
            "SELECT id, finding_id, finding, status, user, at FROM decisions "
            "WHERE series_instance_uid=?",
            (series_uid,),
        ):
            moved.append((series_uid, tag, "decision", json.dumps(list(row)), at))
        for row in db.execute(
            "SELECT kind, sop_instance_uid, at FROM reports WHERE series_instance_uid=?",
            (series_uid,),
        ):
            moved.append((series_uid, tag, "report", json.dumps(list(row)), at))
        db.executemany("INSERT INTO superseded VALUES (?, ?, ?, ?, ?)", moved)
        db.execute(
            "DELETE FROM ai_findings WHERE series_instance_uid=? AND finding_id IN "
            f"({','.join('?' * len(stale))})",
            (series_uid, *stale),
        )
        db.execute("DELETE FROM decisions WHERE series_instance_uid=?", (series_uid,))
        db.execute("DELETE FROM reports WHERE series_instance_uid=?", (series_uid,))
        carried = 0
        taken: set[str] = set()
        for f in new:
            if f.model_id != model_id:
                continue
            match = next(
                (
                    d
                    for fid, (d, _) in latest.items()
                    if fid in stale
                    and fid not in taken
                    and d.status is not ReviewStatus.PENDING
                    and _same_place(d, f)
                ),
                None,
            )
            if match is None:
                continue
            taken.add(match.finding_id)
            user = latest[match.finding_id][1]
            note = (
                f"carried over from {match.finding_id} ({tag}, tracking UID {match.tracking_uid})"
            )
            changes: dict[str, Any] = {"status": match.status, "comment": match.comment}
            if match.status is ReviewStatus.MODIFIED:
                changes.update(center_mm=match.center_mm, diameter_mm=match.diameter_mm)
            self._insert_decision(db, series_uid, replace(f, **changes), user, at, note)
            carried += 1
        for fid, (d, user) in latest.items():
            if d.status is ReviewStatus.ADDED and fid not in old:
                self._insert_decision(db, series_uid, d, user, at, f"carried over ({tag})")
                carried += 1
        db.execute(
            "INSERT INTO audit(at, user, action, series_instance_uid, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                at,
                "loupe",
                "new review",
                series_uid,
                f"{model_id} {version} replaces {old_version}: {len(stale)} findings and their "
                f"review kept as superseded; {carried} decision(s) carried over",
            ),
        )

    @staticmethod
    def _insert_decision(
        db: sqlite3.Connection, series_uid: str, f: Finding, user: str, at: str, note: str
    ) -> None:
        db.execute(
            "INSERT INTO decisions(series_instance_uid, finding_id, finding, status, user, "
            "at) VALUES (?, ?, ?, ?, ?, ?)",
            (series_uid, f.finding_id, finding_to_json(f), f.status.value, user, at),
        )
        db.execute(
            "INSERT INTO audit(at, user, action, series_instance_uid, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (at, user, f"finding {f.status.value}", series_uid, f"{f.finding_id}: {note}"),
        )

    def superseded(self, series_uid: str) -> list[tuple[str, str, dict[str, Any] | list[Any]]]:
        """(model, kind, row) of every superseded row of the series, oldest first."""
        return [
            (model, kind, json.loads(row))
            for model, kind, row in self._db().execute(
                "SELECT model, kind, row FROM superseded WHERE series_instance_uid=? "
                "ORDER BY rowid",
                (series_uid,),
            )
        ]

    def forget(self, series_uid: str, finding_id: str, user: str, why: str) -> None:
        """Take a reader-added finding out of the review (undoing its addition), audited."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "DELETE FROM decisions WHERE series_instance_uid=? AND finding_id=?",
                (series_uid, finding_id),
            )
            db.execute(
                "INSERT INTO audit(at, user, action, series_instance_uid, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (_now(), user, "finding removed", series_uid, f"{finding_id} ({why})"),
            )

    def record(self, series_uid: str, finding: Finding, user: str, note: str = "") -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            at = _now()
            db.execute(
                "INSERT INTO decisions(series_instance_uid, finding_id, finding, status, user, "
                "at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    series_uid,
                    finding.finding_id,
                    finding_to_json(finding),
                    finding.status.value,
                    user,
                    at,
                ),
            )
            db.execute(
                "INSERT INTO audit(at, user, action, series_instance_uid, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    at,
                    user,
                    f"finding {finding.status.value}",
                    series_uid,
                    f"{finding.finding_id} ({finding.model_id} {finding.model_version})"
                    + (f" {note}" if note else ""),
                ),
            )

    def audit(self, user: str, action: str, series_uid: str | None, detail: str) -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO audit(at, user, action, series_instance_uid, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (_now(), user, action, series_uid, detail),
            )

    def record_report(self, series_uid: str, kind: str, sop_instance_uid: str) -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO reports VALUES (?, ?, ?, ?)",
                (series_uid, kind, sop_instance_uid, _now()),
            )

    def latest_report(self, series_uid: str, kind: str) -> str | None:
        """SOP Instance UID of the series' latest report of that kind."""
        row = (
            self._db()
            .execute(
                "SELECT sop_instance_uid FROM reports WHERE series_instance_uid=? AND kind=? "
                "ORDER BY rowid DESC LIMIT 1",
                (series_uid, kind),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def set_key_image(
        self, series_uid: str, sop_uid: str, frame: int, chosen: bool, user: str
    ) -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            at = _now()
            db.execute(
                "INSERT INTO key_images VALUES (?, ?, ?, ?, ?, ?)",
                (series_uid, sop_uid, frame, int(chosen), user, at),
            )
            db.execute(
                "INSERT INTO audit(at, user, action, series_instance_uid, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    at,
                    user,
                    "key image " + ("chosen" if chosen else "removed"),
                    series_uid,
                    f"{sop_uid} frame {frame}",
                ),
            )

    def key_images(self, series_uid: str) -> list[tuple[str, int]]:
        """(SOP Instance UID, frame) of the images chosen as key images, in choice order."""
        latest: dict[tuple[str, int], bool] = {}
        for sop, frame, chosen in self._db().execute(
            "SELECT sop_instance_uid, frame, chosen FROM key_images "
            "WHERE series_instance_uid=? ORDER BY rowid",
            (series_uid,),
        ):
            latest.pop((sop, frame), None)
            latest[(sop, frame)] = bool(chosen)
        return [k for k, on in latest.items() if on]

    def ai_findings(self, series_uid: str) -> list[Finding]:
        """The AI's findings as produced, before any decision."""
        return [
            finding_from_json(text)
            for (text,) in self._db().execute(
                "SELECT finding FROM ai_findings WHERE series_instance_uid=? ORDER BY rowid",
                (series_uid,),
            )
        ]

    def status_of(self, series_uids: set[str]) -> str:
        """A short AI/review state for a study's series: for the study browser."""
        if not series_uids:
            return ""
        db = self._db()
        marks = ",".join("?" * len(series_uids))
        params = tuple(series_uids)
        signed = db.execute(
            f"SELECT COUNT(*) FROM reports WHERE kind='review' AND series_instance_uid IN "
            f"({marks})",
            params,
        ).fetchone()[0]
        if signed:
            return "signed"
        total = db.execute(
            f"SELECT COUNT(*) FROM ai_findings WHERE series_instance_uid IN ({marks})", params
        ).fetchone()[0]
        decided = db.execute(
            f"SELECT COUNT(DISTINCT finding_id) FROM decisions WHERE series_instance_uid IN "
            f"({marks})",
            params,
        ).fetchone()[0]
        analysed = db.execute(
            f"SELECT COUNT(*) FROM analyses WHERE series_instance_uid IN ({marks})", params
        ).fetchone()[0]
        if decided:
            return f"reviewed {min(decided, total) if total else decided}/{total}"
        if analysed or total:
            return f"{total} finding{'' if total == 1 else 's'}"
        return ""

    def reviewed_series(self) -> list[str]:
        """Series with AI findings or decisions, most recent first."""
        rows = self._db().execute(
            "SELECT series_instance_uid, MAX(at) FROM decisions GROUP BY series_instance_uid "
            "UNION SELECT series_instance_uid, '' FROM ai_findings "
            "UNION SELECT series_instance_uid, MAX(at) FROM analyses GROUP BY series_instance_uid "
            "ORDER BY 2 DESC"
        )
        return list(dict.fromkeys(r[0] for r in rows))

    def restore(self, series_uid: str) -> list[Finding]:
        """The series' findings with the latest decision of each applied (AI order kept,
        reader-added ones after)."""
        db = self._db()
        ai = {
            fid: finding_from_json(text)
            for fid, text in db.execute(
                "SELECT finding_id, finding FROM ai_findings WHERE series_instance_uid=? "
                "ORDER BY rowid",
                (series_uid,),
            )
        }
        latest: dict[str, Finding] = {}
        for fid, text in db.execute(
            "SELECT finding_id, finding FROM decisions WHERE series_instance_uid=? ORDER BY id",
            (series_uid,),
        ):
            latest[fid] = finding_from_json(text)
        out = [latest.get(fid, f) for fid, f in ai.items()]
        out += [f for fid, f in latest.items() if fid not in ai]
        return out

    def snapshot(self, series_uid: str) -> ReviewSnapshot:
        """The series' review, AI findings, latest reports and key images, read in one
        transaction (a decision made meanwhile is in all of it or none)."""
        db = self._db()
        db.execute("BEGIN")
        try:
            findings = self.restore(series_uid)
            ai = self.ai_findings(series_uid)
            reports = {kind: self.latest_report(series_uid, kind) for kind in ("ai", "review")}
            keys = self.key_images(series_uid)
        finally:
            db.execute("COMMIT")
        return ReviewSnapshot(
            series_uid,
            findings,
            ai,
            {k: v for k, v in reports.items() if v is not None},
            keys,
        )

    def decision_count(self, series_uid: str) -> int:
        row = (
            self._db()
            .execute("SELECT COUNT(*) FROM decisions WHERE series_instance_uid=?", (series_uid,))
            .fetchone()
        )
        return int(row[0])

    def audit_log(self, series_uid: str | None = None) -> list[AuditEntry]:
        sql = "SELECT at, user, action, series_instance_uid, detail FROM audit"
        params: tuple[Any, ...] = ()
        if series_uid is not None:
            sql += " WHERE series_instance_uid=?"
            params = (series_uid,)
        return [AuditEntry(*row) for row in self._db().execute(sql + " ORDER BY id", params)]


class ReviewSession:
    """The reader's actions on one series' findings; each is stored before it is shown."""

    def __init__(self, store: ReviewStore, findings: FindingSet, series_uid: str, user: str):
        self.store = store
        self.findings = findings
        self.series_uid = series_uid
        self.user = user
        # Undo/redo of this session's edits: (before, after); before None = an added finding.
        # Each undo and redo is itself a durable, audited decision.
        self._undo: list[tuple[Finding | None, Finding]] = []
        self._redo: list[tuple[Finding | None, Finding]] = []

    def undo(self) -> Finding | None:
        """Take back the last edit (Ctrl+Z); returns the finding as it is now, None when
        nothing is left to undo or the undone edit added the finding (it is gone)."""
        if not self._undo:
            return None
        before, after = self._undo.pop()
        self._redo.append((before, after))
        if before is None:
            self.store.forget(self.series_uid, after.finding_id, self.user, "undo of its addition")
            self.findings.remove(after.finding_id)
            return None
        self.store.record(self.series_uid, before, self.user, note="(undo)")
        return self.findings.put(before)

    def redo(self) -> Finding | None:
        """Do again what undo took back (Ctrl+Shift+Z)."""
        if not self._redo:
            return None
        before, after = self._redo.pop()
        self._undo.append((before, after))
        self.store.record(self.series_uid, after, self.user, note="(redo)")
        return self.findings.put(after)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _done(self, before: Finding | None, after: Finding) -> None:
        self._undo.append((before, after))
        self._redo.clear()

    def start(self, ai_findings: list[Finding], show_from: float = 0.0) -> None:
        """Load the AI's findings with any earlier review of this series applied.

        `show_from`: the operating point's threshold. Findings shown once (e.g. when the
        reader looked at every candidate) stay in the review, but pending AI findings below
        the threshold are not shown; decided and reader-added (status ADDED) ones always
        are."""
        self.store.remember_ai_findings(self.series_uid, ai_findings)
        self.findings.replace_all(
            [
                f
                for f in self.store.restore(self.series_uid)
                if f.probability >= show_from or f.status is not ReviewStatus.PENDING
            ]
        )

    def _decide(self, finding_id: str, **changes: Any) -> Finding:
        before = self.findings.get(finding_id)
        new = replace(before, **changes)
        self.store.record(self.series_uid, new, self.user)  # durable first
        self._done(before, new)
        return self.findings.update(finding_id, **changes)

    def accept(self, finding_id: str) -> Finding:
        f = self.findings.get(finding_id)
        keep = f.status in (ReviewStatus.MODIFIED, ReviewStatus.ADDED)
        return self._decide(finding_id, status=f.status if keep else ReviewStatus.ACCEPTED)

    def reject(self, finding_id: str) -> Finding:
        return self._decide(finding_id, status=ReviewStatus.REJECTED)

    def edit(
        self,
        finding_id: str,
        *,
        center_mm: tuple[float, float, float] | None = None,
        diameter_mm: float | None = None,
        slice_index: int | None = None,
    ) -> Finding:
        f = self.findings.get(finding_id)
        changes: dict[str, Any] = {}
        if center_mm is not None:
            changes["center_mm"] = tuple(float(v) for v in center_mm)
        if diameter_mm is not None:
            if not 0.5 <= diameter_mm <= 200:
                raise ValueError(f"diameter must be 0.5-200 mm, got {diameter_mm:.1f}")
            changes["diameter_mm"] = float(diameter_mm)
        if slice_index is not None:
            changes["slice_index"] = slice_index
        if f.status is not ReviewStatus.ADDED:
            changes["status"] = ReviewStatus.MODIFIED
        return self._decide(finding_id, **changes)

    def add(
        self,
        center_mm: tuple[float, float, float],
        diameter_mm: float,
        *,
        slice_index: int | None = None,
        label: str = "nodule",
    ) -> Finding:
        """A finding the AI missed, placed by the reader (numbered after every AI candidate
        and every finding so far: finding_number)."""
        f = Finding(
            finding_id=f"R{uuid.uuid4().hex[:6]}",
            model_id="reader",
            model_version=self.user,
            series_instance_uid=self.series_uid,
            probability=1.0,
            label=label,
            center_mm=tuple(float(v) for v in center_mm),  # type: ignore[arg-type]
            diameter_mm=float(diameter_mm),
            slice_index=slice_index,
            status=ReviewStatus.ADDED,
            attributes={"number": self._next_number()},
        )
        self.store.record(self.series_uid, f, self.user)
        self._done(None, f)
        return self.findings.add(f)

    def add_frame(
        self, sop_instance_uid: str, frame: int, *, region: tuple[int, int, int, int] | None
    ) -> Finding:
        """An endoscopy frame the reader marks as a lesion (the AI did not flag it)."""
        f = Finding(
            finding_id=f"R{uuid.uuid4().hex[:6]}",
            model_id="reader",
            model_version=self.user,
            series_instance_uid=self.series_uid,
            probability=1.0,
            label="lesion",
            sop_instance_uid=sop_instance_uid,
            frame=frame,
            region=region,
            status=ReviewStatus.ADDED,
            attributes={"number": self._next_number()},
        )
        self.store.record(self.series_uid, f, self.user)
        self._done(None, f)
        return self.findings.add(f)

    def _next_number(self) -> int:
        known = [*self.store.restore(self.series_uid), *self.findings]
        return max(numbers(known).values(), default=0) + 1

    def toggle_key_image(self, sop_instance_uid: str, frame: int) -> bool:
        chosen = (sop_instance_uid, frame) not in self.store.key_images(self.series_uid)
        self.store.set_key_image(self.series_uid, sop_instance_uid, frame, chosen, self.user)
        return chosen

    def comment(self, finding_id: str, text: str) -> Finding:
        return self._decide(finding_id, comment=text.strip())

    def pending(self) -> list[Finding]:
        return [f for f in self.findings if f.status is ReviewStatus.PENDING]
