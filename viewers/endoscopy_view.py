"""Endoscopy review mode: a strip of frame thumbnails with risk badges, the selected frame beside
its AI heatmap, a colour bar, and keyboard/mouse navigation in acquisition or risk order.

`ReviewFrame` and `EndoscopyReviewModel` are Qt-free (ordering, navigation, selection, heatmap
colouring); `EndoscopyReviewPanel` only shows them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import qtawesome as qta
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.display import AiVisibility, HeatmapLayer
from core.events import Signal as ModelSignal
from core.heatmap import FrameHeatmap
from viewers.colorbar import ColorBarWidget
from viewers.theme import ACCENT, BACKGROUND, MUTED, PANE_BACKGROUND, TEXT

Region = tuple[int, int, int, int]  # (row0, col0, row1, col1) on the frame, row1/col1 exclusive

REGION_COLOR = QColor(0, 200, 255)  # region box: cyan stands out on red mucosa
DROPPED_COLOR = (96, 96, 96)


# ---------------------------------------------------------------------------------- Qt-free


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays do not support dataclass ==
class ReviewFrame:
    """One endoscopy frame with what the AI said about it."""

    sop_instance_uid: str
    frame: int  # 1-based frame number within the instance
    rgb: npt.NDArray[np.uint8]  # (rows, cols, 3)
    probability: float | None = None  # lesion risk from stage 2; None before the AI ran
    informative: bool | None = None  # stage 1 verdict; False: dropped as uninformative
    heatmap: FrameHeatmap | None = None
    region: Region | None = None

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 (rows, cols, 3), got {self.rgb.dtype} "
                             f"{self.rgb.shape}")  # fmt: skip
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        if self.frame < 1:
            raise ValueError(f"frame numbers are 1-based, got {self.frame}")

    @property
    def dropped(self) -> bool:
        return self.informative is False


def badge_text(frame: ReviewFrame) -> str:
    if frame.dropped:
        return "dropped"
    if frame.probability is None:
        return "–"
    return f"{round(frame.probability * 100)}%"


_RISK_STOPS = ((0.0, (46, 160, 67)), (0.5, (230, 170, 0)), (1.0, (220, 40, 40)))


def risk_color(probability: float | None, dropped: bool = False) -> tuple[int, int, int]:
    """Badge colour: green (low risk) through amber to red (high risk); grey when dropped."""
    if dropped or probability is None:
        return DROPPED_COLOR
    xs = [s[0] for s in _RISK_STOPS]
    return (
        round(float(np.interp(probability, xs, [s[1][0] for s in _RISK_STOPS]))),
        round(float(np.interp(probability, xs, [s[1][1] for s in _RISK_STOPS]))),
        round(float(np.interp(probability, xs, [s[1][2] for s in _RISK_STOPS]))),
    )


def stretch(
    probabilities: npt.NDArray[np.float32], rows: int, cols: int
) -> npt.NDArray[np.float32]:
    """Bilinear resize of a probability map onto the frame's pixel grid (pixel centres)."""
    src_r, src_c = probabilities.shape
    if (src_r, src_c) == (rows, cols):
        return probabilities.astype(np.float32)
    r = np.clip((np.arange(rows) + 0.5) * src_r / rows - 0.5, 0, src_r - 1)
    c = np.clip((np.arange(cols) + 0.5) * src_c / cols - 0.5, 0, src_c - 1)
    r0 = np.minimum(np.floor(r).astype(int), src_r - 1)
    c0 = np.minimum(np.floor(c).astype(int), src_c - 1)
    r1, c1 = np.minimum(r0 + 1, src_r - 1), np.minimum(c0 + 1, src_c - 1)
    wr, wc = (r - r0)[:, None], (c - c0)[None, :]
    p = probabilities.astype(np.float32)
    top = p[r0][:, c0] * (1 - wc) + p[r0][:, c1] * wc
    bottom = p[r1][:, c0] * (1 - wc) + p[r1][:, c1] * wc
    out: npt.NDArray[np.float32] = (top * (1 - wr) + bottom * wr).astype(np.float32)
    return out


def heatmap_rgb(frame: ReviewFrame, layer: HeatmapLayer) -> npt.NDArray[np.uint8]:
    """The frame with its heatmap coloured over it by `layer` (colour map, opacity, threshold).

    HeatmapLayer blends over grey; an RGB frame is blended channel by channel, which is the
    same formula with each channel as the 'grey'."""
    if frame.heatmap is None:
        return frame.rgb
    rows, cols = frame.rgb.shape[:2]
    p = stretch(frame.heatmap.probabilities, rows, cols)
    prob_u8 = np.clip(np.round(p * 255.0), 0, 255).astype(np.uint8)
    out = np.empty_like(frame.rgb)
    for c in range(3):
        out[..., c] = layer.colorize(prob_u8, np.ascontiguousarray(frame.rgb[..., c]))[..., c]
    return out


class SortOrder(enum.StrEnum):
    ACQUISITION = "order"  # as acquired
    RISK = "risk"  # highest probability first; not analysed and dropped frames last


class EndoscopyReviewModel:
    """Frames, their display order and the selected frame. `selection_changed` carries the
    selected frame's index in `frames`; `order_changed` the new sort order."""

    def __init__(self, frames: Sequence[ReviewFrame] = ()):
        self._frames: tuple[ReviewFrame, ...] = ()
        self._sort = SortOrder.ACQUISITION
        self._order: list[int] = []
        self._selected: int | None = None
        self.selection_changed: ModelSignal[int] = ModelSignal()
        self.order_changed: ModelSignal[SortOrder] = ModelSignal()
        if frames:
            self.set_frames(frames)

    @property
    def frames(self) -> tuple[ReviewFrame, ...]:
        return self._frames

    @property
    def sort_order(self) -> SortOrder:
        return self._sort

    @property
    def order(self) -> list[int]:
        """Indices into `frames` in display order."""
        return list(self._order)

    @property
    def selected_index(self) -> int | None:
        return self._selected

    @property
    def selected(self) -> ReviewFrame | None:
        return None if self._selected is None else self._frames[self._selected]

    @property
    def position(self) -> int | None:
        """Place of the selected frame in display order (0-based)."""
        return None if self._selected is None else self._order.index(self._selected)

    def set_frames(self, frames: Sequence[ReviewFrame]) -> None:
        """New frames; selects the first one in display order (the riskiest when by risk)."""
        self._frames = tuple(frames)
        self._order = self._sorted()
        self._selected = None
        self.order_changed.emit(self._sort)
        if self._order:
            self.select(self._order[0])

    def set_sort_order(self, order: SortOrder | str) -> None:
        """Reorder; the selected frame stays selected."""
        order = SortOrder(order)
        if order is not self._sort:
            self._sort = order
            self._order = self._sorted()
            self.order_changed.emit(order)

    def select(self, index: int) -> None:
        if not 0 <= index < len(self._frames):
            raise IndexError(f"frame index {index} out of range (0..{len(self._frames) - 1})")
        if index != self._selected:
            self._selected = index
            self.selection_changed.emit(index)

    def select_position(self, position: int) -> None:
        self.select(self._order[position])

    def next(self) -> bool:
        """Select the next frame in display order; False at the end."""
        return self._step(1)

    def previous(self) -> bool:
        return self._step(-1)

    def _step(self, delta: int) -> bool:
        pos = self.position
        if pos is None or not 0 <= pos + delta < len(self._order):
            return False
        self.select_position(pos + delta)
        return True

    def _sorted(self) -> list[int]:
        indices = list(range(len(self._frames)))
        if self._sort is SortOrder.ACQUISITION:
            return indices

        def key(i: int) -> tuple[int, float, int]:
            f = self._frames[i]
            if f.dropped:
                return (2, 0.0, i)
            if f.probability is None:
                return (1, 0.0, i)
            return (0, -f.probability, i)

        return sorted(indices, key=key)


# ---------------------------------------------------------------------------------- widgets


def _qimage(rgb: npt.NDArray[np.uint8]) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).copy()


class FramePane(QWidget):
    """One frame, aspect kept, centred on a dark background, with a caption and a region box."""

    wheel_step = Signal(int)  # +1 next / -1 previous

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self._title = title
        self._image: QImage | None = None
        self._region: Region | None = None
        self._note = ""
        self.setMinimumSize(240, 220)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    @property
    def title(self) -> str:
        return self._title

    def set_image(self, rgb: npt.NDArray[np.uint8] | None, region: Region | None = None,
                  note: str = "") -> None:  # fmt: skip
        self._image = None if rgb is None else _qimage(rgb)
        self._region = region
        self._note = note
        self.update()

    def image_rect(self) -> QRectF:
        """Where the frame is drawn, in widget pixels."""
        if self._image is None:
            return QRectF()
        top = 26.0  # room for the caption
        avail = QRectF(6.0, top, self.width() - 12.0, self.height() - top - 6.0)
        scale = min(avail.width() / self._image.width(), avail.height() / self._image.height())
        w, h = self._image.width() * scale, self._image.height() * scale
        return QRectF(avail.x() + (avail.width() - w) / 2, avail.y() + (avail.height() - h) / 2,
                      w, h)  # fmt: skip

    def image_to_widget(self, row: float, col: float) -> QPointF:
        """Widget position of the centre of frame pixel (row, col)."""
        r = self.image_rect()
        assert self._image is not None
        sx, sy = r.width() / self._image.width(), r.height() / self._image.height()
        return QPointF(r.x() + (col + 0.5) * sx, r.y() + (row + 0.5) * sy)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(PANE_BACKGROUND))
        p.setPen(QColor(TEXT))
        font = QFont(self.font())
        font.setPointSizeF(10.0)
        font.setBold(True)
        p.setFont(font)
        p.drawText(QRectF(8, 4, self.width() - 16, 20), Qt.AlignmentFlag.AlignLeft, self._title)
        if self._note:
            font.setBold(False)
            p.setFont(font)
            p.setPen(QColor(MUTED))
            p.drawText(QRectF(8, 4, self.width() - 16, 20), Qt.AlignmentFlag.AlignRight,
                       self._note)  # fmt: skip
        if self._image is not None:
            target = self.image_rect()
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(target, self._image)
            if self._region is not None:
                r0, c0, r1, c1 = self._region
                sx = target.width() / self._image.width()
                sy = target.height() / self._image.height()
                box = QRectF(target.x() + c0 * sx, target.y() + r0 * sy,
                             (c1 - c0) * sx, (r1 - r0) * sy)  # fmt: skip
                pen = QPen(REGION_COLOR, 2.0)
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(box)
        p.end()

    def wheelEvent(self, event: QWheelEvent) -> None:
        dy = event.angleDelta().y()
        if dy:
            self.wheel_step.emit(-1 if dy > 0 else 1)
        event.accept()


# The reader's decision on a thumbnail: the marks, and the review status colours.
DECISION_MARKS = {"accepted": "✓", "modified": "✓", "added": "+", "rejected": "✗"}
DECISION_COLOURS = {
    "accepted": (22, 150, 60),
    "modified": (22, 150, 60),
    "added": (140, 80, 200),
    "rejected": (110, 110, 110),
}


class ThumbnailTile(QWidget):
    """A frame thumbnail with its risk badge; click selects it."""

    clicked = Signal(int)  # index into the model's frames

    SIZE = QSize(128, 112)

    def __init__(self, index: int, frame: ReviewFrame, parent: QWidget | None = None):
        super().__init__(parent)
        self.frame_index = index
        self._frame = frame
        h = self.SIZE.height() - 8
        step = max(1, frame.rgb.shape[0] // h)  # cheap pre-shrink before Qt smooths it
        self._thumb = _qimage(frame.rgb[::step, ::step]).scaledToHeight(
            h, Qt.TransformationMode.SmoothTransformation
        )
        self._selected = False
        self._ai_visible = True
        self._decision: str | None = None  # the reader's: accepted, rejected, added, ...
        self._key = False  # chosen as a key image
        self.setFixedSize(self.SIZE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"{frame.sop_instance_uid} frame {frame.frame}")

    @property
    def frame(self) -> ReviewFrame:
        return self._frame

    @property
    def badge_text(self) -> str:
        return badge_text(self._frame) if self._ai_visible else ""

    @property
    def badge_color(self) -> tuple[int, int, int]:
        return risk_color(self._frame.probability, self._frame.dropped)

    @property
    def probability(self) -> float | None:
        return self._frame.probability

    def set_selected(self, selected: bool) -> None:
        if selected != self._selected:
            self._selected = selected
            self.update()

    def set_ai_visible(self, visible: bool) -> None:
        self._ai_visible = visible
        self.update()

    def set_decision(self, status: str | None, key: bool) -> None:
        """The reader's decision on this frame, drawn as a mark: confirmed (check), rejected
        (cross), added by the reader (plus), and a star for a key image."""
        if (status, key) != (self._decision, self._key):
            self._decision, self._key = status, key
            self.update()

    @property
    def decision_mark(self) -> str:
        mark = DECISION_MARKS.get(self._decision or "", "")
        return mark + ("★" if self._key else "")

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.fillRect(self.rect(), QColor(PANE_BACKGROUND))
        x = (self.width() - self._thumb.width()) / 2
        p.drawImage(QPointF(x, 4), self._thumb)
        if self._frame.dropped:
            p.fillRect(QRectF(x, 4, self._thumb.width(), self._thumb.height()),
                       QColor(0, 0, 0, 110))  # fmt: skip
        font = QFont(self.font())
        font.setPointSizeF(8.5)
        font.setBold(True)
        p.setFont(font)
        text = self.badge_text
        if text:
            w = p.fontMetrics().horizontalAdvance(text) + 10
            badge = QRectF(self.width() - w - 6, 8, w, 18)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(*self.badge_color))
            p.drawRoundedRect(badge, 4, 4)
            p.setPen(QColor("#ffffff"))
            p.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        p.setPen(QColor(TEXT))
        p.drawText(QRectF(8, self.height() - 24, 60, 18), Qt.AlignmentFlag.AlignLeft,
                   f"#{self.frame_index + 1}")  # fmt: skip
        mark = self.decision_mark
        if mark:
            box = QRectF(self.width() - 44, self.height() - 28, 38, 22)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(*DECISION_COLOURS.get(self._decision or "", (60, 60, 60))))
            p.drawRoundedRect(box, 4, 4)
            p.setPen(QColor("#ffffff"))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, mark)
        pen = QPen(QColor(ACCENT) if self._selected else QColor("#3f3f46"),
                   3.0 if self._selected else 1.0)  # fmt: skip
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5))
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.frame_index)


class EndoscopyReviewPanel(QWidget):
    """Review of endoscopy frames: thumbnails with risk badges, frame | heatmap side by side,
    colour bar; Right/N and Left/P step through frames in the chosen order."""

    frame_selected = Signal(str, int)  # sop_instance_uid, frame number of the selected frame

    def __init__(self, parent: QWidget | None = None, *,
                 model: EndoscopyReviewModel | None = None,
                 layer: HeatmapLayer | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self._model = model or EndoscopyReviewModel()
        self._layer = layer or HeatmapLayer()
        self._ai: AiVisibility | None = None
        self._tiles: dict[int, ThumbnailTile] = {}

        self.setObjectName("EndoscopyReviewPanel")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(
            f"#EndoscopyReviewPanel {{ background: {BACKGROUND}; }}"
            f"QLabel {{ color: {TEXT}; }}"
            f"QToolButton {{ background: #2d2d30; color: {TEXT}; border: 1px solid #3f3f46;"
            " padding: 3px 8px; }"
            f"QToolButton:checked {{ background: #094771; border-color: {ACCENT}; }}"
            f"QScrollArea, #ThumbnailStrip {{ background: {BACKGROUND}; border: none; }}"
        )
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self._prev = self._tool_button("fa5s.chevron-left", "Previous frame (Left, P)")
        self._prev.clicked.connect(self._model.previous)
        self._next = self._tool_button("fa5s.chevron-right", "Next frame (Right, N)")
        self._next.clicked.connect(self._model.next)
        # Cine: play the frames in display order (Space), 8 frames per second.
        self.play_button = self._tool_button("fa5s.play", "Cine play / pause (Space)")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._set_playing)
        self._cine = QTimer(self)
        self._cine.setInterval(125)
        self._cine.timeout.connect(self._cine_step)
        self._position = QLabel()
        self._info = QLabel()
        self._info.setTextFormat(Qt.TextFormat.RichText)
        # Long texts must not widen the window past the screen during cine.
        self._info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # The position text is short and bounded: room for the longest, never more.
        self._position.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self._position.setFixedWidth(
            self._position.fontMetrics().horizontalAdvance("Frame 9999 of 9999") + 8
        )
        self.by_risk_button = self._tool_button(
            "fa5s.sort-amount-down", "Highest risk first", "By risk"
        )
        self.by_order_button = self._tool_button("fa5s.list-ol", "Acquisition order", "By order")
        sort_group = QButtonGroup(self)
        sort_group.setExclusive(True)
        for b in (self.by_risk_button, self.by_order_button):
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            sort_group.addButton(b)
        self.by_risk_button.clicked.connect(lambda: self._model.set_sort_order(SortOrder.RISK))
        self.by_order_button.clicked.connect(
            lambda: self._model.set_sort_order(SortOrder.ACQUISITION)
        )

        bar = QHBoxLayout()
        bar.setContentsMargins(8, 6, 8, 2)
        bar.setSpacing(6)
        bar.addWidget(self._prev)
        bar.addWidget(self._next)
        bar.addWidget(self.play_button)
        bar.addWidget(self._position)
        bar.addSpacing(12)
        bar.addWidget(self._info, 1)
        bar.addWidget(QLabel("Sort:"))
        bar.addWidget(self.by_risk_button)
        bar.addWidget(self.by_order_button)

        self.frame_pane = FramePane("Frame")
        self.heatmap_pane = FramePane("AI heatmap")
        self.colour_bar = ColorBarWidget(self._layer, title="P(lesion)")
        for pane in (self.frame_pane, self.heatmap_pane):
            pane.wheel_step.connect(self._step)
        panes = QHBoxLayout()
        panes.setContentsMargins(8, 4, 8, 4)
        panes.setSpacing(6)
        panes.addWidget(self.frame_pane, 1)
        panes.addWidget(self.heatmap_pane, 1)
        panes.addWidget(self.colour_bar)

        self._strip = QWidget()
        self._strip.setObjectName("ThumbnailStrip")
        self._strip_layout = QHBoxLayout(self._strip)
        self._strip_layout.setContentsMargins(4, 4, 4, 4)
        self._strip_layout.setSpacing(6)
        self._strip_layout.addStretch(1)
        self._scroll = QScrollArea()
        self._scroll.setWidget(self._strip)
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setFixedHeight(ThumbnailTile.SIZE.height() + 26)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.setSpacing(2)
        layout.addLayout(bar)
        layout.addLayout(panes, 1)
        layout.addWidget(self._scroll)

        self._model.selection_changed.connect(self._on_selection_changed)
        self._model.order_changed.connect(self._on_order_changed)
        self._layer.changed.connect(self._on_layer_changed)
        self._on_order_changed(self._model.sort_order)
        if self._model.selected_index is not None:
            self._on_selection_changed(self._model.selected_index)
        else:
            self._show_selected()

    # ------------------------------------------------------------------ public API

    @property
    def model(self) -> EndoscopyReviewModel:
        return self._model

    @property
    def layer(self) -> HeatmapLayer:
        return self._layer

    def sizeHint(self) -> QSize:
        return QSize(1100, 640)

    def set_frames(self, frames: Sequence[ReviewFrame]) -> None:
        self._model.set_frames(frames)

    def set_ai_visibility(self, ai: AiVisibility) -> None:
        """AI off: no heatmap, no region boxes, no risk badges ('show me the image')."""
        if self._ai is not None:
            self._ai.changed.disconnect(self._on_ai_changed)
        self._ai = ai
        ai.changed.connect(self._on_ai_changed)
        self._on_ai_changed(ai.visible)

    def set_decisions(self, decisions: dict[tuple[str, int], tuple[str | None, bool]]) -> None:
        """(SOP Instance UID, frame) -> (review status or None, key image): marks on the
        thumbnails, so the strip shows what is decided."""
        for tile in self.thumbnails():
            f = tile.frame
            tile.set_decision(*decisions.get((f.sop_instance_uid, f.frame), (None, False)))

    def thumbnails(self) -> list[ThumbnailTile]:
        """Thumbnail tiles as laid out, left to right."""
        tiles = []
        for i in range(self._strip_layout.count()):
            item = self._strip_layout.itemAt(i)
            w = item.widget() if item is not None else None
            if isinstance(w, ThumbnailTile):
                tiles.append(w)
        return tiles

    # ------------------------------------------------------------------ events

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Right, Qt.Key.Key_N):
            self._model.next()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_P):
            self._model.previous()
        elif key == Qt.Key.Key_Space:
            self.play_button.toggle()
        elif key == Qt.Key.Key_Home and self._model.order:
            self._model.select_position(0)
        elif key == Qt.Key.Key_End and self._model.order:
            self._model.select_position(len(self._model.order) - 1)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # ------------------------------------------------------------------ internals

    def _set_playing(self, playing: bool) -> None:
        self.play_button.setIcon(qta.icon("fa5s.pause" if playing else "fa5s.play", color=TEXT))
        if playing:
            self._cine.start()
        else:
            self._cine.stop()

    def _cine_step(self) -> None:
        if not self._model.next():  # loop back to the first frame at the end
            if self._model.order:
                self._model.select_position(0)
            else:
                self.play_button.setChecked(False)

    def _tool_button(self, icon: str, tip: str, text: str = "") -> QToolButton:
        b = QToolButton()
        b.setIcon(qta.icon(icon, color=TEXT))
        b.setToolTip(tip)
        if text:
            b.setText(text)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrow keys stay with the panel
        return b

    def _ai_visible(self) -> bool:
        return self._ai is None or self._ai.visible

    def _step(self, delta: int) -> None:
        if delta > 0:
            self._model.next()
        else:
            self._model.previous()

    def _on_order_changed(self, order: SortOrder) -> None:
        self.by_risk_button.setChecked(order is SortOrder.RISK)
        self.by_order_button.setChecked(order is SortOrder.ACQUISITION)
        frames = self._model.frames
        if set(self._tiles) != set(range(len(frames))) or any(
            self._tiles[i].frame is not f for i, f in enumerate(frames)
        ):
            for tile in self._tiles.values():
                tile.deleteLater()
            self._tiles = {}
            for i, f in enumerate(frames):
                tile = ThumbnailTile(i, f, self._strip)
                tile.clicked.connect(self._model.select)
                tile.set_ai_visible(self._ai_visible())
                self._tiles[i] = tile
        while self._strip_layout.count():
            self._strip_layout.takeAt(0)
        for i in self._model.order:
            self._strip_layout.addWidget(self._tiles[i])
        self._strip_layout.addStretch(1)
        for i, tile in self._tiles.items():
            tile.set_selected(i == self._model.selected_index)
        self._update_bar()

    def _on_selection_changed(self, index: int) -> None:
        for i, tile in self._tiles.items():
            tile.set_selected(i == index)
        if index in self._tiles:
            self._scroll.ensureWidgetVisible(self._tiles[index], 10, 0)
        self._show_selected()
        frame = self._model.frames[index]
        self.frame_selected.emit(frame.sop_instance_uid, frame.frame)

    def _on_layer_changed(self, _layer: HeatmapLayer) -> None:
        self.colour_bar.update()
        self._show_selected()

    def _on_ai_changed(self, visible: bool) -> None:
        for tile in self._tiles.values():
            tile.set_ai_visible(visible)
        self._show_selected()

    def _show_selected(self) -> None:
        frame = self._model.selected
        ai = self._ai_visible()
        self.colour_bar.setVisible(ai)
        if frame is None:
            self.frame_pane.set_image(None, note="no frames")
            self.heatmap_pane.set_image(None)
            self._update_bar()
            return
        region = frame.region if ai else None
        self.frame_pane.set_image(frame.rgb, region, f"{frame.rgb.shape[1]}×{frame.rgb.shape[0]}")
        if not ai:
            self.heatmap_pane.set_image(frame.rgb, None, "AI hidden")
        elif frame.dropped:
            self.heatmap_pane.set_image(
                frame.rgb, None, "uninformative by stage 1: scored, never a finding"
            )
        elif frame.heatmap is None:
            self.heatmap_pane.set_image(frame.rgb, region, "no heatmap")
        else:
            self.heatmap_pane.set_image(heatmap_rgb(frame, self._layer), region,
                                        f"{self._layer.color_map}, threshold "
                                        f"{round(self._layer.threshold * 100)}%")  # fmt: skip
        self._update_bar()

    def _update_bar(self) -> None:
        n = len(self._model.frames)
        pos = self._model.position
        frame = self._model.selected
        self._position.setText(f"Frame {pos + 1} of {n}" if pos is not None else "No frames")
        self._prev.setEnabled(pos is not None and pos > 0)
        self._next.setEnabled(pos is not None and pos < n - 1)
        if frame is None:
            self._info.setText("")
            return
        # The header says which frame ("Frame 3 of 24", as the thumbnails count); the
        # instance UID and its own frame number are in the tooltip, for support.
        parts: list[str] = []
        self._info.setToolTip(f"instance {frame.sop_instance_uid}, frame {frame.frame}")
        if self._ai_visible():
            if frame.dropped:
                parts.append("<b>dropped</b> (uninformative)")
            elif frame.probability is not None:
                r, g, b = risk_color(frame.probability)
                parts.append(f"risk <b style='color:rgb({r},{g},{b})'>{badge_text(frame)}</b>")
        self._info.setText("&nbsp;&nbsp;".join(parts))
