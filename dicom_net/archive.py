"""The local archive: DICOM files kept exactly as received, indexed in SQLite (WAL).

File names come from a hash of the SOP Instance UID, never from the UID itself, so a hostile
UID ("../../etc/x") cannot place a file outside the storage folder. A re-received SOP Instance
UID replaces the earlier file and row (counted once).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_net.dataset_check import Unacceptable, check_object
from dicom_net.errors import ArchiveError
from dicom_net.header import InstanceHeader, read_header

SCHEMA_VERSION = 1
# A partial file untouched this long belongs to no live writer.
STALE_PART_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    patient_id TEXT, patient_name TEXT, patient_birth_date TEXT, patient_sex TEXT,
    study_date TEXT, study_time TEXT, study_description TEXT, accession_number TEXT,
    referring_physician_name TEXT, study_id TEXT,
    expected_instances INTEGER,
    retrieve_state TEXT,
    source_node TEXT,
    updated_at TEXT
);
CREATE TABLE IF NOT EXISTS series (
    series_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    modality TEXT, series_number INTEGER, series_description TEXT, body_part_examined TEXT,
    frame_of_reference_uid TEXT
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_instance_uid);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    series_instance_uid TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT, instance_number INTEGER, number_of_frames INTEGER,
    rows INTEGER, columns INTEGER,
    transfer_syntax_uid TEXT,
    path TEXT NOT NULL, size_bytes INTEGER,
    received_at TEXT, source_ae TEXT, source_node TEXT
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_instance_uid);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_instance_uid TEXT, sop_class_uid TEXT, transfer_syntax_uid TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt_at);
"""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def file_name_for(sop_instance_uid: str) -> str:
    """Storage-relative path for an instance: one of 256 fan-out folders and a hash, never
    the UID. (Archives written before 0.2 used two levels, ab/cd/; their rows keep their
    paths.) One level because creating folders is what made writes slow: two levels meant
    a new folder for almost every file of the first studies (+0.55 ms per file, bench notes in
    README), and 256 folders hold a workstation's cache (ext4 indexes large folders)."""
    digest = hashlib.sha256(sop_instance_uid.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:2]}/{digest[:40]}.dcm"


FAN_OUT = tuple(f"{i:02x}" for i in range(256))


@dataclass(frozen=True)
class StoredInstance:
    header: InstanceHeader
    path: Path
    replaced: bool


@dataclass(frozen=True)
class StudyRecord:
    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    expected_instances: int | None
    retrieve_state: str | None
    source_node: str | None

    @property
    def missing_instances(self) -> int:
        if self.expected_instances is None:
            return 0
        return max(0, self.expected_instances - self.instance_count)

    def as_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "patient_birth_date": self.patient_birth_date,
            "patient_sex": self.patient_sex,
            "study_date": self.study_date,
            "study_time": self.study_time,
            "study_description": self.study_description,
            "accession_number": self.accession_number,
            "modalities": list(self.modalities),
            "series_count": self.series_count,
            "instance_count": self.instance_count,
            "expected_instances": self.expected_instances,
            "missing_instances": self.missing_instances,
            "retrieve_state": self.retrieve_state,
            "source_node": self.source_node,
        }


@dataclass(frozen=True)
class SeriesRecord:
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    instance_count: int


@dataclass(frozen=True)
class InstanceRecord:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax_uid: str
    path: Path
    size_bytes: int
    received_at: str
    source_ae: str | None
    source_node: str | None


class ArchivePart:
    """An instance being written into incoming/ (see LocalArchive.open_part)."""

    def __init__(self, path: str, fd: int, source: str):
        self.path = path
        self.size = 0
        self.source = source
        self._fd: int | None = fd

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                if self._fd is None:
                    raise OSError(f"{self.path} is closed")
                n = os.write(self._fd, view)
                self.size += n
                view = view[n:]
        except OSError as exc:
            raise ArchiveError(
                f"{self.source}: cannot write to {os.path.dirname(self.path)} ({exc})"
            ) from exc

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class LocalArchive:
    """Files under `root/files`, index in `root/index.sqlite`; safe to use from many threads."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.files_dir = self.root / "files"
        self.incoming_dir = self.root / "incoming"
        self.outbox_dir = self.root / "outbox"
        try:
            for d in (self.root, self.files_dir, self.incoming_dir, self.outbox_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(
                f"storage folder {self.root}: cannot create it ({exc.strerror}); "
                "set [local] storage in the settings to a writable folder"
            ) from exc
        self.db_path = self.root / "index.sqlite"
        self._local = threading.local()
        self._made_dirs: set[str] = set()
        # study/series UID -> (values last written to its row, when): see _index
        self._recent_rows: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._dirs_lock = threading.Lock()
        self._files_str = str(self.files_dir)
        self._make_fan_out()
        self._incoming_str = str(self.incoming_dir)
        # "<pid>-<random>": a part whose writer process is gone is a leftover at once.
        self._tmp_prefix = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._tmp_counter = itertools.count()
        self._db().executescript(_SCHEMA)
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        self._clean_incoming()

    # -- connections -------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(self._db().execute(sql, params).fetchall())

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _clean_incoming(self) -> None:
        # Leftovers of writes interrupted before their atomic rename: never indexed, never
        # acknowledged to the sender (the C-STORE response goes out after the rename). A part
        # is removed when the process that wrote it (its name starts with that pid) no
        # longer runs, or, for names without a pid, when it is old: another Loupe process may
        # be writing into the same archive right now.
        cutoff = time.time() - STALE_PART_S
        for stale in self.incoming_dir.glob("*.part"):
            with contextlib.suppress(OSError):
                writer = stale.name.split("-", 1)[0]
                if writer.isdigit() and int(writer) != os.getpid():
                    if not _process_alive(int(writer)):
                        stale.unlink()
                elif stale.stat().st_mtime < cutoff:
                    stale.unlink()

    def _make_fan_out(self) -> None:
        """Create the 256 folders once, so receiving never waits for a mkdir."""
        try:
            present = set(os.listdir(self._files_str))
            for name in FAN_OUT:
                if name not in present:
                    os.makedirs(os.path.join(self._files_str, name), exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"storage folder {self.files_dir}: {exc.strerror}") from exc
        self._made_dirs.update(FAN_OUT)

    # -- storing ----------------------------------------------------------------------
    def _final_path(self, sop_instance_uid: str) -> tuple[str, str]:
        """(absolute path, storage-relative path) of an instance's file. The name is hex from a
        hash, so it cannot leave the storage folder whatever the UID holds."""
        rel = file_name_for(sop_instance_uid)
        parent = rel[:2]  # "ab"
        if parent not in self._made_dirs:
            os.makedirs(os.path.join(self._files_str, parent), exist_ok=True)
            with self._dirs_lock:
                self._made_dirs.add(parent)
        return os.path.join(self._files_str, rel), "files/" + rel

    def store_bytes(
        self,
        data: bytes,
        *,
        header: InstanceHeader | None = None,
        source_ae: str | None = None,
        source_node: str | None = None,
        source: str = "<network>",
    ) -> StoredInstance:
        """Store one complete Part 10 object (preamble + meta + data set) as given."""
        if header is None:
            header = read_header(data, source=source)
        part = self.open_part(source=source)
        try:
            part.write(data)
        except ArchiveError:
            part.discard()
            raise
        return self.commit_part(
            part, header=header, source_ae=source_ae, source_node=source_node, source=source
        )

    def open_part(self, *, source: str = "<network>") -> ArchivePart:
        """A new file in incoming/ to write an instance into as it arrives; commit_part()
        moves it into files/ and indexes it, discard() removes it."""
        # Plain strings and a counter: this runs once per received instance (hot path).
        tmp = os.path.join(self._incoming_str, f"{self._tmp_prefix}-{next(self._tmp_counter)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ArchiveError(f"{source}: cannot write to {self.incoming_dir} ({exc})") from exc
        return ArchivePart(tmp, fd, source)

    def commit_part(
        self,
        part: ArchivePart,
        *,
        header: InstanceHeader,
        source_ae: str | None = None,
        source_node: str | None = None,
        source: str = "<network>",
    ) -> StoredInstance:
        """Close the part, move it to its final place and index it (in that order: a crash
        before the index leaves at most a stray file, never an index row without a file)."""
        final, rel = self._final_path(header.sop_instance_uid)
        try:
            part.close()
            os.replace(part.path, final)
        except OSError as exc:
            part.discard()
            raise ArchiveError(f"{source}: cannot write to {self.files_dir} ({exc})") from exc
        replaced, old_rel = self._index(header, rel, part.size, source_ae, source_node)
        if old_rel is not None and old_rel != rel:  # replaced a file of the old layout
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(str(self.root), old_rel))
        return StoredInstance(header=header, path=Path(final), replaced=replaced)

    def store_file(self, path: Path, *, source_node: str | None = None) -> StoredInstance:
        """Import a Part 10 file byte for byte (adding a file meta if it lacks one), once it
        is fully parsed as a received one is (dataset_check.py)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArchiveError(f"{path}: cannot read ({exc.strerror})") from exc
        if len(data) < 132 or data[128:132] != b"DICM":
            data = _to_part10(data, str(path))
        try:
            header = check_object(data)
        except Unacceptable as exc:
            raise ArchiveError(f"{path}: {exc.reason}") from None
        return self.store_bytes(data, header=header, source_node=source_node, source=str(path))

    def _index(
        self,
        h: InstanceHeader,
        rel_path: str,
        size: int,
        source_ae: str | None,
        source_node: str | None,
    ) -> tuple[bool, str | None]:
        """Index one stored file; (replaced an earlier copy, that copy's relative path).

        The study and series rows are written with the first instance and again only when
        their values change or a second has passed (a series arrives as hundreds of instances
        with the same values; rewriting their rows each time was a third of the index cost).
        """
        now = utc_now()
        # In the column order of the studies and series rows after their UID.
        study_key = (
            h.patient_id,
            h.patient_name,
            h.patient_birth_date,
            h.patient_sex,
            h.study_date,
            h.study_time,
            h.study_description,
            h.accession_number,
            h.referring_physician_name,
            h.study_id,
            source_node,
        )
        series_key = (
            h.study_instance_uid,
            h.modality,
            h.series_number,
            h.series_description,
            h.body_part_examined,
            h.frame_of_reference_uid,
        )
        tick = time.monotonic()
        fresh_study = self._recent_rows.get(h.study_instance_uid)
        fresh_series = self._recent_rows.get(h.series_instance_uid)
        write_study = (
            fresh_study is None or fresh_study[0] != study_key or tick - fresh_study[1] > 1
        )
        write_series = (
            fresh_series is None or fresh_series[0] != series_key or tick - fresh_series[1] > 1
        )
        with self.transaction() as db:
            old = db.execute(
                "SELECT path FROM instances WHERE sop_instance_uid=?", (h.sop_instance_uid,)
            ).fetchone()
            replaced = old is not None
            if write_study:
                db.execute(
                    """INSERT INTO studies(study_instance_uid, patient_id, patient_name,
                       patient_birth_date, patient_sex, study_date, study_time,
                       study_description, accession_number, referring_physician_name, study_id,
                       source_node, updated_at)
                       VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT(study_instance_uid) DO UPDATE SET
                       patient_id=excluded.patient_id, patient_name=excluded.patient_name,
                       patient_birth_date=excluded.patient_birth_date,
                       patient_sex=excluded.patient_sex, study_date=excluded.study_date,
                       study_time=excluded.study_time, study_description=excluded.study_description,
                       accession_number=excluded.accession_number,
                       referring_physician_name=excluded.referring_physician_name,
                       study_id=excluded.study_id,
                       source_node=COALESCE(excluded.source_node, studies.source_node),
                       updated_at=excluded.updated_at""",
                    (h.study_instance_uid, *study_key, now),
                )
            if write_series:
                db.execute(
                    """INSERT INTO series(series_instance_uid, study_instance_uid, modality,
                       series_number, series_description, body_part_examined,
                       frame_of_reference_uid)
                       VALUES (?,?,?,?,?,?,?)
                       ON CONFLICT(series_instance_uid) DO UPDATE SET
                       study_instance_uid=excluded.study_instance_uid, modality=excluded.modality,
                       series_number=excluded.series_number,
                       series_description=excluded.series_description,
                       body_part_examined=excluded.body_part_examined,
                       frame_of_reference_uid=excluded.frame_of_reference_uid""",
                    (h.series_instance_uid, *series_key),
                )
            db.execute(
                """INSERT OR REPLACE INTO instances(sop_instance_uid, series_instance_uid,
                   study_instance_uid, sop_class_uid, instance_number, number_of_frames, rows,
                   columns, transfer_syntax_uid, path, size_bytes, received_at, source_ae,
                   source_node) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    h.sop_instance_uid,
                    h.series_instance_uid,
                    h.study_instance_uid,
                    h.sop_class_uid,
                    h.instance_number,
                    h.number_of_frames,
                    h.rows,
                    h.columns,
                    h.transfer_syntax_uid,
                    rel_path,
                    size,
                    now,
                    source_ae,
                    source_node,
                ),
            )
        if len(self._recent_rows) > 4096:
            self._recent_rows.clear()
        if write_study:
            self._recent_rows[h.study_instance_uid] = (study_key, tick)
        if write_series:
            self._recent_rows[h.series_instance_uid] = (series_key, tick)
        return replaced, (str(old[0]) if old is not None else None)

    # -- retrieve bookkeeping -------------------------------------------------------------
    def set_retrieve_state(
        self,
        study_instance_uid: str,
        *,
        state: str,
        expected_instances: int | None,
        source_node: str | None,
    ) -> None:
        """Record the outcome of a retrieve so an incomplete study shows as such."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO studies(study_instance_uid, expected_instances, retrieve_state,
                   source_node, updated_at) VALUES (?,?,?,?,?)
                   ON CONFLICT(study_instance_uid) DO UPDATE SET
                   expected_instances=excluded.expected_instances,
                   retrieve_state=excluded.retrieve_state,
                   source_node=COALESCE(excluded.source_node, studies.source_node),
                   updated_at=excluded.updated_at""",
                (study_instance_uid, expected_instances, state, source_node, utc_now()),
            )

    # -- reading ----------------------------------------------------------------------------
    def studies(self, study_instance_uid: str | None = None) -> list[StudyRecord]:
        where = "WHERE s.study_instance_uid = ?" if study_instance_uid else ""
        params: tuple[Any, ...] = (study_instance_uid,) if study_instance_uid else ()
        rows = self.query(
            f"""SELECT s.*,
                (SELECT COUNT(*) FROM instances i
                   WHERE i.study_instance_uid = s.study_instance_uid) AS n_instances,
                (SELECT COUNT(*) FROM series r
                   WHERE r.study_instance_uid = s.study_instance_uid) AS n_series,
                (SELECT GROUP_CONCAT(DISTINCT r.modality) FROM series r
                   WHERE r.study_instance_uid = s.study_instance_uid) AS modalities
               FROM studies s {where}
               ORDER BY s.study_date DESC, s.study_time DESC, s.patient_name""",
            params,
        )
        out = []
        for r in rows:
            mods = tuple(sorted(m for m in (r["modalities"] or "").split(",") if m))
            out.append(
                StudyRecord(
                    study_instance_uid=r["study_instance_uid"],
                    patient_id=r["patient_id"] or "",
                    patient_name=r["patient_name"] or "",
                    patient_birth_date=r["patient_birth_date"] or "",
                    patient_sex=r["patient_sex"] or "",
                    study_date=r["study_date"] or "",
                    study_time=r["study_time"] or "",
                    study_description=r["study_description"] or "",
                    accession_number=r["accession_number"] or "",
                    modalities=mods,
                    series_count=int(r["n_series"]),
                    instance_count=int(r["n_instances"]),
                    expected_instances=r["expected_instances"],
                    retrieve_state=r["retrieve_state"],
                    source_node=r["source_node"],
                )
            )
        return out

    def series(self, study_instance_uid: str) -> list[SeriesRecord]:
        rows = self.query(
            """SELECT r.*, (SELECT COUNT(*) FROM instances i
                  WHERE i.series_instance_uid = r.series_instance_uid) AS n
               FROM series r WHERE r.study_instance_uid = ?
               ORDER BY r.series_number, r.series_instance_uid""",
            (study_instance_uid,),
        )
        return [
            SeriesRecord(
                series_instance_uid=r["series_instance_uid"],
                study_instance_uid=r["study_instance_uid"],
                modality=r["modality"] or "",
                series_number=r["series_number"],
                series_description=r["series_description"] or "",
                body_part_examined=r["body_part_examined"] or "",
                instance_count=int(r["n"]),
            )
            for r in rows
        ]

    def instances(
        self, *, study_instance_uid: str | None = None, series_instance_uid: str | None = None
    ) -> list[InstanceRecord]:
        clauses, params = [], []
        if study_instance_uid:
            clauses.append("study_instance_uid = ?")
            params.append(study_instance_uid)
        if series_instance_uid:
            clauses.append("series_instance_uid = ?")
            params.append(series_instance_uid)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.query(
            f"SELECT * FROM instances {where} ORDER BY series_instance_uid, instance_number",
            tuple(params),
        )
        return [self._instance(r) for r in rows]

    def instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        rows = self.query("SELECT * FROM instances WHERE sop_instance_uid=?", (sop_instance_uid,))
        return self._instance(rows[0]) if rows else None

    def _instance(self, r: sqlite3.Row) -> InstanceRecord:
        return InstanceRecord(
            sop_instance_uid=r["sop_instance_uid"],
            series_instance_uid=r["series_instance_uid"],
            study_instance_uid=r["study_instance_uid"],
            sop_class_uid=r["sop_class_uid"] or "",
            instance_number=r["instance_number"],
            transfer_syntax_uid=r["transfer_syntax_uid"] or "",
            path=self.root / r["path"],
            size_bytes=int(r["size_bytes"] or 0),
            received_at=r["received_at"] or "",
            source_ae=r["source_ae"],
            source_node=r["source_node"],
        )

    def sop_instance_uids(self, study_instance_uid: str) -> set[str]:
        rows = self.query(
            "SELECT sop_instance_uid FROM instances WHERE study_instance_uid=?",
            (study_instance_uid,),
        )
        return {r[0] for r in rows}

    def bytes_received_since(self, study_instance_uid: str, since: str) -> int:
        rows = self.query(
            "SELECT COALESCE(SUM(size_bytes), 0) FROM instances "
            "WHERE study_instance_uid=? AND received_at >= ?",
            (study_instance_uid, since),
        )
        return int(rows[0][0])

    def instance_count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM instances")[0][0])


def _to_part10(data: bytes, source: str) -> bytes:
    """A bare data set (no preamble/meta, as some old exports are): add a file meta header."""
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.SOPInstanceUID  # noqa: B018  (raises if this is not DICOM at all)
    except (InvalidDicomError, AttributeError, EOFError, ValueError, TypeError) as exc:
        raise ArchiveError(f"{source}: not a DICOM file") from exc
    except RecursionError:  # pydicom reads nested sequences recursively
        raise ArchiveError(f"{source}: sequences nested too deeply to read") from None
    out = io.BytesIO()
    ds.file_meta = ds.file_meta if hasattr(ds, "file_meta") else pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    try:
        ds.save_as(out, enforce_file_format=True)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ArchiveError(f"{source}: cannot be written as a DICOM file ({exc})") from exc
    return out.getvalue()
