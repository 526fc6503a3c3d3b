"""Keyboard and mouse review in the workstation, and decisions surviving a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from peers import free_port
from PySide6.QtCore import QPoint, Qt

from app.settings import Settings, parse_settings
from app.workstation import Workstation
from core.findings import Finding, ReviewStatus
from core.review import ReviewSession, ReviewStore
from dicom_net.archive import LocalArchive
from dicom_net.importer import import_paths

pytestmark = pytest.mark.gui


def local_settings(tmp_path, extra: dict) -> Settings:
    """A test workstation's settings: its own archive and a free loopback port."""
    local = {"storage": str(tmp_path / "archive"), "port": free_port(), "bind": "127.0.0.1"}
    return parse_settings({"local": local, **extra})


def show_workstation(qtbot, settings: Settings, archive: LocalArchive) -> Workstation:
    win = Workstation(settings, archive)
    qtbot.addWidget(win)
    win.show()
    return win


def findings_for(volume, series_uid: str) -> list[Finding]:
    out = []
    for n, (k, j, i) in enumerate([(12, 50, 40), (14, 70, 80), (10, 60, 60)]):
        c = tuple(float(v) for v in volume.index_to_world((k, j, i)))
        out.append(
            Finding(
                f"F{n}",
                "test-model",
                "1",
                series_uid,
                0.9 - 0.1 * n,
                center_mm=c,
                diameter_mm=12.0,
                slice_index=k,
            )
        )
    return out


@pytest.fixture
def reviewing(qtbot, tmp_path, small_ct):
    settings = local_settings(
        tmp_path,
        {
            "inference": {"analyze_on_open": False},
            "user": "dr.test",
        },
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [small_ct.paths[0].parent])
    win = show_workstation(qtbot, settings, archive)
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    win.open_study(small_ct.study_instance_uid)
    qtbot.waitUntil(lambda: win.loaded_at is not None, timeout=30000)
    uid = win.volume.series_instance_uid
    win.review = ReviewSession(win.review_store, win.findings, uid, settings.user)
    win.review.start(findings_for(win.volume, uid))
    return win


def test_keyboard_review_accept_reject_edit_add(qtbot, reviewing):
    win = reviewing
    qtbot.keyClick(win, Qt.Key.Key_N)  # first finding (highest probability)
    assert win.nav.selected_finding == "F0"
    assert win.reading.axial.index == 12  # the panes jumped there
    qtbot.keyClick(win, Qt.Key.Key_A)
    assert win.findings.get("F0").status is ReviewStatus.ACCEPTED
    assert win.nav.selected_finding == "F1"  # next pending
    qtbot.keyClick(win, Qt.Key.Key_R)
    assert win.findings.get("F1").status is ReviewStatus.REJECTED
    assert win.nav.selected_finding == "F2" and win.reading.axial.index == 10

    # Drag the selected marker's centre 10 image columns to the right.
    f2_before = win.findings.get("F2")
    view = win.reading.axial
    start = view.image_to_screen(60, 60)
    end = view.image_to_screen(60, 70)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start.toPoint())
    qtbot.mouseMove(view, pos=QPoint(round((start.x() + end.x()) / 2), round(start.y())))
    qtbot.mouseMove(view, pos=end.toPoint())
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end.toPoint())
    f2 = win.findings.get("F2")
    assert f2.status is ReviewStatus.MODIFIED
    moved = win.volume.world_to_index(f2.center_mm)
    assert moved[0] == pytest.approx(10) and moved[2] == pytest.approx(70, abs=0.6)

    # Add a finding the AI missed: F, click its centre, drag its radius.
    qtbot.keyClick(win, Qt.Key.Key_F)
    c = view.image_to_screen(90, 30)
    r = view.image_to_screen(90, 34)  # 4 columns of 2.5 mm: radius 10 mm
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=c.toPoint())
    qtbot.mouseMove(view, pos=QPoint(round(c.x() + 3), round(c.y())))
    qtbot.mouseMove(view, pos=r.toPoint())
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=r.toPoint())
    added = [f for f in win.findings if f.status is ReviewStatus.ADDED]
    assert len(added) == 1 and added[0].diameter_mm == pytest.approx(20.0, abs=1.5)
    assert added[0].slice_index == 10 and win.nav.selected_finding == added[0].finding_id

    # All of it is in the store, with the reader's name.
    restored = {f.finding_id: f for f in win.review_store.restore(win.volume.series_instance_uid)}
    assert restored["F0"].status is ReviewStatus.ACCEPTED
    assert restored["F1"].status is ReviewStatus.REJECTED
    assert restored["F2"].status is ReviewStatus.MODIFIED
    assert restored[added[0].finding_id].status is ReviewStatus.ADDED
    log = win.review_store.audit_log(win.volume.series_instance_uid)
    assert len(log) == 4 and {e.user for e in log} == {"dr.test"}

    # Ctrl+Z takes back the addition, then the move; Ctrl+Shift+Z does the move again.
    ctrl, shift = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(win, Qt.Key.Key_Z, ctrl)
    assert added[0].finding_id not in {f.finding_id for f in win.findings}
    qtbot.keyClick(win, Qt.Key.Key_Z, ctrl)
    assert win.findings.get("F2").status is ReviewStatus.PENDING
    assert win.findings.get("F2").center_mm == f2_before.center_mm
    qtbot.keyClick(win, Qt.Key.Key_Z, ctrl | shift)
    assert win.findings.get("F2").status is ReviewStatus.MODIFIED
    assert "Redone: finding #3 is modified again" in win.status.currentMessage()
    restored = {f.finding_id: f for f in win.review_store.restore(win.volume.series_instance_uid)}
    assert restored["F2"].status is ReviewStatus.MODIFIED
    assert added[0].finding_id not in restored


def test_f1_lists_every_key_of_the_window(qtbot, reviewing):
    """Every shortcut an action of the window has is on the F1 sheet."""
    from app.workstation import SHORTCUTS

    sheet = " ".join(k for k, _ in SHORTCUTS)
    keys = {a.shortcut().toString() for a in reviewing.actions() if not a.shortcut().isEmpty()}
    assert {"Ctrl+S", "Ctrl+Z", "Ctrl+Shift+Z", "F1"} <= keys
    missing = sorted(k for k in keys if k not in sheet)
    assert missing == []


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{tests!r}, {tests!r} + "/viewers"]
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from app.settings import parse_settings
    from app.workstation import Workstation
    from core.review import ReviewSession
    from dicom_net.archive import LocalArchive
    from test_review_gui import findings_for
    app = QApplication([])
    settings = parse_settings({{"local": {{"storage": {storage!r}, "port": {port},
                                          "bind": "127.0.0.1"}},
                               "inference": {{"analyze_on_open": False}}, "user": "dr.crash"}})
    win = Workstation(settings, LocalArchive(settings.storage))
    win.show()
    win.open_study({study!r})
    while win.loaded_at is None:
        QTest.qWait(50)
    uid = win.volume.series_instance_uid
    win.review = ReviewSession(win.review_store, win.findings, uid, "dr.crash")
    win.review.start(findings_for(win.volume, uid))
    win.step_finding(1)
    for key in {keys!r}:
        {{"A": win.accept_selected, "R": win.reject_selected, "Z": win.undo_review}}[key]()
    print(uid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean shutdown of anything
""")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [("A", "A"), ("ARA", "ARA"), ("ARAZ", "AR-")],  # Z: Ctrl+Z, the last accept undone
)
def test_decisions_survive_the_app_being_killed(tmp_path, small_ct, keys, expected):
    storage = tmp_path / "archive"
    import_paths(LocalArchive(storage), [small_ct.paths[0].parent])
    script = CRASH_SCRIPT.format(
        tests=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        storage=str(storage),
        port=free_port(),
        study=small_ct.study_instance_uid,
        keys=keys,
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    uid = r.stdout.strip().splitlines()[-1]
    store = ReviewStore(storage / "review.sqlite")
    assert store.decision_count(uid) == len(keys)  # an undo is a decision too
    statuses = [f.status for f in store.restore(uid)]
    meaning = {"A": ReviewStatus.ACCEPTED, "R": ReviewStatus.REJECTED, "-": ReviewStatus.PENDING}
    assert statuses[: len(expected)] == [meaning[k] for k in expected]


@pytest.mark.network
def test_sign_and_send_writes_verified_reviewer_sr_to_the_pacs(
    qtbot, tmp_path, small_ct, orthanc_factory, monkeypatch
):
    import io

    import pydicom
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    from core.reports.read import read_findings

    pacs = orthanc_factory().start()
    settings = local_settings(
        tmp_path,
        {
            "nodes": [
                {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
            ],
            "inference": {"analyze_on_open": False},
            "user": "Reader^Rita",
        },
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [small_ct.paths[0].parent])
    win = show_workstation(qtbot, settings, archive)
    win.start_services()
    win.open_study(small_ct.study_instance_uid)
    qtbot.waitUntil(lambda: win.loaded_at is not None, timeout=30000)
    uid = win.volume.series_instance_uid
    win.review = ReviewSession(win.review_store, win.findings, uid, settings.user)
    win.review.start(findings_for(win.volume, uid))
    win.browser.refresh_local()
    assert win.browser.local_table.item(0, 6).text() == "3 findings"
    win.step_finding(1)
    win.accept_selected()  # F0 accepted (12 mm solid nodule: Lung-RADS 4A)
    win.browser.refresh_local()
    assert win.browser.local_table.item(0, 6).text() == "reviewed 1/3"
    win.reject_selected()  # F1 rejected
    added = win.review.add(win.findings.get("F2").center_mm, 5.0, slice_index=10)

    offered = {}

    def choose(parent, title, label, items, current, editable):
        offered["label"], offered["current"] = label, items[current]
        return "4B", True  # the reader overrides the suggestion

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(choose))
    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes)
    )
    win.sign_and_send()
    assert offered["current"] == "4A" and "Suggested: 4A" in offered["label"]
    # AI SR, reviewer SR and the KOS of the kept finding's key slice.
    qtbot.waitUntil(lambda: pacs.get("/statistics")["CountInstances"] == 3, timeout=30000)
    win.stop_services()

    docs = [
        pydicom.dcmread(io.BytesIO(pacs.request("GET", f"/instances/{i}/file")))
        for i in pacs.get("/instances")
    ]
    review = next(d for d in docs if d.get("VerificationFlag") == "VERIFIED")
    ai = next(d for d in docs if d is not review and d.SOPClassUID.endswith(".88.34"))
    kos = next(d for d in docs if d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59")
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113000"
    producer, found = read_findings(review)
    assert producer.verified and producer.predecessors == (ai.SOPInstanceUID,)
    assert producer.lung_rads == "4B" and "Reader" in (producer.person_name or "")
    by_uid = {f.tracking_uid: f for f in found}
    ai_uids = {f.tracking_uid for f in read_findings(ai)[1]}
    f0, f1 = win.findings.get("F0"), win.findings.get("F1")
    assert {f0.tracking_uid, f1.tracking_uid} <= ai_uids  # same tracking UIDs as the AI SR
    assert by_uid[f0.tracking_uid].status is ReviewStatus.ACCEPTED
    assert by_uid[f1.tracking_uid].status is ReviewStatus.REJECTED
    assert by_uid[added.tracking_uid].status is ReviewStatus.ADDED
    assert by_uid[added.tracking_uid].diameter_mm == pytest.approx(5.0)
    log = [e.action for e in win.review_store.audit_log(uid)]
    assert "report queued" in log
    # The study browser's AI column shows the study as signed.
    table = win.browser.local_table
    assert [table.item(r, 6).text() for r in range(table.rowCount())] == ["signed"]


def test_prior_results_show_read_only_and_name_their_producer(qtbot, tmp_path, small_ct):
    """An SR already in the study (here another producer's, made with highdicom) is drawn."""
    import pydicom
    from sr_sample import make_3d_sr

    settings = local_settings(
        tmp_path,
        {
            "inference": {"analyze_on_open": False},
        },
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [small_ct.paths[0].parent])
    # The sample SR marks a point at (10, 20, 30) mm: move it onto slice 12 of this CT.
    sr_path = make_3d_sr(small_ct.paths[12], tmp_path / "other.dcm")
    ds = pydicom.dcmread(sr_path)
    archive.store_file(sr_path)
    win = show_workstation(qtbot, settings, archive)
    win.open_study(small_ct.study_instance_uid)
    qtbot.waitUntil(lambda: bool(win.prior_producers), timeout=30000)
    assert (
        win.prior_producers[0].startswith("Loupe test device")
        and "unverified" in win.prior_producers[0]
    )
    marks = win.reading.axial.priors
    assert len(marks) == 1 and marks[0].center_mm == pytest.approx((10.0, 20.0, 30.0))
    assert marks[0].label.startswith("prior:")
    assert len(win.findings) == 0  # read-only: not in the reader's findings
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"


def test_endoscopy_frames_confirmed_rejected_and_key_images(qtbot, tmp_path, monkeypatch):
    from core.synthetic.endoscopy import write_endoscopy_study

    settings = local_settings(
        tmp_path,
        {
            "user": "Endo^Eva",
        },
    )
    archive = LocalArchive(settings.storage)
    written, _truth = write_endoscopy_study(
        tmp_path / "es", seed=11, frames=8, patient_id="E-2", patient_name="Test^Frames"
    )
    import_paths(archive, [tmp_path / "es"])
    win = show_workstation(qtbot, settings, archive)
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    win.open_study(written.study_instance_uid)
    qtbot.waitUntil(
        lambda: win.analysis is not None or win.analysis_error is not None, timeout=60000
    )
    assert win.analysis_error is None, win.analysis_error
    assert "endoscopy-lesion-ref" in win.device_label.text() and "CPU" in win.device_label.text()
    panel = win.endoscopy
    # Risk badges came from the model: lesion frames rank above the others.
    ranked = [f for f in win.review_frames if f.probability is not None]
    assert ranked and all(f.heatmap is not None for f in ranked)
    from PySide6.QtWidgets import QMessageBox

    def flagged_pending() -> set[tuple[str, int]]:
        return {
            (f.sop_instance_uid, f.frame)
            for f in win.findings
            if f.status is ReviewStatus.PENDING and f.sop_instance_uid is not None
        }

    flagged = flagged_pending()
    assert flagged, "the model flagged no frame at its operating point"
    # Go to the first flagged frame; K marks the frame on screen, A confirms it and moves on
    # to the next flagged frame still pending.
    win._next_flagged_pending()
    first = panel.model.selected
    assert (first.sop_instance_uid, first.frame) in flagged
    qtbot.keyClick(win, Qt.Key.Key_K)
    store = win.review_store
    uid = win.review.series_uid
    assert store.key_images(uid) == [(first.sop_instance_uid, first.frame)]
    qtbot.keyClick(win, Qt.Key.Key_A)
    confirmed = [
        f
        for f in win.findings
        if f.sop_instance_uid == first.sop_instance_uid and f.frame == first.frame
    ]
    assert confirmed and confirmed[0].status is ReviewStatus.ACCEPTED
    now = panel.model.selected
    remaining = flagged_pending()
    if remaining:
        assert (now.sop_instance_uid, now.frame) in remaining  # the next flagged pending one
    tile = next(t for t in panel.thumbnails() if t.frame.sop_instance_uid == first.sop_instance_uid)
    assert "✓" in tile.decision_mark and "★" in tile.decision_mark
    assert [e.user for e in store.audit_log(uid)] == ["Endo^Eva", "Endo^Eva"]

    # A frame the AI did not flag: A asks first (default No); No adds nothing, Yes adds it.
    unflagged = next(
        pos
        for pos, i in enumerate(panel.model.order)
        if (panel.model.frames[i].sop_instance_uid, panel.model.frames[i].frame) not in flagged
    )
    panel.model.select_position(unflagged)
    target = panel.model.selected
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    before = len(list(win.findings))
    qtbot.keyClick(win, Qt.Key.Key_A)
    assert len(list(win.findings)) == before and panel.model.selected is target
    qtbot.keyClick(win, Qt.Key.Key_A)
    added = [f for f in win.findings if f.status is ReviewStatus.ADDED]
    assert [(f.sop_instance_uid, f.frame) for f in added] == [
        (target.sop_instance_uid, target.frame)
    ]

    # The findings list has a frame column; choosing a row shows that frame.
    table = win.findings_panel.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert "Frame" in headers and "Slice" not in headers
    win.nav.select(confirmed[0].finding_id)
    assert panel.model.selected.sop_instance_uid == first.sop_instance_uid


def test_prior_segmentation_is_shown_with_its_label(qtbot, tmp_path, small_ct):
    import pydicom

    from core.reports.seg import build_nodule_seg

    settings = local_settings(
        tmp_path,
        {
            "inference": {"analyze_on_open": False},
        },
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [small_ct.paths[0].parent])
    full = [pydicom.dcmread(p) for p in small_ct.paths]
    centre = tuple(float(v) for v in full[0].ImagePositionPatient)
    centre = (
        centre[0] + 100.0,
        centre[1] + 160.0,
        sorted(float(d.ImagePositionPatient[2]) for d in full)[12],
    )
    f = Finding(
        "F1",
        "m",
        "1",
        small_ct.series_instance_uid,
        0.9,
        center_mm=centre,
        diameter_mm=20.0,
        status=ReviewStatus.ACCEPTED,
    )
    build_nodule_seg([f], source_images=full).save_as(tmp_path / "seg.dcm")
    archive.store_file(tmp_path / "seg.dcm")
    win = show_workstation(qtbot, settings, archive)
    win.open_study(small_ct.study_instance_uid)
    qtbot.waitUntil(lambda: bool(win.prior_producers), timeout=30000)
    assert win.prior_producers[0].startswith("SEG by Loupe")
    (mark,) = win.reading.axial.priors
    assert mark.label.startswith("prior SEG:")
    assert mark.center_mm == pytest.approx(centre, abs=1.5)


def test_prior_parametric_map_fills_the_heatmap_pane(qtbot, tmp_path, small_ct):
    import numpy as np
    import pydicom

    from core.reports.pmap import build_probability_map

    settings = local_settings(
        tmp_path,
        {
            "inference": {"analyze_on_open": False},
        },
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [small_ct.paths[0].parent])
    full = sorted(
        (pydicom.dcmread(p) for p in small_ct.paths), key=lambda d: float(d.ImagePositionPatient[2])
    )
    probs = np.zeros((24, 128, 128), dtype=np.float32)
    probs[12, 60:70, 40:50] = 0.8
    build_probability_map(
        probs, source_images=full, model_id="other-cad", model_version="2.1"
    ).save_as(tmp_path / "pm.dcm")
    archive.store_file(tmp_path / "pm.dcm")
    win = show_workstation(qtbot, settings, archive)
    win.open_study(small_ct.study_instance_uid)
    qtbot.waitUntil(lambda: bool(win.prior_producers), timeout=30000)
    assert win.prior_producers[0].startswith("parametric map by")
    heat = win.reading.heat.heatmap
    assert heat is not None and heat.shape == win.volume.shape
    # Same place as written (the volume's slice order is by position, as `full`).
    assert abs(int(heat[12, 65, 45]) - 204) <= 1 and heat[12, 20, 20] == 0


def test_who_is_on_screen_and_panes_that_move_as_one(qtbot, reviewing):
    """The patient in the title and the image corners; the heatmap pane follows the slice
    pane's zoom and pan; the status column is in view; the window fits 1280 x 720."""
    import numpy as np
    from PySide6.QtCore import QPointF

    win = reviewing
    title = win.windowTitle()
    assert "TEST, Smallct" in title and "2025-01-02" in title
    view, heat = win.reading.axial, win.reading.heat
    assert view.banner is not None and view.banner.top_left()[0] == "TEST, Smallct"

    # The corner text is really drawn: the top-left corner differs with and without it.
    def corner() -> np.ndarray:
        img = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGB888)
        ptr = img.constBits()
        arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
        return arr[:40, : 3 * 140].copy()

    with_text = corner()
    banner = view.banner
    view.set_banner(None)
    without = corner()
    view.set_banner(banner)
    assert np.count_nonzero(np.abs(with_text.astype(int) - without.astype(int)) > 60) > 50

    # Right-drag zooms the slice pane; the heatmap pane shows the same place the same size.
    f = win.findings.get("F0")
    start = QPointF(view.width() / 2, view.height() / 2).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.RightButton, pos=start)
    qtbot.mouseMove(view, pos=QPoint(start.x(), start.y() - 60))
    qtbot.mouseRelease(view, Qt.MouseButton.RightButton, pos=QPoint(start.x(), start.y() - 60))
    qtbot.mousePress(view, Qt.MouseButton.MiddleButton, pos=start)
    qtbot.mouseMove(view, pos=QPoint(start.x() + 25, start.y() + 10))
    qtbot.mouseRelease(
        view, Qt.MouseButton.MiddleButton, pos=QPoint(start.x() + 25, start.y() + 10)
    )
    assert view.view_state[0] > 1.3
    assert heat.view_state == pytest.approx(view.view_state)
    _, a = view.world_to_screen(f.center_mm)
    _, b = heat.world_to_screen(f.center_mm)
    assert (a.x(), a.y()) == pytest.approx((b.x(), b.y()), abs=0.5)

    # Status in view without scrolling; decided rows look unlike pending ones.
    table = win.findings_panel.table
    status_col = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())].index(
        "Status"
    )
    right = table.columnViewportPosition(status_col) + table.columnWidth(status_col)
    assert table.columnViewportPosition(status_col) >= 0 and right <= table.viewport().width()
    win.review.accept("F0")
    win.review.reject("F1")
    rows = {table.item(r, 0).data(Qt.ItemDataRole.UserRole + 1): r for r in range(table.rowCount())}
    accepted = table.item(rows["F0"], status_col)
    rejected = table.item(rows["F1"], status_col)
    pending = table.item(rows["F2"], status_col)
    assert (
        accepted.background().color().alpha() > 0
        and pending.background().style() == Qt.BrushStyle.NoBrush
    )
    assert rejected.font().strikeOut() and not pending.font().strikeOut()

    # It fits a 1280 x 720 screen, long status texts included.
    win.device_label.setText("AI: lung-nodule-ref 2.0.0 on CPU (CPUExecutionProvider); " * 3)
    win.ai_summary_label.setText("AI: 4 findings at 'balanced' (p >= 0.38; ...); " * 3)
    hint = win.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720


def test_reopening_an_analysed_study_shows_its_findings_with_the_first_image(qtbot, tmp_path):
    """The second time a study opens, the stored analysis (same model version, same series)
    is on screen with the first image: no second run, decisions kept."""
    import time

    from core.synthetic.chest_ct import make_chest_ct, write_ct_series

    ph = make_chest_ct(
        seed=4321, slices=64, rows=192, cols=192, pixel_spacing_mm=1.5, slice_spacing_mm=2.5,
        nodule_count=3, min_nodule_mm=8.0,
    )  # fmt: skip
    ct = write_ct_series(ph, tmp_path / "ct", patient_id="RE-1", patient_name="Re^Open")
    settings = local_settings(tmp_path, {"user": "dr.re"})
    archive = LocalArchive(settings.storage)
    import_paths(archive, [tmp_path / "ct"])

    win = show_workstation(qtbot, settings, archive)
    win.open_study(ct.study_instance_uid)
    qtbot.waitUntil(
        lambda: (
            win.loaded_at is not None
            and (win.analysis is not None or win.analysis_error is not None)
        ),
        timeout=120000,
    )
    assert win.analysis_error is None and win.analysis.findings
    first = win.analysis.findings[0].finding_id
    win.review.reject(first)
    n_findings = len(list(win.findings))
    win.close()

    again = show_workstation(qtbot, settings, archive)
    t0 = time.perf_counter()
    again.open_study(ct.study_instance_uid)
    qtbot.waitUntil(lambda: again.loaded_at is not None, timeout=60000)
    assert again.stored_shown_s is not None, "the stored analysis was not shown early"
    shown_after_first_image = again.stored_shown_s - t0 - (again.first_image_s or 0.0)
    assert shown_after_first_image < 1.0
    assert any("stored result" in w for w in again.analysis.warnings)
    assert len(list(again.findings)) == n_findings
    assert again.findings.get(first).status is ReviewStatus.REJECTED
    qtbot.waitUntil(lambda: again.reading.heat.heatmap is not None, timeout=30000)


@pytest.mark.network
def test_pacs_tab_searches_and_retrieves_from_a_real_pacs(
    qtbot, tmp_path, small_ct, orthanc_factory
):
    """The browser's PACS tab (services given as callables, no networking in viewers): a
    study-level C-FIND on Orthanc, then a C-MOVE into the local archive with progress."""
    port = free_port()
    pacs = orthanc_factory(modalities={"loupe": ("LOUPE", "127.0.0.1", port)}).start()
    pacs.upload(list(small_ct.paths))
    settings = parse_settings(
        {
            "local": {"storage": str(tmp_path / "archive"), "port": port, "bind": "127.0.0.1"},
            "nodes": [
                {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
            ],
            "inference": {"analyze_on_open": False},
        }
    )
    archive = LocalArchive(settings.storage)
    win = show_workstation(qtbot, settings, archive)
    win.start_services()
    browser = win.browser
    browser.f_patient_name.setText("Test*")
    browser.search()
    qtbot.waitUntil(lambda: browser.remote_table.rowCount() == 1, timeout=30000)
    assert browser.remote_table.item(0, 1).text() == "LOUPE-T2"
    browser.f_date.setText("not a date")
    browser.search()
    qtbot.waitUntil(lambda: "date" in browser.remote_status.text().lower(), timeout=10000)
    browser.remote_table.selectRow(0)
    browser.retrieve_selected()
    qtbot.waitUntil(lambda: browser.remote_status.text().startswith("Retrieved"), timeout=60000)
    n = len(small_ct.paths)
    assert f"Retrieved {n}/{n} instances" in browser.remote_status.text()
    assert browser.local_table.rowCount() == 1
    assert browser.local_table.item(0, 5).text() == str(n)
    win.stop_services()


def test_about_names_versions_device_and_each_model_card(qtbot, reviewing):
    from PySide6.QtWidgets import QPlainTextEdit, QTabWidget

    reviewing.show_about()
    dialog = reviewing.about_dialog
    tabs = dialog.findChild(QTabWidget)
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    assert titles[0] == "Loupe"
    assert any(t.startswith("lung-nodule-ref ") for t in titles)
    assert any(t.startswith("endoscopy-lesion-ref ") for t in titles)
    text = (
        tabs.widget(0).findChild(QPlainTextEdit).toPlainText()
        if tabs.widget(0).findChild(QPlainTextEdit)
        else tabs.widget(0).toPlainText()
    )
    assert "Loupe 0." in text and "pydicom " in text and "AI device:" in text
    card = tabs.widget(titles.index(next(t for t in titles if t.startswith("lung")))).toPlainText()
    assert "Not for clinical use" in card
    dialog.close()
