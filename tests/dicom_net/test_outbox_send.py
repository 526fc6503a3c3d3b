"""C-STORE to a real Orthanc through the persistent outbox."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from sr_sample import make_3d_sr

pytestmark = pytest.mark.network


def test_send_comprehensive_3d_sr_and_read_it_back_over_rest(
    orthanc_factory, loupe, small_ct, tmp_path
):
    pacs = orthanc_factory().start()  # its own PACS: the session's keeps its known content
    sr_path = make_3d_sr(small_ct.paths[0], tmp_path / "sr.dcm")
    sr = pydicom.dcmread(sr_path)
    loupe.write_config(pacs.node_toml())
    r = loupe.run("send", "pacs", str(sr_path))
    assert r.returncode == 0, r.stderr
    assert "sent 1 objects" in r.stdout

    found = pacs.request(
        "POST",
        "/tools/find",
        json.dumps({"Level": "Instance", "Query": {"SOPInstanceUID": sr.SOPInstanceUID}}).encode(),
    )
    assert len(found) == 1
    tags = pacs.get(f"/instances/{found[0]}/simplified-tags")
    assert tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert tags["StudyInstanceUID"] == small_ct.study_instance_uid
    stored = pacs.get(f"/instances/{found[0]}/file")
    assert pydicom.dcmread(io.BytesIO(stored)).SOPInstanceUID == sr.SOPInstanceUID

    r = loupe.run("outbox", "--json")
    (item,) = json.loads(r.stdout)
    assert item["state"] == "delivered" and item["attempts"] == 1


def test_outbox_delivers_after_restart_while_pacs_was_down(
    orthanc_factory, loupe, small_ct, tmp_path
):
    orthanc = orthanc_factory()  # configured, not started: the PACS is down
    loupe.write_config(orthanc.node_toml())
    sr_path = make_3d_sr(small_ct.paths[0], tmp_path / "sr.dcm")
    files = [sr_path, *small_ct.paths[:3]]
    r = loupe.run("send", "pacs", *map(str, files))
    assert r.returncode == 7
    (line,) = r.stderr.strip().splitlines()
    assert "4 of 4 objects not delivered" in line and "unreachable" in line and "retried" in line
    sr_path.unlink()  # the outbox keeps its own copy

    r = loupe.run("outbox", "--json")
    items = json.loads(r.stdout)
    assert [i["state"] for i in items] == ["queued"] * 4
    assert all(i["attempts"] == 1 and "unreachable" in i["last_error"] for i in items)

    orthanc.start()  # the PACS comes back; a new Loupe process delivers the queue
    r = loupe.run("outbox", "--deliver", "--json")
    assert r.returncode == 0, r.stderr
    assert [i["state"] for i in json.loads(r.stdout)] == ["delivered"] * 4
    stats = orthanc.get("/statistics")
    assert stats["CountInstances"] == 4
    classes = {
        orthanc.get(f"/instances/{i}/simplified-tags")["SOPClassUID"]
        for i in orthanc.get("/instances")
    }
    assert classes == {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.2"}


def test_backoff_grows_and_is_capped():
    from dicom_net.outbox import BACKOFF_MAX_S, backoff_seconds

    delays = [backoff_seconds(n) for n in range(1, 12)]
    assert delays[0] == 5.0 and delays[1] == 10.0 and delays[2] == 20.0
    assert delays == sorted(delays) and delays[-1] == BACKOFF_MAX_S


def test_two_senders_on_one_outbox_send_each_object_once(tmp_path, small_ct):
    """`loupe send` while `loupe serve`'s worker runs: both deliver from the same outbox at
    the same time; each object reaches the PACS exactly once (it was 390 C-STOREs for 200
    objects before claims)."""
    import threading

    from peers import free_port

    from dicom_net.archive import LocalArchive
    from dicom_net.nodes import LocalNode, RemoteNode, RetrieveMethod
    from dicom_net.outbox import Outbox, OutboxState
    from dicom_net.storage_server import StorageServer

    pacs_archive = LocalArchive(tmp_path / "pacs")
    pacs_local = LocalNode("PACS", free_port(), "127.0.0.1", ("LOUPE",))
    pacs = StorageServer(pacs_archive, pacs_local)
    pacs.start()
    try:
        outbox = Outbox(LocalArchive(tmp_path / "loupe"))
        paths = list(small_ct.paths)
        ids = outbox.enqueue("pacs", paths)
        node = RemoteNode("pacs", "PACS", "127.0.0.1", pacs.port, RetrieveMethod.MOVE)
        me = LocalNode("LOUPE", free_port(), "127.0.0.1", ())
        start = threading.Barrier(3)
        results: list[tuple[int, int]] = []

        def sender(explicit: bool) -> None:
            box = Outbox(LocalArchive(tmp_path / "loupe"))  # its own connections, as a process
            start.wait()
            if explicit:  # `loupe send`: the items it queued
                results.append(box.deliver(me, {"pacs": node}, items=box.items(ids=ids)))
            else:  # the worker: whatever is due
                results.append(box.deliver(me, {"pacs": node}))

        threads = [threading.Thread(target=sender, args=(e,)) for e in (True, False, False)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sum(d for d, _ in results) == len(paths)  # delivered once in all
        assert pacs.ingest.counters.stored == len(paths)
        assert pacs.ingest.counters.replaced == 0  # nothing received twice
        assert {i.state for i in outbox.items(ids=ids)} == {OutboxState.DELIVERED}
    finally:
        pacs.stop()


def test_a_lapsed_claim_is_sent_again(tmp_path, small_ct):
    """A sender killed mid-send leaves its items 'sending'; after CLAIM_S they are due again."""
    import time

    from dicom_net.archive import LocalArchive
    from dicom_net.outbox import CLAIM_S, Outbox, OutboxState

    outbox = Outbox(LocalArchive(tmp_path / "loupe"))
    ids = outbox.enqueue("pacs", list(small_ct.paths[:2]))
    claimed = outbox.claim(outbox.items(ids=ids))
    assert [i.state for i in claimed] == [OutboxState.SENDING] * 2
    assert outbox.claim(outbox.items(ids=ids)) == []  # held: nobody else gets them
    assert outbox.due() == []
    assert len(outbox.due(now=time.time() + CLAIM_S + 1)) == 2  # the claim lapsed
