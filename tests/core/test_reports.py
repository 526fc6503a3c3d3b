"""TID 1500 SRs from findings: valid per dciodvfy and dsrdump, read back unchanged."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from peers import CtSeries, require_tool
from pydicom.sr.codedict import codes
from sr_sample import make_3d_sr

from core.findings import Finding, ReviewStatus
from core.reports.ai_sr import build_ai_sr
from core.reports.read import read_findings
from core.reports.review_sr import build_review_sr
from core.synthetic.endoscopy import write_endoscopy_study

# dciodvfy warnings that remain, each explained; any other warning fails the test.
# - 99LOUPE is our private coding scheme (CODES.md), declared in the Coding Scheme
#   Identification Sequence; dciodvfy only knows the PS3.16 schemes and warns once per use.
KNOWN_WARNINGS = ("Unrecognized defined term <99LOUPE> for value 1 of attribute <Coding Scheme",)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) reported by dicom3tools' dciodvfy for a file."""
    tool = require_tool("dciodvfy")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in lines if line.startswith(("Error", "Abort"))]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, warnings


def assert_valid(path: Path) -> None:
    errors, warnings = dciodvfy(path)
    assert errors == []
    unexplained = [w for w in warnings if not any(k in w for k in KNOWN_WARNINGS)]
    assert unexplained == []


def dsrdump(path: Path) -> str:
    """dsrdump with template ids (+Pt); fails on any error parsing the content tree."""
    tool = require_tool("dsrdump")
    proc = subprocess.run(
        [tool, "+Pt", "+Pc", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith(("E:", "F:"))] == []
    return proc.stdout


@pytest.fixture(scope="module")
def ct_headers(small_ct: CtSeries) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in small_ct.paths]


def voxel_centre(ds: pydicom.Dataset, row: float, col: float) -> tuple[float, float, float]:
    """LPS position (mm) of pixel (row, col) of a CT slice."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    p = np.asarray(ds.ImagePositionPatient, float) + col * dc * iop[:3] + row * dr * iop[3:]
    return (float(p[0]), float(p[1]), float(p[2]))


@pytest.fixture(scope="module")
def ai_findings(ct_headers: list[pydicom.Dataset]) -> list[Finding]:
    series = str(ct_headers[0].SeriesInstanceUID)
    by_z = sorted(ct_headers, key=lambda d: float(d.ImagePositionPatient[2]))
    specs = [  # (slice, row, col, diameter, probability, attributes)
        (5, 40.25, 50.5, 7.3, 0.91, {"type": "solid"}),
        (12, 70.0, 90.75, 11.0, 0.64, {"type": "part-solid", "solid_component_mm": 4.0}),
        (18, 60.5, 30.0, 5.2, 0.35, {"type": "ground-glass"}),
        (20, 64.0, 64.0, 4.1, 0.28, {}),
    ]
    return [
        Finding(
            finding_id=f"lung-nodule-ref-{n + 1}",
            model_id="lung-nodule-ref",
            model_version="1.0.0",
            series_instance_uid=series,
            probability=p,
            center_mm=voxel_centre(by_z[k], r, c),
            diameter_mm=d,
            slice_index=k,
            attributes=attrs,
        )
        for n, (k, r, c, d, p, attrs) in enumerate(specs)
    ]


def reviewed(ai_findings: list[Finding]) -> list[Finding]:
    a, b, c, d = ai_findings
    x, y, z = b.center_mm or (0.0, 0.0, 0.0)
    added = Finding(
        finding_id="R1a2b3c",
        model_id="reader",
        model_version="dr.house",
        series_instance_uid=a.series_instance_uid,
        probability=1.0,
        center_mm=(x + 20.125, y - 10.5, z),
        diameter_mm=6.5,
        status=ReviewStatus.ADDED,
        attributes={"type": "solid"},
    )
    return [
        replace(a, status=ReviewStatus.ACCEPTED),
        replace(b, status=ReviewStatus.MODIFIED, center_mm=(x + 1.5, y, z), diameter_mm=12.0),
        replace(c, status=ReviewStatus.REJECTED, comment="vessel, not a nodule"),
        d,  # left pending
        added,
    ]


def make_ai_sr(findings: list[Finding], headers: list[pydicom.Dataset], out: Path) -> Path:
    sr = build_ai_sr(
        findings,
        source_images=headers,
        model_id="lung-nodule-ref",
        model_version="1.0.0",
        model_name="Loupe reference lung nodule detector",
    )
    sr.save_as(out)
    return out


def test_ai_sr_is_valid_tid1500_with_algorithm_and_tracking(
    tmp_path: Path, ai_findings: list[Finding], ct_headers: list[pydicom.Dataset]
) -> None:
    path = make_ai_sr(ai_findings, ct_headers, tmp_path / "ai.dcm")
    assert_valid(path)
    dump = dsrdump(path)
    assert '(126000,DCM,"Imaging Measurement Report")=CONTINUOUS>  # TID 1500' in dump
    assert dump.count("# TID 1411") == len(ai_findings)
    assert '"Observer Type")=(121007,DCM,"Device")' in dump
    assert '(111001,DCM,"Algorithm Name")="lung-nodule-ref"' in dump
    assert '(111003,DCM,"Algorithm Version")="1.0.0"' in dump
    assert '(121071,DCM,"Finding")=(27925004,SCT,"Nodule")' in dump
    assert '(363698007,SCT,"Finding Site")=(39607008,SCT,"Lung")' in dump
    assert '(81827009,SCT,"Diameter")="7.3" (mm,UCUM,"mm")' in dump
    assert '(111012,DCM,"Certainty of Finding")="91.0" (%,UCUM,"Percent")' in dump
    assert "(PART-SOLID,99LOUPE[1]" in dump
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.StudyInstanceUID == ct_headers[0].StudyInstanceUID
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99LOUPE"
    assert "Person" not in dump


def test_ai_sr_round_trip(
    tmp_path: Path, ai_findings: list[Finding], ct_headers: list[pydicom.Dataset]
) -> None:
    path = make_ai_sr(ai_findings, ct_headers, tmp_path / "ai.dcm")
    producer, read = read_findings(pydicom.dcmread(path))
    assert producer.manufacturer == "Loupe"
    assert producer.algorithms == (("lung-nodule-ref", "1.0.0"),)
    assert producer.device_name == "Loupe reference lung nodule detector"
    assert not producer.verified
    assert len(read) == len(ai_findings)
    for f, r in zip(ai_findings, read, strict=True):
        assert r.tracking_uid == f.tracking_uid
        assert r.tracking_identifier == f.finding_id
        assert r.finding_type == "Nodule" and r.finding_site == "Lung"
        assert r.center_mm is not None and f.center_mm is not None
        np.testing.assert_allclose(r.center_mm, f.center_mm, atol=0.01)
        assert r.diameter_mm == pytest.approx(f.diameter_mm, abs=1e-4)
        assert r.probability == pytest.approx(f.probability, abs=1e-6)
        assert r.nodule_type == f.attributes.get("type")
        assert r.status is None  # the AI SR records no review
        assert r.frame_of_reference_uid == ct_headers[0].FrameOfReferenceUID
        assert r.series_instance_uid == f.series_instance_uid
        g = r.to_finding()  # back to the model the workstation reviews
        assert (g.finding_id, g.tracking_uid, g.model_id, g.model_version, g.label) == (
            f.finding_id,
            f.tracking_uid,
            f.model_id,
            f.model_version,
            f.label,
        )
        assert (g.series_instance_uid, g.attributes, g.status) == (
            f.series_instance_uid,
            f.attributes,
            ReviewStatus.PENDING,
        )


def test_review_sr_supersedes_ai_sr_and_keeps_tracking_uids(
    tmp_path: Path, ai_findings: list[Finding], ct_headers: list[pydicom.Dataset]
) -> None:
    ai_path = make_ai_sr(ai_findings, ct_headers, tmp_path / "ai.dcm")
    ai_ds = pydicom.dcmread(ai_path)
    findings = reviewed(ai_findings)
    sr = build_review_sr(
        findings,
        ai_sr=ai_ds,
        source_images=ct_headers,
        reader_name="House^Gregory",
        reader_login="dr.house",
        organization="Princeton-Plainsboro",
        lung_rads="4A",
        impression="Solid nodule 7 mm and part-solid nodule 12 mm.",
    )
    path = tmp_path / "review.dcm"
    sr.save_as(path)
    assert_valid(path)
    dump = dsrdump(path)
    assert "# TID 1500" in dump
    assert '"Observer Type")=(121006,DCM,"Person")' in dump
    assert '"Person Observer Name")="House^Gregory"' in dump
    assert '"Observer Type")=(121007,DCM,"Device")' in dump
    assert "(LR-4A,99LOUPE[1]" in dump
    assert '"Comment")="vessel, not a nodule"' in dump

    ds = pydicom.dcmread(path)
    assert ds.VerificationFlag == "VERIFIED"
    assert ds.CompletionFlag == "COMPLETE"
    assert ds.PreliminaryFlag == "FINAL"
    assert ds.VerifyingObserverSequence[0].VerifyingObserverName == "House^Gregory"
    pre = ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert pre.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ai_ds.SOPInstanceUID
    assert pre.SeriesInstanceUID == ai_ds.SeriesInstanceUID

    # The modified finding's geometry and size are the reader's: the algorithm is named on
    # its certainty only, not on the group.
    groups = ds.ContentSequence[-2].ContentSequence  # Imaging Measurements
    assert ds.ContentSequence[-2].ConceptNameCodeSequence[0].CodeValue == "126010"
    top_algorithm = [
        any(i.ConceptNameCodeSequence[0].CodeValue == "111001" for i in g.ContentSequence)
        for g in groups
    ]
    # The rejected one (third) names its algorithm on the AI's certainty only, as well.
    assert top_algorithm == [True, False, False, True, False]

    # A rejected AI finding is not a nodule in the verified report: no TID 1411 group, no
    # Finding = Nodule, no diameter, nothing to draw; it keeps the AI's Tracking UID and says
    # "AI finding rejected by reader" (99LOUPE, CODES.md).
    assert dump.count("# TID 1411") == 4  # accepted, modified, pending, added
    assert dump.count('(121071,DCM,"Finding")=(27925004,SCT,"Nodule")') == 4
    assert dump.count('(81827009,SCT,"Diameter")') == 4
    assert dump.count('(121071,DCM,"Finding")=(AI-REJECTED,99LOUPE[1]') == 1
    rejected = groups[2]
    value_types = {i.ValueType for i in rejected.ContentSequence}
    assert "SCOORD3D" not in value_types and "IMAGE" not in value_types
    uid = next(i.UID for i in rejected.ContentSequence if i.get("ValueType") == "UIDREF")
    assert uid == findings[2].tracking_uid

    producer, read = read_findings(ds)
    assert producer.person_name == "House^Gregory"
    assert producer.verified and producer.verifying_observer == "House^Gregory"
    assert producer.predecessors == (ai_ds.SOPInstanceUID,)
    assert producer.lung_rads == "4A"
    _, ai_read = read_findings(ai_ds)
    ai_uids = {r.tracking_uid for r in ai_read}
    by_uid = {r.tracking_uid: r for r in read}
    assert set(by_uid) == {f.tracking_uid for f in findings}
    for f in findings:
        r = by_uid[f.tracking_uid]
        assert r.status is f.status
        assert r.comment == f.comment
        if f.status is ReviewStatus.REJECTED:
            assert r.center_mm is None and r.diameter_mm is None
            assert r.finding_type == "AI finding rejected by reader"
            assert r.probability == pytest.approx(f.probability, abs=1e-6)
            continue
        assert f.center_mm is not None and r.center_mm is not None
        np.testing.assert_allclose(r.center_mm, f.center_mm, atol=0.01)
        assert r.diameter_mm == pytest.approx(f.diameter_mm, abs=1e-4)
        assert (r.tracking_uid in ai_uids) == (f.status is not ReviewStatus.ADDED)
        # The reader's own finding names no algorithm and no AI certainty.
        assert (r.algorithm is None) == (f.status is ReviewStatus.ADDED)
        assert (r.probability is None) == (f.status is ReviewStatus.ADDED)


def test_review_sr_without_ai_sr_and_checks_its_arguments(
    ai_findings: list[Finding], ct_headers: list[pydicom.Dataset], tmp_path: Path
) -> None:
    findings = reviewed(ai_findings)
    sr = build_review_sr(
        findings, ai_sr=None, source_images=ct_headers, reader_name="Doe^Jane", lung_rads=None
    )
    assert "PredecessorDocumentsSequence" not in sr
    with pytest.raises(ValueError, match="lung_rads"):
        build_review_sr(
            findings, ai_sr=None, source_images=ct_headers, reader_name="Doe^J", lung_rads="5"
        )
    other = make_ai_sr(ai_findings[:1], ct_headers, tmp_path / "one.dcm")
    with pytest.raises(ValueError, match="Tracking UID unknown"):
        build_review_sr(
            findings,
            ai_sr=pydicom.dcmread(other),
            source_images=ct_headers,
            reader_name="Doe^Jane",
        )
    with pytest.raises(ValueError, match="referenced image"):
        build_ai_sr(
            [replace(ai_findings[0], center_mm=None, sop_instance_uid="1.2.3", frame=1)],
            source_images=ct_headers,
            model_id="m",
            model_version="1",
            model_name="m",
        )


def test_endoscopy_frames_as_planar_regions(tmp_path: Path) -> None:
    written, truths = write_endoscopy_study(
        tmp_path / "es", seed=3, frames=3, patient_id="E1", patient_name="Endo^Test", uid_seed="r"
    )
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in written.paths]
    lesion = next(n for n, t in enumerate(truths) if t.lesion)
    box = truths[lesion].lesion_box
    findings = [
        Finding(
            finding_id="endoscopy-lesion-ref-1",
            model_id="endoscopy-lesion-ref",
            model_version="1.0.0",
            series_instance_uid=written.series_instance_uid,
            probability=0.97,
            label="lesion",
            sop_instance_uid=written.sop_instance_uids[lesion],
            frame=1,
            region=box,
        ),
        Finding(  # frame-level finding without a region: the whole frame
            finding_id="endoscopy-lesion-ref-2",
            model_id="endoscopy-lesion-ref",
            model_version="1.0.0",
            series_instance_uid=written.series_instance_uid,
            probability=0.55,
            label="lesion",
            sop_instance_uid=written.sop_instance_uids[0],
            frame=1,
        ),
    ]
    sr = build_ai_sr(
        findings,
        source_images=headers,
        model_id="endoscopy-lesion-ref",
        model_version="1.0.0",
        model_name="Loupe reference oesophagus lesion classifier",
    )
    path = tmp_path / "es-ai.dcm"
    sr.save_as(path)
    assert_valid(path)
    dump = dsrdump(path)
    assert dump.count("# TID 1410") == 2
    assert '(121071,DCM,"Finding")=(52988006,SCT,"Lesion")' in dump
    assert '"Finding Site")=(32849002,SCT,"Esophagus")' in dump
    assert '(24627-2,LN,"CT Chest")' not in dump
    assert '(76009000,SCT,"Esophagogastroduodenoscopy")' in dump
    _, read = read_findings(pydicom.dcmread(path))
    assert [r.sop_instance_uid for r in read] == [f.sop_instance_uid for f in findings]
    assert [r.frame for r in read] == [1, 1]
    assert read[0].region == box
    assert read[1].region == (0, 0, int(headers[0].Rows), int(headers[0].Columns))
    assert read[0].graphic_type == "POLYLINE"
    assert [r.probability for r in read] == pytest.approx([0.97, 0.55])
    assert {r.series_instance_uid for r in read} == {written.series_instance_uid}

    # The reader keeps the first frame, rejects the second: a valid review SR, read back.
    kept = read[0].to_finding()
    assert (kept.sop_instance_uid, kept.frame, kept.region) == (
        findings[0].sop_instance_uid,
        1,
        box,
    )
    decided = [
        replace(kept, status=ReviewStatus.ACCEPTED),
        replace(read[1].to_finding(), status=ReviewStatus.REJECTED, comment="bubble"),
    ]
    review = build_review_sr(
        decided,
        ai_sr=pydicom.dcmread(path),
        source_images=headers,
        reader_name="Endo^Scopist",
    )
    review_path = tmp_path / "es-review.dcm"
    review.save_as(review_path)
    assert_valid(review_path)
    assert dsrdump(review_path).count("# TID 1410") == 1  # the rejected frame is no lesion
    _, back = read_findings(pydicom.dcmread(review_path))
    assert [(r.status, r.comment) for r in back] == [
        (ReviewStatus.ACCEPTED, ""),
        (ReviewStatus.REJECTED, "bubble"),
    ]
    assert [r.tracking_uid for r in back] == [f.tracking_uid for f in findings]


def test_read_findings_from_other_producers(
    tmp_path: Path, small_ct: CtSeries, ct_headers: list[pydicom.Dataset]
) -> None:
    """Another producer's TID 1500: a planar 3-D polygon, an ellipsoid, no Loupe codes."""
    producer, read = read_findings(pydicom.dcmread(make_3d_sr(small_ct.paths[0], tmp_path / "a")))
    assert producer.device_name == "Loupe test device" and producer.algorithms == ()
    assert read[0].center_mm == (10.0, 20.0, 30.0) and read[0].diameter_mm == 8.0
    assert read[0].status is None and read[0].probability is None

    src = ct_headers[0]
    z = float(src.ImagePositionPatient[2])
    square = np.array([[0, 0, z], [10, 0, z], [10, 10, z], [0, 10, z], [0, 0, z]], float)
    ellipsoid = np.array(
        [[-5, 50, z], [5, 50, z], [0, 46, z], [0, 54, z], [0, 50, z - 3], [0, 50, z + 3]], float
    )
    uid_a, uid_b = hd.UID(), hd.UID()
    planar = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid_a, identifier="lesion A"),
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
            graphic_data=square,
            frame_of_reference_uid=src.FrameOfReferenceUID,
        ),
        finding_type=codes.SCT.Nodule,
        measurements=[
            hd.sr.Measurement(name=codes.SCT.Area, value=100.0, unit=codes.UCUM.SquareMillimeter)
        ],
    )
    volumetric = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid_b, identifier="lesion B"),
        referenced_volume_surface=hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSOID,
            graphic_data=ellipsoid,
            frame_of_reference_uid=src.FrameOfReferenceUID,
            source_images=[hd.sr.SourceImageForSegmentation(src.SOPClassUID, src.SOPInstanceUID)],
        ),
        finding_type=codes.SCT.Mass,
    )
    person = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Roe^R"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[planar, volumetric],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[src],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=5,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Other Vendor",
    )
    producer, read = read_findings(sr)
    assert producer.person_name == "Roe^R" and producer.manufacturer == "Other Vendor"
    by_uid = {r.tracking_uid: r for r in read}
    a, b = by_uid[uid_a], by_uid[uid_b]
    assert a.graphic_type == "POLYGON" and a.center_mm == pytest.approx((5.0, 5.0, z))
    assert a.measurements == {"Area": (100.0, "mm2")} and a.diameter_mm is None
    assert b.graphic_type == "ELLIPSOID" and b.center_mm == pytest.approx((0.0, 50.0, z))
    assert b.finding_type == "Mass"


def test_negative_study_reviewer_sr_has_lung_rads_1_and_validates(tmp_path, ct_headers):
    """No nodule to list: one TID 1501 group says so, the category is still reported."""
    from core.reports.read import read_findings
    from core.reports.review_sr import build_review_sr

    sr = build_review_sr(
        [], ai_sr=None, source_images=ct_headers, reader_name="Reader^Nina", lung_rads="1"
    )
    path = tmp_path / "negative.dcm"
    sr.save_as(path)
    assert_valid(path)
    producer, found = read_findings(pydicom.dcmread(path))
    assert producer.verified and producer.lung_rads == "1"
    assert found == []  # nothing listed as a finding
    assert "No finding to report" in str(pydicom.dcmread(path).ContentSequence)
    with pytest.raises(ValueError, match="nothing to report"):
        build_review_sr([], ai_sr=None, source_images=ct_headers, reader_name="R^N")
