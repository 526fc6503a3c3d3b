"""SliceView pixels: heatmap colour where the probability is, markers on the right slices,
MPR geometry, window presets."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from core.display import COLOR_MAPS, STATUS_COLORS, AiVisibility, HeatmapLayer, WindowLevel
from core.findings import Finding, FindingSet, ReviewStatus
from core.mpr import Plane
from core.navigation import Cursor
from core.volume import Volume, affine_from_dicom
from viewers.slice_view import SliceView

pytestmark = pytest.mark.gui

SHAPE = (40, 96, 112)  # k, j, i
SPACING = (5.0, 1.5, 1.2)  # mm along k, j, i: anisotropic on purpose
ORIGIN = (-60.0, -80.0, -300.0)


def make_volume(fill: float = -1000.0) -> Volume:
    vox = np.full(SHAPE, fill, dtype=np.int16)
    affine = affine_from_dicom(ORIGIN, (1, 0, 0), (0, 1, 0), SPACING[1:], (0, 0, SPACING[0]))
    return Volume(voxels=vox, affine=affine, series_instance_uid="1.2.3")


def pixel(img: QImage, x: float, y: float) -> tuple[int, int, int]:
    c = img.pixelColor(round(x), round(y))
    return c.red(), c.green(), c.blue()


def view(qtbot, volume: Volume, plane: Plane = Plane.AXIAL, **kw) -> SliceView:
    v = SliceView(plane, WindowLevel(), Cursor(), AiVisibility(), **kw)
    v.set_volume(volume)
    v.resize(560, 480)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_heatmap_hot_spot_has_the_top_colour_at_its_place(qtbot):
    vol = make_volume()
    heat = np.zeros(SHAPE, dtype=np.uint8)
    heat[20, 40:50, 70:80] = 255  # a block of p = 1.0 on slice 20
    v = view(qtbot, vol, heatmap_pane=True)
    layer = HeatmapLayer(color_map="turbo", opacity=1.0, threshold=0.1)
    v.set_heatmap(heat, layer)
    v.set_index(20)
    img = v.grab().toImage()
    centre = v.image_to_screen(44.5, 74.5)
    top = tuple(int(c) for c in COLOR_MAPS["turbo"][255])
    assert pixel(img, centre.x(), centre.y()) == top
    far = v.image_to_screen(10, 10)
    assert pixel(img, far.x(), far.y()) != top
    v.set_index(5)  # same place, another slice: no heat
    img = v.grab().toImage()
    assert pixel(img, centre.x(), centre.y()) != top

    v.ai.set(False)  # one switch hides all AI
    v.set_index(20)
    img = v.grab().toImage()
    assert pixel(img, centre.x(), centre.y()) != top


def count_colour(img: QImage, rgb: tuple[int, int, int], tol: int = 40) -> int:
    # Keep the converted image alive while its bits are read: a temporary QImage's buffer is
    # freed under numpy's view, and the count then reads garbage (a once-in-a-few-runs
    # "stray pixel").
    rgb_img = img.convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(rgb_img.constBits(), np.uint8).copy()
    arr = arr.reshape(img.height(), -1)[:, : img.width() * 3].reshape(img.height(), img.width(), 3)
    return int((np.abs(arr.astype(int) - rgb).max(axis=2) <= tol).sum())


def test_marker_on_its_centre_slice_and_not_on_a_far_one(qtbot):
    vol = make_volume()
    centre_kji = (22.0, 50.0, 60.0)
    world = tuple(float(c) for c in vol.index_to_world(centre_kji))
    findings = FindingSet(
        [
            Finding(
                "F1",
                "m",
                "1",
                "1.2.3",
                0.91,
                center_mm=world,
                diameter_mm=12.0,
                status=ReviewStatus.ACCEPTED,
            ),
        ]
    )
    v = view(qtbot, vol)
    v.set_findings(findings)
    green = STATUS_COLORS[ReviewStatus.ACCEPTED]
    v.set_index(22)
    on = count_colour(v.grab().toImage(), green)
    assert on > 50
    v.set_index(23)  # 5 mm away, inside the 6 mm radius: still drawn (smaller)
    assert 0 < count_colour(v.grab().toImage(), green) <= on
    v.set_index(30)  # 40 mm away
    assert count_colour(v.grab().toImage(), green) == 0
    # The marker sits where the centre is: the ring surrounds the centre point.
    v.set_index(22)
    img = v.grab().toImage()
    c = v.image_to_screen(50, 60)

    def near(p: tuple[int, int, int]) -> bool:
        return max(abs(a - b) for a, b in zip(p, green, strict=True)) <= 40

    hits = [dx for dx in range(-40, 41) if near(pixel(img, c.x() + dx, c.y()))]
    left = [dx for dx in hits if dx < 0]
    right = [dx for dx in hits if dx > 0]
    assert left and right and abs(abs(max(left)) - min(right)) <= 3
    # Status colour follows the review.
    findings.update("F1", status=ReviewStatus.REJECTED)
    assert count_colour(v.grab().toImage(), green) == 0


def test_coronal_pane_shows_a_sphere_where_it_is(qtbot):
    vol = make_volume()
    k, j, i = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1], 0 : SHAPE[2]]
    centre_world = np.array([-10.0, -30.0, -230.0])  # LPS mm
    world = vol.index_to_world(np.stack([k, j, i], axis=-1).reshape(-1, 3)).reshape(*SHAPE, 3)
    inside = np.linalg.norm(world - centre_world, axis=-1) <= 15.0
    vol.voxels[inside] = 400
    v = view(qtbot, vol, Plane.CORONAL)
    ck, cj, ci = vol.world_to_index(centre_world)
    v.set_index(round(cj))
    v.wl.set(0, 100)  # sphere white, background black
    img = v.grab().toImage()
    grey = img.convertToFormat(QImage.Format.Format_Grayscale8)  # alive while read
    arr = np.frombuffer(grey.constBits(), np.uint8).copy()
    arr = arr.reshape(img.height(), -1)[:, : img.width()]
    expected = v.image_to_screen(SHAPE[0] - 1 - ck, ci)  # superior up: k flipped on screen
    ex, ey = round(expected.x()), round(expected.y())
    box = arr[ey - 100 : ey + 100, ex - 100 : ex + 100]  # away from the corner texts
    ys, xs = np.nonzero(box > 127)  # half way: where bilinear smoothing puts the edge
    assert abs(xs.mean() - 100) < 3 and abs(ys.mean() - 100) < 3
    # Physical aspect: 5 slices of 5 mm tall, 25 columns of 1.2 mm wide, on screen.
    rows_on = np.nonzero(vol.voxels[:, round(cj), :].max(axis=1) > 0)[0].size
    cols_on = np.nonzero(vol.voxels[:, round(cj), :].max(axis=0) > 0)[0].size
    _, _, px_per_col, px_per_row = v._scale()
    assert abs((np.ptp(ys) + 1) - rows_on * px_per_row) <= 4
    assert abs((np.ptp(xs) + 1) - cols_on * px_per_col) <= 4
    assert px_per_row / px_per_col == pytest.approx(5.0 / 1.2)
    assert box[100, 100] > 200 and arr[ey, ex + 120] < 50


def test_window_presets_change_pixel_values(qtbot):
    vol = make_volume(fill=-600)
    v = view(qtbot, vol)
    c = v.image_to_screen(48, 56)
    v.wl.apply_preset("lung")  # centre -600: mid grey
    assert abs(pixel(v.grab().toImage(), c.x(), c.y())[0] - 127) <= 1
    v.wl.apply_preset("mediastinum")  # -600 is far below 40-200: black
    assert pixel(v.grab().toImage(), c.x(), c.y())[0] == 0
    vol.voxels[:] = 40
    v._cache_key = None
    v.update()
    assert abs(pixel(v.grab().toImage(), c.x(), c.y())[0] - 127) <= 1


def test_click_on_marker_selects_finding_and_moves_cursor(qtbot):
    from PySide6.QtCore import QPoint, Qt

    vol = make_volume()
    world = tuple(float(c) for c in vol.index_to_world((10.0, 30.0, 40.0)))
    v = view(qtbot, vol)
    v.set_findings(FindingSet([Finding("F9", "m", "1", "", 0.5, center_mm=world, diameter_mm=8.0)]))
    v.set_index(10)
    pt = v.image_to_screen(30, 40)
    with qtbot.waitSignal(v.finding_clicked) as sig:
        qtbot.mouseClick(v, Qt.MouseButton.LeftButton, pos=QPoint(round(pt.x()), round(pt.y())))
    assert sig.args == ["F9"] and v.nav.selected_finding == "F9"
    assert np.allclose(v.nav.world, world)


def test_roi_gives_mean_sd_and_area_in_square_mm(qtbot):
    """An elliptical ROI over a 40 HU disc: mean 40 HU, SD 0, and its area in mm² (pixel
    count times the 1.5 x 1.2 mm pixel), not a pixel count."""
    from viewers.slice_view import Measurement, Tool

    vol = make_volume(40.0)
    v = view(qtbot, vol)
    m = Measurement(Tool.ROI, (20.0, 20.0), (40.0, 60.0), v._index)
    mean, sd, n = v.roi_stats(m)
    text = v.measurement_text(m)
    assert mean == pytest.approx(40.0) and sd == pytest.approx(0.0)
    assert f"area {n * 1.5 * 1.2:.1f} mm²" in text and "px" not in text
    # The ellipse of semi-axes 10 rows x 20 columns: pi * 15 mm * 24 mm, within the rim.
    assert n * 1.5 * 1.2 == pytest.approx(np.pi * 15.0 * 24.0, rel=0.08)


def test_marker_labels_never_cover_each_other(qtbot):
    """Findings a few mm apart on one slice: every label has its own place (issue: "7 38%"
    was drawn over "19 27%")."""
    vol = make_volume()
    v = view(qtbot, vol)
    fs = FindingSet(
        [
            Finding(
                f"m-{n}", "m", "1", "1.2.3", 0.5 - n / 100,
                center_mm=tuple(vol.index_to_world((20, 48 + (n % 2), 50 + 2 * n))),
                diameter_mm=6.0,
            )
            for n in range(1, 7)
        ]
    )  # fmt: skip
    v.set_findings(fs)
    v.set_index(20)
    v.grab()  # paint
    rects = list(v.label_rects.values())
    assert len(rects) == 6
    for a in range(6):
        for b in range(a + 1, 6):
            assert not rects[a].intersects(rects[b]), (a, b)
