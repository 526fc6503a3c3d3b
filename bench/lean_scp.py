"""Experiment: a lean C-STORE SCP data path, to measure what pynetdicom's machinery costs.

NOT production code. It answers one question for bench/move_throughput.py: how fast can
Python receive a C-MOVE when the per-PDU work is only what C-STORE needs?

- association negotiation still uses pynetdicom's PDU classes and its unrestricted-storage
  context negotiation (same accepted contexts as StorageServer);
- after that, one thread per association reads whole PDUs with recv_into (blocking, no
  polling loops, no DUL/reactor threads, no event queues), splits PDVs, parses the small
  command set with struct, hands the data set to the same StoreIngest handler the real
  server uses, and answers with a C-STORE-RSP encoded with struct.

Left out (a real implementation needs them): ARTIM timer, user identity, extended negotiation,
asynchronous operations window, TLS, maximum associations, DIMSE services other than C-STORE
and C-ECHO (anything else gets an A-ABORT).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from pynetdicom import (
    AE,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
)
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import negotiate_unrestricted

from dicom_net.ingest import StoreIngest

log = logging.getLogger(__name__)

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
_PDU_HEADER = struct.Struct(">BxI")
_PDV_HEADER = struct.Struct(">IBB")
_ELEM = struct.Struct("<HHI")
A_RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
A_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"  # service user, no reason


class _Closed(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise _Closed
        got += k
    return buf


def _parse_command(data: bytes) -> dict[int, bytes]:
    """Command set elements (implicit VR little endian): {element number: raw value}."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        _group, elem, length = _ELEM.unpack_from(data, pos)
        pos += 8
        out[elem] = bytes(data[pos : pos + length])
        pos += length
    return out


def _ui(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return _ELEM.pack(0, elem, len(value)) + value


def _us(elem: int, value: int) -> bytes:
    return _ELEM.pack(0, elem, 2) + struct.pack("<H", value)


def _response_pdu(context_id: int, elements: Iterable[bytes]) -> bytes:
    body = b"".join(elements)
    command = _ELEM.pack(0, 0, 4) + struct.pack("<I", len(body)) + body
    pdv = _PDV_HEADER.pack(len(command) + 2, context_id, 0x03) + command
    return _PDU_HEADER.pack(0x04, len(pdv)) + pdv


class _Stream:
    """What StoreIngest reads from `request.DataSet`."""

    def __init__(self, data: bytes):
        self._data = data

    def getvalue(self) -> bytes:
        return self._data


class LeanStorageServer:
    def __init__(
        self,
        ingest: StoreIngest,
        *,
        ae: AE,
        bind: str,
        port: int,
        allowed_callers: Iterable[str],
        network_timeout: float = 60.0,
    ):
        self.ingest = ingest
        self.contexts = ae.supported_contexts
        self.bind, self.port = bind, port
        self.allowed = {a.strip() for a in allowed_callers if a != "*"}
        self.any_caller = "*" in allowed_callers or not self.allowed
        self.network_timeout = network_timeout
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.bind, self.port))
        s.listen(16)
        self._listener = s
        t = threading.Thread(target=self._accept_loop, name="lean-scp-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for t in self._threads:
            t.join(timeout=5)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    # -- one association ------------------------------------------------------------------
    def _read_pdu(self, sock: socket.socket) -> tuple[int, bytearray]:
        pdu_type, length = _PDU_HEADER.unpack(_recv_exact(sock, 6))
        return pdu_type, _recv_exact(sock, length)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(self.network_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with sock:
                accepted = self._negotiate(sock)
                if accepted is not None:
                    self._data_phase(sock, *accepted)
        except (_Closed, OSError) as exc:
            log.debug("lean SCP association ended: %s", exc)

    def _negotiate(self, sock: socket.socket) -> tuple[str, dict[int, str]] | None:
        pdu_type, body = self._read_pdu(sock)
        if pdu_type != 0x01:
            sock.sendall(A_ABORT)
            return None
        rq = A_ASSOCIATE_RQ()
        rq.decode(bytes(_PDU_HEADER.pack(pdu_type, len(body)) + body))
        prim = rq.to_primitive()
        calling = str(prim.calling_ae_title).strip()
        if not self.any_caller and calling not in self.allowed:
            # A-ASSOCIATE-RJ: rejected-permanent, service-user, calling AE not recognised
            sock.sendall(b"\x03\x00\x00\x00\x00\x04\x00\x01\x01\x03")
            return None
        result, _roles = negotiate_unrestricted(
            prim.presentation_context_definition_list, self.contexts, {}
        )
        ac = A_ASSOCIATE()
        ac.application_context_name = APPLICATION_CONTEXT_NAME
        ac.calling_ae_title = prim.calling_ae_title
        ac.called_ae_title = prim.called_ae_title
        ac.result = 0x00
        ac.result_source = 0x01
        ac.presentation_context_definition_results_list = result
        max_len = MaximumLengthNotification()
        max_len.maximum_length_received = 0
        impl = ImplementationClassUIDNotification()
        impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
        ver = ImplementationVersionNameNotification()
        ver.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
        ac.user_information = [max_len, impl, ver]
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(ac)
        sock.sendall(pdu.encode())
        syntaxes = {
            int(cx.context_id): str(cx.transfer_syntax[0])
            for cx in result
            if cx.result == 0x00 and cx.context_id is not None
        }
        return calling, syntaxes

    def _data_phase(self, sock: socket.socket, calling: str, syntaxes: dict[int, str]) -> None:
        requestor = SimpleNamespace(
            assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title=calling))
        )
        command: list[memoryview] = []
        dataset: list[memoryview] = []
        cmd: dict[int, bytes] | None = None
        while True:
            pdu_type, body = self._read_pdu(sock)
            if pdu_type == 0x05:  # A-RELEASE-RQ
                sock.sendall(A_RELEASE_RP)
                return
            if pdu_type != 0x04:
                if pdu_type != 0x07:
                    sock.sendall(A_ABORT)
                return
            view = memoryview(body)
            pos, end = 0, len(body)
            while pos < end:
                item_len, cx_id, control = _PDV_HEADER.unpack_from(body, pos)
                fragment = view[pos + 6 : pos + 4 + item_len]
                pos += 4 + item_len
                if control & 0x01:
                    command.append(fragment)
                    if not control & 0x02:
                        continue
                    cmd = _parse_command(b"".join(command))
                    command.clear()
                    has_data = struct.unpack("<H", cmd.get(0x0800, b"\x01\x01"))[0] != 0x0101
                    if has_data:
                        continue
                else:
                    dataset.append(fragment)
                    if not control & 0x02:
                        continue
                if cmd is None:
                    sock.sendall(A_ABORT)
                    return
                stream = b"".join(dataset)
                dataset.clear()
                rsp = self._dispatch(requestor, cmd, cx_id, syntaxes, stream)
                cmd = None
                if rsp is None:
                    sock.sendall(A_ABORT)
                    return
                sock.sendall(rsp)

    def _dispatch(
        self,
        requestor: Any,
        cmd: dict[int, bytes],
        cx_id: int,
        syntaxes: dict[int, str],
        stream: bytes,
    ) -> bytes | None:
        field = struct.unpack("<H", cmd[0x0100])[0]
        msg_id = struct.unpack("<H", cmd[0x0110])[0]
        sop_class = cmd.get(0x0002, b"")
        if field == 0x0030:  # C-ECHO-RQ
            return _response_pdu(
                cx_id,
                (_ui(0x0002, sop_class), _us(0x0100, 0x8030), _us(0x0120, msg_id),
                 _us(0x0800, 0x0101), _us(0x0900, 0x0000)),
            )  # fmt: skip
        if field != 0x0001 or cx_id not in syntaxes:
            return None
        sop_instance = cmd.get(0x1000, b"")
        request = SimpleNamespace(
            MessageID=msg_id,
            AffectedSOPClassUID=sop_class.rstrip(b"\x00 ").decode("ascii"),
            AffectedSOPInstanceUID=sop_instance.rstrip(b"\x00 ").decode("ascii"),
            DataSet=_Stream(stream),
        )
        event = SimpleNamespace(
            assoc=requestor.assoc,
            request=request,
            context=SimpleNamespace(transfer_syntax=syntaxes[cx_id]),
        )
        try:
            status = int(self.ingest(event))
        except Exception:
            log.exception("C-STORE handler failed")
            status = 0xC211
        return _response_pdu(
            cx_id,
            (_ui(0x0002, sop_class), _us(0x0100, 0x8001), _us(0x0120, msg_id),
             _us(0x0800, 0x0101), _us(0x0900, status), _ui(0x1000, sop_instance)),
        )  # fmt: skip


# -- the other half of the experiment: a lean C-MOVE SCU ------------------------------------
def lean_move(
    *,
    calling_ae: str,
    called_ae: str,
    host: str,
    port: int,
    destination_ae: str,
    identifier: Any,
    model: str,
    timeout: float = 300.0,
) -> tuple[int | None, dict[str, int], str]:
    """One C-MOVE on its own association; returns (final status, last counts, host seen).

    Pending responses are read with struct (no pydicom Dataset per response).
    """
    from pydicom.uid import ImplicitVRLittleEndian
    from pynetdicom.dsutils import encode
    from pynetdicom.pdu import A_ASSOCIATE_AC as AC
    from pynetdicom.pdu_primitives import A_ASSOCIATE as Assoc
    from pynetdicom.presentation import build_context

    cx = build_context(model, [ImplicitVRLittleEndian])
    cx.context_id = 1
    rq = Assoc()
    rq.application_context_name = APPLICATION_CONTEXT_NAME
    rq.calling_ae_title = calling_ae
    rq.called_ae_title = called_ae
    rq.presentation_context_definition_list = [cx]
    max_len = MaximumLengthNotification()
    max_len.maximum_length_received = 0
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    rq.user_information = [max_len, impl]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(rq)
    counts: dict[str, int] = {}
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host_seen = str(sock.getsockname()[0])
        sock.sendall(pdu.encode())
        pdu_type, length = _PDU_HEADER.unpack(_recv_exact(sock, 6))
        body = _recv_exact(sock, length)
        if pdu_type != 0x02:
            return None, counts, host_seen
        ac = AC()
        ac.decode(bytes(_PDU_HEADER.pack(pdu_type, length) + body))
        accepted = [c for c in ac.to_primitive().presentation_context_definition_results_list
                    if c.result == 0]  # fmt: skip
        if not accepted:
            sock.sendall(A_ABORT)
            return None, counts, host_seen
        ident = encode(identifier, True, True)
        assert ident is not None
        dest = destination_ae.encode("ascii").ljust(16)
        command = (
            _ui(0x0002, model.encode("ascii")) + _us(0x0100, 0x0021) + _us(0x0110, 1)
            + _ELEM.pack(0, 0x0600, 16) + dest + _us(0x0700, 0) + _us(0x0800, 0x0000)
        )  # fmt: skip
        command = _ELEM.pack(0, 0, 4) + struct.pack("<I", len(command)) + command
        for control, data in ((0x03, command), (0x02, ident)):
            pdv = _PDV_HEADER.pack(len(data) + 2, 1, control) + data
            sock.sendall(_PDU_HEADER.pack(0x04, len(pdv)) + pdv)
        final: int | None = None
        frags: list[bytes] = []
        while final is None:
            pdu_type, length = _PDU_HEADER.unpack(_recv_exact(sock, 6))
            body = _recv_exact(sock, length)
            if pdu_type != 0x04:
                return None, counts, host_seen
            pos = 0
            while pos < length:
                item_len, _cx, control = _PDV_HEADER.unpack_from(body, pos)
                if control & 0x01:
                    frags.append(bytes(body[pos + 6 : pos + 4 + item_len]))
                    if control & 0x02:
                        cmd = _parse_command(b"".join(frags))
                        frags.clear()
                        status = struct.unpack("<H", cmd[0x0900])[0]
                        for elem, key in ((0x1020, "remaining"), (0x1021, "completed"),
                                          (0x1022, "failed"), (0x1023, "warning")):  # fmt: skip
                            if len(cmd.get(elem, b"")) == 2:
                                counts[key] = struct.unpack("<H", cmd[elem])[0]
                        if status not in (0xFF00, 0xFF01):
                            final = status
                pos += 4 + item_len
        sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
        with contextlib.suppress(OSError, _Closed):
            _recv_exact(sock, 10)
    return final, counts, host_seen
