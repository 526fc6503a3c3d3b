"""Loupe's listening AE: the storage SCP (always) and, optionally, a Query/Retrieve SCP."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicom_net.ae import ACSE_TIMEOUT_S, NETWORK_TIMEOUT_S, make_ae
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
from dicom_net.fast_store import fast_path_request, peek_associate_rq, serve_fast
from dicom_net.ingest import IngestCounters, StoreIngest
from dicom_net.nodes import LocalNode
from dicom_net.qr_provider import QueryRetrieveProvider
from dicom_net.wire import a_associate_rj

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


@dataclass
class _FastPath:
    """What the fast storage path needs to know; shared by the server's handler threads."""

    ingest: StoreIngest
    allowed: Callable[[str], bool]
    contexts: list[PresentationContext]
    active: set[socket.socket] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    associations: int = 0


class _LoupeAssociationServer(ThreadedAssociationServer):
    fast: _FastPath | None = None


class _LoupeRequestHandler(RequestHandler):
    """Plain storage associations take the fast path; everything else goes to pynetdicom."""

    server: _LoupeAssociationServer

    def handle(self) -> None:
        fast = self.server.fast
        sock: socket.socket = self.request
        if fast is None:
            super().handle()
            return
        timeout = sock.gettimeout()
        try:
            peeked = peek_associate_rq(sock, ACSE_TIMEOUT_S)
        except OSError:  # includes the timeout: ARTIM expired before any request
            self._close(sock)
            return
        request = fast_path_request(peeked, fast.allowed, fast.contexts) if peeked else None
        if request is None or peeked is None:
            sock.settimeout(timeout)
            super().handle()
            return
        prim, accepted = request
        with fast.lock:
            busy = fast.associations + len(self.server.active_associations)
            if busy >= self.server.ae.maximum_associations:
                full = True
            else:
                full = False
                fast.associations += 1
                fast.active.add(sock)
        if full:
            log.warning(
                "association from %s rejected: %d associations already open (the maximum)",
                str(prim.calling_ae_title).strip(),
                busy,
            )
            with contextlib.suppress(OSError):
                sock.sendall(a_associate_rj(2, 3, 2))  # transient, local limit exceeded
            self._close(sock)
            return
        try:
            serve_fast(
                sock,
                peeked,
                prim,
                accepted,
                fast.ingest,
                timeout=NETWORK_TIMEOUT_S,
                address=self.client_address,
            )
        finally:
            with fast.lock:
                fast.associations -= 1
                fast.active.discard(sock)
            self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


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
        self._server: _LoupeAssociationServer | None = None
        self._thread: threading.Thread | None = None

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
        any_caller = "*" in self.local.allowed_callers
        if not any_caller:
            if not allowed:
                log.info(
                    "no calling AE title is allowed to store to %s: set [local] "
                    "allowed_callers or configure [[nodes]]",
                    self.local.ae_title,
                )
                allowed = [_NOBODY]
            ae.require_calling_aet = allowed
        allowed_set = frozenset(allowed)
        try:
            server = ae.make_server(
                (self.local.bind, self.local.port),
                evt_handlers=handlers,
                server_class=_LoupeAssociationServer,
                request_handler=_LoupeRequestHandler,
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
        assert isinstance(server, _LoupeAssociationServer)
        if self.local.fast_store:
            server.fast = _FastPath(
                ingest=self.ingest,
                allowed=(lambda _ae: True) if any_caller else allowed_set.__contains__,
                contexts=list(ae.supported_contexts),
            )
        ae._servers.append(server)  # as AE.start_server does: AE.shutdown() stops it
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"loupe-scp-{self.port_of(server)}", daemon=True
        )
        self._thread.start()
        self._server = server
        log.info("storage SCP %s listening on port %d", self.local.ae_title, self.port)

    @staticmethod
    def port_of(server: ThreadedAssociationServer) -> int:
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            if server.fast is not None:
                with server.fast.lock:
                    open_sockets = list(server.fast.active)
                for sock in open_sockets:  # ends their threads: recv returns or fails
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            if self._thread is not None:
                self._thread.join(timeout=5)
                self._thread = None

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
