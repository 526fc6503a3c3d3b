"""Loupe's storage SCP with real senders (DCMTK storescu, a raw pynetdicom SCU)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pydicom
import pytest
from peers import free_port, peer_env
from pynetdicom import AE, _config

from dicom_net.archive import LocalArchive
from dicom_net.nodes import LocalNode
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(params=["fast", "pynetdicom"])
def scp(tmp_path, request):
    """Both receive paths: the fast storage path (default) and pynetdicom's acceptor."""
    archive = LocalArchive(tmp_path / "archive")
    local = LocalNode(
        "LOUPE", free_port(), "127.0.0.1", ("GOODSCU",), fast_store=request.param == "fast"
    )
    with StorageServer(archive, local) as server:
        yield server


def storescu(dcmtk, port: int, aet: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk["storescu"], "-aet", aet, "-aec", "LOUPE", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=60,
    )


def test_allowed_caller_stores_and_other_caller_is_rejected(scp, dcmtk, small_ct):
    files = list(small_ct.paths[:5])
    bad = storescu(dcmtk, scp.port, "EVILSCU", files)
    assert bad.returncode != 0
    assert "Association Rejected" in bad.stderr or "rejected" in bad.stderr.lower()
    assert scp.archive.instance_count() == 0

    good = storescu(dcmtk, scp.port, "GOODSCU", files)
    assert good.returncode == 0, good.stderr
    assert scp.archive.instance_count() == 5
    inst = scp.archive.instances()[0]
    assert inst.source_ae == "GOODSCU" and inst.path.is_relative_to(scp.archive.files_dir)


def _send_raw(port: int, path: Path, *, chunked: bool) -> int:
    """C-STORE a file's bytes exactly as they are on disk (chunked) or re-encoded."""
    ae = AE(ae_title="GOODSCU")
    meta = pydicom.filereader.read_file_meta_info(path)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = chunked
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="LOUPE")
        assert assoc.is_established
        status = assoc.send_c_store(path if chunked else pydicom.dcmread(path))
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    return int(status.Status)


def test_hostile_uid_cannot_write_outside_the_storage_folder(scp, small_ct, tmp_path):
    name = f"loupe-esc-{uuid.uuid4().hex[:8]}"
    target = Path("/tmp") / name
    ds = pydicom.dcmread(small_ct.paths[0])
    hostile = "../" * 12 + "tmp/" + name  # fits the 64 characters of a UI value
    ds.SOPInstanceUID = hostile
    ds.file_meta.MediaStorageSOPInstanceUID = hostile
    evil = tmp_path / "evil.dcm"
    ds.save_as(evil)

    assert _send_raw(scp.port, evil, chunked=False) == 0x0000
    assert not target.exists() and not Path(str(target) + ".dcm").exists()
    stored = scp.archive.instance(hostile)
    assert stored is not None and stored.path.is_relative_to(scp.archive.files_dir)
    assert pydicom.dcmread(stored.path).SOPInstanceUID == hostile
    inside = [p for p in scp.archive.root.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(scp.archive.root) for p in inside)


def test_truncated_or_garbage_data_is_refused_and_scp_stays_up(scp, small_ct, tmp_path, dcmtk):
    whole = small_ct.paths[0].read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(whole[: len(whole) - 5000])
    assert _send_raw(scp.port, truncated, chunked=True) == 0xC000

    meta_end = whole.index(b"\x08\x00\x05\x00")  # first data set element after the meta
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(whole[:meta_end] + os.urandom(4096))
    assert _send_raw(scp.port, garbage, chunked=True) in (0xC000, 0xA900)

    assert scp.counters.refused == 2 and scp.archive.instance_count() == 0
    assert not list(scp.archive.incoming_dir.iterdir())
    echo = subprocess.run(
        [dcmtk["echoscu"], "-aet", "GOODSCU", "-aec", "LOUPE", "127.0.0.1", str(scp.port)],
        capture_output=True,
        env=peer_env(),
        timeout=30,
    )
    assert echo.returncode == 0
    assert _send_raw(scp.port, small_ct.paths[1], chunked=True) == 0x0000
    assert scp.archive.instance_count() == 1


def test_dcmtk_storescu_compressed_transfer_syntax_kept_as_received(scp, dcmtk):
    from pydicom.data import get_testdata_file

    jpeg = Path(get_testdata_file("JPEG2000.dcm"))
    r = subprocess.run(
        [
            dcmtk["storescu"],
            "-aet",
            "GOODSCU",
            "-aec",
            "LOUPE",
            "--propose-j2k-lossy",
            "127.0.0.1",
            str(scp.port),
            str(jpeg),
        ],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    (inst,) = scp.archive.instances()
    assert inst.transfer_syntax_uid == "1.2.840.10008.1.2.4.91"
    assert pydicom.dcmread(inst.path).PixelData == pydicom.dcmread(jpeg).PixelData


def test_parts_of_a_killed_receiver_are_removed_at_the_next_start(tmp_path):
    """A receiver killed mid-transfer leaves incoming/*.part files; the next start removes
    those whose writer process is gone at once (not an hour later), and keeps a part a
    running process is still writing."""
    import subprocess
    import sys

    from dicom_net.archive import LocalArchive

    archive = LocalArchive(tmp_path / "archive")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    leftover = archive.incoming_dir / f"{dead_pid}-abcdef123456-7.part"
    leftover.write_bytes(b"half an instance")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = archive.incoming_dir / f"{live.pid}-abcdef123456-1.part"
        busy.write_bytes(b"being written")
        LocalArchive(tmp_path / "archive")  # the next start
        assert not leftover.exists()
        assert busy.exists()
    finally:
        live.kill()
        live.wait()
