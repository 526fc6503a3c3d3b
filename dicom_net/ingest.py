"""The C-STORE handler shared by our storage SCP and by C-GET: check, write as received, index.

Nothing is acknowledged with success or indexed before it is fully parsed (dataset_check.py);
a refusal carries the status and an Error Comment naming the problem (no patient data), and
its partial file is removed.

Speed matters here: the peer waits for our response before it sends the next instance. The
common case (native pixel data last, little endian, printable ASCII in the indexed attributes)
is checked and indexed from the data set's first fragment while the rest arrives
(`check_start`); then only its length is compared. Anything else is checked whole once it is
in (`check_object`), with pydicom reading the indexed values where the walk cannot
(`read_header`). tests/dicom_net/test_ingest_header.py checks that both give pydicom's header.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from dicom_net.archive import ArchivePart, LocalArchive, StoredInstance
from dicom_net.dataset_check import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATASET_MISMATCH,
    Unacceptable,
    check_object,
    check_start,
)
from dicom_net.errors import ArchiveError
from dicom_net.header import InstanceHeader, read_header

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 Annex B): 0xA700 "Refused: Out of Resources"; the refusals of what
# does not parse (0xA900, 0xC000) are dataset_check.py's.
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700


@dataclass
class IngestCounters:
    stored: int = 0
    replaced: int = 0
    refused: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class IncomingInstance:
    """A data set arriving in fragments. Each fragment is written to a file in incoming/ as
    it comes (so the file is nearly complete when the last one lands: the sender waits for
    our response); the data set is checked and its header read from the first fragment
    (dataset_check.check_start). Fragments are not kept: the caller may reuse their memory
    once add() returns, and a data set that cannot be vouched for from its first fragment is
    checked from the file (StoreIngest.finish)."""

    def __init__(
        self,
        archive: LocalArchive,
        *,
        calling_ae: str,
        message_id: int,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
    ):
        self.calling_ae = calling_ae
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.source = f"C-STORE from {calling_ae} (message {message_id})"
        self.transfer_syntax = transfer_syntax
        self.prefix = _part10_prefix(sop_class_uid, sop_instance_uid, transfer_syntax)
        self.fragments = 0
        self.size = 0
        self.part: ArchivePart | None = None
        self.error: ArchiveError | None = None
        self.early: tuple[InstanceHeader, int] | None = None  # from the first fragment
        if self.prefix is not None:
            try:
                self.part = archive.open_part(source=self.source)
                self.part.write(self.prefix)
            except ArchiveError as exc:
                self.error = exc

    def add(self, fragment: bytes | memoryview) -> None:
        if not self.fragments and self.prefix is not None:
            self.early = check_start(self.transfer_syntax, fragment)
        self.fragments += 1
        self.size += len(fragment)
        if self.part is not None and self.error is None:
            try:
                self.part.write(fragment)
            except ArchiveError as exc:  # reported when the data set is complete
                self.error = exc

    def discard(self) -> None:
        """Remove the partial file (a refused or abandoned data set)."""
        if self.part is not None:
            self.part.discard()
            self.part = None

    def read_back(self) -> bytes:
        """Everything written so far (our file meta and the data set), from the file."""
        assert self.part is not None
        with open(self.part.path, "rb") as fh:
            return fh.read()


class StoreIngest:
    """Callable for EVT_C_STORE. Returns fast: one write, one rename, one index row."""

    def __init__(
        self,
        archive: LocalArchive,
        *,
        node_for_ae: Callable[[str], str | None] | None = None,
        on_stored: Callable[[StoredInstance], None] | None = None,
    ):
        self.archive = archive
        self.node_for_ae = node_for_ae
        self.on_stored = on_stored
        self.counters = IngestCounters()

    def __call__(self, event: Any) -> int | Dataset:
        """pynetdicom's EVT_C_STORE handler: the status, with an Error Comment if refused.

        With STORE_RECV_CHUNKED_DATASET (ae.py) pynetdicom has written the data set to a
        temporary file as it arrived: it is copied into the archive in pieces, never held
        whole in memory, and the temporary file removed (pynetdicom removes it only on the
        acceptor side, not for C-GET)."""
        req = event.request
        try:
            spooled: Path | None = event.dataset_path
        except AttributeError:  # not spooled
            spooled = None
        incoming: IncomingInstance | None = None
        try:
            incoming = self.begin(
                calling_ae=str(event.assoc.requestor.ae_title),
                message_id=int(req.MessageID),
                sop_class_uid=str(req.AffectedSOPClassUID),
                sop_instance_uid=str(req.AffectedSOPInstanceUID),
                transfer_syntax=str(event.context.transfer_syntax),
            )
            if spooled is None:
                with req.DataSet.getbuffer() as dataset:
                    incoming.add(dataset)
            else:
                _copy_spooled(spooled, incoming)
            status, comment = self.finish(incoming)
        except Exception as exc:  # pynetdicom raises various errors for unparsable requests
            if incoming is not None:
                incoming.discard()
            source = f"C-STORE from {str(event.assoc.requestor.ae_title).strip()}"
            # The exception's type only: its text may quote values of the request.
            comment = f"cannot decode the request ({type(exc).__name__})"
            status = self._refuse(source, comment, STATUS_CANNOT_UNDERSTAND)
        finally:
            if spooled is not None:
                with contextlib.suppress(OSError):
                    os.unlink(spooled)
        if status == STATUS_SUCCESS or not comment:
            return status
        rsp = Dataset()
        rsp.Status = status
        rsp.ErrorComment = comment[:64]  # LO: 64 characters at most
        return rsp

    def begin(
        self,
        *,
        calling_ae: str,
        message_id: int,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
    ) -> IncomingInstance:
        """Start receiving a data set: its fragments go to a file in incoming/ as they come.

        Used by pynetdicom's handler (above), through it by C-GET, and by the fast storage
        path (fast_store.py) as fragments arrive."""
        return IncomingInstance(
            self.archive,
            calling_ae=calling_ae.strip(),
            message_id=message_id,
            sop_class_uid=sop_class_uid.strip(),
            sop_instance_uid=sop_instance_uid.strip(),
            transfer_syntax=transfer_syntax,
        )

    def finish(self, incoming: IncomingInstance) -> tuple[int, str]:
        """The last fragment has arrived: check the data set, then keep it (move the file into
        place and index it) or refuse it (remove the file). (DIMSE status, error comment)."""
        try:
            return self._finish(incoming)
        finally:
            incoming.discard()  # no-op once committed

    def _finish(self, incoming: IncomingInstance) -> tuple[int, str]:
        source = incoming.source
        prefix = incoming.prefix
        if prefix is None:
            reason = "the request's UIDs are not plain ASCII"
            return self._refuse(source, reason, STATUS_CANNOT_UNDERSTAND), reason
        if incoming.error is not None or incoming.part is None:
            exc = incoming.error or ArchiveError(f"{source}: nothing was written")
            log.error("%s", exc)
            reason = "cannot write to the local archive (disk full or not writable?)"
            return self._refuse(source, str(exc), STATUS_OUT_OF_RESOURCES), reason
        early = incoming.early
        header: InstanceHeader | None
        if early is not None and early[1] == incoming.size:
            header = early[0]  # checked from the first fragment; all of it has arrived
        else:  # the whole object as written
            try:
                whole = incoming.read_back()
            except OSError as exc:
                log.error("%s: cannot read back %s", source, exc.filename)
                reason = "cannot read the local archive"
                return self._refuse(source, reason, STATUS_OUT_OF_RESOURCES), reason
            try:
                header = check_object(whole)
                if header is None:  # checked; its values need pydicom
                    header = read_header(whole, source=source)
            except Unacceptable as exc:
                return self._refuse(source, exc.reason, exc.status), exc.reason
            except ArchiveError as exc:
                return self._refuse(source, str(exc), STATUS_CANNOT_UNDERSTAND), str(exc)
        for what, ours, theirs in (
            ("Class", header.sop_class_uid, incoming.sop_class_uid),
            ("Instance", header.sop_instance_uid, incoming.sop_instance_uid),
        ):
            if ours != theirs:
                reason = f"SOP {what} UID differs from the request's Affected SOP {what} UID"
                return self._refuse(source, reason, STATUS_DATASET_MISMATCH), reason
        node = self.node_for_ae(incoming.calling_ae) if self.node_for_ae else None
        try:
            assert incoming.part is not None
            stored = self.archive.commit_part(
                incoming.part,
                header=header,
                source_ae=incoming.calling_ae,
                source_node=node,
                source=source,
            )
            incoming.part = None
        except ArchiveError as exc:
            log.error("%s", exc)
            reason = "cannot write to the local archive (disk full or not writable?)"
            return self._refuse(source, str(exc), STATUS_OUT_OF_RESOURCES), reason
        with self.counters.lock:
            self.counters.stored += 1
            self.counters.bytes += len(prefix) + incoming.size
            if stored.replaced:
                self.counters.replaced += 1
        if self.on_stored is not None:
            try:
                self.on_stored(stored)
            except Exception:  # a listener must never fail the store
                log.exception("on_stored listener failed")
        return STATUS_SUCCESS, ""

    def _refuse(self, source: str, reason: str, status: int) -> int:
        with self.counters.lock:
            self.counters.refused += 1
        log.warning("refused %s: %s (status 0x%04X)", source, reason, status)
        return status


# Pieces in which a data set spooled by pynetdicom is copied into the archive.
_SPOOL_CHUNK = 1 << 20
# pynetdicom's spooled file: preamble, "DICM", then (0002,0000) UL, 4 bytes, the meta length.
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"


def _copy_spooled(path: Path, incoming: IncomingInstance) -> None:
    """The data set of a Part 10 file pynetdicom wrote, into `incoming`, 1 MiB at a time."""
    with open(path, "rb") as fh:
        head = fh.read(144)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:140] != _META_GROUP_LENGTH:
            raise ArchiveError(f"{incoming.source}: pynetdicom's spooled file has no file meta")
        fh.seek(144 + struct.unpack("<I", head[140:144])[0])
        while chunk := fh.read(_SPOOL_CHUNK):
            incoming.add(chunk)


def discard_partial_spool(assoc: Any) -> None:
    """Remove the temporary file of a data set pynetdicom was still spooling when `assoc`
    (a pynetdicom Association) ended: pynetdicom removes it only after the C-STORE handler has
    run, so a peer that aborts or vanishes mid-data-set would leave it on disk."""
    message = getattr(assoc.dimse, "message", None)
    spool = getattr(message, "_data_set_file", None)
    if spool is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(spool.name)
    if not assoc.dul.is_alive():  # nothing writes to it any more
        with contextlib.suppress(OSError, ValueError):
            spool.close()


# -- Part 10 bytes as received ----------------------------------------------------------------
_PREAMBLE = b"\x00" * 128 + b"DICM"


def _ui(tag: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, b"UI", len(value)) + value


@functools.lru_cache(maxsize=1)
def _implementation_elements() -> bytes:
    version = PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")
    if len(version) % 2:
        version += b" "
    return _ui(0x00020012, PYNETDICOM_IMPLEMENTATION_UID) + (
        struct.pack("<HH2sH", 2, 0x13, b"SH", len(version)) + version
    )


def _part10_prefix(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes | None:
    """Preamble + file meta for a data set received as-is (None: UIDs not plain ASCII).

    Byte for byte what pynetdicom's `event.encoded_dataset(include_meta=True)` puts before
    the data set, without building and encoding a pydicom FileMetaDataset per instance.
    """
    try:
        elements = b"".join(
            (
                b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01",
                _ui(0x00020002, sop_class_uid),
                _ui(0x00020003, sop_instance_uid),
                _ui(0x00020010, transfer_syntax),
                _implementation_elements(),
            )
        )
    except (UnicodeEncodeError, struct.error):
        return None
    group_length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(elements))
    return b"".join((_PREAMBLE, group_length, elements))
