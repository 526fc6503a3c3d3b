"""HeatmapControlsPanel: colour map, opacity, threshold, alone/blended, with the colour bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QSlider,
    QWidget,
)

from core.display import COLOR_MAPS, BlendMode, HeatmapLayer
from viewers.colorbar import ColorBarWidget


class HeatmapControlsPanel(QWidget):
    """Two-way binding to a HeatmapLayer: widgets write through its setter and follow it."""

    def __init__(self, layer: HeatmapLayer, parent: QWidget | None = None):
        super().__init__(parent)
        self.layer = layer
        self.color_map = QComboBox()
        self.color_map.addItems(list(COLOR_MAPS))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, 100)
        self.blended = QCheckBox("Blend over the slice")
        form = QFormLayout()
        form.addRow("Colour map", self.color_map)
        form.addRow("Opacity", self.opacity)
        form.addRow("Threshold", self.threshold)
        form.addRow(self.blended)
        box = QWidget()
        box.setLayout(form)
        row = QHBoxLayout(self)
        row.addWidget(box, 1)
        row.addWidget(ColorBarWidget(layer))
        self._sync(layer)
        layer.changed.connect(self._sync)
        self.color_map.currentTextChanged.connect(lambda t: layer.update(color_map=t))
        self.opacity.valueChanged.connect(lambda v: layer.update(opacity=v / 100))
        self.threshold.valueChanged.connect(lambda v: layer.update(threshold=v / 100))
        self.blended.toggled.connect(
            lambda on: layer.update(blend=BlendMode.BLENDED if on else BlendMode.ALONE)
        )

    def _sync(self, layer: HeatmapLayer) -> None:
        for w in (self.color_map, self.opacity, self.threshold, self.blended):
            w.blockSignals(True)
        self.color_map.setCurrentText(layer.color_map)
        self.opacity.setValue(round(layer.opacity * 100))
        self.threshold.setValue(round(layer.threshold * 100))
        self.blended.setChecked(layer.blend is BlendMode.BLENDED)
        for w in (self.color_map, self.opacity, self.threshold, self.blended):
            w.blockSignals(False)
