"""Loupe's embedded Q/R SCP (its archive answering C-FIND/C-MOVE/C-GET) with DCMTK clients."""

from __future__ import annotations

import subprocess
import time

import pydicom
import pytest
from peers import free_port, peer_env

from dicom_net.archive import LocalArchive
from dicom_net.nodes import LocalNode
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, env=peer_env(), timeout=120)


@pytest.fixture
def qr_scp(tmp_path, dcmtk, small_ct):
    storescp_port = free_port()
    archive = LocalArchive(tmp_path / "archive")
    local = LocalNode("LOUPEQR", free_port(), "127.0.0.1", ("DCMTK",))
    server = StorageServer(
        archive, local, qr_destinations={"STORESCP": ("127.0.0.1", storescp_port)}
    )
    server.start()
    stored = run(
        dcmtk["storescu"],
        "-aet",
        "DCMTK",
        "-aec",
        "LOUPEQR",
        "127.0.0.1",
        str(server.port),
        *map(str, small_ct.paths),
    )
    assert stored.returncode == 0, stored.stderr
    server.storescp_port = storescp_port  # type: ignore[attr-defined]
    yield server
    server.stop()


def test_storescu_then_findscu_at_study_and_series_level(qr_scp, dcmtk, small_ct, tmp_path):
    out = tmp_path / "find"
    out.mkdir()
    r = run(
        dcmtk["findscu"],
        "-S",
        "-aet",
        "DCMTK",
        "-aec",
        "LOUPEQR",
        "-X",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=LOUPE-T*",
        "-k",
        "StudyInstanceUID",
        "-k",
        "PatientName",
        "-k",
        "NumberOfStudyRelatedInstances",
        "-k",
        "ModalitiesInStudy",
        "127.0.0.1",
        str(qr_scp.port),
    )
    assert r.returncode == 0, r.stderr
    (rsp,) = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert rsp.StudyInstanceUID == small_ct.study_instance_uid
    assert str(rsp.PatientName) == "Test^Smallct"
    assert int(rsp.NumberOfStudyRelatedInstances) == len(small_ct.paths)
    assert rsp.ModalitiesInStudy == "CT"

    for p in out.glob("rsp*.dcm"):
        p.unlink()
    r = run(
        dcmtk["findscu"],
        "-S",
        "-aet",
        "DCMTK",
        "-aec",
        "LOUPEQR",
        "-X",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={small_ct.study_instance_uid}",
        "-k",
        "SeriesInstanceUID",
        "-k",
        "Modality=CT",
        "127.0.0.1",
        str(qr_scp.port),
    )
    assert r.returncode == 0, r.stderr
    (rsp,) = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert rsp.SeriesInstanceUID == small_ct.series_instance_uid

    for p in out.glob("rsp*.dcm"):
        p.unlink()
    r = run(
        dcmtk["findscu"],
        "-S",
        "-aet",
        "DCMTK",
        "-aec",
        "LOUPEQR",
        "-X",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=NOBODY",
        "127.0.0.1",
        str(qr_scp.port),
    )
    assert r.returncode == 0 and not list(out.glob("rsp*.dcm"))


def test_movescu_to_storescp_and_to_unknown_destination(qr_scp, dcmtk, small_ct, tmp_path):
    received = tmp_path / "received"
    received.mkdir()
    storescp = subprocess.Popen(
        [dcmtk["storescp"], "-aet", "STORESCP", "-od", str(received), str(qr_scp.storescp_port)],
        env=peer_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        r = run(
            dcmtk["movescu"],
            "-S",
            "-aet",
            "DCMTK",
            "-aec",
            "LOUPEQR",
            "-aem",
            "STORESCP",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={small_ct.study_instance_uid}",
            "127.0.0.1",
            str(qr_scp.port),
        )
        assert r.returncode == 0, r.stderr
        files = list(received.iterdir())
        assert len(files) == len(small_ct.paths)
        uids = {pydicom.dcmread(f).SOPInstanceUID for f in files}
        assert uids == {pydicom.dcmread(p).SOPInstanceUID for p in small_ct.paths}

        r = run(
            dcmtk["movescu"],
            "-S",
            "-aet",
            "DCMTK",
            "-aec",
            "LOUPEQR",
            "-aem",
            "NOWHERE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={small_ct.study_instance_uid}",
            "127.0.0.1",
            str(qr_scp.port),
        )
        assert "movedestinationunknown" in (r.stdout + r.stderr).lower()  # status 0xA801
    finally:
        storescp.terminate()
        storescp.wait()


def test_getscu_retrieves_the_series(qr_scp, dcmtk, small_ct, tmp_path):
    out = tmp_path / "get"
    out.mkdir()
    r = run(
        dcmtk["getscu"],
        "-S",
        "-aet",
        "DCMTK",
        "-aec",
        "LOUPEQR",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={small_ct.study_instance_uid}",
        "-k",
        f"SeriesInstanceUID={small_ct.series_instance_uid}",
        "127.0.0.1",
        str(qr_scp.port),
    )
    assert r.returncode == 0, r.stderr
    assert len(list(out.iterdir())) == len(small_ct.paths)


def test_unknown_caller_cannot_query(qr_scp, dcmtk):
    r = run(
        dcmtk["findscu"],
        "-S",
        "-aet",
        "STRANGER",
        "-aec",
        "LOUPEQR",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "127.0.0.1",
        str(qr_scp.port),
    )
    assert r.returncode != 0 and "reject" in (r.stdout + r.stderr).lower()


def test_loupe_retrieves_from_another_loupe(qr_scp, loupe, small_ct):
    # A second workstation pulls from this one by C-GET (no destination registered for it).
    # The fixture's SCP allows only DCMTK: restart it allowing LOUPE too.
    qr_scp.stop()
    qr_scp.local = LocalNode("LOUPEQR", qr_scp.local.port, "127.0.0.1", ("DCMTK", "LOUPE"))
    qr_scp.start()
    loupe.write_config(
        f'[[nodes]]\nname = "peer"\nae_title = "LOUPEQR"\nhost = "127.0.0.1"\n'
        f'port = {qr_scp.port}\nretrieve = "get"\n'
    )
    r = loupe.run("retrieve", "peer", "--study-uid", small_ct.study_instance_uid)
    assert r.returncode == 0, r.stderr
    assert LocalArchive(loupe.storage).instance_count() == len(small_ct.paths)


def test_parallel_instance_level_moves_from_another_loupe(qr_scp, small_ct, tmp_path, monkeypatch):
    """Lists of SOP Instance UIDs in IMAGE-level C-MOVEs (what parallel streams send) are
    understood by Loupe's own Q/R SCP: no fallback to a single study-level move."""
    import dicom_net.retrieve as retrieve_mod
    from dicom_net.nodes import RemoteNode, RetrieveMethod

    monkeypatch.setattr(retrieve_mod, "PARALLEL_MIN_PER_STREAM", 4)
    receiver_port = free_port()
    qr_scp.stop()
    qr_scp.local = LocalNode("LOUPEQR", qr_scp.local.port, "127.0.0.1", ("DCMTK", "LOUPE"))
    qr_scp.qr.destinations = {"LOUPE": ("127.0.0.1", receiver_port)}
    qr_scp.start()
    me = LocalNode("LOUPE", receiver_port, "127.0.0.1", ("LOUPEQR",))
    peer = RemoteNode("peer", "LOUPEQR", "127.0.0.1", qr_scp.port, move_streams=3)
    archive = LocalArchive(tmp_path / "mine")
    with StorageServer(archive, me) as server:
        result = retrieve_mod.retrieve(
            me,
            peer,
            archive,
            study_instance_uid=small_ct.study_instance_uid,
            method=RetrieveMethod.MOVE,
            allow_fallback=False,
            ingest=server.ingest,
        )
    n = len(small_ct.paths)
    assert (result.present, result.missing, result.completed) == (n, 0, n)
    assert result.notes == ["3 parallel C-MOVEs"]
