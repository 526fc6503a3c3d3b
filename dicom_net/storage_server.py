"""Loupe's listening AE: the storage SCP (always) and, optionally, a Query/Retrieve SCP."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicom_net.ae import make_ae
from dicom_net.archive import LocalArchive, StoredInstance
from dicom_net.association_request import (
    MAX_ASSOCIATE_RQ,
    ArtimExpired,
    AssociateRequest,
    answer_and_close,
    clear_receive_timeout,
    close_now,
    decode_associate_rq,
    drain_and_close,
    peek_associate_rq,
)
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
from dicom_net.fast_store import FAST_MAX_PDU, fast_path_request, serve_fast
from dicom_net.ingest import IngestCounters, StoreIngest, discard_partial_spool
from dicom_net.nodes import LocalNode
from dicom_net.qr_provider import QueryRetrieveProvider
from dicom_net.receiver_limits import AssociationSlots, ReceiverLimits, SlotHolder
from dicom_net.tls_receiver import TlsBridge, accept_tls
from dicom_net.wire import (
    ABORT_INVALID_PDU_PARAMETER,
    PeerGone,
    ProtocolError,
    a_abort,
    a_associate_rj,
)

log = logging.getLogger(__name__)

# pynetdicom treats an empty list as "anyone"; this title stands for "nobody".
_NOBODY = "~NO-CALLER-OK~~~"

# How often a handler thread looks at its pynetdicom association, and how long after
# pynetdicom's own timer (set to the same value) it steps in.
_WATCH_INTERVAL_S = 0.25
_WATCH_GRACE_S = 1.0
# pynetdicom counts its acceptor threads against AE.maximum_associations, including threads
# whose association has ended or not begun; our AssociationSlots are the limit instead.
_PYNETDICOM_NO_LIMIT = 1_000_000
# The longest PDU pynetdicom may read on our behalf: the maximum we advertise for P-DATA,
# and the longest A-ASSOCIATE-RQ we take (the same 1 MiB).
MAX_RECEIVED_PDU = max(FAST_MAX_PDU, MAX_ASSOCIATE_RQ)

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


class _LoupeAssociationServer(ThreadedAssociationServer):
    fast: _FastPath | None = None
    tls_context: ssl.SSLContext | None = None  # [local] tls: TLS-only port
    called_ae_title: str  # ours: requests for any other are rejected
    limits: ReceiverLimits
    slots: AssociationSlots
    # Handler threads last as long as their connection: never keep the process alive.
    daemon_threads = True
    # Connections waiting to be accepted (socketserver's default is 5): a PACS opening
    # several associations at once, beside a burst of junk, is not turned away by the kernel.
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()  # open, on either path
        self.connections_lock = threading.Lock()


class _Progress:
    """When a pynetdicom association last sent or received a whole PDU (time.monotonic())."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self, _event: Any) -> None:
        self.last = time.monotonic()


class _LoupeRequestHandler(RequestHandler):
    """One connection: its A-ASSOCIATE-RQ checked within ARTIM, then the fast path for plain
    storage, pynetdicom for everything else, both under one association limit."""

    server: _LoupeAssociationServer

    def handle(self) -> None:
        server = self.server
        sock: socket.socket = self.request
        with server.connections_lock:
            server.connections.add(sock)
        try:
            if server.tls_context is None:
                self._handle(sock, time.monotonic() + server.limits.artim_s)
            else:
                self._handle_tls(sock, server.tls_context)
        finally:
            with server.connections_lock:
                server.connections.discard(sock)

    def _handle_tls(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        """The TLS handshake within ARTIM, then the connection served as a plain one through
        a TlsBridge (tls_receiver.py); ARTIM's deadline covers handshake and request."""
        server = self.server
        artim_deadline = time.monotonic() + server.limits.artim_s
        tls = accept_tls(sock, context, artim_deadline, self._peer())
        if tls is None:
            return
        bridge = TlsBridge(tls, name=f"loupe-tls-{self._peer()}")
        # stop() shuts the plain end down (`sock` is now detached); the receiver then
        # returns, and bridge.close() ends the TLS connection.
        with server.connections_lock:
            server.connections.add(bridge.plain)
        try:
            self.request = bridge.plain  # what pynetdicom's acceptor wraps
            self._handle(bridge.plain, artim_deadline)
        finally:
            bridge.close()
            with server.connections_lock:
                server.connections.discard(bridge.plain)

    def _handle(self, sock: socket.socket, artim_deadline: float) -> None:
        server = self.server
        limits = server.limits
        peer = self._peer()
        request: AssociateRequest | None = None
        try:
            raw = peek_associate_rq(sock, artim_deadline)
            if raw is not None:
                request = decode_associate_rq(raw)
        except ArtimExpired:
            log.info(
                "connection from %s closed: no A-ASSOCIATE-RQ within %g s", peer, limits.artim_s
            )
            close_now(sock)
            return
        except ProtocolError as exc:
            # A-ABORT, not A-ASSOCIATE-RJ: PS3.8's state machine answers an unrecognised or
            # invalid PDU received while awaiting the A-ASSOCIATE-RQ with an A-ABORT (AA-1),
            # and the reasons an A-ASSOCIATE-RJ can give (AE title, application context,
            # protocol version, limits) presume a request that could be read. The abort's
            # source is the service provider (2), its reason from PS3.8 9.3.8.
            log.warning("connection from %s aborted: %s", peer, exc)
            answer_and_close(sock, a_abort(exc.reason), artim_deadline)
            return
        except (PeerGone, OSError):  # closed, aborted or reset before asking for anything
            close_now(sock)
            return
        if request is not None and request.called_ae_title != server.called_ae_title:
            log.warning(
                "association from %s (%s) rejected: it called AE title %r, ours is %r",
                request.calling_ae_title,
                peer,
                request.called_ae_title,
                server.called_ae_title,
            )
            # rejected-permanent (1), service-user (1), called AE title not recognized (7):
            # PS3.8 9.3.4. pynetdicom's acceptor answers the same for requests too long to
            # peek (require_called_aet in StorageServer.start).
            answer_and_close(sock, a_associate_rj(1, 1, 7), artim_deadline)
            return
        fast = server.fast
        accepted = None
        if fast is not None and request is not None:
            accepted = fast_path_request(request, fast.allowed, fast.contexts)
        if request is None or accepted is None:
            clear_receive_timeout(sock)
            self._serve_pynetdicom(sock, artim_deadline)
            return
        assert fast is not None
        if not server.slots.acquire():
            log.warning(
                "association from %s (%s) rejected: %d associations already open (the maximum)",
                request.calling_ae_title,
                peer,
                server.slots.limit,
            )
            # transient, service provider (presentation related), local limit exceeded
            answer_and_close(sock, a_associate_rj(2, 3, 2), artim_deadline)
            return
        try:
            serve_fast(
                sock,
                request,
                accepted,
                fast.ingest,
                pdu_timeout=limits.pdu_timeout_s,
                address=self.client_address,
            )
        finally:
            server.slots.release()
            drain_and_close(sock, time.monotonic() + limits.artim_s)

    def _serve_pynetdicom(self, sock: socket.socket, artim_deadline: float) -> None:
        """pynetdicom's acceptor (what RequestHandler.handle does), watched from this thread.

        Its slot is taken when the request arrives (EVT_REQUESTED) and given back as soon as
        the association no longer exists. The watch closes the connection when pynetdicom's
        own timers cannot: its reader blocks inside a PDU that arrives a byte at a time, and
        its abort then waits for that reader forever.
        """
        limits = self.server.limits
        holder = SlotHolder(self.server.slots)
        progress = _Progress()
        requested = threading.Event()
        assoc = self._create_association()
        _refuse_long_pdus(assoc, sock, self._peer())

        def on_requested(_event: Any) -> None:
            requested.set()
            if holder.acquire():
                return
            rq = assoc.requestor.primitive
            log.warning(
                "association from %s (%s) rejected: %d associations already open (the maximum)",
                str(rq.calling_ae_title).strip() if rq is not None else "?",
                self._peer(),
                self.server.slots.limit,
            )
            # As pynetdicom rejects: transient, service provider (presentation related),
            # local limit exceeded; then wait for the peer to close (ARTIM bounds the wait).
            assoc.acse.send_reject(0x02, 0x03, 0x02)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()

        def on_ended(_event: Any) -> None:
            holder.release()

        assoc.bind(evt.EVT_REQUESTED, on_requested)
        for event in (evt.EVT_REJECTED, evt.EVT_ABORTED, evt.EVT_RELEASED, evt.EVT_CONN_CLOSE):
            assoc.bind(event, on_ended)
        assoc.bind(evt.EVT_PDU_RECV, progress.touch)
        assoc.bind(evt.EVT_PDU_SENT, progress.touch)
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        try:
            while assoc.is_alive():
                assoc.join(_WATCH_INTERVAL_S)
                late = time.monotonic() - _WATCH_GRACE_S
                if not requested.is_set() and late > artim_deadline:
                    why = f"no A-ASSOCIATE-RQ within {limits.artim_s:g} s"
                elif (
                    requested.is_set()
                    and not assoc.is_rejected
                    and late > progress.last + limits.pdu_timeout_s
                ):
                    why = f"no complete PDU within {limits.pdu_timeout_s:g} s"
                else:
                    continue
                if assoc.is_alive():
                    log.warning("association from %s aborted: %s", self._peer(), why)
                    holder.release()
                    # The blocked reader then sees the connection closed, and pynetdicom
                    # ends the association as if the peer had gone.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    assoc.join(max(limits.artim_s, 5.0))
                break
        finally:
            holder.release()
            discard_partial_spool(assoc)

    def _peer(self) -> str:
        address = self.client_address
        return str(address[0]) if isinstance(address, tuple) else str(address)


def _refuse_long_pdus(assoc: Association, sock: socket.socket, peer: str) -> None:
    """Make pynetdicom's reader refuse a PDU longer than we accept before it buffers it.

    pynetdicom reads every PDU whole into memory, whatever length its header claims (up to
    4 GiB), and does not hold the peer to the maximum PDU length it advertised. Its reader
    asks the socket for a PDU's 6-byte header, then for the rest in one call: that call is
    checked here. The reader's thread is the only one that sends on the socket, so it can
    send the A-ABORT itself; pynetdicom then sees the connection closed and ends the
    association.
    """
    transport = assoc.dul.socket
    assert transport is not None
    read = transport.recv

    def recv(nr_bytes: int) -> bytearray:
        if nr_bytes <= MAX_RECEIVED_PDU:
            return read(nr_bytes)
        log.warning(
            "association from %s aborted: PDU of %d bytes, above our maximum %d",
            peer,
            nr_bytes,
            MAX_RECEIVED_PDU,
        )
        with contextlib.suppress(OSError):
            sock.sendall(a_abort(ABORT_INVALID_PDU_PARAMETER))
            sock.shutdown(socket.SHUT_RDWR)
        return bytearray()

    transport.recv = recv  # type: ignore[method-assign]


class StorageServer:
    """Listens on `local.port`; stores what allowed callers send to `local.ae_title` into the
    archive, once fully parsed (dataset_check.py).

    With `qr_destinations` it also answers C-FIND/C-MOVE/C-GET from the archive, moving to
    the AE titles listed there ({ae_title: (host, port)}). `limits`: the association limit
    and timeouts (receiver_limits.py).
    """

    def __init__(
        self,
        archive: LocalArchive,
        local: LocalNode,
        *,
        node_for_ae: Callable[[str], str | None] | None = None,
        on_stored: Callable[[StoredInstance], None] | None = None,
        qr_destinations: Mapping[str, tuple[str, int]] | None = None,
        limits: ReceiverLimits | None = None,
    ):
        self.archive = archive
        self.local = local
        self.limits = limits if limits is not None else ReceiverLimits()
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
        # pynetdicom's acceptor: how long it waits for the A-ASSOCIATE-RQ and, after a reject
        # or abort, for the peer to close (its ARTIM); how long without a PDU it aborts.
        ae.acse_timeout = self.limits.artim_s
        ae.network_timeout = self.limits.pdu_timeout_s
        ae.maximum_associations = _PYNETDICOM_NO_LIMIT
        # What pynetdicom's acceptor advertises (make_ae's 0 means unlimited): data sets are
        # spooled to disk (ae.py), so a PDU is the most one association holds in memory.
        ae.maximum_pdu_size = FAST_MAX_PDU
        # Only associations that call our AE title (PS3.8: A-ASSOCIATE-RJ "called AE title not
        # recognized" otherwise); compared without its padding spaces, case-sensitive.
        ae.require_called_aet = True
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
        server.called_ae_title = self.local.ae_title.strip()
        server.limits = self.limits
        server.slots = AssociationSlots(self.limits.max_associations)
        if self.local.tls is not None:
            try:
                server.tls_context = self.local.tls.server_context()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                server.server_close()
                raise DicomNetError(
                    f"cannot use the TLS certificate or key of [local] tls ({exc}): check "
                    "that cert and key are a matching PEM pair, and ca a PEM CA certificate"
                ) from exc
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
            with server.connections_lock:
                open_sockets = list(server.connections)
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
