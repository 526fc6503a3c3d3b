"""The fast storage path (dicom_net/fast_store.py) at the protocol level: real DCMTK peers for
the common case, a raw socket client for what well-behaved peers never send."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from peers import free_port, peer_env
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

import dicom_net.storage_server as storage_server_mod
from dicom_net.archive import LocalArchive
from dicom_net.fast_store import FAST_MAX_PDU
from dicom_net.nodes import LocalNode
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def scp(tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("GOODSCU", "RAWSCU"))
    with StorageServer(archive, local, qr_destinations={}) as server:
        yield server


# -- a raw association requestor ---------------------------------------------------------------
def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, length = struct.unpack(">BxI", _recv_exact(sock, 6))
    return pdu_type, _recv_exact(sock, length)


def _associate(port: int, abstract: str = CT_IMAGE, syntax: str = EXPLICIT_LE) -> socket.socket:
    """Connect as RAWSCU and negotiate one context (id 1); returns the socket."""
    cx = build_context(abstract, [syntax])
    cx.context_id = 1
    rq = A_ASSOCIATE()
    rq.application_context_name = "1.2.840.10008.3.1.1.1"
    rq.calling_ae_title = "RAWSCU"
    rq.called_ae_title = "LOUPE"
    rq.presentation_context_definition_list = [cx]
    max_len = MaximumLengthNotification()
    max_len.maximum_length_received = 16384
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    rq.user_information = [max_len, impl]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(rq)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(pdu.encode())
    pdu_type, body = _read_pdu(sock)
    assert pdu_type == 0x02, f"expected A-ASSOCIATE-AC, got PDU type {pdu_type}"
    # Our advertised maximum PDU length (user information item 0x51) is FAST_MAX_PDU.
    assert struct.pack(">BxHI", 0x51, 4, FAST_MAX_PDU) in body
    return sock


def _element(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0, elem, len(value)) + value


def _store_command(sop_instance: str, msg_id: int = 7) -> bytes:
    body = b"".join(
        (
            _element(0x0002, CT_IMAGE.encode()),
            _element(0x0100, struct.pack("<H", 0x0001)),
            _element(0x0110, struct.pack("<H", msg_id)),
            _element(0x0700, struct.pack("<H", 0)),
            _element(0x0800, struct.pack("<H", 0x0000)),
            _element(0x1000, sop_instance.encode()),
        )
    )
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def _pdata(control: int, data: bytes, cx_id: int = 1) -> bytes:
    pdv = struct.pack(">IBB", len(data) + 2, cx_id, control) + data
    return struct.pack(">BxI", 0x04, len(pdv)) + pdv


def _response_status(body: bytes) -> tuple[int, dict[int, bytes]]:
    data = body[6:]  # one PDV: length(4) context(1) control(1)
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        _g, elem, length = struct.unpack_from("<HHI", data, pos)
        out[elem] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return struct.unpack("<H", out[0x0900])[0], out


def _dataset_of(path: Path) -> tuple[str, bytes]:
    """(SOP Instance UID, data set bytes in explicit VR little endian) of a Part 10 file."""
    raw = path.read_bytes()
    meta_len = struct.unpack("<I", raw[140:144])[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    return str(ds.SOPInstanceUID), raw[144 + meta_len :]


def _store_raw(sock: socket.socket, path: Path, fragment: int = 16000) -> tuple[int, dict]:
    uid, data = _dataset_of(path)
    sock.sendall(_pdata(0x03, _store_command(uid)))
    for start in range(0, len(data), fragment):
        last = start + fragment >= len(data)
        sock.sendall(_pdata(0x02 if last else 0x00, data[start : start + fragment]))
    pdu_type, body = _read_pdu(sock)
    assert pdu_type == 0x04
    return _response_status(body)


def _release(sock: socket.socket) -> int:
    sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
    pdu_type, _ = _read_pdu(sock)
    sock.close()
    return pdu_type


def _expect_abort(sock: socket.socket) -> None:
    sock.settimeout(10)
    pdu_type, _body = _read_pdu(sock)
    assert pdu_type == 0x07, f"expected A-ABORT, got PDU type {pdu_type}"
    assert sock.recv(1) == b""  # and the connection is closed
    sock.close()


# -- the common case, with real peers -----------------------------------------------------------
def test_storescu_series_takes_the_fast_path_byte_for_byte(scp, dcmtk, small_ct, caplog):
    caplog.set_level(logging.INFO, logger="dicom_net.fast_store")
    files = list(small_ct.paths)
    r = subprocess.run(
        [dcmtk["storescu"], "-aet", "GOODSCU", "-aec", "LOUPE", "--max-pdu", "131072",
         "127.0.0.1", str(scp.port), *map(str, files)],
        capture_output=True, text=True, env=peer_env(), timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert scp.archive.instance_count() == len(files)
    stored = {i.sop_instance_uid: i.path for i in scp.archive.instances()}
    for f in files:
        uid, data = _dataset_of(f)
        assert stored[uid].read_bytes().endswith(data)  # data set exactly as sent
        assert pydicom.dcmread(stored[uid]).file_meta.TransferSyntaxUID == EXPLICIT_LE
    lines = [r.getMessage() for r in caplog.records if "storage association" in r.getMessage()]
    assert any(f"GOODSCU (127.0.0.1): {len(files)} stored, 0 refused" in m for m in lines), lines
    assert any(m.endswith("released") for m in lines)


def test_query_associations_still_go_to_pynetdicom_on_the_same_port(scp, dcmtk, small_ct):
    r = subprocess.run(
        [dcmtk["storescu"], "-aet", "GOODSCU", "-aec", "LOUPE", "127.0.0.1", str(scp.port),
         str(small_ct.paths[0])],
        capture_output=True, text=True, env=peer_env(), timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    find = subprocess.run(
        [dcmtk["findscu"], "-S", "-aet", "GOODSCU", "-aec", "LOUPE", "-k",
         "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "127.0.0.1", str(scp.port)],
        capture_output=True, text=True, env=peer_env(), timeout=60,
    )  # fmt: skip
    assert find.returncode == 0, find.stderr
    assert small_ct.study_instance_uid in find.stderr + find.stdout
    echo = subprocess.run(
        [dcmtk["echoscu"], "-aet", "GOODSCU", "-aec", "LOUPE", "127.0.0.1", str(scp.port)],
        capture_output=True, text=True, env=peer_env(), timeout=30,
    )  # fmt: skip
    assert echo.returncode == 0, echo.stderr


# -- what well-behaved peers never send ---------------------------------------------------------
def test_raw_store_then_release(scp, small_ct):
    sock = _associate(scp.port)
    status, rsp = _store_raw(sock, small_ct.paths[0])
    assert status == 0x0000
    assert struct.unpack("<H", rsp[0x0100])[0] == 0x8001
    assert struct.unpack("<H", rsp[0x0120])[0] == 7  # message ID being responded to
    assert _release(sock) == 0x06
    assert scp.archive.instance_count() == 1


def test_truncated_data_set_is_refused_with_a_comment_and_the_association_goes_on(scp, small_ct):
    sock = _associate(scp.port)
    uid, data = _dataset_of(small_ct.paths[0])
    sock.sendall(_pdata(0x03, _store_command(uid)))
    sock.sendall(_pdata(0x02, data[: len(data) - 3000]))
    _t, body = _read_pdu(sock)
    status, rsp = _response_status(body)
    assert status == 0xC000
    assert rsp[0x0902].strip()  # Error Comment says why
    assert scp.archive.instance_count() == 0
    status, _ = _store_raw(sock, small_ct.paths[1])  # the same association still works
    assert status == 0x0000
    assert _release(sock) == 0x06
    assert scp.archive.instance_count() == 1
    assert not list(scp.archive.incoming_dir.iterdir())


def test_oversized_pdu_claim_is_aborted_and_the_server_keeps_serving(scp, small_ct):
    sock = _associate(scp.port)
    sock.sendall(struct.pack(">BxI", 0x04, FAST_MAX_PDU + 1))  # promises more than allowed
    _expect_abort(sock)
    sock = _associate(scp.port)
    assert _store_raw(sock, small_ct.paths[0])[0] == 0
    _release(sock)


@pytest.mark.parametrize(
    "what",
    ["data before command", "unknown context", "pdv longer than pdu", "associate rq again",
     "c-find on a storage context"],
)  # fmt: skip
def test_protocol_violations_get_an_a_abort_and_store_nothing(scp, small_ct, what):
    sock = _associate(scp.port)
    uid, data = _dataset_of(small_ct.paths[0])
    if what == "data before command":
        sock.sendall(_pdata(0x02, data[:1000]))
    elif what == "unknown context":
        sock.sendall(_pdata(0x03, _store_command(uid), cx_id=3))
    elif what == "pdv longer than pdu":
        pdv = struct.pack(">IBB", 5000, 1, 0x03) + b"\x00" * 100
        sock.sendall(struct.pack(">BxI", 0x04, len(pdv)) + pdv)
    elif what == "associate rq again":
        sock.sendall(b"\x01\x00\x00\x00\x00\x04" + b"\x00" * 4)
    else:
        find = _store_command(uid).replace(
            _element(0x0100, struct.pack("<H", 0x0001)), _element(0x0100, struct.pack("<H", 0x20))
        )
        sock.sendall(_pdata(0x03, find))
        sock.sendall(_pdata(0x02, data[:200]))
    _expect_abort(sock)
    assert scp.archive.instance_count() == 0


def test_peer_vanishing_mid_instance_stores_nothing(scp, small_ct):
    sock = _associate(scp.port)
    uid, data = _dataset_of(small_ct.paths[0])
    sock.sendall(_pdata(0x03, _store_command(uid)))
    sock.sendall(_pdata(0x00, data[:20000]))
    sock.close()
    time.sleep(0.3)
    assert scp.archive.instance_count() == 0
    sock = _associate(scp.port)  # still serving
    assert _store_raw(sock, small_ct.paths[0])[0] == 0
    _release(sock)


def test_silent_connection_is_closed_after_the_acse_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_server_mod, "ACSE_TIMEOUT_S", 0.5)
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("RAWSCU",))
    with StorageServer(LocalArchive(tmp_path / "a"), local) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        t0 = time.monotonic()
        assert sock.recv(16) == b""  # closed by the server, nothing sent
        assert time.monotonic() - t0 < 5
        sock.close()


def test_association_limit_is_shared_and_rejects_politely(scp, small_ct):
    limit = 10  # pynetdicom's default maximum_associations, kept by make_ae
    open_ones = [_associate(scp.port) for _ in range(limit)]
    try:
        cx = build_context(CT_IMAGE, [EXPLICIT_LE])
        cx.context_id = 1
        extra = socket.create_connection(("127.0.0.1", scp.port), timeout=10)
        rq = A_ASSOCIATE()
        rq.application_context_name = "1.2.840.10008.3.1.1.1"
        rq.calling_ae_title = "RAWSCU"
        rq.called_ae_title = "LOUPE"
        rq.presentation_context_definition_list = [cx]
        ml = MaximumLengthNotification()
        ml.maximum_length_received = 16384
        rq.user_information = [ml]
        pdu = A_ASSOCIATE_RQ()
        pdu.from_primitive(rq)
        extra.sendall(pdu.encode())
        pdu_type, body = _read_pdu(extra)
        assert pdu_type == 0x03 and body[1:4] == b"\x02\x03\x02"  # transient, local limit
        extra.close()
    finally:
        for s in open_ones:
            _release(s)
    sock = _associate(scp.port)  # free again
    assert _store_raw(sock, small_ct.paths[0])[0] == 0
    _release(sock)


def test_idle_association_is_aborted_after_the_network_timeout(tmp_path, monkeypatch, small_ct):
    monkeypatch.setattr(storage_server_mod, "NETWORK_TIMEOUT_S", 0.5)
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("RAWSCU",))
    with StorageServer(LocalArchive(tmp_path / "a"), local) as server:
        sock = _associate(server.port)
        uid, data = _dataset_of(small_ct.paths[0])
        sock.sendall(_pdata(0x03, _store_command(uid)))
        sock.sendall(_pdata(0x00, data[:1000]))  # then silence, mid-instance
        t0 = time.monotonic()
        _expect_abort(sock)
        assert 0.4 < time.monotonic() - t0 < 5
        assert server.archive.instance_count() == 0
