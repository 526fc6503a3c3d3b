"""The reading logic without a window (app/reading_session.py): open with typed load events,
analyse (and reuse the stored analysis), review with undo, prior results, sign. The window
only wires widgets to this; here a script drives it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pydicom
import pytest

from app.reading_session import FirstImage, Loaded, ReadingSession, SlicesLoaded
from app.settings import parse_settings
from core.findings import FindingSet, ReviewStatus
from dicom_net.archive import LocalArchive
from dicom_net.importer import import_paths

pytestmark = pytest.mark.slow


def test_reading_session_imports_no_qt():
    code = (
        "import sys, app.reading_session; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'vtk', 'vtkmodules')]; "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_study_read_end_to_end_without_a_window(tmp_path):
    from core.reports.ai_sr import build_ai_sr
    from core.synthetic.chest_ct import make_chest_ct, write_ct_series

    ph = make_chest_ct(
        seed=4321, slices=64, rows=192, cols=192, pixel_spacing_mm=1.5, slice_spacing_mm=2.5,
        nodule_count=3, min_nodule_mm=8.0,
    )  # fmt: skip
    ct = write_ct_series(ph, tmp_path / "ct", patient_id="RS-1", patient_name="Read^Session")
    settings = parse_settings({"local": {"storage": str(tmp_path / "archive")}, "user": "dr.rs"})
    archive = LocalArchive(settings.storage)
    import_paths(archive, [tmp_path / "ct"])
    session = ReadingSession(settings, archive)

    content = session.content(ct.study_instance_uid)
    assert len(content.ct_paths) == 64 and content.frame_instances == []
    events = list(session.load(content.ct_paths))
    assert isinstance(events[0], FirstImage) and isinstance(events[-1], Loaded)
    assert all(isinstance(e, SlicesLoaded) for e in events[1:-1]) and len(events) >= 3
    volume = events[-1].volume
    assert session.stored_analysis(volume) is None

    analysis = session.analyse_volume(volume)
    assert analysis.findings and session.heat_on_grid(analysis, volume) is not None
    findings = FindingSet()
    review = session.review(analysis, findings, volume.series_instance_uid)
    ids = [f.finding_id for f in findings]
    review.accept(ids[0])
    for fid in ids[1:]:
        review.reject(fid)
    review.undo()  # the last rejection taken back
    assert findings.get(ids[-1]).status is ReviewStatus.PENDING or len(ids) == 1

    # A new session (the workstation reopened): the stored analysis, no second run.
    again = ReadingSession(settings, archive)
    stored = again.stored_analysis(volume)
    assert stored is not None and [f.tracking_uid for f in stored.candidates] == [
        f.tracking_uid for f in analysis.candidates
    ]

    # Prior results: another producer's AI SR is shown; our own is the live one.
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in content.ct_paths]
    theirs = [replace(analysis.findings[0], model_id="acme-cad", model_version="3.1")]
    other = build_ai_sr(
        theirs, source_images=headers, model_id="acme-cad", model_version="3.1",
        model_name="ACME CAD", manufacturer="ACME",
    )  # fmt: skip
    other.save_as(tmp_path / "other.dcm")
    archive.store_file(tmp_path / "other.dcm")
    priors = again.priors(ct.study_instance_uid, volume)
    assert len(priors.marks) == 1 and priors.marks[0].label == "prior: acme-cad"
    assert any("ACME" in p for p in priors.producers)

    # Sign: both SRs and the KOS built from the stored review, kept in the study.
    files, ids_queued = again.sign(
        volume.series_instance_uid, lung_rads=None, operating_point=None, destination=None
    )
    assert ids_queued == [] and files.review_sr is not None and files.review_sr.exists()
    rev = pydicom.dcmread(files.review_sr)
    assert rev.VerificationFlag == "VERIFIED"
    assert rev.VerifyingObserverSequence[0].VerifyingObserverName == "dr.rs"
    # Our own AI SR is now in the study too: still not a prior of itself.
    assert len(again.priors(ct.study_instance_uid, volume).marks) == 1
