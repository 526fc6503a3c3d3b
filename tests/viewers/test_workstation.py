"""The workstation window driven as a reader would: open a study, presets, layouts, AI key,
and `loupe open --screenshot` rendering the reading view to a PNG."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from peers import free_port
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from app.settings import parse_settings
from app.workstation import Workstation
from dicom_net.archive import LocalArchive
from dicom_net.importer import import_paths
from viewers.reading_view import Layout

pytestmark = pytest.mark.gui


@pytest.fixture
def workstation(qtbot, tmp_path, small_ct):
    settings = parse_settings(
        {"local": {"storage": str(tmp_path / "archive"), "port": free_port(), "bind": "127.0.0.1"}}
    )
    archive = LocalArchive(settings.storage)
    import_paths(archive, [small_ct.paths[0].parent])
    win = Workstation(settings, archive)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()  # shortcuts need the active window (no window manager on Xvfb)
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    return win


def centre_value(win: Workstation) -> int:
    view = win.reading.axial
    img = view.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    # A soft-tissue voxel (0..80 HU) of the shown slice, away from edges.
    hu = win.volume.voxels[view.index]
    rows, cols = np.nonzero((hu > 0) & (hu < 80))
    pick = len(rows) // 2
    pt = view.image_to_screen(rows[pick], cols[pick])
    return img.pixelColor(round(pt.x()), round(pt.y())).red()


def test_open_study_presets_layouts_and_ai_key(qtbot, workstation, small_ct):
    win = workstation
    win.open_study(small_ct.study_instance_uid)
    qtbot.waitUntil(lambda: win.volume is not None, timeout=30000)
    assert win.volume.shape == (24, 128, 128)
    assert win.reading.axial.index == 12 and win.reading.heat.index == 12

    qtbot.keyClick(win, Qt.Key.Key_2)  # mediastinum: soft tissue mid-grey
    mediastinum = centre_value(win)
    qtbot.keyClick(win, Qt.Key.Key_1)  # lung: soft tissue near white
    lung = centre_value(win)
    assert (win.window_level.center, win.window_level.width) == (-600, 1500)
    assert lung > mediastinum + 40

    win.reading.axial.setFocus()
    qtbot.keyClick(win.reading.axial, Qt.Key.Key_Down)
    assert win.reading.axial.index == 13 and win.reading.heat.index == 13  # panes follow

    qtbot.keyClick(win, Qt.Key.Key_F4)
    assert win.reading.layout_mode is Layout.MPR
    assert win.reading.coronal.isVisible() and win.reading.sagittal.isVisible()
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert not win.ai.visible
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert win.ai.visible


@pytest.mark.slow
def test_loupe_open_screenshot(tmp_path, small_ct):
    home = tmp_path / "home"
    env = {**os.environ, "LOUPE_HOME": str(home), "QT_QPA_PLATFORM": "xcb"}
    cli = [sys.executable, "-m", "app.cli"]
    r = subprocess.run(
        [*cli, "import", str(small_ct.paths[0].parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    png = tmp_path / "shot.png"
    r = subprocess.run(
        [*cli, "open", "--study-uid", small_ct.study_instance_uid, "--screenshot", str(png)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    img = QImage(str(png))
    assert (img.width(), img.height()) == (1600, 960)
    # The reading panes fill the middle: lots of non-black, grey pixels there.
    grey = img.convertToFormat(QImage.Format.Format_Grayscale8)
    values = [grey.pixelColor(x, 480).red() for x in range(500, 1100, 10)]
    assert sum(v > 60 for v in values) > 20


def test_endoscopy_study_opens_in_review_mode(qtbot, workstation, tmp_path):
    from core.synthetic.endoscopy import write_endoscopy_study

    written, _truth = write_endoscopy_study(
        tmp_path / "es", seed=3, frames=6, patient_id="ES-1", patient_name="Test^Scope"
    )
    import_paths(workstation.archive, [tmp_path / "es"])
    workstation.open_study(written.study_instance_uid)
    qtbot.waitUntil(lambda: len(workstation.review_frames) == 6, timeout=30000)
    panel = workstation.endoscopy
    assert workstation.center.currentWidget() is panel
    assert [f.frame for f in workstation.review_frames] == [1] * 6
    first = workstation.review_frames[0]
    assert first.sop_instance_uid == written.sop_instance_uids[0]
    assert first.rgb.shape == (480, 480, 3)
