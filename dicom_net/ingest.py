"""The C-STORE handler shared by our storage SCP and by C-GET: check, write as received, index."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dicom_net.archive import LocalArchive, StoredInstance
from dicom_net.errors import ArchiveError
from dicom_net.header import check_complete, read_header

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass
class IngestCounters:
    stored: int = 0
    replaced: int = 0
    refused: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


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

    def __call__(self, event: Any) -> int:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        req = event.request
        source = f"C-STORE from {calling_ae} (message {req.MessageID})"
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # pynetdicom raises various errors for unparsable meta
            return self._refuse(
                source, f"cannot decode the request ({exc})", STATUS_CANNOT_UNDERSTAND
            )
        try:
            check_complete(data, source=source)
            header = read_header(data, source=source)
        except ArchiveError as exc:
            return self._refuse(source, str(exc), STATUS_CANNOT_UNDERSTAND)
        if header.sop_instance_uid != str(req.AffectedSOPInstanceUID).strip():
            return self._refuse(
                source,
                "SOP Instance UID in the data set differs from the request's Affected SOP "
                "Instance UID",
                STATUS_DATASET_MISMATCH,
            )
        node = self.node_for_ae(calling_ae) if self.node_for_ae else None
        try:
            stored = self.archive.store_bytes(
                data, header=header, source_ae=calling_ae, source_node=node, source=source
            )
        except ArchiveError as exc:
            log.error("%s", exc)
            return self._refuse(source, str(exc), STATUS_OUT_OF_RESOURCES)
        with self.counters.lock:
            self.counters.stored += 1
            self.counters.bytes += len(data)
            if stored.replaced:
                self.counters.replaced += 1
        if self.on_stored is not None:
            try:
                self.on_stored(stored)
            except Exception:  # a listener must never fail the store
                log.exception("on_stored listener failed")
        return STATUS_SUCCESS

    def _refuse(self, source: str, reason: str, status: int) -> int:
        with self.counters.lock:
            self.counters.refused += 1
        log.warning("refused %s: %s (status 0x%04X)", source, reason, status)
        return status
