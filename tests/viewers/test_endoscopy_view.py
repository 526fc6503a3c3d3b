"""Endoscopy review: ordering and navigation (Qt-free), and what the panel shows (pixels)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from core.display import COLOR_MAPS, AiVisibility, HeatmapLayer
from core.heatmap import FrameHeatmap
from core.synthetic.endoscopy import make_endoscopy_frame
from viewers.endoscopy_view import (
    REGION_COLOR,
    EndoscopyReviewModel,
    EndoscopyReviewPanel,
    FramePane,
    ReviewFrame,
    SortOrder,
    badge_text,
    heatmap_rgb,
    risk_color,
    stretch,
)

SIZE = 240  # frame rows and columns
GRID = 48  # heatmap rows and columns (the view stretches it over the frame)
# (probability, informative, lesion) per frame, in acquisition order; frame 6 is dropped.
SPECS = [(0.12, True, False), (0.91, True, True), (0.08, True, False), (0.64, True, True),
         (0.47, True, True), (None, False, False)]  # fmt: skip
RISKIEST = 1
TOP = tuple(int(v) for v in COLOR_MAPS["hot"][255])


def blob_center(index: int, box: tuple[int, int, int, int] | None) -> tuple[float, float]:
    """Frame pixel (row, col) where frame `index`'s heatmap peaks: its lesion, or a fixed spot."""
    if box is not None:
        r0, c0, r1, c1 = box
        return (r0 + r1) / 2, (c0 + c1) / 2
    return SIZE * 0.3, SIZE * (0.55 + 0.03 * index)


@pytest.fixture(scope="module")
def frames() -> list[ReviewFrame]:
    out = []
    for n, (p, informative, lesion) in enumerate(SPECS):
        rgb, truth = make_endoscopy_frame(seed=100 + n, rows=SIZE, cols=SIZE, lesion=lesion,
                                          informative=informative)  # fmt: skip
        heatmap = None
        if p is not None:
            cy, cx = (v * GRID / SIZE for v in blob_center(n, truth.lesion_box))
            yy, xx = np.mgrid[0:GRID, 0:GRID] + 0.5
            # A Gaussian with a flat top at the frame's probability x 1.25 (clipped at 1): the
            # riskiest frame has a plateau of p = 1 several pixels wide.
            g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2))
            prob = np.clip(1.25 * p * g, 0.0, 1.0).astype(np.float32)
            heatmap = FrameHeatmap(prob, f"1.2.826.0.1.{n}", 1, "lesion", "1.0")
        out.append(ReviewFrame(f"1.2.826.0.1.{n}", 1, rgb, p, informative, heatmap,
                               truth.lesion_box))  # fmt: skip
    return out


def blob_of(frames: list[ReviewFrame], index: int) -> tuple[float, float]:
    return blob_center(index, frames[index].region)


# ---------------------------------------------------------------------------------- Qt-free


def test_risk_order_is_descending_with_dropped_last(frames):
    model = EndoscopyReviewModel(frames)
    assert model.order == [0, 1, 2, 3, 4, 5]
    model.set_sort_order(SortOrder.RISK)
    assert model.order == [1, 3, 4, 0, 2, 5]
    model.set_sort_order("order")
    assert model.order == [0, 1, 2, 3, 4, 5]


def test_navigation_follows_display_order_and_keeps_selection(frames):
    model = EndoscopyReviewModel()
    seen: list[int] = []
    model.selection_changed.connect(seen.append)
    model.set_frames(frames)
    assert model.selected_index == 0 and seen == [0]
    assert model.next() and model.selected_index == 1
    model.set_sort_order(SortOrder.RISK)  # the selected frame stays selected
    assert model.selected_index == 1 and model.position == 0
    assert not model.previous()  # first in risk order
    assert model.next() and model.selected_index == 3
    model.select_position(5)
    assert model.selected_index == 5 and not model.next()
    assert seen == [0, 1, 3, 5]
    with pytest.raises(IndexError):
        model.select(6)
    model.set_frames(frames[:2])  # fewer frames: selection restarts at the first in order
    assert model.selected_index == 1 and model.order == [1, 0]


def test_badges_and_risk_colours(frames):
    assert [badge_text(f) for f in frames] == ["12%", "91%", "8%", "64%", "47%", "dropped"]
    low, high = risk_color(0.05), risk_color(0.95)
    assert low[1] > low[0] and high[0] > high[1]  # green for low risk, red for high
    assert risk_color(None, dropped=True) == risk_color(0.9, dropped=True)


def test_review_frame_is_validated():
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="rgb"):
        ReviewFrame("1.2", 1, rgb[..., 0])
    with pytest.raises(ValueError, match="probability"):
        ReviewFrame("1.2", 1, rgb, probability=1.5)
    with pytest.raises(ValueError, match="1-based"):
        ReviewFrame("1.2", 0, rgb)


def test_stretch_keeps_the_peak_in_place():
    p = np.zeros((10, 20), dtype=np.float32)
    p[3, 15] = 1.0
    big = stretch(p, 100, 100)
    assert big.shape == (100, 100)
    r, c = np.unravel_index(np.argmax(big), big.shape)
    assert abs(r - 35) <= 5 and abs(c - 77) <= 3  # (3.5 / 10 * 100, 15.5 / 20 * 100)


def test_heatmap_is_blended_over_the_rgb_frame(frames):
    frame = frames[RISKIEST]
    layer = HeatmapLayer(color_map="hot", opacity=0.6, threshold=0.1)
    out = heatmap_rgb(frame, layer)
    r, c = (round(v) for v in blob_of(frames, RISKIEST))
    expected = (frame.rgb[r, c] * 0.4 + np.array(TOP) * 0.6).astype(np.uint8)
    np.testing.assert_allclose(out[r, c], expected, atol=1)
    # Far from the blob the probability is below the threshold: the frame shows as it is.
    far = (SIZE - 1 - r, SIZE - 1 - c)
    np.testing.assert_array_equal(out[far], frame.rgb[far])


# ---------------------------------------------------------------------------------- widget


@pytest.fixture
def panel(qtbot, frames) -> EndoscopyReviewPanel:
    p = EndoscopyReviewPanel(layer=HeatmapLayer(color_map="hot", opacity=1.0, threshold=0.1))
    qtbot.addWidget(p)
    p.resize(1100, 640)
    p.set_frames(frames)
    p.show()
    qtbot.waitExposed(p)
    return p


def pixel(pane: FramePane, row: float, col: float) -> tuple[int, int, int]:
    """Colour shown at frame pixel (row, col) of a pane, read from a grab of the pane."""
    image = pane.grab().toImage()
    dpr = image.devicePixelRatio()
    pos = pane.image_to_widget(row, col)
    c = image.pixelColor(round(pos.x() * dpr - 0.5), round(pos.y() * dpr - 0.5))
    return c.red(), c.green(), c.blue()


def near(a: tuple[int, int, int], b: tuple[int, int, int], tol: int) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tol


@pytest.mark.gui
def test_riskiest_frame_shows_top_colour_at_blob_in_heatmap_pane_only(panel, frames):
    panel.model.set_sort_order(SortOrder.RISK)
    panel.model.select_position(0)
    assert panel.model.selected_index == RISKIEST
    row, col = blob_of(frames, RISKIEST)
    assert pixel(panel.heatmap_pane, row, col) == TOP
    shown = pixel(panel.frame_pane, row, col)
    assert shown != TOP
    assert near(shown, tuple(int(v) for v in frames[RISKIEST].rgb[round(row), round(col)]), 40)
    # Elsewhere (below the threshold) the heatmap pane shows the frame itself.
    far = (SIZE - 1 - row, SIZE - 1 - col)
    assert near(pixel(panel.heatmap_pane, *far), pixel(panel.frame_pane, *far), 2)


@pytest.mark.gui
def test_other_frame_shows_its_own_heatmap(panel, frames):
    panel.model.select(3)  # p = 0.64: the blob peaks near 0.8, below the colour map's top
    row, col = blob_of(frames, 3)
    p = stretch(frames[3].heatmap.probabilities, SIZE, SIZE)[round(row), round(col)]
    assert 0.7 < p < 0.81
    expected = tuple(int(v) for v in COLOR_MAPS["hot"][round(p * 255)])
    assert near(pixel(panel.heatmap_pane, row, col), expected, 6)
    row1, col1 = blob_of(frames, RISKIEST)
    assert pixel(panel.heatmap_pane, row1, col1) != TOP


@pytest.mark.gui
def test_keyboard_and_buttons_step_through_frames(qtbot, panel, frames):
    panel.setFocus()
    assert panel.model.selected_index == 0
    qtbot.keyClick(panel, Qt.Key.Key_Right)
    assert panel.model.selected_index == 1
    qtbot.keyClick(panel, Qt.Key.Key_N)
    assert panel.model.selected_index == 2
    qtbot.keyClick(panel, Qt.Key.Key_Left)
    qtbot.keyClick(panel, Qt.Key.Key_P)
    assert panel.model.selected_index == 0
    qtbot.keyClick(panel, Qt.Key.Key_Left)  # already first
    assert panel.model.selected_index == 0
    with qtbot.waitSignal(panel.frame_selected) as blocker:
        qtbot.mouseClick(panel.thumbnails()[4], Qt.MouseButton.LeftButton)
    assert panel.model.selected_index == 4
    assert blocker.args == [frames[4].sop_instance_uid, 1]


@pytest.mark.gui
def test_sort_by_risk_orders_thumbnails_descending(qtbot, panel, frames):
    qtbot.mouseClick(panel.by_risk_button, Qt.MouseButton.LeftButton)
    assert panel.model.sort_order is SortOrder.RISK
    qtbot.wait(20)  # let the strip lay out
    tiles = panel.thumbnails()
    assert len(tiles) == 6
    xs = [t.x() for t in tiles]
    assert xs == sorted(xs)  # left to right as listed
    scored = [t.probability for t in tiles if t.probability is not None]
    assert scored == sorted(scored, reverse=True)
    best = max(f.probability for f in frames if f.probability is not None)
    assert tiles[0].badge_text == f"{round(best * 100)}%" == "91%"
    assert tiles[-1].badge_text == "dropped"
    # The badge is painted in its risk colour (red for 91%).
    image = tiles[0].grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    badge = image.pixelColor(QPoint(tiles[0].width() - 12, 12))
    assert near((badge.red(), badge.green(), badge.blue()), risk_color(best), 3)
    qtbot.mouseClick(panel.by_order_button, Qt.MouseButton.LeftButton)
    assert [t.frame_index for t in panel.thumbnails()] == [0, 1, 2, 3, 4, 5]


@pytest.mark.gui
def test_region_box_drawn_on_both_panes(panel, frames):
    panel.model.select(RISKIEST)
    r0, c0, _, c1 = frames[RISKIEST].region
    cyan = (REGION_COLOR.red(), REGION_COLOR.green(), REGION_COLOR.blue())
    for pane in (panel.frame_pane, panel.heatmap_pane):
        image = pane.grab().toImage()
        top_left = pane.image_to_widget(r0 - 0.5, c0 - 0.5)
        top_right = pane.image_to_widget(r0 - 0.5, c1 - 0.5)
        y = round(top_left.y())
        hits = 0
        for x in range(round(top_left.x()), round(top_right.x())):
            c = image.pixelColor(x, y)
            hits += near((c.red(), c.green(), c.blue()), cyan, 30)
        assert hits > 5, pane.title


@pytest.mark.gui
def test_hiding_ai_shows_plain_frames(panel, frames):
    ai = AiVisibility()
    panel.set_ai_visibility(ai)
    panel.model.select(RISKIEST)
    row, col = blob_of(frames, RISKIEST)
    assert pixel(panel.heatmap_pane, row, col) == TOP
    ai.set(False)
    assert near(pixel(panel.heatmap_pane, row, col), pixel(panel.frame_pane, row, col), 2)
    assert all(t.badge_text == "" for t in panel.thumbnails())
    ai.set(True)
    assert pixel(panel.heatmap_pane, row, col) == TOP


@pytest.mark.gui
def test_dropped_frame_has_no_heatmap(panel, frames):
    panel.model.select(5)
    assert panel.thumbnails()[5].badge_text == "dropped"
    row, col = SIZE / 2, SIZE / 2
    assert near(pixel(panel.heatmap_pane, row, col), pixel(panel.frame_pane, row, col), 2)


@pytest.mark.gui
def test_colour_bar_shows_the_colour_map(panel):
    bar = panel.colour_bar
    image = bar.grab().toImage()
    rect = bar.bar_rect()
    x = round(rect.center().x())
    top = image.pixelColor(x, round(bar.value_to_y(0.99)))
    bottom = image.pixelColor(x, round(bar.value_to_y(0.01)))
    assert near((top.red(), top.green(), top.blue()), TOP, 12)
    assert near((bottom.red(), bottom.green(), bottom.blue()), (0, 0, 0), 12)


@pytest.mark.gui
def test_cine_plays_through_the_frames_and_space_pauses(qtbot):
    from viewers.endoscopy_view import EndoscopyReviewPanel, ReviewFrame

    frames = [
        ReviewFrame(f"1.2.3.{n}", 1, np.full((32, 32, 3), 40 * n, np.uint8)) for n in range(4)
    ]
    panel = EndoscopyReviewPanel()
    qtbot.addWidget(panel)
    panel.set_frames(frames)
    panel.show()
    qtbot.waitExposed(panel)
    start = panel.model.position
    qtbot.keyClick(panel, Qt.Key.Key_Space)
    assert panel.play_button.isChecked()
    qtbot.waitUntil(lambda: panel.model.position == (start + 2) % 4, timeout=3000)
    qtbot.keyClick(panel, Qt.Key.Key_Space)
    assert not panel.play_button.isChecked()
    stopped_at = panel.model.position
    qtbot.wait(400)
    assert panel.model.position == stopped_at
