"""The storage receiver's limits against callers that misbehave on purpose (raw sockets, a real
server): floods of non-DICOM connections, slow senders, malformed requests, and one
association limit across both receive paths."""

from __future__ import annotations

import logging
import socket
import struct
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from raw_requestor import (
    A_ABORT,
    A_ASSOCIATE_AC,
    CT_IMAGE,
    EXPLICIT_LE,
    P_DATA_TF,
    STUDY_ROOT_FIND,
    associate,
    associate_rq,
    closed_by_server,
    dataset_of,
    handmade_rq,
    is_limit_reject,
    pdata,
    read_pdu,
    receivers,
    release,
    request,
    response_status,
    store_command,
    store_raw,
)

from dicom_net.association_request import MAX_ASSOCIATE_RQ, MAX_PEEKED_RQ
from dicom_net.receiver_limits import ReceiverLimits
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="pynetdicom")]
MakeServer = Callable[..., StorageServer]


@pytest.fixture
def make_server(tmp_path) -> Iterator[MakeServer]:
    """Start a receiver (Q/R contexts included) with the given path and limits."""
    yield from receivers(tmp_path)


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """Where pynetdicom spools received data sets (tempfile's directory) during the test."""
    path = tmp_path / "spool"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def _empty_soon(path: Path, timeout: float = 10) -> bool:
    """Whether the folder is (or becomes, within `timeout`) empty."""
    deadline = time.monotonic() + timeout
    while any(path.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stores_one(server: StorageServer, fast: bool, path) -> None:
    """What the PACS administrator expects: a caller is accepted and its instance stored."""
    sock = associate(server.port, fast=fast)
    assert store_raw(sock, path)[0] == 0x0000
    assert release(sock) == 0x06
    assert server.archive.instance(dataset_of(path)[0]) is not None


class _Trickle:
    """Sends one byte to each socket every `interval` s, in a thread, until stopped: a peer
    that is never silent long enough for a per-read timeout and never finishes a PDU."""

    def __init__(self, socks: list[socket.socket], data: bytes, interval: float):
        self.socks, self.data, self.interval = socks, data, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pos = 0
        while not self.stop.wait(self.interval) and pos < len(self.data):
            for sock in self.socks:
                try:
                    sock.send(self.data[pos : pos + 1])
                except OSError:  # closed by the server: what we wait for
                    pass
            pos += 1

    def __enter__(self) -> _Trickle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


# -- 1: connections that never ask for an association hold no slot ----------------------------
@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="http"),
        pytest.param(b"\x01\x00\x00\x00\x00\x00", id="empty-associate-rq"),
    ],
)
def test_flood_of_bad_connections_is_aborted_and_keeps_no_slot(
    make_server, small_ct, fast, payload
):
    server = make_server(fast)
    for _ in range(11):  # one more than the association limit
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        types, _closed = closed_by_server(sock, timeout=10)
        assert types[:1] == [A_ABORT]  # PS3.8 AA-1, then the connection is closed
    _stores_one(server, fast, small_ct.paths[0])  # right after the flood


# -- 2: ARTIM and the PDU deadline -------------------------------------------------------------
@pytest.mark.parametrize("fast", PATHS)
def test_slow_requests_hold_no_slot_and_are_closed_at_artim(make_server, small_ct, fast):
    artim = 2.0
    server = make_server(fast, ReceiverLimits(artim_s=artim))
    slow, connected = [], []
    for _ in range(11):  # one more than the association limit
        slow.append(socket.create_connection(("127.0.0.1", server.port), timeout=15))
        connected.append(time.monotonic())
    with _Trickle(slow, associate_rq(), interval=0.2):
        _stores_one(server, fast, small_ct.paths[0])  # while all eleven are still sending
        for sock, since in zip(slow, connected, strict=True):
            _types, closed_at = closed_by_server(sock, timeout=15)
            assert artim - 0.2 < closed_at - since < artim + 6


def test_request_too_long_to_peek_is_bounded_by_artim_too(make_server, small_ct):
    """pynetdicom reads such a request itself; a trickled one still ends at ARTIM."""
    artim = 1.0
    server = make_server(True, ReceiverLimits(artim_s=artim))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    connected = time.monotonic()
    with _Trickle([sock], struct.pack(">BxI", 0x01, MAX_PEEKED_RQ + 10), interval=0.2):
        _types, closed_at = closed_by_server(sock, timeout=15)
    assert artim - 0.2 < closed_at - connected < artim + 6
    _stores_one(server, True, small_ct.paths[0])


def test_request_longer_than_any_real_one_is_aborted(make_server):
    server = make_server(True)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(struct.pack(">BxI", 0x01, MAX_ASSOCIATE_RQ + 1) + b"\x00" * 1000)
    types, _closed = closed_by_server(sock, timeout=10)
    assert types == [A_ABORT]


def test_request_too_long_to_peek_is_served_by_pynetdicom(make_server):
    """128 presentation contexts with 30 transfer syntaxes each: over 64 KiB, still valid."""
    server = make_server(True)
    syntaxes = [f"1.2.840.10008.1.2.4.{n}".encode() for n in range(50, 80)]
    contexts = [
        (2 * i + 1, CT_IMAGE.encode(), [EXPLICIT_LE.encode(), *syntaxes]) for i in range(128)
    ]
    rq = handmade_rq(contexts)
    assert MAX_PEEKED_RQ < len(rq) < MAX_ASSOCIATE_RQ
    sock, pdu_type, _body = request(server.port, rq)
    assert pdu_type == A_ASSOCIATE_AC
    assert release(sock) == 0x06


@pytest.mark.parametrize("fast", PATHS)
def test_trickling_association_is_aborted_and_frees_its_slot(
    make_server, small_ct, spool_dir, fast
):
    pdu_timeout = 1.0
    server = make_server(fast, ReceiverLimits(max_associations=2, pdu_timeout_s=pdu_timeout))
    uid, data = dataset_of(small_ct.paths[0])
    stalled = [associate(server.port, fast=fast) for _ in range(2)]
    for sock in stalled:
        sock.sendall(pdata(0x03, store_command(uid)))
    started = time.monotonic()
    with _Trickle(stalled, pdata(0x02, data), interval=0.2):  # a data set, one byte at a time
        extra, pdu_type, body = request(server.port, associate_rq())
        assert is_limit_reject(pdu_type, body)  # the two hold both slots while they last
        extra.close()
        for sock in stalled:
            types, closed_at = closed_by_server(sock, timeout=15)
            assert pdu_timeout - 0.2 < closed_at - started < pdu_timeout + 6
            if fast:
                assert types == [A_ABORT]
    _stores_one(server, fast, small_ct.paths[1])
    assert server.archive.instance(uid) is None
    assert _empty_soon(spool_dir)  # nothing left of the data sets pynetdicom had begun


# -- 3: one association limit for both receive paths ------------------------------------------
def test_one_association_limit_across_both_paths(make_server, small_ct):
    server = make_server(True)  # the default limit: 10
    fast_ones = [associate(server.port) for _ in range(5)]
    find_ones = [associate(server.port, STUDY_ROOT_FIND, fast=False) for _ in range(5)]
    try:
        for abstract in (CT_IMAGE, STUDY_ROOT_FIND):  # storage -> fast path, find -> pynetdicom
            extra, pdu_type, body = request(server.port, associate_rq(abstract))
            assert is_limit_reject(pdu_type, body), abstract
            extra.close()
        assert release(fast_ones.pop()) == 0x06
        find_ones.append(associate(server.port, STUDY_ROOT_FIND, fast=False))
        extra, pdu_type, body = request(server.port, associate_rq())
        assert is_limit_reject(pdu_type, body)
        extra.close()
        assert release(find_ones.pop()) == 0x06
        _stores_one(server, True, small_ct.paths[0])
    finally:
        for sock in fast_ones + find_ones:
            release(sock)


# -- 4: malformed A-ASSOCIATE-RQ ---------------------------------------------------------------
_CT, _LE = CT_IMAGE.encode(), EXPLICIT_LE.encode()
MALFORMED = {
    "no transfer syntax": (handmade_rq([(1, _CT, [])]), "no transfer syntax"),
    "one context without transfer syntax": (
        handmade_rq([(1, _CT, [_LE]), (3, _CT, [])]),
        "no transfer syntax",
    ),
    "no abstract syntax": (handmade_rq([(1, None, [_LE])]), "no abstract syntax"),
    "non-ASCII abstract syntax": (
        handmade_rq([(1, "1.2.840.10008.5.1.4.1.1.2.\u00e9".encode(), [_LE])]),
        "cannot be decoded",
    ),
    "non-ASCII calling AE title": (
        handmade_rq([(1, _CT, [_LE])], calling="RAW\u00e9".encode()),
        "cannot be decoded",
    ),
}


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("what", list(MALFORMED))
def test_malformed_request_gets_an_a_abort_and_the_server_keeps_serving(
    make_server, small_ct, caplog, fast, what
):
    caplog.set_level(logging.WARNING, logger="dicom_net.storage_server")
    server = make_server(fast)
    rq, logged = MALFORMED[what]
    for _ in range(11):  # one more than the association limit
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(rq)
        pdu_type, body = read_pdu(sock)
        # A-ABORT, source 2 (service provider), reason 6 (invalid PDU parameter value)
        assert (pdu_type, body[2:]) == (A_ABORT, b"\x02\x06"), (pdu_type, body)
        assert sock.recv(1) == b""
        sock.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in lines if "127.0.0.1" in m and logged in m]) == 11, lines
    _stores_one(server, fast, small_ct.paths[0])


# -- 5: memory on the pynetdicom path ----------------------------------------------------------
def _big_dataset_head(path, pixel_bytes: int) -> tuple[str, bytes]:
    """A CT data set from `path` whose Pixel Data (OW) announces `pixel_bytes`: its bytes
    up to and including that element's header."""
    uid, data = dataset_of(path)
    head = data[: data.rindex(b"\xe0\x7f\x10\x00OW")]
    return uid, head + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", pixel_bytes)


def test_pynetdicom_path_spools_a_large_data_set_instead_of_holding_it(
    make_server, small_ct, spool_dir
):
    size = 32 * 1024 * 1024
    server = make_server(False)
    uid, head = _big_dataset_head(small_ct.paths[0], size)
    piece = bytes(range(256)) * 2048  # 512 KiB
    sock = associate(server.port, fast=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sock.sendall(pdata(0x03, store_command(uid)))
        sock.sendall(pdata(0x00, head))
        for n in range(size // len(piece)):
            sock.sendall(pdata(0x02 if (n + 1) * len(piece) == size else 0x00, piece))
        pdu_type, body = read_pdu(sock)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert pdu_type == P_DATA_TF and response_status(body)[0] == 0x0000
    assert release(sock) == 0x06
    print(f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB data set")
    assert peak < size / 4, f"{peak / 2**20:.1f} MiB held for a {size / 2**20:.0f} MiB data set"
    stored = server.archive.instance(uid)
    assert stored is not None
    with open(stored.path, "rb") as fh:
        fh.seek(-len(piece), 2)
        assert fh.read() == piece  # the last piece, as sent
    assert stored.path.stat().st_size > size
    assert not list(server.archive.incoming_dir.iterdir())
    assert _empty_soon(spool_dir)


def test_pynetdicom_path_keeps_no_spooled_file_of_a_caller_gone_mid_data_set(
    make_server, small_ct, spool_dir
):
    server = make_server(False)
    uid, data = dataset_of(small_ct.paths[0])
    for _ in range(3):
        sock = associate(server.port, fast=False)
        sock.sendall(pdata(0x03, store_command(uid)))
        sock.sendall(pdata(0x00, data[:20000]))
        time.sleep(0.2)  # pynetdicom has begun spooling it
        sock.close()
    assert _empty_soon(spool_dir)
    assert server.archive.instance(uid) is None
    _stores_one(server, False, small_ct.paths[0])
    assert _empty_soon(spool_dir)


@pytest.mark.parametrize("fast", PATHS)
def test_pdu_longer_than_our_maximum_is_aborted_before_it_is_read(make_server, small_ct, fast):
    server = make_server(fast)
    sock = associate(server.port, fast=fast)
    sock.sendall(struct.pack(">BxI", P_DATA_TF, 1024 * 1024 + 1) + b"\x00" * 4096)
    types, _closed = closed_by_server(sock, timeout=10)
    assert types[:1] == [A_ABORT]
    _stores_one(server, fast, small_ct.paths[0])
