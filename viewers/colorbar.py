"""A vertical colour bar with tick values for the heatmap layer's colour map."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from core.display import COLOR_MAPS, HeatmapLayer
from viewers.theme import OVERLAY_TEXT


class ColorBarWidget(QWidget):
    """Shows the layer's colour map from 0 (bottom) to 1 (top), ticks in %, and the
    threshold below which nothing is drawn."""

    def __init__(self, layer: HeatmapLayer, parent: QWidget | None = None):
        super().__init__(parent)
        self.layer = layer
        self.setFixedWidth(64)
        self.setMinimumHeight(120)
        layer.changed.connect(lambda _l: self.update())

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        lut = np.ascontiguousarray(COLOR_MAPS[self.layer.color_map][::-1][:, None, :])
        img = QImage(lut.data, 1, 256, 3, QImage.Format.Format_RGB888)
        top, bottom = 10.0, float(self.height() - 10)
        bar = QRectF(6, top, 16, bottom - top)
        p.drawImage(bar, img)
        p.setPen(OVERLAY_TEXT)
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = bottom - value * (bottom - top)
            p.drawLine(24, round(y), 28, round(y))
            p.drawText(QRectF(30, y - 8, 34, 16), Qt.AlignmentFlag.AlignLeft, f"{value:.0%}")
        y = bottom - self.layer.threshold * (bottom - top)
        p.setPen(QColor(255, 255, 255))
        p.drawLine(2, round(y), 26, round(y))
        p.end()
