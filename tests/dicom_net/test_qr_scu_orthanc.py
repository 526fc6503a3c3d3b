"""Loupe as a Q/R SCU against a real Orthanc: echo, find, move, get, cancel, failures."""

from __future__ import annotations

import io
import json
import threading

import pydicom
import pytest

from app.settings import load_settings
from dicom_net.archive import LocalArchive
from dicom_net.errors import PartialRetrieve
from dicom_net.nodes import RetrieveMethod
from dicom_net.retrieve import RetrieveProgress, RetrieveResult, retrieve
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network


def dataset_bytes(data: bytes) -> bytes:
    """The data set after the file meta group: what a PACS sends on the wire, byte for byte."""
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return data[fp.tell() :]


def test_echo(pacs, loupe):
    loupe.write_config(pacs.node_toml())
    r = loupe.run("echo", "pacs")
    assert r.returncode == 0, r.stderr
    assert "C-ECHO 'pacs' (ORTHANC@127.0.0.1" in r.stdout and "success" in r.stdout


def test_echo_unreachable_node_says_so(loupe):
    from peers import free_port

    loupe.write_config(
        f'[[nodes]]\nname = "gone"\nae_title = "GONE"\nhost = "127.0.0.1"\nport = {free_port()}\n'
    )
    r = loupe.run("echo", "gone")
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "'gone'" in lines[0]


def test_find_at_all_three_levels(pacs, loupe, big_ct, small_ct):
    loupe.write_config(pacs.node_toml())
    r = loupe.run("find", "pacs", "--level", "patient", "--patient-name", "Test^*", "--json")
    assert r.returncode == 0, r.stderr
    patients = {p["PatientID"]: p for p in json.loads(r.stdout)}
    assert set(patients) == {"LOUPE-T1", "LOUPE-T2"}
    assert patients["LOUPE-T1"]["PatientName"] == "Test^Bigct"

    r = loupe.run(
        "find",
        "pacs",
        "--level",
        "study",
        "--study-date",
        "20260101-20261231",
        "--modality",
        "CT",
        "--json",
    )
    studies = json.loads(r.stdout)
    assert [s["StudyInstanceUID"] for s in studies] == [big_ct.study_instance_uid]
    assert studies[0]["NumberOfStudyRelatedInstances"] == 200
    assert studies[0]["StudyDescription"] == "CT CHEST LOW DOSE"

    r = loupe.run("find", "pacs", "--level", "study", "--patient-id", "LOUPE-T2", "--json")
    assert [s["StudyInstanceUID"] for s in json.loads(r.stdout)] == [small_ct.study_instance_uid]

    r = loupe.run(
        "find", "pacs", "--level", "series", "--study-uid", big_ct.study_instance_uid, "--json"
    )
    series = json.loads(r.stdout)
    assert [s["SeriesInstanceUID"] for s in series] == [big_ct.series_instance_uid]
    assert series[0]["Modality"] == "CT" and series[0]["NumberOfSeriesRelatedInstances"] == 200

    # Series level without a study UID walks the matching studies first.
    r = loupe.run("find", "pacs", "--level", "series", "--patient-id", "LOUPE-T2", "--json")
    assert [s["SeriesInstanceUID"] for s in json.loads(r.stdout)] == [small_ct.series_instance_uid]

    r = loupe.run("find", "pacs", "--level", "study", "--study-date", "2026-13-01")
    assert r.returncode == 2 and "--study-date" in r.stderr


@pytest.mark.parametrize("streams", [1, 2])
def test_move_big_ct_is_byte_identical(pacs, loupe, big_ct, streams):
    loupe.write_config(pacs.node_toml(move_streams=streams))
    r = loupe.run(
        "retrieve", "pacs", "--study-uid", big_ct.study_instance_uid, "--method", "move", "--json"
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["method"] == "move" and result["complete"] is True
    assert (result["expected"], result["present"], result["missing"]) == (200, 200, 0)
    assert result["completed"] == 200  # each instance sent once, whatever the streams
    parallel = [n for n in result["notes"] if "parallel C-MOVEs" in n]
    assert parallel == (["2 parallel C-MOVEs"] if streams == 2 else [])

    archive = LocalArchive(loupe.storage)
    by_uid = {i.sop_instance_uid: i for i in archive.instances()}
    assert len(by_uid) == 200
    for path in big_ct.paths:
        sent = path.read_bytes()
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        received = by_uid[uid].path.read_bytes()
        assert dataset_bytes(received) == dataset_bytes(sent), uid
        assert by_uid[uid].path.is_relative_to(loupe.storage)

    r = loupe.run("studies", "--json")
    (study,) = json.loads(r.stdout)
    assert study["instance_count"] == 200 and study["retrieve_state"] == "complete"
    assert study["modalities"] == ["CT"] and study["patient_id"] == "LOUPE-T1"


def _move_with_progress(
    pacs, loupe, study_uid: str, *, streams: int
) -> tuple[RetrieveResult, list[RetrieveProgress]]:
    """retrieve() by C-MOVE into a storage SCP of our own, with every progress report."""
    loupe.write_config(pacs.node_toml(move_streams=streams))
    settings = load_settings(loupe.config)
    archive = LocalArchive(settings.storage)
    seen: list[RetrieveProgress] = []
    with StorageServer(archive, settings.local, node_for_ae=settings.node_for_ae) as server:
        result = retrieve(
            settings.local,
            settings.node("pacs"),
            archive,
            study_instance_uid=study_uid,
            method=RetrieveMethod.MOVE,
            on_progress=seen.append,
            ingest=server.ingest,
        )
    return result, seen


@pytest.mark.parametrize("requestor", ["plain", "pynetdicom"])
def test_both_requestors_list_and_move_a_study(pacs, loupe, small_ct, monkeypatch, requestor):
    """scu.py's plain-socket C-FIND/C-MOVE, and pynetdicom's (what TLS nodes use)."""
    import dicom_net.retrieve as retrieve_mod
    from dicom_net import scu

    monkeypatch.setattr(retrieve_mod, "PYNETDICOM_MOVE", requestor == "pynetdicom")
    calls: list[str] = []
    for name in ("find_instances", "move"):
        real = getattr(scu, name)
        monkeypatch.setattr(
            scu, name, lambda *a, _r=real, _n=name, **k: (calls.append(_n), _r(*a, **k))[1]
        )
    result, seen = _move_with_progress(pacs, loupe, small_ct.study_instance_uid, streams=1)
    n = len(small_ct.paths)
    assert (result.expected, result.present, result.completed) == (n, n, n)
    assert seen and seen[-1].completed == n and seen[-1].remaining == 0
    assert sorted(set(calls)) == ([] if requestor == "pynetdicom" else ["find_instances", "move"])


def test_get_negotiates_the_study_classes(pacs, loupe, small_ct):
    loupe.write_config(pacs.node_toml(retrieve="get"))
    r = loupe.run("retrieve", "pacs", "--study-uid", small_ct.study_instance_uid, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["method"] == "get" and result["present"] == len(small_ct.paths)
    archive = LocalArchive(loupe.storage)
    assert {i.sop_class_uid for i in archive.instances()} == {"1.2.840.10008.5.1.4.1.1.2"}


def test_retrieve_again_counts_each_instance_once(pacs, loupe, small_ct):
    loupe.write_config(pacs.node_toml())
    for _ in range(2):
        r = loupe.run("retrieve", "pacs", "--study-uid", small_ct.study_instance_uid)
        assert r.returncode == 0, r.stderr
    archive = LocalArchive(loupe.storage)
    assert archive.instance_count() == len(small_ct.paths)
    assert len(list((loupe.storage / "files").rglob("*.dcm"))) == len(small_ct.paths)


def test_cancel_mid_move_leaves_study_marked_cancelled(pacs, loupe, big_ct):
    loupe.write_config(pacs.node_toml())
    settings = load_settings(loupe.config)
    archive = LocalArchive(settings.storage)
    cancel = threading.Event()
    seen: list[RetrieveProgress] = []

    def on_progress(p: RetrieveProgress) -> None:
        seen.append(p)
        if p.completed >= 20:
            cancel.set()

    with StorageServer(archive, settings.local, node_for_ae=settings.node_for_ae) as server:
        with pytest.raises(PartialRetrieve) as info:
            retrieve(
                settings.local,
                settings.node("pacs"),
                archive,
                study_instance_uid=big_ct.study_instance_uid,
                method=RetrieveMethod.MOVE,
                cancel=cancel,
                on_progress=on_progress,
                ingest=server.ingest,
            )
    err = info.value
    assert err.cancelled and 20 <= err.received < 200 and err.missing == 200 - err.received
    assert "missing" in str(err) and "cancelled" in str(err)
    # Progress came from the pending responses, counting up with "remaining" counting down.
    assert seen[0].remaining is not None and seen[-1].remaining is not None
    assert seen[-1].remaining < seen[0].remaining
    (study,) = archive.studies()
    assert study.retrieve_state == "cancelled" and study.missing_instances == err.missing


def test_parallel_move_progress_adds_up_across_streams(pacs, loupe, big_ct):
    result, seen = _move_with_progress(pacs, loupe, big_ct.study_instance_uid, streams=2)
    assert result.complete and result.notes == ["2 parallel C-MOVEs"]
    completed = [p.completed for p in seen]
    assert completed == sorted(completed) and completed[-1] == 200
    assert seen[-1].remaining == 0 and seen[0].remaining is not None
    assert max(p.remaining or 0 for p in seen) <= 200


def test_unknown_move_destination_explains_what_to_configure(orthanc_factory, loupe, small_ct):
    # Anyone may query and retrieve, but no C-MOVE destination LOUPE is configured.
    allow = {
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowGet": True,
    }
    orthanc = orthanc_factory(extra_config=allow).start()
    orthanc.upload(list(small_ct.paths))
    loupe.write_config(orthanc.node_toml())
    r = loupe.run(
        "retrieve", "pacs", "--study-uid", small_ct.study_instance_uid, "--method", "move"
    )
    assert r.returncode == 5
    (line,) = r.stderr.strip().splitlines()
    assert "'LOUPE'" in line and "127.0.0.1" in line and f"port {loupe.port}" in line
    assert "DicomModalities" in line and 'retrieve = "get"' in line

    # Without an explicit method Loupe falls back to C-GET and says why.
    r = loupe.run("retrieve", "pacs", "--study-uid", small_ct.study_instance_uid, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["fell_back_to_get"] is True and result["method"] == "get"
    assert result["present"] == len(small_ct.paths)
    assert "fell back to C-GET" in r.stderr


def test_orthanc_killed_mid_move_then_second_retrieve_completes(
    orthanc_factory, loupe, big_ct, loupe_port
):
    orthanc = orthanc_factory(modalities={"loupe": ("LOUPE", "127.0.0.1", loupe_port)}).start()
    orthanc.upload(list(big_ct.paths))
    loupe.write_config(orthanc.node_toml())
    settings = load_settings(loupe.config)
    archive = LocalArchive(settings.storage)

    def kill_at_40(p: RetrieveProgress) -> None:
        if p.completed >= 40 and orthanc.proc is not None:
            orthanc.kill()

    with StorageServer(archive, settings.local, node_for_ae=settings.node_for_ae) as server:
        with pytest.raises(PartialRetrieve) as info:
            retrieve(
                settings.local,
                settings.node("pacs"),
                archive,
                study_instance_uid=big_ct.study_instance_uid,
                method=RetrieveMethod.MOVE,
                on_progress=kill_at_40,
                ingest=server.ingest,
            )
    assert "connection to the PACS lost" in str(info.value)
    (study,) = archive.studies()
    assert study.retrieve_state == "incomplete"
    assert (
        40 <= study.instance_count < 200 and study.missing_instances == 200 - study.instance_count
    )

    orthanc.start()  # same storage: the PACS comes back
    r = loupe.run("retrieve", "pacs", "--study-uid", big_ct.study_instance_uid, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["present"] == 200 and result["missing"] == 0
    assert any("completing" in n for n in result["notes"])
    # Only the missing ones were asked for.
    assert result["completed"] == 200 - study.instance_count
    archive2 = LocalArchive(settings.storage)
    (study,) = archive2.studies()
    assert study.instance_count == 200 and study.retrieve_state == "complete"
    assert len(list((settings.storage / "files").rglob("*.dcm"))) == 200


@pytest.mark.parametrize("method", [RetrieveMethod.MOVE, RetrieveMethod.GET])
def test_retrieve_when_the_pacs_refuses_instance_level_queries(
    pacs, loupe, small_ct, monkeypatch, method
):
    import dicom_net.retrieve as retrieve_module
    from dicom_net.errors import QueryFailed

    def refuse(*_a, **_k):
        raise QueryFailed("IMAGE level not supported")

    monkeypatch.setattr(retrieve_module, "_remote_instances", refuse)
    loupe.write_config(pacs.node_toml())
    settings = load_settings(loupe.config)
    archive = LocalArchive(settings.storage)
    with StorageServer(archive, settings.local, node_for_ae=settings.node_for_ae) as server:
        result = retrieve(
            settings.local,
            settings.node("pacs"),
            archive,
            study_instance_uid=small_ct.study_instance_uid,
            method=method,
            ingest=server.ingest,
        )
    assert result.expected == result.present == len(small_ct.paths) and result.complete
    assert any("completeness checked by count" in n for n in result.notes)
