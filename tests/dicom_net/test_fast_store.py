"""The fast storage path (dicom_net/fast_store.py) at the protocol level: real DCMTK peers for
the common case, a raw socket client for what well-behaved peers never send."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import time

import pydicom
import pytest
from peers import free_port, peer_env
from raw_requestor import (
    EXPLICIT_LE,
    associate,
    dataset_of,
    element,
    expect_abort,
    pdata,
    read_pdu,
    release,
    response_status,
    store_command,
    store_raw,
)

from dicom_net.archive import LocalArchive
from dicom_net.fast_store import FAST_MAX_PDU
from dicom_net.nodes import LocalNode
from dicom_net.receiver_limits import ReceiverLimits
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network


@pytest.fixture
def scp(tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("GOODSCU", "RAWSCU"))
    with StorageServer(archive, local, qr_destinations={}) as server:
        yield server


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
        uid, data = dataset_of(f)
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
    sock = associate(scp.port)
    status, rsp = store_raw(sock, small_ct.paths[0])
    assert status == 0x0000
    assert struct.unpack("<H", rsp[0x0100])[0] == 0x8001
    assert struct.unpack("<H", rsp[0x0120])[0] == 7  # message ID being responded to
    assert release(sock) == 0x06
    assert scp.archive.instance_count() == 1


def test_truncated_data_set_is_refused_with_a_comment_and_the_association_goes_on(scp, small_ct):
    sock = associate(scp.port)
    uid, data = dataset_of(small_ct.paths[0])
    sock.sendall(pdata(0x03, store_command(uid)))
    sock.sendall(pdata(0x02, data[: len(data) - 3000]))
    _t, body = read_pdu(sock)
    status, rsp = response_status(body)
    assert status == 0xC000
    assert rsp[0x0902].strip()  # Error Comment says why
    assert scp.archive.instance_count() == 0
    status, _ = store_raw(sock, small_ct.paths[1])  # the same association still works
    assert status == 0x0000
    assert release(sock) == 0x06
    assert scp.archive.instance_count() == 1
    assert not list(scp.archive.incoming_dir.iterdir())


def test_oversized_pdu_claim_is_aborted_and_the_server_keeps_serving(scp, small_ct):
    sock = associate(scp.port)
    sock.sendall(struct.pack(">BxI", 0x04, FAST_MAX_PDU + 1))  # promises more than allowed
    expect_abort(sock)
    sock = associate(scp.port)
    assert store_raw(sock, small_ct.paths[0])[0] == 0
    release(sock)


@pytest.mark.parametrize(
    "what",
    ["data before command", "unknown context", "pdv longer than pdu", "associate rq again",
     "c-find on a storage context"],
)  # fmt: skip
def test_protocol_violations_get_an_a_abort_and_store_nothing(scp, small_ct, what):
    sock = associate(scp.port)
    uid, data = dataset_of(small_ct.paths[0])
    if what == "data before command":
        sock.sendall(pdata(0x02, data[:1000]))
    elif what == "unknown context":
        sock.sendall(pdata(0x03, store_command(uid), cx_id=3))
    elif what == "pdv longer than pdu":
        pdv = struct.pack(">IBB", 5000, 1, 0x03) + b"\x00" * 100
        sock.sendall(struct.pack(">BxI", 0x04, len(pdv)) + pdv)
    elif what == "associate rq again":
        sock.sendall(b"\x01\x00\x00\x00\x00\x04" + b"\x00" * 4)
    else:
        find = store_command(uid).replace(
            element(0x0100, struct.pack("<H", 0x0001)), element(0x0100, struct.pack("<H", 0x20))
        )
        sock.sendall(pdata(0x03, find))
        sock.sendall(pdata(0x02, data[:200]))
    expect_abort(sock)
    assert scp.archive.instance_count() == 0


def test_peer_vanishing_mid_instance_stores_nothing(scp, small_ct):
    sock = associate(scp.port)
    uid, data = dataset_of(small_ct.paths[0])
    sock.sendall(pdata(0x03, store_command(uid)))
    sock.sendall(pdata(0x00, data[:20000]))
    sock.close()
    time.sleep(0.3)
    assert scp.archive.instance_count() == 0
    sock = associate(scp.port)  # still serving
    assert store_raw(sock, small_ct.paths[0])[0] == 0
    release(sock)


def test_silent_connection_is_closed_after_artim(tmp_path):
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("RAWSCU",))
    limits = ReceiverLimits(artim_s=0.5)
    with StorageServer(LocalArchive(tmp_path / "a"), local, limits=limits) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        t0 = time.monotonic()
        assert sock.recv(16) == b""  # closed by the server, nothing sent (PS3.8 AA-2)
        assert 0.4 < time.monotonic() - t0 < 5
        sock.close()


def test_idle_association_is_aborted_after_the_pdu_timeout(tmp_path, small_ct):
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("RAWSCU",))
    limits = ReceiverLimits(pdu_timeout_s=0.5)
    with StorageServer(LocalArchive(tmp_path / "a"), local, limits=limits) as server:
        sock = associate(server.port)
        uid, data = dataset_of(small_ct.paths[0])
        sock.sendall(pdata(0x03, store_command(uid)))
        sock.sendall(pdata(0x00, data[:1000]))  # then silence, mid-instance
        t0 = time.monotonic()
        expect_abort(sock)
        assert 0.4 < time.monotonic() - t0 < 5
        assert server.archive.instance_count() == 0
