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
