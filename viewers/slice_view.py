"""SliceView: one plane of a CT volume with window/level, AI markers, heatmap and crosshair.

Mouse (shown in the shortcut sheet): wheel scrolls slices; left-drag changes window/level;
left-click sets the crosshair (and selects a finding under it); right-drag zooms;
middle-drag pans. With the length or ROI tool active, left-drag measures instead.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
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
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.display import STATUS_COLORS, AiVisibility, HeatmapLayer, WindowLevel
from core.findings import Finding, FindingSet, ReviewStatus, numbers
from core.mpr import Plane, index_to_pixel, pixel_spacing, pixel_to_index, plane_image, slice_count
from core.navigation import Cursor
from core.patient_banner import PatientBanner
from core.volume import Volume
from viewers.theme import CROSSHAIR, OVERLAY_TEXT

_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # +x, +y, +z in LPS and their opposites


def orientation_letter(vector: npt.NDArray[np.float64]) -> str:
    """Patient direction letter of a screen direction (dominant LPS component)."""
    axis = int(np.argmax(np.abs(vector)))
    pos, neg = _AXIS_LETTERS[axis]
    return pos if vector[axis] > 0 else neg


def _shadow_text(p: QPainter, x: float, y: float, text: str, color: QColor = OVERLAY_TEXT) -> None:
    """Overlay text readable on bright and dark pixels alike (dark outline, light text)."""
    pen = p.pen()
    p.setPen(QColor(0, 0, 0))
    for dx, dy in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
        p.drawText(QPointF(x + dx, y + dy), text)
    p.setPen(color)
    p.drawText(QPointF(x, y), text)
    p.setPen(pen)


def _free_label_rect(
    centre: QPointF, r_px: float, w: float, h: float, taken: list[QRectF]
) -> QRectF:
    """Where a marker's label goes: beside the ring (upper right first, then the other
    corners, then further out), the first place that covers no label already drawn."""
    x, y = centre.x(), centre.y()
    gap = r_px + 3
    for k in range(4):
        out = gap + k * h
        top = y - r_px - h + 3 - k * h  # the first: baseline on the ring's top, as before
        for cx, cy in ((x + out, top), (x + out, y + r_px + k * h - 3),
                       (x - out - w, top), (x - out - w, y + r_px + k * h - 3)):  # fmt: skip
            rect = QRectF(cx, cy, w, h)
            if not any(rect.intersects(t) for t in taken):
                return rect
    return QRectF(x + gap, y - gap, w, h)


class Tool(enum.StrEnum):
    NAVIGATE = "navigate"
    LENGTH = "length"
    ROI = "roi"
    ADD_FINDING = "add-finding"  # click the centre, drag out the radius


@dataclass(frozen=True)
class PriorMark:
    """A finding from an earlier report (Loupe's or another producer's): read-only."""

    center_mm: tuple[float, float, float]
    diameter_mm: float
    label: str  # e.g. "prior: acme-cad 2.1 (accepted)"


@dataclass
class FindingDrag:
    """A finding being edited with the mouse: moved (centre) or resized (diameter)."""

    finding_id: str | None  # None: a new finding being drawn
    mode: str  # "move" | "resize" | "draw"
    center_mm: tuple[float, float, float]
    diameter_mm: float


@dataclass
class Measurement:
    tool: Tool
    start: tuple[float, float]  # image (row, col)
    end: tuple[float, float]
    index: int  # slice it was drawn on


class SliceView(QWidget):
    """Shows `plane` of the volume. With `heatmap_pane=True` it shows the probability map
    (alone or blended, per the HeatmapLayer) at the same position instead of the grey slice."""

    index_changed = Signal(int)
    finding_clicked = Signal(str)
    finding_edited = Signal(str, object, float)  # id, new centre (LPS mm), new diameter (mm)
    finding_drawn = Signal(object, float)  # centre (LPS mm), diameter (mm)
    view_changed = Signal(float, float, float)  # zoom, pan x, pan y (screen pixels)

    def __init__(
        self,
        plane: Plane,
        window: WindowLevel,
        cursor: Cursor,
        ai: AiVisibility,
        *,
        heatmap_pane: bool = False,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.plane = plane
        self.wl = window
        self.nav = cursor
        self.ai = ai
        self.heatmap_pane = heatmap_pane
        self.banner: PatientBanner | None = None  # patient and study lines in the corners
        self.label_rects: dict[str, QRectF] = {}  # where each marker's label was drawn
        self.volume: Volume | None = None
        self.heatmap: npt.NDArray[np.uint8] | None = None  # p*255 on the volume grid
        self.heatmap_layer: HeatmapLayer | None = None
        self.findings: FindingSet | None = None
        self.show_crosshair = False
        self.tool = Tool.NAVIGATE
        self.measurements: list[Measurement] = []
        self._index = 0
        self._zoom = 1.0
        self._pan = QPointF(0.0, 0.0)
        self._drag: tuple[Qt.MouseButton, QPointF, float, float] | None = None
        self._moved = False
        self._draft: Measurement | None = None
        self._finding_drag: FindingDrag | None = None
        self.priors: list[PriorMark] = []
        self._hover: tuple[float, float] | None = None
        self._cache_key: tuple[object, ...] | None = None
        self._cache_img: QImage | None = None
        self._cache_buf: npt.NDArray[np.uint8] | None = None
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        window.changed.connect(lambda _w: self.update())
        ai.changed.connect(lambda _v: self.update())
        cursor.moved.connect(self._on_cursor_moved)
        cursor.selection_changed.connect(lambda _f: self.update())

    # -- data ---------------------------------------------------------------------------------
    def set_banner(self, banner: PatientBanner | None) -> None:
        self.banner = banner
        self.update()

    def set_volume(self, volume: Volume | None) -> None:
        self.volume = volume
        self.heatmap = None
        self._cache_key = None
        self.measurements.clear()
        if volume is not None:
            self._index = slice_count(volume, self.plane) // 2
        self.update()

    def replace_volume(self, volume: Volume) -> None:
        """Same series, finished loading: keep the index, zoom, pan and measurements."""
        self.volume = volume
        self.invalidate()

    def invalidate(self) -> None:
        self._cache_key = None
        self.update()

    def set_heatmap(self, heatmap: npt.NDArray[np.uint8] | None, layer: HeatmapLayer) -> None:
        if heatmap is not None and self.volume is not None and heatmap.shape != self.volume.shape:
            raise ValueError(f"heatmap grid {heatmap.shape} != volume {self.volume.shape}")
        self.heatmap = heatmap
        if layer is not self.heatmap_layer:
            self.heatmap_layer = layer
            layer.changed.connect(lambda _l: self.update())
        self._cache_key = None
        self.update()

    def set_findings(self, findings: FindingSet | None) -> None:
        self.findings = findings
        if findings is not None:
            findings.changed.connect(lambda _f: self.update())
            findings.reset.connect(lambda _s: self.update())
        self.update()

    @property
    def index(self) -> int:
        return self._index

    def set_index(self, index: int) -> None:
        if self.volume is None:
            return
        index = max(0, min(slice_count(self.volume, self.plane) - 1, int(index)))
        if index != self._index:
            self._index = index
            self.index_changed.emit(index)
            self.update()

    # -- geometry -----------------------------------------------------------------------------
    def _image_size(self) -> tuple[int, int]:
        assert self.volume is not None
        k, j, i = self.volume.shape
        if self.plane is Plane.AXIAL:
            return j, i
        if self.plane is Plane.CORONAL:
            return k, i
        return k, j

    def _scale(self) -> tuple[float, float, float, float]:
        """(x0, y0, px per image column, px per image row) of the current view."""
        rows, cols = self._image_size()
        row_mm, col_mm = pixel_spacing(self.volume, self.plane)  # type: ignore[arg-type]
        w_mm, h_mm = cols * col_mm, rows * row_mm
        s = min(self.width() / w_mm, self.height() / h_mm) * self._zoom
        x0 = (self.width() - w_mm * s) / 2 + self._pan.x()
        y0 = (self.height() - h_mm * s) / 2 + self._pan.y()
        return x0, y0, col_mm * s, row_mm * s

    def _px_per_mm(self) -> float:
        """Screen pixels per mm: the view keeps the physical aspect, so one number."""
        _, _, px_per_col, _ = self._scale()
        _, col_mm = pixel_spacing(self.volume, self.plane)  # type: ignore[arg-type]
        return px_per_col / col_mm

    def image_to_screen(self, row: float, col: float) -> QPointF:
        x0, y0, sx, sy = self._scale()
        return QPointF(x0 + (col + 0.5) * sx, y0 + (row + 0.5) * sy)

    def screen_to_image(self, pos: QPointF) -> tuple[float, float]:
        x0, y0, sx, sy = self._scale()
        return (pos.y() - y0) / sy - 0.5, (pos.x() - x0) / sx - 0.5

    def world_to_screen(self, world: tuple[float, float, float]) -> tuple[float, QPointF]:
        """(distance in slices from the shown one, screen point) of an LPS position."""
        assert self.volume is not None
        kji = self.volume.world_to_index(world)
        idx, row, col = index_to_pixel(self.volume, self.plane, (kji[0], kji[1], kji[2]))
        return idx - self._index, self.image_to_screen(row, col)

    def _normal_spacing(self) -> float:
        assert self.volume is not None
        axis = {Plane.AXIAL: 0, Plane.CORONAL: 1, Plane.SAGITTAL: 2}[self.plane]
        return self.volume.spacing_mm[axis]

    def value_at(self, row: float, col: float) -> float | None:
        """HU (or probability on the heatmap pane) at an image position, None outside."""
        if self.volume is None:
            return None
        kji = pixel_to_index(self.volume, self.plane, self._index, row, col)
        k, j, i = (round(v) for v in kji)
        nk, nj, ni = self.volume.shape
        if not (0 <= k < nk and 0 <= j < nj and 0 <= i < ni):
            return None
        return float(self.volume.voxels[k, j, i])

    def world_at(self, row: float, col: float) -> tuple[float, float, float]:
        assert self.volume is not None
        kji = pixel_to_index(self.volume, self.plane, self._index, row, col)
        w = self.volume.index_to_world(kji)
        return float(w[0]), float(w[1]), float(w[2])

    # -- rendering ----------------------------------------------------------------------------
    def _slice_image(self) -> QImage:
        assert self.volume is not None
        layer = self.heatmap_layer
        show_heat = self.heatmap_pane and self.heatmap is not None and layer is not None
        key = (
            id(self.volume),
            self._index,
            self.wl.center,
            self.wl.width,
            show_heat,
            self.ai.visible,
            id(self.heatmap),
            (layer.color_map, layer.opacity, layer.threshold, layer.blend, layer.visible)
            if layer is not None
            else None,
        )
        if key == self._cache_key and self._cache_img is not None:
            return self._cache_img
        grey = np.ascontiguousarray(
            self.wl.apply(plane_image(self.volume.voxels, self.volume, self.plane, self._index))
        )
        if show_heat and self.ai.visible:
            assert self.heatmap is not None and layer is not None
            prob = plane_image(self.heatmap, self.volume, self.plane, self._index)
            rgb = np.ascontiguousarray(layer.colorize(np.asarray(prob, dtype=np.uint8), grey))
            h, w = rgb.shape[:2]
            img = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
            self._cache_buf = rgb
        else:
            h, w = grey.shape
            img = QImage(grey.data, w, h, w, QImage.Format.Format_Grayscale8)
            self._cache_buf = grey
        self._cache_key, self._cache_img = key, img
        return img

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if self.volume is None:
            p.setPen(OVERLAY_TEXT)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No series loaded")
            p.end()
            return
        img = self._slice_image()
        x0, y0, sx, sy = self._scale()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._zoom < 2.0)
        p.drawImage(QRectF(x0, y0, img.width() * sx, img.height() * sy), img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if self.ai.visible and self.findings is not None:
            self._paint_findings(p)
        if self.ai.visible and self.priors:
            self._paint_priors(p)
        if self.show_crosshair and self.nav.world is not None:
            self._paint_crosshair(p)
        self._paint_measurements(p)
        self._paint_finding_drag(p)
        self._paint_text(p)
        p.end()

    def _paint_findings(self, p: QPainter) -> None:
        assert self.findings is not None
        px_per_mm = self._px_per_mm()
        normal_mm = self._normal_spacing()
        font = QFont(self.font())
        font.setPointSizeF(9)
        p.setFont(font)
        # Numbered as in the findings list (core.findings.numbers: stable numbers).
        number = numbers(list(self.findings))
        fm = p.fontMetrics()
        taken: list[QRectF] = []  # labels already placed: a label never covers another
        self.label_rects = {}
        for f in sorted(self.findings, key=lambda f: number[f.finding_id]):
            n = number[f.finding_id]
            if f.center_mm is None:
                continue
            radius = (f.diameter_mm or 6.0) / 2
            d_slices, pt = self.world_to_screen(f.center_mm)
            d_mm = abs(d_slices) * normal_mm
            if d_mm > radius:
                continue  # the marker shows only where the finding is
            r_px = max(4.0, math.sqrt(max(radius**2 - d_mm**2, 0.0)) * px_per_mm + 3)
            color = QColor(*STATUS_COLORS[f.status])
            selected = self.nav.selected_finding == f.finding_id
            p.setPen(QPen(color, 3.0 if selected else 1.8))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(pt, r_px, r_px)
            label = f"{n}" if f.status is ReviewStatus.ADDED else f"{n} {f.probability:.0%}"
            w, h = fm.horizontalAdvance(label) + 2, fm.height()
            rect = _free_label_rect(pt, r_px, w, h, taken)
            taken.append(rect)
            self.label_rects[f.finding_id] = rect
            _shadow_text(p, rect.left() + 1, rect.bottom() - fm.descent(), label, color)

    def _paint_priors(self, p: QPainter) -> None:
        px_per_mm = self._px_per_mm()
        normal_mm = self._normal_spacing()
        p.setBrush(Qt.BrushStyle.NoBrush)
        for m in self.priors:
            radius = m.diameter_mm / 2
            d_slices, pt = self.world_to_screen(m.center_mm)
            d_mm = abs(d_slices) * normal_mm
            if d_mm > radius:
                continue
            r_px = max(4.0, math.sqrt(max(radius**2 - d_mm**2, 0.0)) * px_per_mm + 5)
            p.setPen(QPen(QColor(230, 230, 230), 1.2, Qt.PenStyle.DotLine))
            p.drawEllipse(pt, r_px, r_px)
            _shadow_text(p, pt.x() + r_px + 3, pt.y() + r_px, m.label)

    def _paint_crosshair(self, p: QPainter) -> None:
        assert self.nav.world is not None
        _, pt = self.world_to_screen(self.nav.world)
        p.setPen(QPen(CROSSHAIR, 1.0, Qt.PenStyle.DashLine))
        gap = 12
        p.drawLine(QPointF(0, pt.y()), QPointF(pt.x() - gap, pt.y()))
        p.drawLine(QPointF(pt.x() + gap, pt.y()), QPointF(self.width(), pt.y()))
        p.drawLine(QPointF(pt.x(), 0), QPointF(pt.x(), pt.y() - gap))
        p.drawLine(QPointF(pt.x(), pt.y() + gap), QPointF(pt.x(), self.height()))

    def measurement_text(self, m: Measurement) -> str:
        assert self.volume is not None
        row_mm, col_mm = pixel_spacing(self.volume, self.plane)
        dr = (m.end[0] - m.start[0]) * row_mm
        dc = (m.end[1] - m.start[1]) * col_mm
        if m.tool is Tool.LENGTH:
            return f"{math.hypot(dr, dc):.1f} mm"
        mean, sd, n = self.roi_stats(m)
        return f"mean {mean:.0f} HU  SD {sd:.0f}  area {n * row_mm * col_mm:.1f} mm²"

    def roi_stats(self, m: Measurement) -> tuple[float, float, int]:
        """Mean and SD of HU inside the ellipse spanned by the measurement's corners."""
        assert self.volume is not None
        img = plane_image(self.volume.voxels, self.volume, self.plane, m.index)
        r0, r1 = sorted((m.start[0], m.end[0]))
        c0, c1 = sorted((m.start[1], m.end[1]))
        rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        ry, rx = max((r1 - r0) / 2, 0.5), max((c1 - c0) / 2, 0.5)
        inside = ((rr - (r0 + r1) / 2) / ry) ** 2 + ((cc - (c0 + c1) / 2) / rx) ** 2 <= 1.0
        values = np.asarray(img, dtype=np.float64)[inside]
        if values.size == 0:
            return float("nan"), float("nan"), 0
        return float(values.mean()), float(values.std()), int(values.size)

    def _paint_measurements(self, p: QPainter) -> None:
        items = [m for m in self.measurements if m.index == self._index]
        if self._draft is not None:
            items.append(self._draft)
        p.setPen(QPen(QColor(255, 235, 60), 1.5))
        for m in items:
            a = self.image_to_screen(*m.start)
            b = self.image_to_screen(*m.end)
            if m.tool is Tool.LENGTH:
                p.drawLine(a, b)
            else:
                p.drawEllipse(QRectF(a, b).normalized())
            # Outlined, as every overlay text: readable on lung and on bone alike.
            at = b + QPointF(6, -6)
            _shadow_text(p, at.x(), at.y(), self.measurement_text(m), QColor(255, 235, 60))

    def _paint_text(self, p: QPainter) -> None:
        assert self.volume is not None
        font = QFont(self.font())
        font.setPointSizeF(9)
        p.setFont(font)
        n = slice_count(self.volume, self.plane)
        fm = p.fontMetrics()
        lh = fm.height()
        title = "Heatmap" if self.heatmap_pane else self.plane.value.capitalize()
        center = self.world_at((self._image_size()[0] - 1) / 2, (self._image_size()[1] - 1) / 2)
        axis = {Plane.AXIAL: 2, Plane.CORONAL: 1, Plane.SAGITTAL: 0}[self.plane]
        # Four corners: patient top left, study and series top right, image bottom left,
        # the pixel under the mouse bottom right.
        # Each side gets half the pane less the orientation letter's room: cut with "...",
        # never written over each other.
        banner = self.banner
        half = max(self.width() // 2 - 14, 20)
        for k, line in enumerate(banner.top_left() if banner is not None else []):
            line = fm.elidedText(line, Qt.TextElideMode.ElideRight, half)
            _shadow_text(p, 6, 4 + lh * (k + 1), line)
        for k, line in enumerate(banner.top_right() if banner is not None else []):
            line = fm.elidedText(line, Qt.TextElideMode.ElideRight, half)
            x = self.width() - fm.horizontalAdvance(line) - 6
            _shadow_text(p, x, 4 + lh * (k + 1), line)
        lines = [
            f"{title}  {self._index + 1}/{n}",
            f"pos {center[axis]:.1f} mm",
            f"W {self.wl.width:.0f}  L {self.wl.center:.0f}",
        ]
        for k, line in enumerate(lines):
            _shadow_text(p, 6, self.height() - 6 - lh * (len(lines) - 1 - k), line)
        if self._hover is not None:
            v = self.value_at(*self._hover)
            if v is not None:
                w = self.world_at(*self._hover)
                text = f"{v:.0f} HU  ({w[0]:.1f}, {w[1]:.1f}, {w[2]:.1f}) mm"
                _shadow_text(
                    p, self.width() - fm.horizontalAdvance(text) - 6, self.height() - 6, text
                )
        # Orientation letters from the screen axes' directions in LPS.
        c0 = self.volume.index_to_world(pixel_to_index(self.volume, self.plane, self._index, 0, 0))
        c_right = self.volume.index_to_world(
            pixel_to_index(self.volume, self.plane, self._index, 0, 1)
        )
        c_down = self.volume.index_to_world(
            pixel_to_index(self.volume, self.plane, self._index, 1, 0)
        )
        right = orientation_letter(c_right - c0)
        down = orientation_letter(c_down - c0)
        left = orientation_letter(c0 - c_right)
        up = orientation_letter(c0 - c_down)
        _shadow_text(p, self.width() - 16, self.height() // 2, right)
        _shadow_text(p, 6, self.height() // 2, left)
        _shadow_text(p, self.width() // 2, lh + 2, up)
        _shadow_text(p, self.width() // 2, self.height() - lh - 4, down)

    # -- interaction --------------------------------------------------------------------------
    def _on_cursor_moved(self, world: tuple[float, float, float]) -> None:
        if self.volume is None:
            return
        kji = self.volume.world_to_index(world)
        idx, _, _ = index_to_pixel(self.volume, self.plane, (kji[0], kji[1], kji[2]))
        self.set_index(round(idx))
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.set_index(self._index - int(math.copysign(max(1, abs(steps)), steps)))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._drag = (event.button(), event.position(), self.wl.center, self.wl.width)
        self._moved = False
        left = event.button() == Qt.MouseButton.LeftButton
        if not left or self.volume is None:
            return
        pos = self.screen_to_image(event.position())
        if self.tool is Tool.ADD_FINDING:
            self._finding_drag = FindingDrag(None, "draw", self.world_at(*pos), 0.0)
        elif self.tool is not Tool.NAVIGATE:
            self._draft = Measurement(self.tool, pos, pos, self._index)
        else:
            self._start_finding_drag(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self.volume is None:
            return
        pos = event.position()
        self._hover = self.screen_to_image(pos)
        if self._drag is None:
            self.update()
            return
        button, start, center, width = self._drag
        d = pos - start
        if abs(d.x()) + abs(d.y()) > 3:
            self._moved = True
        if self._draft is not None:
            self._draft.end = self.screen_to_image(pos)
        elif self._finding_drag is not None:
            self._update_finding_drag(pos)
        elif button == Qt.MouseButton.LeftButton and self._moved:
            # Horizontal: width; vertical: level (drag down = brighter, as in Horos/OsiriX).
            self.wl.set(center + d.y() * width / 256, width * math.exp(d.x() / 200))
        elif button == Qt.MouseButton.RightButton:
            self._zoom = max(0.25, min(16.0, self._zoom * math.exp(-d.y() / 150)))
            self._drag = (button, pos, center, width)
            self.view_changed.emit(self._zoom, self._pan.x(), self._pan.y())
        elif button == Qt.MouseButton.MiddleButton:
            self._pan += d
            self._drag = (button, pos, center, width)
            self.view_changed.emit(self._zoom, self._pan.x(), self._pan.y())
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        drag = self._finding_drag
        self._finding_drag = None
        if drag is not None and self._moved:
            if drag.finding_id is None:
                self.finding_drawn.emit(drag.center_mm, max(drag.diameter_mm, 2.0))
            else:
                self.finding_edited.emit(drag.finding_id, drag.center_mm, drag.diameter_mm)
            self._drag = None
            self.update()
            return
        if self._draft is not None:
            if self._moved:
                self.measurements.append(self._draft)
            self._draft = None
        elif (
            self._drag is not None
            and self._drag[0] == Qt.MouseButton.LeftButton
            and not self._moved
            and self.volume is not None
        ):
            self._click(event.position())
        self._drag = None
        self.update()

    def _start_finding_drag(self, pos: QPointF) -> None:
        """Pressing on the selected finding's marker: inside moves it, on the ring resizes."""
        hit = self.finding_at(pos)
        if hit is None or hit.finding_id != self.nav.selected_finding or hit.center_mm is None:
            return
        _, centre = self.world_to_screen(hit.center_mm)
        r_px = (hit.diameter_mm or 6.0) / 2 * self._px_per_mm()
        dist = math.hypot(pos.x() - centre.x(), pos.y() - centre.y())
        mode = "move" if dist < 0.6 * r_px else "resize"
        self._finding_drag = FindingDrag(
            hit.finding_id, mode, hit.center_mm, hit.diameter_mm or 6.0
        )

    def _update_finding_drag(self, pos: QPointF) -> None:
        drag = self._finding_drag
        assert drag is not None and self.volume is not None
        row, col = self.screen_to_image(pos)
        if drag.mode == "move":
            # Move within this plane: keep the through-plane coordinate of the centre.
            kji = self.volume.world_to_index(drag.center_mm)
            idx, _, _ = index_to_pixel(self.volume, self.plane, (kji[0], kji[1], kji[2]))
            new = pixel_to_index(self.volume, self.plane, round(idx), row, col)
            w = self.volume.index_to_world(new)
            drag.center_mm = (float(w[0]), float(w[1]), float(w[2]))
        else:
            here = np.asarray(self.world_at(row, col))
            drag.diameter_mm = float(2 * np.linalg.norm(here - np.asarray(drag.center_mm)))

    def _paint_finding_drag(self, p: QPainter) -> None:
        drag = self._finding_drag
        if drag is None or not self._moved:
            return
        _, centre = self.world_to_screen(drag.center_mm)
        r_px = max(2.0, drag.diameter_mm / 2 * self._px_per_mm())
        p.setPen(QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(centre, r_px, r_px)
        _shadow_text(p, centre.x() + r_px + 4, centre.y(), f"Ø {drag.diameter_mm:.1f} mm")

    def _click(self, pos: QPointF) -> None:
        row, col = self.screen_to_image(pos)
        hit = self.finding_at(pos)
        if hit is not None:
            self.nav.select(hit.finding_id)
            self.finding_clicked.emit(hit.finding_id)
            assert hit.center_mm is not None
            self.nav.move_to(hit.center_mm)
        else:
            self.nav.move_to(self.world_at(row, col))

    def finding_at(self, pos: QPointF) -> Finding | None:
        if self.findings is None or not self.ai.visible:
            return None
        best: tuple[float, Finding] | None = None
        for f in self.findings:
            if f.center_mm is None:
                continue
            d_slices, pt = self.world_to_screen(f.center_mm)
            radius = (f.diameter_mm or 6.0) / 2
            if abs(d_slices) * self._normal_spacing() > radius:
                continue
            dist = math.hypot(pt.x() - pos.x(), pt.y() - pos.y())
            if dist <= 20 and (best is None or dist < best[0]):
                best = (dist, f)
        return best[1] if best else None

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        steps: dict[int, int] = {
            Qt.Key.Key_Up: -1,
            Qt.Key.Key_Down: 1,
            Qt.Key.Key_PageUp: -10,
            Qt.Key.Key_PageDown: 10,
        }
        if key in steps:
            self.set_index(self._index + steps[key])
        elif key == Qt.Key.Key_Home:
            self.set_index(0)
        elif key == Qt.Key.Key_End and self.volume is not None:
            self.set_index(slice_count(self.volume, self.plane) - 1)
        elif key == Qt.Key.Key_Escape:
            self.measurements.clear()
            self.tool = Tool.NAVIGATE
            self.update()
        else:
            super().keyPressEvent(event)

    def reset_view(self) -> None:
        self._zoom = 1.0
        self._pan = QPointF(0.0, 0.0)
        self.view_changed.emit(self._zoom, 0.0, 0.0)
        self.update()

    def set_view(self, zoom: float, pan_x: float, pan_y: float) -> None:
        """Follow another pane's zoom and pan (the heatmap pane and the slice pane move as
        one); does not echo back."""
        if (self._zoom, self._pan.x(), self._pan.y()) == (zoom, pan_x, pan_y):
            return
        self._zoom = zoom
        self._pan = QPointF(pan_x, pan_y)
        self.update()

    @property
    def view_state(self) -> tuple[float, float, float]:
        return (self._zoom, self._pan.x(), self._pan.y())
