"""DICOM upper layer and DIMSE command sets encoded and decoded with struct (PS3.8, PS3.7).

Shared by the fast storage path (fast_store.py) and the C-MOVE/C-FIND requestor (scu.py), the two
places where pynetdicom's per-PDU machinery costs more than the work itself. Association
negotiation PDUs (A-ASSOCIATE-RQ/AC) are still encoded and decoded by pynetdicom's classes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Any

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu_primitives import (
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)

PDU_HEADER = struct.Struct(">BxI")
PDV_HEADER = struct.Struct(">IBB")
ELEM = struct.Struct("<HHI")
U16 = struct.Struct("<H")

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
A_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
A_RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"

# A-ABORT reasons (PS3.8 9.3.8), source 2 = service provider.
ABORT_UNRECOGNIZED_PDU = 0x01
ABORT_UNEXPECTED_PDU = 0x02
ABORT_INVALID_PDU_PARAMETER = 0x06

NO_DATASET = 0x0101


class ProtocolError(Exception):
    """The peer broke the protocol; the association is aborted with `reason`."""

    def __init__(self, message: str, reason: int = ABORT_INVALID_PDU_PARAMETER):
        super().__init__(message)
        self.reason = reason


class PeerGone(Exception):
    """The peer closed the connection."""


def user_information(max_pdu: int) -> list[Any]:
    """The user information items of our A-ASSOCIATE-RQ/AC: maximum PDU length we receive,
    implementation class UID and version name."""
    max_len = MaximumLengthNotification()
    max_len.maximum_length_received = max_pdu
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    ver = ImplementationVersionNameNotification()
    ver.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    return [max_len, impl, ver]


def a_abort(reason: int = 0, source: int = 2) -> bytes:
    return bytes((0x07, 0, 0, 0, 0, 4, 0, 0, source, reason))


def a_associate_rj(result: int, source: int, reason: int) -> bytes:
    return bytes((0x03, 0, 0, 0, 0, 4, 0, result, source, reason))


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise PeerGone
        got += k
    return buf


def parse_command(data: bytes) -> dict[int, bytes]:
    """{element number: raw value} of a command set; ProtocolError if it is malformed."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if pos + 8 > end:
            raise ProtocolError("truncated command set element")
        group, elem, length = ELEM.unpack_from(data, pos)
        pos += 8
        if group != 0x0000 or pos + length > end:
            raise ProtocolError(f"malformed command set element ({group:04X},{elem:04X})")
        out[elem] = bytes(data[pos : pos + length])
        pos += length
    return out


def us_value(cmd: dict[int, bytes], elem: int, name: str) -> int:
    raw = cmd.get(elem)
    if raw is None or len(raw) != 2:
        raise ProtocolError(f"command set without a valid {name} (0000,{elem:04X})")
    return int(U16.unpack(raw)[0])


def uid_text(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")


def el_ui(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return ELEM.pack(0, elem, len(value)) + value


def el_us(elem: int, value: int) -> bytes:
    return ELEM.pack(0, elem, 2) + U16.pack(value)


def el_ae(elem: int, title: str) -> bytes:
    value = title.encode("ascii").ljust(16)[:16]
    return ELEM.pack(0, elem, len(value)) + value


def el_lo(elem: int, text: str) -> bytes:
    value = text.encode("ascii", errors="replace")[:64]
    if len(value) % 2:
        value += b" "
    return ELEM.pack(0, elem, len(value)) + value


def command_set(elements: Iterable[bytes]) -> bytes:
    """A command set: CommandGroupLength, then the elements (in ascending tag order)."""
    body = b"".join(elements)
    return ELEM.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def pdata(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF PDU holding one PDV (control: bit 0 command, bit 1 last fragment)."""
    pdv = PDV_HEADER.pack(len(data) + 2, context_id, control) + data
    return PDU_HEADER.pack(0x04, len(pdv)) + pdv


def pdata_fragments(context_id: int, command: bool, data: bytes, max_pdu: int) -> list[bytes]:
    """`data` as P-DATA-TF PDUs no longer than the peer's maximum (0 = unlimited)."""
    size = len(data) if max_pdu <= 0 else max(max_pdu - 6, 2)
    out = []
    for start in range(0, max(len(data), 1), size):
        last = start + size >= len(data)
        out.append(
            pdata(
                context_id, (1 if command else 0) | (2 if last else 0), data[start : start + size]
            )
        )
    return out
