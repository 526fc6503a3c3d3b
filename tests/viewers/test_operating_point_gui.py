"""The workstation shows AI findings at the model's validated default operating point, says
which, and lets the reader see the other points or every candidate."""

from __future__ import annotations

import pytest
from peers import free_port

from app.settings import parse_settings
from app.workstation import Workstation
from core.findings import ReviewStatus
from core.synthetic.chest_ct import make_chest_ct, write_ct_series
from dicom_net.archive import LocalArchive
from dicom_net.importer import import_paths

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_findings_at_the_default_point_and_every_candidate(qtbot, tmp_path):
    ph = make_chest_ct(
        seed=990011,
        slices=100,
        rows=224,
        cols=224,
        pixel_spacing_mm=1.6,
        slice_spacing_mm=2.5,
        nodule_count=3,
        min_nodule_mm=8.0,
        max_nodule_mm=16.0,
    )
    written = write_ct_series(ph, tmp_path / "ct", patient_id="OP-1", patient_name="Op^Point")
    settings = parse_settings(
        {"local": {"storage": str(tmp_path / "archive"), "port": free_port(), "bind": "127.0.0.1"}}
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [tmp_path / "ct"])
    win = Workstation(settings, archive)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    qtbot.waitExposed(win)
    win.open_study(written.study_instance_uid)
    qtbot.waitUntil(
        lambda: win.analysis is not None or win.analysis_error is not None, timeout=120000
    )
    assert win.analysis_error is None, win.analysis_error
    a = win.analysis
    point = a.model.default_operating_point
    assert point.name == "balanced" and point.sensitivity > 0
    shown = list(win.findings)
    assert shown and all(f.probability >= point.threshold for f in shown)
    assert len(shown) == len(a.findings) <= len(a.candidates)
    text = win.ai_summary_label.text()
    assert text.startswith(f"AI: {len(shown)} finding")
    assert f"at 'balanced' (p >= {point.threshold:.2f};" in text and "on validation" in text
    assert win.ai_summary_label.isVisible() and win.point_box.currentText() == "balanced"
    # The list shows exactly those findings.
    assert len(win.findings_panel.row_ids()) == len(shown)

    # Every candidate: more (or as many) findings, and the label says so.
    win.point_box.setCurrentIndex(win.point_box.findText("every candidate"))
    every = list(win.findings)
    assert len(every) == len(a.candidates) >= len(shown)
    assert "every candidate" in win.ai_summary_label.text()
    low = [f for f in every if f.probability < point.threshold]
    # Back at the default: pending candidates below it are hidden again; decided ones stay.
    if low:
        win.review.reject(low[0].finding_id)
    win.point_box.setCurrentIndex(win.point_box.findText("balanced"))
    back = {f.finding_id: f for f in win.findings}
    assert {f.finding_id for f in shown} <= set(back)
    for f in low[1:]:
        assert f.finding_id not in back
    if low:
        assert back[low[0].finding_id].status is ReviewStatus.REJECTED
