"""`loupe demo` on a machine with no PACS: generated studies, embedded Q/R SCP, real retrieve."""

from __future__ import annotations

import json

import pytest

from dicom_net.archive import LocalArchive

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_demo_retrieves_both_studies_over_dicom(loupe):
    loupe.write_config()
    r = loupe.run("demo", "--no-window")
    assert r.returncode == 0, r.stderr
    assert "embedded PACS LOUPEDEMO" in r.stderr
    assert "160/160 instances by C-MOVE" in r.stdout and "24/24 instances by C-MOVE" in r.stdout

    studies = {s["modalities"][0]: s for s in json.loads(loupe.run("studies", "--json").stdout)}
    assert set(studies) == {"CT", "ES"}
    assert studies["CT"]["instance_count"] == 160 and studies["ES"]["instance_count"] == 24
    assert all(
        s["retrieve_state"] == "complete" and s["source_node"] == "demo" for s in studies.values()
    )
    archive = LocalArchive(loupe.storage)
    assert {i.source_ae for i in archive.instances()} == {"LOUPEDEMO"}
    es = [i for i in archive.instances() if i.sop_class_uid == "1.2.840.10008.5.1.4.1.1.77.1.1"]
    assert len(es) == 24  # VL Endoscopic Image Storage

    # A second run reuses the generated demo PACS and retrieves nothing twice.
    r = loupe.run("demo", "--no-window")
    assert r.returncode == 0, r.stderr
    assert "generating" not in r.stderr
    assert LocalArchive(loupe.storage).instance_count() == 184


def test_the_demo_window_signs_to_the_embedded_pacs(tmp_path):
    """The demo's window has the embedded PACS as a node and as its report destination
    (a user's own destination is kept)."""
    from app.demo import with_demo_pacs
    from app.settings import parse_settings
    from dicom_net.nodes import RemoteNode, RetrieveMethod

    node = RemoteNode("demo", "LOUPEDEMO", "127.0.0.1", 40404, RetrieveMethod.MOVE)
    plain = with_demo_pacs(parse_settings({"local": {"storage": str(tmp_path)}}), node)
    assert plain.node("demo") == node
    assert plain.extra["report"]["destination"] == "demo"
    own = parse_settings(
        {
            "local": {"storage": str(tmp_path)},
            "nodes": [{"name": "pacs", "ae_title": "P", "host": "h", "port": 104}],
            "report": {"destination": "pacs"},
        }
    )
    kept = with_demo_pacs(own, node)
    assert kept.extra["report"]["destination"] == "pacs"
    assert [n.name for n in kept.nodes] == ["pacs", "demo"]
