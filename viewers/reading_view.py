"""ReadingView: the panes of one CT series in the chosen layout (1x1, slice + heatmap,
MPR + 3D), all sharing window/level, cursor, AI visibility, findings and heatmap."""

from __future__ import annotations

import enum
import logging

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from core.display import AiVisibility, HeatmapLayer, WindowLevel
from core.findings import FindingSet
from core.mpr import Plane
from core.navigation import Cursor
from core.patient_banner import PatientBanner
from core.volume import Volume
from viewers.slice_view import PriorMark, SliceView, Tool

log = logging.getLogger(__name__)


class Layout(enum.StrEnum):
    SINGLE = "1x1"
    SIDE_BY_SIDE = "slice+heatmap"
    MPR = "mpr"


class ReadingView(QWidget):
    def __init__(
        self,
        window: WindowLevel,
        cursor: Cursor,
        ai: AiVisibility,
        heatmap_layer: HeatmapLayer,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.wl = window
        self.nav = cursor
        self.ai = ai
        self.heatmap_layer = heatmap_layer
        self.axial = SliceView(Plane.AXIAL, window, cursor, ai)
        self.heat = SliceView(Plane.AXIAL, window, cursor, ai, heatmap_pane=True)
        self.coronal = SliceView(Plane.CORONAL, window, cursor, ai)
        self.sagittal = SliceView(Plane.SAGITTAL, window, cursor, ai)
        self.view3d: QWidget | None = None
        self.view3d_error: str | None = None
        self._error_label: QLabel | None = None
        self.slice_views = (self.axial, self.heat, self.coronal, self.sagittal)
        # The heatmap pane follows the axial pane (same position), and back.
        self.axial.index_changed.connect(self.heat.set_index)
        self.heat.index_changed.connect(self.axial.set_index)
        # ... and the same zoom and pan, so a nodule and its heat stay side by side.
        self.axial.view_changed.connect(self.heat.set_view)
        self.heat.view_changed.connect(self.axial.set_view)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.layout_mode = Layout.SIDE_BY_SIDE
        self.set_layout(Layout.SIDE_BY_SIDE)

    def _ensure_3d(self) -> QWidget:
        if self.view3d is None:
            try:
                from viewers.volume_3d_view import Volume3DView

                # Software OpenGL (no GPU) ray casts ~2 M voxels interactively.
                view = Volume3DView(max_voxels=2_000_000)
            except Exception as exc:  # no OpenGL, broken VTK: the 2-D panes still work
                log.error("3D view unavailable: %s", exc)
                self.view3d_error = str(exc)
                if self._error_label is None:
                    self._error_label = QLabel(f"3D view unavailable:\n{exc}")
                    self._error_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
                    self._error_label.setWordWrap(True)
                return self._error_label
            view.finding_clicked.connect(self._jump_to_finding)
            self.view3d = view
            if self.axial.volume is not None:
                view.set_volume(self.axial.volume)
            if self.axial.findings is not None:
                view.set_findings(self.axial.findings)
            view.set_ai_visibility(self.ai)
        return self.view3d

    def _jump_to_finding(self, finding_id: str) -> None:
        findings = self.axial.findings
        if findings is None:
            return
        f = findings.get(finding_id)
        self.nav.select(finding_id)
        if f.center_mm is not None:
            self.nav.move_to(f.center_mm)

    def set_layout(self, mode: Layout) -> None:
        self.layout_mode = mode
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
        placements: list[tuple[QWidget, int, int]]
        if mode is Layout.SINGLE:
            placements = [(self.axial, 0, 0)]
        elif mode is Layout.SIDE_BY_SIDE:
            placements = [(self.axial, 0, 0), (self.heat, 0, 1)]
        else:
            placements = [
                (self.axial, 0, 0),
                (self.coronal, 0, 1),
                (self.sagittal, 1, 0),
                (self._ensure_3d(), 1, 1),
            ]
        for w, r, c in placements:
            self.grid.addWidget(w, r, c)
            w.setMinimumSize(160, 160)
            w.show()
        # Equal panes, whatever each widget would like to be.
        for n in range(2):
            self.grid.setColumnStretch(n, 1 if n < max(c for _, _, c in placements) + 1 else 0)
            self.grid.setRowStretch(n, 1 if n < max(r for _, r, _ in placements) + 1 else 0)
        for v in self.slice_views:
            v.show_crosshair = mode is Layout.MPR
            v.update()

    def set_volume(self, volume: Volume | None) -> None:
        for v in self.slice_views:
            v.set_volume(volume)
        if self.view3d is not None and volume is not None:
            self.view3d.set_volume(volume)  # type: ignore[attr-defined]

    def replace_volume(self, volume: Volume) -> None:
        """The finished volume of the series on screen: keep slice, zoom and pan."""
        for v in self.slice_views:
            v.replace_volume(volume)
        if self.view3d is not None:
            self.view3d.set_volume(volume)  # type: ignore[attr-defined]

    def refresh(self) -> None:
        """Slices were filled in the volume on screen (progressive loading): repaint."""
        for v in self.slice_views:
            v.invalidate()

    def set_banner(self, banner: PatientBanner | None) -> None:
        """Patient and study lines on every slice pane's corners."""
        for view in self.slice_views:
            view.set_banner(banner)

    def set_findings(self, findings: FindingSet | None) -> None:
        for v in self.slice_views:
            v.set_findings(findings)
        if self.view3d is not None and findings is not None:
            self.view3d.set_findings(findings)  # type: ignore[attr-defined]

    def set_priors(self, priors: list[PriorMark]) -> None:
        for v in self.slice_views:
            v.priors = list(priors)
            v.update()

    def set_heatmap(self, heatmap: npt.NDArray[np.uint8] | None) -> None:
        for v in self.slice_views:
            v.set_heatmap(heatmap, self.heatmap_layer)

    def set_tool(self, tool: Tool) -> None:
        for v in self.slice_views:
            v.tool = tool

    def reset_views(self) -> None:
        for v in self.slice_views:
            v.reset_view()
