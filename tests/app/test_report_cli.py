"""`loupe analyze --sr --send` and `loupe report`: SRs written, valid, sent to a real PACS."""

from __future__ import annotations

import io
import json
import subprocess

import pydicom
import pytest
from peers import require_tool

from core.review import ReviewStore
from dicom_net.archive import LocalArchive

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def analyzable_ct(tmp_path_factory):
    """A CT the reference nodule model applies to (thin slices), small enough to be quick."""
    from core.synthetic.chest_ct import make_chest_ct, write_ct_series

    out = tmp_path_factory.mktemp("analyzable_ct")
    phantom = make_chest_ct(
        seed=4321,
        slices=64,
        rows=192,
        cols=192,
        pixel_spacing_mm=1.5,
        slice_spacing_mm=2.5,
        nodule_count=3,
        min_nodule_mm=8.0,
    )
    return write_ct_series(
        phantom, out, patient_id="SR-1", patient_name="Test^Report", uid_seed="report-ct"
    )


def dciodvfy_errors(path) -> list[str]:
    exe = require_tool("dciodvfy")
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


def test_analyze_writes_and_sends_the_ai_sr_then_report_the_review(
    loupe, orthanc_factory, analyzable_ct, tmp_path
):
    pacs = orthanc_factory().start()
    loupe.write_config(pacs.node_toml() + '[report]\norganization = "St Elsewhere Hospital"\n')
    r = loupe.run("import", str(analyzable_ct.paths[0].parent))
    assert r.returncode == 0, r.stderr
    study = analyzable_ct.study_instance_uid
    ai_path = tmp_path / "ai.dcm"
    r = loupe.run("analyze", "--study-uid", study, "--json", "--sr", str(ai_path), "--send", "pacs")
    assert r.returncode == 0, r.stderr
    findings = json.loads(r.stdout)["findings"]
    assert findings and "sent 1 SR" in r.stderr
    assert dciodvfy_errors(ai_path) == []
    ai = pydicom.dcmread(ai_path)
    assert ai.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert ai.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    # The operating point the findings were shown at is in every group (TID 4019 parameters).
    params = _text_values(ai, "111002")
    point = json.loads(r.stdout)["operating_point"]
    assert params.count(f"operating point: {point['name']}") >= len(findings)
    assert f"threshold: p >= {point['threshold']:.4g}" in params
    (stored,) = pacs.get("/instances")
    assert pacs.get(f"/instances/{stored}/simplified-tags")["SOPInstanceUID"] == ai.SOPInstanceUID

    # Analysed and sent again (same model version): the same result UIDs and the same
    # Device Observer UID, so the PACS still holds one AI result, not two.
    again = tmp_path / "ai-again.dcm"
    r = loupe.run("analyze", "--study-uid", study, "--json", "--sr", str(again), "--send", "pacs")
    assert r.returncode == 0, r.stderr
    ai2 = pydicom.dcmread(again)
    assert (ai2.SeriesInstanceUID, ai2.SOPInstanceUID) == (ai.SeriesInstanceUID, ai.SOPInstanceUID)
    assert _device_uids(ai2) == _device_uids(ai) and len(_device_uids(ai)) == 1
    assert len(pacs.get("/instances")) == 1

    # Not reviewed yet: the report says so and writes nothing.
    r = loupe.run("report", "--study-uid", study, "--sr", str(tmp_path / "rev.dcm"))
    assert r.returncode == 2 and "still pending" in r.stderr

    # The reader reviews headless (`loupe review`: the same store and audit log as the
    # window): the list first, then decisions by number and by finding_id.
    series = analyzable_ct.series_instance_uid
    r = loupe.run("review", "--study-uid", study, "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert listed["series_uid"] == series
    rows = listed["findings"]
    assert [x["status"] for x in rows] == ["pending"] * len(findings)
    assert [x["number"] for x in rows] == list(range(1, len(findings) + 1))
    assert {x["finding_id"] for x in rows} == {f["finding_id"] for f in findings}
    assert all(x["probability"] is not None and "x" in x for x in rows)
    first, rest = rows[0], rows[1:]
    r = loupe.run(
        "review", "--study-uid", study, "--accept", "1",
        "--reject", *[x["finding_id"] for x in rest],
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = loupe.run("review", "--study-uid", study, "--reject", "99")
    assert r.returncode == 2 and "no finding '99'" in r.stderr
    r = loupe.run("review", "--study-uid", study, "--json")
    statuses = {x["number"]: x["status"] for x in json.loads(r.stdout)["findings"]}
    assert statuses == {1: "accepted", **{x["number"]: "rejected" for x in rest}}
    store = ReviewStore(loupe.storage / "review.sqlite")
    log = [(e.action, e.detail.split()[0]) for e in store.audit_log(series)]
    assert ("finding accepted", first["finding_id"]) in log
    assert sum(a == "finding rejected" for a, _ in log) == len(rest)
    rev_path = tmp_path / "rev.dcm"
    r = loupe.run("report", "--study-uid", study, "--sr", str(rev_path), "--send", "pacs")
    assert r.returncode == 0, r.stderr
    assert "wrote reviewer SR" in r.stdout and "sent 3 objects" in r.stdout
    assert dciodvfy_errors(rev_path) == []
    kos = pydicom.dcmread(tmp_path / "rev-kos.dcm")  # key image of the accepted nodule
    assert kos.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113000"  # Of Interest, never 113001
    assert dciodvfy_errors(tmp_path / "rev-kos.dcm") == []
    rev = pydicom.dcmread(rev_path)
    assert rev.VerificationFlag == "VERIFIED"
    assert rev.VerifyingObserverSequence[0].VerifyingOrganization == "St Elsewhere Hospital"
    assert _device_uids(rev) == _device_uids(ai)  # one Device Observer UID per installation
    # Only the accepted finding is a nodule; each rejected one is recorded as rejected.
    finding_codes = _code_values(rev, "121071")
    assert finding_codes.count("27925004") == 1
    assert finding_codes.count("AI-REJECTED") == len(findings) - 1
    # The AI SR sent by `analyze` is the reviewer SR's predecessor, not a second AI SR.
    assert len(pacs.get("/instances")) == 3  # AI SR, reviewer SR, KOS
    got = [
        pydicom.dcmread(io.BytesIO(pacs.request("GET", f"/instances/{i}/file")))
        for i in pacs.get("/instances")
    ]
    assert {d.SOPInstanceUID for d in got} >= {rev.SOPInstanceUID}
    assert (
        rev.PredecessorDocumentsSequence[0]
        .ReferencedSeriesSequence[0]
        .ReferencedSOPSequence[0]
        .ReferencedSOPInstanceUID
        == ai.SOPInstanceUID
    )
    # Both SRs joined the study in the local archive.
    classes = [i.sop_class_uid for i in LocalArchive(loupe.storage).instances()]
    assert classes.count("1.2.840.10008.5.1.4.1.1.88.34") == 2
    assert len(classes) == len(analyzable_ct.paths) + 2


def _text_values(ds: pydicom.Dataset, code_value: str) -> list[str]:
    """TextValue of every content item named by (code_value), anywhere in the SR tree."""
    out: list[str] = []
    for item in ds.get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == code_value and "TextValue" in item:
            out.append(str(item.TextValue))
        out.extend(_text_values(item, code_value))
    return out


def _code_values(ds: pydicom.Dataset, code_value: str) -> list[str]:
    """ConceptCodeSequence values of every CODE item named by (code_value) in the SR tree."""
    out: list[str] = []
    for item in ds.get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == code_value and "ConceptCodeSequence" in item:
            out.append(str(item.ConceptCodeSequence[0].CodeValue))
        out.extend(_code_values(item, code_value))
    return out


def _device_uids(ds: pydicom.Dataset) -> set[str]:
    """Device Observer UIDs (DCM 121012) in the SR tree."""
    out: set[str] = set()
    for item in ds.get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == "121012" and "UID" in item:
            out.add(str(item.UID))
        out |= _device_uids(item)
    return out
