"""Loupe's listening AE: the storage SCP (always) and, optionally, a Query/Retrieve SCP."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

from dicom_net.ae import make_ae
from dicom_net.archive import LocalArchive, StoredInstance
from dicom_net.contexts import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    UNCOMPRESSED_SYNTAXES,
    VERIFICATION,
    storage_scp_contexts,
)
from dicom_net.errors import DicomNetError
from dicom_net.ingest import IngestCounters, StoreIngest
from dicom_net.nodes import LocalNode
from dicom_net.qr_provider import QueryRetrieveProvider

log = logging.getLogger(__name__)

# pynetdicom treats an empty list as "anyone"; this title stands for "nobody".
_NOBODY = "~NO-CALLER-OK~~~"

_QR_MODELS: tuple[str, ...] = (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_MOVE,
    PATIENT_ROOT_GET,
    STUDY_ROOT_FIND,
    STUDY_ROOT_MOVE,
    STUDY_ROOT_GET,
)


class StorageServer:
    """Listens on `local.port`; stores what allowed callers send into the archive.

    With `qr_destinations` it also answers C-FIND/C-MOVE/C-GET from the archive, moving to
    the AE titles listed there ({ae_title: (host, port)}).
    """

    def __init__(
        self,
        archive: LocalArchive,
        local: LocalNode,
        *,
        node_for_ae: Callable[[str], str | None] | None = None,
        on_stored: Callable[[StoredInstance], None] | None = None,
        qr_destinations: Mapping[str, tuple[str, int]] | None = None,
    ):
        self.archive = archive
        self.local = local
        self.ingest = StoreIngest(archive, node_for_ae=node_for_ae, on_stored=on_stored)
        self.qr = (
            QueryRetrieveProvider(archive, qr_destinations) if qr_destinations is not None else None
        )
        self._server: ThreadedAssociationServer | None = None

    @property
    def counters(self) -> IngestCounters:
        return self.ingest.counters

    @property
    def port(self) -> int:
        if self._server is None:
            return self.local.port
        return int(self._server.server_address[1])

    def start(self) -> None:
        ae = make_ae(self.local)
        for cx in storage_scp_contexts():
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax)
        ae.add_supported_context(VERIFICATION, list(UNCOMPRESSED_SYNTAXES))
        handlers: list[Any] = [(evt.EVT_C_STORE, self.ingest)]
        if self.qr is not None:
            for model in _QR_MODELS:
                ae.add_supported_context(model, list(UNCOMPRESSED_SYNTAXES))
            handlers += [
                (evt.EVT_C_FIND, self.qr.on_find),
                (evt.EVT_C_MOVE, self.qr.on_move),
                (evt.EVT_C_GET, self.qr.on_get),
            ]
        allowed = [a for a in self.local.allowed_callers if a != "*"]
        if "*" not in self.local.allowed_callers:
            if not allowed:
                log.info(
                    "no calling AE title is allowed to store to %s: set [local] "
                    "allowed_callers or configure [[nodes]]",
                    self.local.ae_title,
                )
                allowed = [_NOBODY]
            ae.require_calling_aet = allowed
        try:
            self._server = ae.start_server(
                (self.local.bind, self.local.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DicomNetError(
                    f"port {self.local.port} is already in use (another Loupe or DICOM "
                    "receiver?): stop it or set [local] port to a free port, and tell the "
                    "PACS administrator the new port"
                ) from exc
            raise DicomNetError(
                f"cannot listen on {self.local.bind}:{self.local.port}: {exc.strerror}"
            ) from exc
        log.info("storage SCP %s listening on port %d", self.local.ae_title, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
