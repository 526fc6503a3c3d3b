"""Volume3DView: pixels of the rendered scene, finding spheres by status, AI toggle, picking."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from core.display import STATUS_COLORS, AiVisibility
from core.findings import Finding, FindingSet, ReviewStatus
from core.synthetic.chest_ct import CtPhantom, make_chest_ct
from core.volume import Volume, affine_from_dicom
from viewers.volume_3d_view import (
    Volume3DView,
    downsample_for_rendering,
    image_data_from,
)

TOLERANCE = 10  # per channel, for shading and rounding at a sphere's centre


@pytest.fixture(scope="module")
def phantom() -> CtPhantom:
    return make_chest_ct(seed=7, slices=40, rows=128, cols=128, pixel_spacing_mm=2.7,
                         slice_spacing_mm=7.0, nodule_count=1, min_nodule_mm=16.0,
                         max_nodule_mm=20.0)  # fmt: skip


def volume_of(phantom: CtPhantom) -> Volume:
    dz, dy, dx = phantom.spacing_mm
    affine = affine_from_dicom(phantom.origin_mm, (1, 0, 0), (0, 1, 0), (dy, dx), (0, 0, dz))
    return Volume(phantom.hu, affine)


def finding_of(phantom: CtPhantom, status: ReviewStatus = ReviewStatus.ACCEPTED) -> Finding:
    nodule = phantom.nodules[0]
    return Finding("F1", "nodule-detector", "1.0", "1.2.3", 0.91, center_mm=nodule.center_mm,
                   diameter_mm=nodule.diameter_mm, status=status)  # fmt: skip


@pytest.fixture
def view(qtbot, phantom: CtPhantom) -> Iterator[Volume3DView]:
    v = Volume3DView()
    qtbot.addWidget(v)
    v.resize(520, 440)
    v.show()
    qtbot.waitExposed(v)
    v.set_volume(volume_of(phantom))
    yield v
    v.close_render_window()


def pixel_at(rgb: np.ndarray, display_xy: tuple[float, float]) -> np.ndarray:
    """RGB at a VTK display coordinate (origin bottom left) of an image with row 0 on top."""
    x, y = display_xy
    return rgb[rgb.shape[0] - 1 - round(y), round(x)].astype(int)


def count_near(rgb: np.ndarray, color: tuple[int, int, int]) -> int:
    return int((np.abs(rgb.astype(int) - np.array(color)).max(axis=2) <= TOLERANCE).sum())


def test_downsample_keeps_geometry(phantom: CtPhantom):
    volume = volume_of(phantom)
    voxels, affine = downsample_for_rendering(volume, max_voxels=100_000)
    assert voxels.size <= 100_000
    assert voxels.shape[0] == volume.shape[0]  # 7 mm slices are already the coarsest axis
    # Downsampled voxel (k, j, i) is original voxel (k*sk, j*sj, i*si): same LPS position.
    strides = np.rint(np.linalg.norm(affine[:3, :3], axis=0) / volume.spacing_mm).astype(int)
    assert tuple(-(-np.array(volume.shape) // strides)) == voxels.shape
    idx = np.array([3, 10, 20])
    np.testing.assert_allclose(
        affine[:3, :3] @ idx + affine[:3, 3], volume.index_to_world(idx * strides)
    )
    assert voxels[3, 10, 20] == volume.voxels[tuple(idx * strides)]


@pytest.mark.parametrize(
    ("row", "col", "step"),
    [
        ((1, 0, 0), (0, 1, 0), (0, 0, 2.5)),  # axial, feet to head
        ((1, 0, 0), (0, 1, 0), (0, 0, -2.5)),  # axial, head to feet (left-handed)
        ((-1, 0, 0), (0, 0, 1), (0, 3.0, 0)),  # mirrored coronal-like
        ((0.866, 0.5, 0), (-0.5, 0.866, 0), (0, 0, -2.5)),  # oblique and left-handed
    ],
)
def test_image_data_world_is_lps(row, col, step):
    affine = affine_from_dicom((10.0, -20.0, 30.0), row, col, (2.0, 1.5), step)
    volume = Volume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), affine)
    image = image_data_from(volume.voxels, volume.affine)
    scalars = image.GetPointData().GetScalars()
    for kji in [(0, 0, 0), (3, 4, 5), (1, 2, 3), (3, 0, 5)]:
        lps = volume.index_to_world(kji)
        point_id = image.FindPoint(*lps)
        assert scalars.GetValue(point_id) == volume.voxels[kji]
        np.testing.assert_allclose(image.GetPoint(point_id), lps, atol=1e-9)


@pytest.mark.gui
def test_render_is_not_blank(view: Volume3DView):
    rgb = view.render_to_array()
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    h, w = rgb.shape[:2]
    assert (w, h) == (view.scene_widget.width(), view.scene_widget.height())
    background = rgb[2, w // 2]
    differs = np.abs(rgb.astype(int) - background.astype(int)).max(axis=2) > 30
    assert differs.mean() > 0.15  # the chest fills a good part of the view
    assert differs[h // 2, w // 2]  # and its middle


@pytest.mark.gui
def test_volume_renders_where_the_affine_puts_it(qtbot):
    """A bright block in a mirrored, oblique volume shows up at its LPS position (direction
    matrix honoured by the GPU mapper), not where an identity direction would put it."""
    affine = affine_from_dicom((0.0, 0.0, 0.0), (-1, 0, 0), (0, 0, -1), (2.0, 2.0), (0, 2, 0))
    voxels = np.full((40, 40, 40), -1000, dtype=np.int16)
    voxels[15:25, 5:15, 28:38] = 1000  # (k, j, i)
    volume = Volume(voxels, affine)
    v = Volume3DView()
    qtbot.addWidget(v)
    v.resize(480, 420)
    v.show()
    qtbot.waitExposed(v)
    try:
        v.set_volume(volume)
        v.set_preset("Bone")
        rgb = v.render_to_array()
        block = volume.index_to_world([19.5, 9.5, 32.5])
        mirrored = volume.index_to_world([19.5, 40 - 9.5, 40 - 32.5])
        # Lit face (shaded right), and nothing where an ignored direction would put it.
        assert pixel_at(rgb, v.world_to_display(tuple(block))).min() > 150
        assert pixel_at(rgb, v.world_to_display(tuple(mirrored))).max() < 40
    finally:
        v.close_render_window()


@pytest.mark.gui
def test_sphere_shows_status_colour_and_follows_review(view: Volume3DView, phantom: CtPhantom):
    findings = FindingSet([finding_of(phantom, ReviewStatus.ACCEPTED)])
    view.set_findings(findings)
    center = phantom.nodules[0].center_mm
    xy = view.world_to_display(center)
    accepted = STATUS_COLORS[ReviewStatus.ACCEPTED]
    rgb = view.render_to_array()
    np.testing.assert_allclose(pixel_at(rgb, xy), accepted, atol=TOLERANCE)
    # Anterior view: a nodule in the patient's left lung (x > 0) is on the screen's right.
    assert (xy[0] > rgb.shape[1] / 2) == (center[0] > 0)

    findings.update("F1", status=ReviewStatus.REJECTED)
    rgb = view.render_to_array()
    np.testing.assert_allclose(
        pixel_at(rgb, xy), STATUS_COLORS[ReviewStatus.REJECTED], atol=TOLERANCE
    )
    assert count_near(rgb, accepted) == 0


@pytest.mark.gui
def test_sphere_size_is_the_diameter(view: Volume3DView, phantom: CtPhantom):
    finding = finding_of(phantom, ReviewStatus.MODIFIED)
    ai = AiVisibility()
    view.set_findings(FindingSet([finding]))
    view.set_ai_visibility(ai)
    shown = view.render_to_array().astype(int)
    ai.set(False)
    hidden = view.render_to_array().astype(int)
    silhouette = int((np.abs(shown - hidden).max(axis=2) > 0).sum())
    # Projected radius: display distance from the centre to a point one radius away along x
    # (perpendicular to the anterior view direction).
    x, y, z = finding.center_mm
    cx, _ = view.world_to_display((x, y, z))
    ex, _ = view.world_to_display((x + finding.diameter_mm / 2, y, z))
    expected = np.pi * (ex - cx) ** 2
    assert expected > 100
    assert 0.8 * expected < silhouette < 1.25 * expected  # perspective widens it a little


@pytest.mark.gui
def test_hiding_ai_removes_the_sphere(view: Volume3DView, phantom: CtPhantom):
    ai = AiVisibility()
    view.set_findings(FindingSet([finding_of(phantom)]))
    view.set_ai_visibility(ai)
    accepted = STATUS_COLORS[ReviewStatus.ACCEPTED]
    assert count_near(view.render_to_array(), accepted) > 30
    ai.set(False)
    rgb = view.render_to_array()
    assert count_near(rgb, accepted) == 0
    xy = view.world_to_display(phantom.nodules[0].center_mm)
    assert view.finding_at(round(xy[0]), round(xy[1])) is None  # a hidden sphere is not picked
    ai.set(True)
    assert count_near(view.render_to_array(), accepted) > 30


@pytest.mark.gui
def test_findings_reset_and_add_update_spheres(view: Volume3DView, phantom: CtPhantom):
    findings = FindingSet([finding_of(phantom)])
    view.set_findings(findings)
    accepted = STATUS_COLORS[ReviewStatus.ACCEPTED]
    added = STATUS_COLORS[ReviewStatus.ADDED]
    moved = (phantom.nodules[0].center_mm[0] * -1, *phantom.nodules[0].center_mm[1:])
    reader_finding = Finding("F2", "reader", "", "1.2.3", 1.0, center_mm=moved, diameter_mm=15.0,
                             status=ReviewStatus.ADDED)  # fmt: skip
    findings.replace_all([reader_finding])
    rgb = view.render_to_array()
    assert count_near(rgb, accepted) == 0
    np.testing.assert_allclose(pixel_at(rgb, view.world_to_display(moved)), added, atol=TOLERANCE)
    findings.add(finding_of(phantom))
    assert count_near(view.render_to_array(), accepted) > 30


@pytest.mark.gui
def test_review_from_a_worker_thread_reaches_the_view(qtbot, view, phantom):
    findings = FindingSet([finding_of(phantom, ReviewStatus.PENDING)])
    view.set_findings(findings)
    xy = view.world_to_display(phantom.nodules[0].center_mm)
    worker = threading.Thread(target=findings.update, args=("F1",),
                              kwargs={"status": ReviewStatus.ACCEPTED})  # fmt: skip
    worker.start()
    worker.join()

    def accepted_shown() -> None:
        shown = pixel_at(view.render_to_array(), xy)
        assert np.abs(shown - STATUS_COLORS[ReviewStatus.ACCEPTED]).max() <= TOLERANCE

    qtbot.waitUntil(accepted_shown, timeout=5000)


@pytest.mark.gui
def test_snapshot_includes_the_scene(view: Volume3DView, phantom: CtPhantom):
    view.set_findings(FindingSet([finding_of(phantom)]))
    image = view.snapshot()
    assert (image.width(), image.height()) == (view.width(), view.height())
    x, y = view.world_to_display(phantom.nodules[0].center_mm)
    scene = view.scene_widget.geometry()
    c = image.pixelColor(scene.x() + round(x), scene.y() + scene.height() - 1 - round(y))
    shown = (c.red(), c.green(), c.blue())
    assert np.abs(np.array(shown) - STATUS_COLORS[ReviewStatus.ACCEPTED]).max() <= TOLERANCE


@pytest.mark.gui
def test_click_on_sphere_emits_finding_clicked(qtbot, view: Volume3DView, phantom: CtPhantom):
    view.set_findings(FindingSet([finding_of(phantom)]))
    view.render_to_array()
    x, y = view.world_to_display(phantom.nodules[0].center_mm)
    assert view.finding_at(round(x), round(y)) == "F1"
    assert view.finding_at(3, 3) is None
    scene = view.scene_widget
    qt_pos = QPoint(round(x), scene.height() - 1 - round(y))  # Qt's y grows downwards
    with qtbot.waitSignal(view.finding_clicked, timeout=2000) as blocker:
        qtbot.mouseClick(scene, Qt.MouseButton.LeftButton, pos=qt_pos)
    assert blocker.args == ["F1"]
    # A click on empty space emits nothing.
    with qtbot.assertNotEmitted(view.finding_clicked):
        qtbot.mouseClick(scene, Qt.MouseButton.LeftButton, pos=QPoint(5, 5))


@pytest.mark.gui
def test_presets(view: Volume3DView):
    lung = view.render_to_array()
    view.set_preset("Bone")
    assert view.preset == "Bone"
    bone = view.render_to_array()
    assert np.abs(lung.astype(int) - bone.astype(int)).max(axis=2).mean() > 5
    with pytest.raises(ValueError, match="unknown preset"):
        view.set_preset("Brain")
