"""The fast path of Loupe's storage SCP: plain storage associations without pynetdicom's DUL.

Why hand-written: pynetdicom's acceptor spends about 3 ms of CPU per received instance (its
DUL reactor thread polling the socket, an event queue between threads, a primitive object per
PDU, DIMSE message assembly through BytesIO, pydicom decoding of every command set). During a
C-MOVE the PACS waits for each C-STORE response before it sends the next instance, so that CPU
time is the throughput: about a quarter of DCMTK's storescp (bench/move_throughput.py). No
maintained Python library receives C-STORE faster, and DCMTK's storescp as a separate process
would bypass our caller checks, index and events.

So the common association takes a short path: storage SOP classes (standard, private or
unknown, each in a transfer syntax we store: contexts.negotiate_storage, which pynetdicom's
acceptor uses too) and Verification, with no role selection, user identity, asynchronous
operations window or extended negotiation. Its A-ASSOCIATE-RQ is read with MSG_PEEK and
checked (association_request.py); anything else - Query/Retrieve, storage commitment, a caller
that is not allowed, an unusual request - is left unread on the socket and handed to
pynetdicom's full acceptor on the same port, which reads it as if nothing had happened.

On the fast path one thread per association (socketserver's) reads whole PDUs with blocking
recv_into, splits PDVs, parses the small command set with struct, hands each data set to
StoreIngest.begin/finish (the same check/write/index as pynetdicom's handler; the response is
sent only after the data set is fully parsed (dataset_check.py), written and indexed), and
answers with a C-STORE-RSP encoded with struct. Protocol rules kept (PS3.8): a deadline on
every PDU (receiver_limits.py), a maximum PDU length we advertise and enforce, A-ABORT on any
PDU or PDV out of sequence, a cap on one data set's size, the association limit shared with
pynetdicom's acceptors.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom.pdu import A_ASSOCIATE_AC
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dicom_net.association_request import AssociateRequest, timeval
from dicom_net.contexts import is_storage_like, negotiate_storage
from dicom_net.ingest import IncomingInstance, StoreIngest
from dicom_net.wire import (
    A_RELEASE_RP,
    ABORT_UNEXPECTED_PDU,
    ABORT_UNRECOGNIZED_PDU,
    APPLICATION_CONTEXT_NAME,
    NO_DATASET,
    PDU_HEADER,
    PDV_HEADER,
    PeerGone,
    ProtocolError,
    a_abort,
    command_set,
    el_lo,
    el_ui,
    el_us,
    parse_command,
    pdata,
    uid_text,
    us_value,
    user_information,
)

log = logging.getLogger(__name__)

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
# What we advertise as our maximum received PDU length on the fast path, and enforce.
# Larger PDUs mean fewer reads; 1 MiB bounds what one read allocates.
FAST_MAX_PDU = 1 << 20
# One data set larger than this is refused with an A-ABORT.
MAX_DATASET_BYTES = 2 * 1024**3
MAX_COMMAND_BYTES = 64 * 1024

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122

_KNOWN_USER_ITEMS = (
    MaximumLengthNotification,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
)


def fast_path_request(
    request: AssociateRequest, allowed: Callable[[str], bool], contexts: list[PresentationContext]
) -> list[PresentationContext] | None:
    """The presentation contexts we would accept, if the fast path can serve the request."""
    prim = request.primitive
    if request.protocol_version != 0x0001:
        return None
    if str(prim.application_context_name) != APPLICATION_CONTEXT_NAME:
        return None
    if not allowed(request.calling_ae_title):
        return None
    if any(not isinstance(item, _KNOWN_USER_ITEMS) for item in prim.user_information):
        return None
    proposed = prim.presentation_context_definition_list
    for cx in proposed:
        syntax = str(cx.abstract_syntax)
        if syntax != VERIFICATION_SOP_CLASS and not is_storage_like(syntax):
            return None
    result, _roles = negotiate_storage(proposed, contexts, {})
    return result


def associate_ac(prim: A_ASSOCIATE, result: list[PresentationContext]) -> bytes:
    ac = A_ASSOCIATE()
    ac.application_context_name = APPLICATION_CONTEXT_NAME
    ac.calling_ae_title = prim.calling_ae_title
    ac.called_ae_title = prim.called_ae_title
    ac.result = 0x00
    ac.result_source = 0x01
    ac.presentation_context_definition_results_list = result
    ac.user_information = user_information(FAST_MAX_PDU)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(ac)
    return bytes(pdu.encode())


# -- one association ---------------------------------------------------------------------------
class _PduOverdue(Exception):
    """A PDU did not arrive completely within the PDU deadline."""


@dataclass
class FastAssociationStats:
    calling_ae: str = ""
    stored: int = 0
    refused: int = 0
    echoes: int = 0
    bytes: int = 0
    ended: str = ""


class FastStoreAssociation:
    """Serves one accepted storage association on `sock` until release, abort or error."""

    def __init__(
        self,
        sock: socket.socket,
        prim: A_ASSOCIATE,
        accepted: list[PresentationContext],
        ingest: StoreIngest,
        *,
        pdu_timeout: float,
    ):
        self.sock = sock
        self.calling_ae = str(prim.calling_ae_title).strip()
        self.pdu_timeout = pdu_timeout
        self.ingest = ingest
        # context id -> (abstract syntax, transfer syntax) of the accepted contexts
        self.contexts: dict[int, tuple[str, str]] = {
            int(cx.context_id): (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            for cx in accepted
            if cx.result == 0x00 and cx.context_id is not None
        }
        self.stats = FastAssociationStats(calling_ae=self.calling_ae)
        self._store: IncomingInstance | None = None  # the C-STORE data set being received
        self._buf = bytearray(2 * (FAST_MAX_PDU + 6))
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._deadline = 0.0  # time.monotonic() by which the PDU being read must be complete
        self._armed = pdu_timeout  # the socket's SO_RCVTIMEO

    # reading -------------------------------------------------------------------------------
    # One receive buffer per association, filled with whatever the kernel has (several PDUs
    # per recv when the sender is ahead): half the recv calls of reading each PDU's header
    # and body apart, and fewer chances to lose the GIL. A PDU's body is a view into the
    # buffer, valid until the next _read_pdu.
    def _fill(self, n: int) -> None:
        """Make at least n bytes available from self._start."""
        if self._end - self._start >= n:
            return
        if self._start + n > len(self._buf):  # move what is left to the front
            left = self._end - self._start
            self._buf[:left] = self._buf[self._start : self._end]
            self._start, self._end = 0, left
        view = self._view
        while self._end - self._start < n:
            k = self.sock.recv_into(view[self._end :])
            if k == 0:
                raise PeerGone
            self._end += k
            if self._end - self._start < n:
                self._check_deadline()

    def _check_deadline(self) -> None:
        """A PDU is still incomplete after a recv: has its deadline passed?

        SO_RCVTIMEO alone restarts with every recv, so a peer sending a byte now and then
        would never be timed out. Once less than half the deadline is left, the next recv's
        timeout is shortened to what is left; not before, so a PDU that arrives in many
        pieces at full speed costs no extra syscall."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _PduOverdue
        if left < self._armed / 2:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(left))
            self._armed = left

    def _start_deadline(self) -> None:
        self._deadline = time.monotonic() + self.pdu_timeout
        if self._armed != self.pdu_timeout:  # shortened for the previous PDU
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(self.pdu_timeout))
            self._armed = self.pdu_timeout

    def _read_pdu(self) -> tuple[int, memoryview]:
        self._start_deadline()
        self._fill(6)
        pdu_type, length = PDU_HEADER.unpack_from(self._buf, self._start)
        if pdu_type == 0x04 and length > FAST_MAX_PDU:
            raise ProtocolError(f"P-DATA-TF of {length} bytes, above our maximum {FAST_MAX_PDU}")
        if pdu_type != 0x04 and length > 1024:
            raise ProtocolError(f"PDU type 0x{pdu_type:02X} of {length} bytes")
        self._fill(6 + length)
        start = self._start + 6
        self._start = start + length
        return pdu_type, self._view[start : start + length]

    # serving -------------------------------------------------------------------------------
    def serve(self, ac_pdu: bytes, rq_length: int) -> FastAssociationStats:
        sock = self.sock
        # A blocking socket with kernel timeouts: Python's own timeout mode adds a poll()
        # before every recv (measured: a fifth of the syscalls of a received instance).
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(self.pdu_timeout))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(self.pdu_timeout))
        try:
            self._start_deadline()
            self._fill(rq_length)  # the A-ASSOCIATE-RQ we peeked
            self._start += rq_length
            sock.sendall(ac_pdu)
            self._data_phase()
        except ProtocolError as exc:
            self.stats.ended = f"aborted: {exc}"
            with contextlib.suppress(OSError):
                sock.sendall(a_abort(exc.reason))
        # BlockingIOError: SO_RCVTIMEO or SO_SNDTIMEO expired
        except (_PduOverdue, TimeoutError, BlockingIOError):
            self.stats.ended = f"aborted: no complete PDU within {self.pdu_timeout:g} s"
            with contextlib.suppress(OSError):
                sock.sendall(a_abort())
        except PeerGone:
            self.stats.ended = "connection closed by the peer without release"
        except OSError as exc:
            self.stats.ended = f"connection lost ({exc.strerror or exc})"
        return self.stats

    def _data_phase(self) -> None:
        try:
            self._pdus()
        finally:
            if self._store is not None:  # the association ended in the middle of a data set
                self._store.discard()
                self._store = None

    def _pdus(self) -> None:
        command: list[bytes] = []
        command_len = 0
        dataset_len = 0
        cmd: dict[int, bytes] | None = None
        cmd_cx = 0
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type == 0x05:  # A-RELEASE-RQ
                if cmd is not None or command:
                    log.warning(
                        "C-STORE association from %s released in the middle of a message",
                        self.calling_ae,
                    )
                self.sock.sendall(A_RELEASE_RP)
                self.stats.ended = "released"
                return
            if pdu_type == 0x07:  # A-ABORT
                self.stats.ended = "aborted by the peer"
                return
            if pdu_type != 0x04:
                reason = (
                    ABORT_UNEXPECTED_PDU if pdu_type in (1, 2, 3, 6) else ABORT_UNRECOGNIZED_PDU
                )
                raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02X}", reason)
            view = body
            pos, end = 0, len(body)
            if end == 0:
                raise ProtocolError("P-DATA-TF without any PDV")
            while pos < end:
                if pos + 6 > end:
                    raise ProtocolError("truncated PDV header")
                item_len, cx_id, control = PDV_HEADER.unpack_from(body, pos)
                if item_len < 2 or pos + 4 + item_len > end:
                    raise ProtocolError(f"PDV length {item_len} does not fit its PDU")
                if cx_id not in self.contexts:
                    raise ProtocolError(f"PDV on presentation context {cx_id}, not accepted")
                fragment = view[pos + 6 : pos + 4 + item_len]
                pos += 4 + item_len
                last = bool(control & 0x02)
                if control & 0x01:  # command fragment
                    if cmd is not None:
                        raise ProtocolError("a command arrived before the previous data set")
                    if command and cx_id != cmd_cx:
                        raise ProtocolError("command fragments on different contexts")
                    cmd_cx = cx_id
                    command.append(bytes(fragment))  # the buffer is reused
                    command_len += len(fragment)
                    if command_len > MAX_COMMAND_BYTES:
                        raise ProtocolError("command set longer than 64 KiB")
                    if not last:
                        continue
                    cmd = parse_command(b"".join(command))
                    command.clear()
                    command_len = 0
                    has_data = us_value(cmd, 0x0800, "CommandDataSetType") != NO_DATASET
                    self._command(cmd, cmd_cx, has_data)
                    if not has_data:
                        cmd = None
                    continue
                # data set fragment
                if cmd is None:
                    raise ProtocolError("a data set arrived without its command")
                if cx_id != cmd_cx:
                    raise ProtocolError("data set and command on different contexts")
                dataset_len += len(fragment)
                if dataset_len > MAX_DATASET_BYTES:
                    raise ProtocolError(
                        f"data set larger than {MAX_DATASET_BYTES // 1024**3} GiB", 0
                    )
                if self._store is not None:
                    self._store.add(fragment)  # written to disk now, while the peer sends
                if not last:
                    continue
                self._store_complete(cmd, cmd_cx, dataset_len)
                dataset_len = 0
                cmd = None

    def _command(self, cmd: dict[int, bytes], cx_id: int, has_data: bool) -> None:
        """A complete command set: answer C-ECHO, start receiving a C-STORE's data set."""
        field = us_value(cmd, 0x0100, "CommandField")
        if field == C_CANCEL_RQ:
            return  # nothing of ours to cancel
        msg_id = us_value(cmd, 0x0110, "MessageID")
        abstract, transfer = self.contexts[cx_id]
        if field == C_ECHO_RQ:
            if has_data:
                raise ProtocolError("C-ECHO-RQ with a data set")
            self.stats.echoes += 1
            self.sock.sendall(
                pdata(
                    cx_id,
                    0x03,
                    command_set(
                        (
                            el_ui(0x0002, cmd.get(0x0002, abstract.encode("ascii"))),
                            el_us(0x0100, C_ECHO_RSP),
                            el_us(0x0120, msg_id),
                            el_us(0x0800, NO_DATASET),
                            el_us(0x0900, 0x0000),
                        )
                    ),
                )
            )
            return
        if field != C_STORE_RQ:
            raise ProtocolError(
                f"DIMSE command 0x{field:04X} on a storage association", ABORT_UNEXPECTED_PDU
            )
        if not has_data:
            raise ProtocolError("C-STORE-RQ without a data set")
        sop_class = cmd.get(0x0002)
        sop_instance = cmd.get(0x1000)
        if not sop_class or not sop_instance:
            raise ProtocolError("C-STORE-RQ without Affected SOP Class/Instance UID")
        if uid_text(sop_class) != abstract:
            return  # refused when the data set has arrived (_store_complete)
        self._store = self.ingest.begin(
            calling_ae=self.calling_ae,
            message_id=msg_id,
            sop_class_uid=uid_text(sop_class),
            sop_instance_uid=uid_text(sop_instance),
            transfer_syntax=transfer,
        )

    def _store_complete(self, cmd: dict[int, bytes], cx_id: int, size: int) -> None:
        msg_id = us_value(cmd, 0x0110, "MessageID")
        sop_class = cmd[0x0002]
        sop_instance = cmd[0x1000]
        store, self._store = self._store, None
        if store is None:
            status = STATUS_SOP_CLASS_NOT_SUPPORTED
            comment = "SOP Class differs from the presentation context's"
            log.warning(
                "refused C-STORE from %s (message %d): %s", self.calling_ae, msg_id, comment
            )
        else:
            try:
                status, comment = self.ingest.finish(store)
            except Exception:  # never lose the association to a bug in a listener
                log.exception("C-STORE from %s (message %d) failed", self.calling_ae, msg_id)
                status, comment = STATUS_PROCESSING_FAILURE, "internal error"
                store.discard()
        if status == 0:
            self.stats.stored += 1
            self.stats.bytes += size
        else:
            self.stats.refused += 1
        elements = [
            el_ui(0x0002, sop_class),
            el_us(0x0100, C_STORE_RSP),
            el_us(0x0120, msg_id),
            el_us(0x0800, NO_DATASET),
            el_us(0x0900, status),
        ]
        if comment and status != 0:
            elements.append(el_lo(0x0902, comment))
        elements.append(el_ui(0x1000, sop_instance))
        self.sock.sendall(pdata(cx_id, 0x03, command_set(elements)))


def serve_fast(
    sock: socket.socket,
    request: AssociateRequest,
    accepted: list[PresentationContext],
    ingest: StoreIngest,
    *,
    pdu_timeout: float,
    address: Any,
) -> FastAssociationStats:
    """Accept and serve one fast-path association; logs one line at the end (no patient data)."""
    started = time.perf_counter()
    prim = request.primitive
    assoc = FastStoreAssociation(sock, prim, accepted, ingest, pdu_timeout=pdu_timeout)
    if not assoc.contexts:
        # Nothing acceptable proposed: let the requestor know through a normal AC with all
        # contexts rejected, as pynetdicom does.
        log.info("association from %s: no acceptable presentation context", assoc.calling_ae)
    stats = assoc.serve(associate_ac(prim, accepted), len(request.raw))
    log.info(
        "storage association from %s (%s): %d stored, %d refused, %.1f MB in %.2f s; %s",
        stats.calling_ae,
        address[0] if isinstance(address, tuple) else address,
        stats.stored,
        stats.refused,
        stats.bytes / 1e6,
        time.perf_counter() - started,
        stats.ended,
    )
    return stats
