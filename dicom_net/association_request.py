"""A connection before it is an association: its A-ASSOCIATE-RQ, read within ARTIM and checked
before either receive path (fast_store.py, pynetdicom's acceptor) sees it.

The request is read with MSG_PEEK, so it stays on the socket for whichever path serves it.
What is not an A-ASSOCIATE-RQ, or one that cannot be decoded, is answered by the receiver
(storage_server.py) with answer_and_close, before pynetdicom sees it: no thread of
pynetdicom's waits for its ACSE timeout on it, and no association slot is ever taken for it.

PS3.8 9.2 (state machine), for a connection awaiting its A-ASSOCIATE-RQ (Sta2):
- ARTIM expires (Evt18) -> AA-2: close the transport connection, nothing sent.
- an A-ABORT arrives (Evt16) -> AA-2: close.
- any other PDU, or an unrecognised or invalid one (Evt19) -> AA-1: send an A-ABORT and wait
  for the peer to close (Sta13), ARTIM bounding that wait.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from dataclasses import dataclass

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE

from dicom_net.wire import (
    ABORT_UNEXPECTED_PDU,
    ABORT_UNRECOGNIZED_PDU,
    PDU_HEADER,
    PeerGone,
    ProtocolError,
)

# An A-ASSOCIATE-RQ up to this length is peeked and checked here; it must fit in the socket's
# receive buffer while unread (on Linux a new connection's takes about 128 KiB: measured by
# peeking on loopback).
MAX_PEEKED_RQ = 64 * 1024
# Longer requests go to pynetdicom, which reads and checks them itself (a real one with 128
# presentation contexts and a few transfer syntaxes each is under 40 KiB); beyond this one is
# refused, so that a claimed length cannot make pynetdicom buffer gigabytes.
MAX_ASSOCIATE_RQ = 1024 * 1024

A_ABORT_PDU = 0x07
_KNOWN_PDU_TYPES = frozenset((0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07))
_RDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer has shut down its sending side


class ArtimExpired(TimeoutError):
    """The connection did not deliver its A-ASSOCIATE-RQ within ARTIM."""


def timeval(seconds: float) -> bytes:
    """A struct timeval for SO_RCVTIMEO/SO_SNDTIMEO; never 0, which would mean "no timeout"."""
    seconds = max(seconds, 0.001)
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))


def set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Blocking socket whose recv gives up after `seconds` (raising BlockingIOError).

    A kernel timeout (SO_RCVTIMEO) bounds a whole recv with MSG_WAITALL, where Python's
    timeout mode would poll once and return what is there."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))


def clear_receive_timeout(sock: socket.socket) -> None:
    """Back to a plain blocking socket, as accepted (pynetdicom uses its own timers)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))


def peek_associate_rq(sock: socket.socket, deadline: float) -> bytes | None:
    """The A-ASSOCIATE-RQ PDU waiting on `sock` (header included), read without consuming it.

    None when it is longer than MAX_PEEKED_RQ (pynetdicom reads it). Raises ArtimExpired when
    it is not complete by `deadline` (time.monotonic()), PeerGone when the peer closes or
    aborts first, ProtocolError when the first PDU is something else.
    """
    head = _peek(sock, 6, deadline)
    pdu_type, length = PDU_HEADER.unpack(head)
    if pdu_type == A_ABORT_PDU:
        raise PeerGone
    if pdu_type not in _KNOWN_PDU_TYPES:
        raise ProtocolError(f"unrecognised PDU type 0x{pdu_type:02X}", ABORT_UNRECOGNIZED_PDU)
    if pdu_type != 0x01:
        raise ProtocolError(
            f"PDU type 0x{pdu_type:02X} before any A-ASSOCIATE-RQ", ABORT_UNEXPECTED_PDU
        )
    if length > MAX_ASSOCIATE_RQ:
        raise ProtocolError(f"A-ASSOCIATE-RQ of {length} bytes")
    if length > MAX_PEEKED_RQ:
        return None
    return _peek(sock, 6 + length, deadline)


def _peek(sock: socket.socket, n: int, deadline: float) -> bytes:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ArtimExpired
        set_receive_timeout(sock, remaining)
        try:
            data = sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)
        except BlockingIOError:  # SO_RCVTIMEO expired with nothing received
            raise ArtimExpired from None
        if len(data) == n:
            return data
        if not data or _peer_closed(sock):
            raise PeerGone
        # Fewer bytes than asked: the timeout expired (checked above) or a signal interrupted
        # the wait; ask again for what is left of ARTIM.


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed its side (a peek of a partial PDU then returns at once)."""
    if not _RDHUP:
        return True  # cannot tell a signal from a close here: treat it as a close
    poller = select.poll()
    poller.register(sock, select.POLLIN | _RDHUP)
    return any(ev & (_RDHUP | select.POLLHUP | select.POLLERR) for _fd, ev in poller.poll(0))


@dataclass(frozen=True)
class AssociateRequest:
    """A decoded, well-formed A-ASSOCIATE-RQ and its bytes (still unread on the socket)."""

    raw: bytes
    protocol_version: int
    primitive: A_ASSOCIATE

    @property
    def calling_ae_title(self) -> str:
        return str(self.primitive.calling_ae_title).strip()

    @property
    def called_ae_title(self) -> str:
        return str(self.primitive.called_ae_title).strip()


def decode_associate_rq(data: bytes) -> AssociateRequest:
    """The request decoded by pynetdicom's classes; ProtocolError when it is malformed.

    Checked here because both receive paths would otherwise fail on it in their own way:
    pynetdicom's decoder raises several kinds of exception (UnicodeDecodeError for a
    non-ASCII UID or AE title, ValueError, struct.error ...) and its negotiation assumes what
    PS3.8 9.3.2.2 requires of each presentation context: one abstract syntax sub-item and at
    least one transfer syntax sub-item.
    """
    try:
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(data)
        prim = pdu.to_primitive()
    except Exception as exc:  # what pynetdicom's decoder raises varies with the damage
        raise ProtocolError(f"A-ASSOCIATE-RQ cannot be decoded ({type(exc).__name__})") from exc
    contexts = prim.presentation_context_definition_list
    if not contexts:
        raise ProtocolError("A-ASSOCIATE-RQ without a presentation context")
    for cx in contexts:
        if not cx.abstract_syntax:
            raise ProtocolError(f"presentation context {cx.context_id} has no abstract syntax")
        if not cx.transfer_syntax:
            raise ProtocolError(f"presentation context {cx.context_id} has no transfer syntax")
    return AssociateRequest(data, int(pdu.protocol_version), prim)


def close_now(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def answer_and_close(sock: socket.socket, pdu: bytes, deadline: float) -> None:
    """Send our last PDU (A-ABORT or A-ASSOCIATE-RJ), then close as drain_and_close does."""
    try:
        sock.sendall(pdu)
    except OSError:
        close_now(sock)
        return
    drain_and_close(sock, deadline)


def drain_and_close(sock: socket.socket, deadline: float) -> None:
    """Close our side, then wait until the peer closes or `deadline` passes (PS3.8 Sta13),
    reading and dropping whatever it still sends.

    Closing with unread data would send a TCP reset, which can destroy our last PDU (an
    A-ABORT, A-ASSOCIATE-RJ or A-RELEASE-RP) before the peer has read it."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sink = bytearray(4096)
        while (remaining := deadline - time.monotonic()) > 0:
            set_receive_timeout(sock, remaining)
            if sock.recv_into(sink) == 0:
                break
    except OSError:  # includes the timeout: close anyway
        pass
    close_now(sock)
