"""A label that never widens its window: long text is cut with "..." to the space it gets,
and the whole text is its tooltip. Status-bar texts (the AI summary, the device, the outbox)
are long; as plain QLabels their size hints set the window's minimum width past a 1280 px
screen."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    def __init__(self, text: str = "", parent: QWidget | None = None, min_width: int = 60):
        super().__init__(text, parent)
        self._min_width = min_width
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:
        return QSize(self._min_width, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        full = super().sizeHint()
        return QSize(min(full.width(), 520), full.height())

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        fm = p.fontMetrics()
        text = fm.elidedText(self.text(), Qt.TextElideMode.ElideRight, self.width())
        p.drawText(
            self.rect(), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), text
        )
        p.end()
