"""The one colour bar: the heatmap layer's colour map from 0 % (bottom) to 100 % (top), tick
values, and the threshold below which nothing is drawn. The CT heatmap controls and the
endoscopy review use it (the latter with a title)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QLinearGradient, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

from core.display import COLOR_MAPS, HeatmapLayer
from viewers.theme import ACCENT, MUTED, PANE_BACKGROUND, TEXT


class ColorBarWidget(QWidget):
    def __init__(
        self, layer: HeatmapLayer, parent: QWidget | None = None, *, title: str | None = None
    ):
        super().__init__(parent)
        self._layer = layer
        self.title = title
        self.setFixedWidth(78 if title else 64)
        self.setMinimumHeight(220 if title else 120)
        layer.changed.connect(lambda _l: self.update())

    @property
    def layer(self) -> HeatmapLayer:
        return self._layer

    def set_layer(self, layer: HeatmapLayer) -> None:
        self._layer = layer
        self.update()

    def bar_rect(self) -> QRectF:
        top = 34.0 if self.title else 10.0
        return QRectF(10.0, top, 16.0, self.height() - top - 14.0)

    def value_to_y(self, value: float) -> float:
        r = self.bar_rect()
        return r.bottom() - value * r.height()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(PANE_BACKGROUND))
        p.setPen(QColor(TEXT))
        font = QFont(self.font())
        font.setPointSizeF(9.0)
        p.setFont(font)
        if self.title:
            p.drawText(QRectF(4, 4, self.width() - 8, 26), Qt.AlignmentFlag.AlignLeft, self.title)
        r = self.bar_rect()
        lut = COLOR_MAPS[self._layer.color_map]
        gradient = QLinearGradient(0, r.bottom(), 0, r.top())
        for v in np.linspace(0.0, 1.0, 17):
            cr, cg, cb = (int(x) for x in lut[round(v * 255)])
            gradient.setColorAt(float(v), QColor(cr, cg, cb))
        p.fillRect(r, gradient)
        p.setPen(QColor(MUTED))
        p.drawRect(r)
        for v in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = self.value_to_y(v)
            p.setPen(QColor(TEXT))
            p.drawLine(QPointF(r.right(), y), QPointF(r.right() + 4, y))
            p.drawText(QRectF(r.right() + 6, y - 8, 44, 16), Qt.AlignmentFlag.AlignVCenter,
                       f"{round(v * 100)}%")  # fmt: skip
        # Below the threshold the heatmap is transparent: mark it on the bar.
        y = self.value_to_y(self._layer.threshold)
        p.setPen(QPen(QColor(ACCENT), 2.0))
        p.drawLine(QPointF(r.left() - 6, y), QPointF(r.right(), y))
        p.end()
