"""TLS on the storage port ([local] tls), against DCMTK's storescu: stores over TLS on both
receive paths, refuses plain DICOM and callers without a client certificate, and closes a
connection that never handshakes within ARTIM."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peers import free_port, peer_env, require_tool
from raw_requestor import dataset_of

from dicom_net.archive import LocalArchive
from dicom_net.nodes import LocalNode, ReceiverTlsOptions
from dicom_net.receiver_limits import ReceiverLimits
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="pynetdicom")]


def _openssl(*args: str | Path) -> None:
    subprocess.run(
        [require_tool("openssl"), *map(str, args)], check=True, capture_output=True, timeout=60
    )


def _signed(pki: Path, name: str, usage: str) -> None:
    """`name`.key and `name`.pem, signed by the test CA, for serverAuth or clientAuth."""
    ext = pki / f"{name}.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        f"extendedKeyUsage = {usage}\n"
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki / f"{name}.key",
             "-out", pki / f"{name}.csr", "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", pki / f"{name}.csr", "-CA", pki / "ca.pem",
             "-CAkey", pki / "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", ext, "-out", pki / f"{name}.pem")  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    pki = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pki / "ca.key",
             "-out", pki / "ca.pem", "-days", "2", "-subj", "/CN=Loupe test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _signed(pki, "server", "serverAuth")
    _signed(pki, "client", "clientAuth")
    return pki


MakeServer = Callable[..., StorageServer]


@pytest.fixture
def make_server(tmp_path: Path, pki: Path) -> Iterator[MakeServer]:
    started: list[StorageServer] = []

    def make(
        fast: bool = True, require_client_cert: bool = True, limits: ReceiverLimits | None = None
    ) -> StorageServer:
        tls = ReceiverTlsOptions(
            cert_file=pki / "server.pem",
            key_file=pki / "server.key",
            ca_file=pki / "ca.pem",
            require_client_cert=require_client_cert,
        )
        local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("GOODSCU",), fast_store=fast, tls=tls)
        server = StorageServer(
            LocalArchive(tmp_path / f"archive{len(started)}"), local, limits=limits
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _storescu(
    dcmtk: dict[str, str], port: int, files: list[Path], *tls: str | Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk["storescu"], *map(str, tls), "-aet", "GOODSCU", "-aec", "LOUPE", "127.0.0.1",
         str(port), *map(str, files)],
        capture_output=True, text=True, env=peer_env(), timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("fast", PATHS)
def test_storescu_stores_over_tls_with_a_client_certificate(
    make_server, dcmtk, small_ct, pki, fast, caplog
):
    caplog.set_level(logging.INFO, logger="dicom_net.fast_store")
    server = make_server(fast=fast)
    files = list(small_ct.paths[:3])
    client_tls = ("+tls", pki / "client.key", pki / "client.pem", "+cf", pki / "ca.pem")
    r = _storescu(dcmtk, server.port, files, *client_tls)
    assert r.returncode == 0, r.stderr
    assert server.archive.instance_count() == len(files)
    stored = {i.sop_instance_uid: i.path for i in server.archive.instances()}
    for f in files:
        uid, data = dataset_of(f)
        assert stored[uid].read_bytes().endswith(data)  # data set exactly as sent
    fast_lines = [m.getMessage() for m in caplog.records if "storage association" in m.getMessage()]
    assert bool(fast_lines) == fast, fast_lines  # the path asked for served it


@pytest.mark.parametrize("fast", PATHS)
def test_plain_dicom_to_the_tls_port_stores_nothing(make_server, dcmtk, small_ct, fast):
    server = make_server(fast=fast, require_client_cert=False)
    r = _storescu(dcmtk, server.port, [small_ct.paths[0]])
    assert r.returncode != 0
    assert server.archive.instance_count() == 0


def test_caller_without_a_client_certificate_is_refused(make_server, dcmtk, small_ct, pki):
    server = make_server(require_client_cert=True)
    r = _storescu(dcmtk, server.port, [small_ct.paths[0]], "+tla", "+cf", pki / "ca.pem")
    assert r.returncode != 0
    assert server.archive.instance_count() == 0


def test_client_certificate_is_optional_unless_required(make_server, dcmtk, small_ct, pki):
    server = make_server(require_client_cert=False)
    r = _storescu(dcmtk, server.port, [small_ct.paths[0]], "+tla", "+cf", pki / "ca.pem")
    assert r.returncode == 0, r.stderr
    assert server.archive.instance_count() == 1


def test_connection_that_never_handshakes_is_closed_at_artim(make_server):
    artim = 1.0
    server = make_server(limits=ReceiverLimits(artim_s=artim))
    with socket.create_connection(("127.0.0.1", server.port), timeout=artim + 5) as sock:
        start = time.monotonic()
        assert sock.recv(1) == b""  # closed by the receiver, nothing sent
        assert time.monotonic() - start < artim + 2
