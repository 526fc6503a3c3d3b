"""A PACS that refuses an unknown C-MOVE destination by aborting the association (not with
status 0xA801): Loupe says what to configure and falls back to C-GET, which works.

The PACS here is pynetdicom (a real DICOM implementation on loopback), configured to abort
every C-MOVE and to serve C-GET from the files of a series."""

from __future__ import annotations

import pydicom
import pytest
from peers import free_port
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_net.archive import LocalArchive
from dicom_net.errors import MoveDestinationUnknown
from dicom_net.nodes import LocalNode, RemoteNode, RetrieveMethod
from dicom_net.retrieve import retrieve

pytestmark = pytest.mark.network


@pytest.fixture
def aborting_pacs(small_ct):  # type: ignore[no-untyped-def]
    datasets = [pydicom.dcmread(p) for p in small_ct.paths]

    def on_move(event):  # type: ignore[no-untyped-def]
        event.assoc.abort()  # what some PACS do with a destination they do not know
        yield 0xC000, None

    def on_find(event):  # type: ignore[no-untyped-def]
        level = str(event.identifier.get("QueryRetrieveLevel", ""))
        for ds in datasets if level == "IMAGE" else datasets[:1]:
            out = pydicom.Dataset()
            out.QueryRetrieveLevel = level
            out.StudyInstanceUID = ds.StudyInstanceUID
            out.SeriesInstanceUID = ds.SeriesInstanceUID
            out.NumberOfStudyRelatedInstances = str(len(datasets))
            if level == "IMAGE":
                out.SOPInstanceUID = ds.SOPInstanceUID
                out.SOPClassUID = ds.SOPClassUID
            yield 0xFF00, out

    def on_get(event):  # type: ignore[no-untyped-def]
        yield len(datasets)
        for ds in datasets:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    ae = AE("ABORTPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(CTImageStorage, scu_role=False, scp_role=True)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[
            (evt.EVT_C_FIND, on_find),
            (evt.EVT_C_MOVE, on_move),
            (evt.EVT_C_GET, on_get),
        ],
    )
    yield RemoteNode("pacs", "ABORTPACS", "127.0.0.1", port, RetrieveMethod.MOVE)
    server.shutdown()


def test_aborted_move_falls_back_to_get_and_says_why(aborting_pacs, small_ct, tmp_path):
    local = LocalNode("LOUPE", free_port(), "127.0.0.1", ("ABORTPACS",))
    archive = LocalArchive(tmp_path / "archive")
    with pytest.raises(MoveDestinationUnknown, match="aborted the C-MOVE before sending"):
        retrieve(
            local,
            aborting_pacs,
            archive,
            study_instance_uid=small_ct.study_instance_uid,
            method=RetrieveMethod.MOVE,
            allow_fallback=False,
        )
    result = retrieve(local, aborting_pacs, archive, study_instance_uid=small_ct.study_instance_uid)
    assert result.fell_back_to_get and result.method == "get"
    assert result.present == len(small_ct.paths) and result.missing == 0
    assert any("aborted the C-MOVE" in n and "fell back to C-GET" in n for n in result.notes)
