"""A raw-socket association requestor for tests: what well-behaved peers send, and what they
never send, byte for byte (PS3.8 PDUs, PS3.7 command sets)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from dicom_net.fast_store import FAST_MAX_PDU

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_ABORT = 0x02, 0x03, 0x04, 0x07
A_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, length = struct.unpack(">BxI", recv_exact(sock, 6))
    return pdu_type, recv_exact(sock, length)


def associate_rq(
    abstract: str = CT_IMAGE,
    syntax: str = EXPLICIT_LE,
    calling: str = "RAWSCU",
    called: str = "LOUPE",
) -> bytes:
    """A well-formed A-ASSOCIATE-RQ proposing one context (id 1), encoded by pynetdicom."""
    cx = build_context(abstract, [syntax])
    cx.context_id = 1
    rq = A_ASSOCIATE()
    rq.application_context_name = "1.2.840.10008.3.1.1.1"
    rq.calling_ae_title = calling
    rq.called_ae_title = called
    rq.presentation_context_definition_list = [cx]
    max_len = MaximumLengthNotification()
    max_len.maximum_length_received = 16384
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    rq.user_information = [max_len, impl]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(rq)
    return bytes(pdu.encode())


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(body)) + body


def handmade_rq(
    contexts: list[tuple[int, bytes | None, list[bytes]]],
    calling: bytes = b"RAWSCU",
    called: bytes = b"LOUPE",
) -> bytes:
    """An A-ASSOCIATE-RQ assembled item by item (PS3.8 9.3.2), for requests no encoder would
    produce: contexts as (id, abstract syntax or None for none, transfer syntaxes)."""
    items = _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cx_id, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract) if abstract is not None else b""
        sub += b"".join(_item(0x40, ts) for ts in syntaxes)
        items += _item(0x20, bytes((cx_id, 0, 0, 0)) + sub)
    items += _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = struct.pack(">H2x16s16s32x", 1, called.ljust(16), calling.ljust(16)) + items
    return struct.pack(">BxI", 0x01, len(body)) + body


def request(port: int, rq: bytes, timeout: float = 10) -> tuple[socket.socket, int, bytes]:
    """Connect, send `rq`; the socket and the answer PDU (type, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(rq)
    pdu_type, body = read_pdu(sock)
    return sock, pdu_type, body


def associate(
    port: int, abstract: str = CT_IMAGE, syntax: str = EXPLICIT_LE, *, fast: bool = True
) -> socket.socket:
    """Connect as RAWSCU and negotiate one context (id 1); returns the socket."""
    sock, pdu_type, body = request(port, associate_rq(abstract, syntax))
    assert pdu_type == A_ASSOCIATE_AC, f"expected A-ASSOCIATE-AC, got PDU type {pdu_type}"
    if fast:  # our advertised maximum PDU length (user information item 0x51)
        assert struct.pack(">BxHI", 0x51, 4, FAST_MAX_PDU) in body
    return sock


def context_results(body: bytes) -> dict[int, tuple[int, str]]:
    """{context ID: (result, transfer syntax)} of an A-ASSOCIATE-AC's body (PS3.8 9.3.3)."""
    out: dict[int, tuple[int, str]] = {}
    pos = 68  # protocol version, reserved, called and calling AE titles, reserved
    while pos < len(body):
        item_type, length = struct.unpack_from(">BxH", body, pos)
        if item_type == 0x21:  # presentation context item (AC): id, -, result, -, TS sub-item
            cx_id, result = body[pos + 4], body[pos + 6]
            ts_len = struct.unpack_from(">H", body, pos + 10)[0]
            out[cx_id] = (result, body[pos + 12 : pos + 12 + ts_len].decode())
        pos += 4 + length
    return out


def is_limit_reject(pdu_type: int, body: bytes) -> bool:
    """A-ASSOCIATE-RJ: rejected transient, service provider (presentation), local limit."""
    return pdu_type == A_ASSOCIATE_RJ and body[1:4] == b"\x02\x03\x02"


def element(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0, elem, len(value)) + value


def store_command(sop_instance: str, msg_id: int = 7, sop_class: str = CT_IMAGE) -> bytes:
    body = b"".join(
        (
            element(0x0002, sop_class.encode()),
            element(0x0100, struct.pack("<H", 0x0001)),
            element(0x0110, struct.pack("<H", msg_id)),
            element(0x0700, struct.pack("<H", 0)),
            element(0x0800, struct.pack("<H", 0x0000)),
            element(0x1000, sop_instance.encode()),
        )
    )
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def pdata(control: int, data: bytes, cx_id: int = 1) -> bytes:
    pdv = struct.pack(">IBB", len(data) + 2, cx_id, control) + data
    return struct.pack(">BxI", P_DATA_TF, len(pdv)) + pdv


def response_status(body: bytes) -> tuple[int, dict[int, bytes]]:
    data = body[6:]  # one PDV: length(4) context(1) control(1)
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        _g, elem, length = struct.unpack_from("<HHI", data, pos)
        out[elem] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return struct.unpack("<H", out[0x0900])[0], out


def dataset_of(path: Path) -> tuple[str, bytes]:
    """(SOP Instance UID, data set bytes in explicit VR little endian) of a Part 10 file."""
    raw = path.read_bytes()
    meta_len = struct.unpack("<I", raw[140:144])[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    return str(ds.SOPInstanceUID), raw[144 + meta_len :]


def store_raw(sock: socket.socket, path: Path, fragment: int = 16000) -> tuple[int, dict]:
    uid, data = dataset_of(path)
    return store_dataset(sock, uid, data, fragment=fragment)


def store_dataset(
    sock: socket.socket,
    uid: str,
    data: bytes,
    sop_class: str = CT_IMAGE,
    fragment: int = 16000,
) -> tuple[int, dict]:
    """C-STORE `data` (a data set's bytes, sent as they are) on context 1: the response's
    status and elements."""
    sock.sendall(pdata(0x03, store_command(uid, sop_class=sop_class)))
    for start in range(0, len(data), fragment):
        last = start + fragment >= len(data)
        sock.sendall(pdata(0x02 if last else 0x00, data[start : start + fragment]))
    pdu_type, body = read_pdu(sock)
    assert pdu_type == P_DATA_TF
    return response_status(body)


def release(sock: socket.socket) -> int:
    sock.sendall(A_RELEASE_RQ)
    pdu_type, _ = read_pdu(sock)
    sock.close()
    return pdu_type


def expect_abort(sock: socket.socket) -> bytes:
    """The A-ABORT's body (reserved, reserved, source, reason); the connection then closes."""
    sock.settimeout(10)
    pdu_type, body = read_pdu(sock)
    assert pdu_type == A_ABORT, f"expected A-ABORT, got PDU type {pdu_type}"
    assert sock.recv(1) == b""  # and the connection is closed
    sock.close()
    return body


def closed_by_server(sock: socket.socket, timeout: float) -> tuple[list[int], float]:
    """Wait for the server to close `sock`: the PDU types it sent first, and when it closed
    (time.monotonic()). A reset counts as closed."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    closed_at = time.monotonic()
    sock.close()
    types = []
    pos = 0
    while pos + 6 <= len(data):
        pdu_type, length = struct.unpack_from(">BxI", data, pos)
        types.append(pdu_type)
        pos += 6 + length
    return types, closed_at


def receivers(
    root: Path, callers: tuple[str, ...] = ("RAWSCU",), *, qr: bool = True
) -> Iterator[Callable[..., Any]]:
    """The tests' receiver factory (a generator for a fixture to yield from): make(fast,
    limits) starts a StorageServer on a free loopback port, each with its own archive under
    `root`, allowing `callers` (and answering Q/R when `qr`); all are stopped at the end."""
    from peers import free_port

    from dicom_net.archive import LocalArchive
    from dicom_net.nodes import LocalNode
    from dicom_net.storage_server import StorageServer

    started: list[StorageServer] = []

    def make(fast: bool = True, limits: Any = None) -> StorageServer:
        archive = LocalArchive(root / f"archive{len(started)}")
        local = LocalNode("LOUPE", free_port(), "127.0.0.1", callers, fast_store=fast)
        server = StorageServer(archive, local, qr_destinations={} if qr else None, limits=limits)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
