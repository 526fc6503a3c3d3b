"""3D view of a CT: GPU volume rendering in patient LPS mm with AI findings as status-coloured
spheres that the reader can click to jump the slice views there.

VTK world coordinates are DICOM LPS in mm (x to the patient's left, y posterior, z superior),
so finding centres are used as they are, without any conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import qtawesome as qta

# Factory modules: OpenGL2 rendering, GPU ray casting, FreeType text, interaction styles.
import vtkmodules.vtkInteractionStyle
import vtkmodules.vtkRenderingFreeType
import vtkmodules.vtkRenderingOpenGL2
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QImage, QMouseEvent, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPiecewiseFunction
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor, vtkCornerAnnotation
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkCellPicker,
    vtkColorTransferFunction,
    vtkCoordinate,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkVolume,
    vtkVolumeProperty,
    vtkWindowToImageFilter,
)
from vtkmodules.vtkRenderingVolume import vtkGPUVolumeRayCastMapper

from core.display import STATUS_COLORS, AiVisibility
from core.findings import Finding, FindingSet
from core.volume import Volume

BACKGROUND = (0.07, 0.07, 0.08)  # near-black, as the 2D panes
DEFAULT_MAX_VOXELS = 8_000_000  # ~ 256 x 256 x 120: interactive on Mesa llvmpipe
CLICK_SLOP_PX = 4  # a press and release closer than this is a click, not a rotation


@dataclass(frozen=True)
class TransferPreset:
    """A volume-rendering look: HU -> colour and HU -> opacity (per mm of ray), piecewise linear."""

    name: str
    colors: tuple[tuple[float, float, float, float], ...]  # (HU, r, g, b), rgb in 0..1
    opacities: tuple[tuple[float, float], ...]  # (HU, opacity)
    shade: bool = True


# Lung: thin translucent shells where the ray crosses -600..-400 HU, i.e. at every interface
# between aerated lung and tissue (pleura, vessels, airways, nodules); chest wall and heart stay
# transparent. Bone is kept faint for orientation.
LUNG_PRESET = TransferPreset(
    name="Lung",
    colors=(
        (-1000.0, 0.30, 0.30, 0.40),
        (-600.0, 0.78, 0.56, 0.50),
        (-400.0, 0.92, 0.72, 0.66),
        (0.0, 0.80, 0.42, 0.36),
        (300.0, 0.95, 0.90, 0.80),
        (3071.0, 1.00, 1.00, 1.00),
    ),
    opacities=(
        (-1024.0, 0.0),
        (-650.0, 0.0),
        (-600.0, 0.15),
        (-400.0, 0.15),
        (-350.0, 0.0),
        (200.0, 0.0),
        (500.0, 0.06),
        (3071.0, 0.12),
    ),
)

# Bone: ribs, spine, sternum and shoulder girdle; everything below ~150 HU is transparent.
BONE_PRESET = TransferPreset(
    name="Bone",
    colors=(
        (-1000.0, 0.0, 0.0, 0.0),
        (150.0, 0.55, 0.25, 0.15),
        (300.0, 0.90, 0.80, 0.65),
        (700.0, 1.00, 0.97, 0.90),
        (3071.0, 1.00, 1.00, 1.00),
    ),
    opacities=(
        (-1024.0, 0.0),
        (150.0, 0.0),
        (300.0, 0.35),
        (700.0, 0.85),
        (3071.0, 0.95),
    ),
)

PRESETS: tuple[TransferPreset, ...] = (LUNG_PRESET, BONE_PRESET)


def downsample_for_rendering(
    volume: Volume, max_voxels: int = DEFAULT_MAX_VOXELS
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """Voxels (k, j, i) and their affine, strided along the finest-spaced axes until the volume
    holds at most `max_voxels`; the affine keeps voxel 0 where it was."""
    if max_voxels < 1:
        raise ValueError(f"max_voxels must be at least 1, got {max_voxels}")
    strides = [1, 1, 1]
    shape = volume.shape
    spacing = volume.spacing_mm

    def count() -> int:
        return math.prod(math.ceil(n / s) for n, s in zip(shape, strides, strict=True))

    while count() > max_voxels:
        # Coarsen the axes with the smallest effective spacing (both in-plane axes together
        # when their pixels are square): keeps voxels near isotropic.
        candidates = [a for a in range(3) if math.ceil(shape[a] / strides[a]) > 1]
        finest = min(spacing[a] * strides[a] for a in candidates)
        for a in candidates:
            if spacing[a] * strides[a] <= finest * 1.01:
                strides[a] += 1
    voxels = volume.voxels[:: strides[0], :: strides[1], :: strides[2]]
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] * np.asarray(strides, dtype=np.float64)[None, :]
    return np.ascontiguousarray(voxels), affine


def axis_aligned(
    voxels: npt.NDArray[np.generic], affine: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """The same voxels re-indexed so that k, j, i run along +z, +y, +x (identity direction)
    when the acquisition axes are the patient axes in any order or sign (axial head-first,
    coronal, mirrored). Oblique volumes only get their slices reversed if the frame is
    left-handed. Same LPS geometry either way."""
    unit = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    along = np.argmax(np.abs(unit), axis=0)  # patient axis each array axis runs along
    out, a = voxels, affine.copy()
    if sorted(along.tolist()) == [0, 1, 2] and np.all(np.abs(unit[along, [0, 1, 2]]) > 0.999):
        for ax in range(3):
            if unit[along[ax], ax] < 0:
                a[:3, 3] += (out.shape[ax] - 1) * a[:3, ax]
                a[:3, ax] = -a[:3, ax]
                out = np.flip(out, ax)
        order = [int(np.flatnonzero(along == w)[0]) for w in (2, 1, 0)]  # axes along z, y, x
        return np.transpose(out, order), np.column_stack([a[:, order], a[:, 3]])
    # The GPU ray caster draws nothing for a direction matrix with determinant -1.
    if np.linalg.det(a[:3, [2, 1, 0]]) < 0:  # handedness of VTK's (i, j, k) frame
        a[:3, 3] += (out.shape[0] - 1) * a[:3, 0]
        a[:3, 0] = -a[:3, 0]
        out = out[::-1]
    return out, a


def image_data_from(
    voxels: npt.NDArray[np.generic], affine: npt.NDArray[np.float64]
) -> vtkImageData:
    """vtkImageData whose world coordinates are LPS mm: VTK's (x, y, z) index is our (i, j, k).

    Voxels are re-indexed along the patient axes first (`axis_aligned`): the GPU mapper places
    a volume with any direction matrix correctly but shades it wrongly."""
    voxels, affine = axis_aligned(voxels, affine)
    nk, nj, ni = voxels.shape
    image = vtkImageData()
    image.SetDimensions(ni, nj, nk)
    columns = affine[:3, [2, 1, 0]]  # i, j, k steps in LPS mm
    spacing = np.linalg.norm(columns, axis=0)
    direction = columns / spacing
    image.SetSpacing(*(float(s) for s in spacing))
    image.SetOrigin(*(float(v) for v in affine[:3, 3]))
    image.SetDirectionMatrix(*(float(v) for v in direction.flatten()))
    # C-order (k, j, i) flattens with i fastest, which is VTK's point order.
    scalars = numpy_to_vtk(np.ascontiguousarray(voxels).ravel(), deep=True)
    scalars.SetName("HU")
    image.GetPointData().SetScalars(scalars)
    return image


class _SceneWidget(QVTKRenderWindowInteractor):
    """The VTK widget, made safe to outlive its render window: once finalized it stops
    rendering on paint and resize (rendering into a released X window crashes)."""

    left_clicked = Signal(int, int)  # VTK display pixel (origin bottom left) of a left click

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.finalized = False
        self._press_xy: tuple[int, int] | None = None

    def _event_xy(self) -> tuple[int, int]:
        x, y = self._Iren.GetEventPosition()
        return int(x), int(y)

    # The interactor style grabs the mouse on press (VTK observers then miss the release), so
    # clicks are told apart from rotations here, on Qt's side.
    def mousePressEvent(self, ev: QMouseEvent) -> None:
        super().mousePressEvent(ev)
        if ev.button() == Qt.MouseButton.LeftButton:
            self._press_xy = self._event_xy()

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        super().mouseReleaseEvent(ev)
        if ev.button() != Qt.MouseButton.LeftButton or self._press_xy is None:
            return
        (x, y), (px, py) = self._event_xy(), self._press_xy
        self._press_xy = None
        if abs(x - px) <= CLICK_SLOP_PX and abs(y - py) <= CLICK_SLOP_PX:
            self.left_clicked.emit(x, y)

    def Finalize(self) -> None:
        if not self.finalized:
            self.finalized = True
            super().Finalize()

    def paintEvent(self, ev: object) -> None:
        if not self.finalized:
            super().paintEvent(ev)

    def resizeEvent(self, ev: object) -> None:
        if not self.finalized:
            super().resizeEvent(ev)

    def closeEvent(self, ev: object) -> None:
        self.Finalize()


class Volume3DView(QWidget):
    """Volume rendering of one CT with the findings of its series as clickable spheres."""

    finding_clicked = Signal(str)  # finding_id of the sphere the reader clicked
    # Model callbacks may come from worker threads (inference results): they hop to the GUI
    # thread through this signal (direct call when already on it, queued otherwise).
    _model_event = Signal(object, object)  # handler, value

    def __init__(self, parent: QWidget | None = None, *, max_voxels: int = DEFAULT_MAX_VOXELS):
        super().__init__(parent)
        self._max_voxels = max_voxels
        self._volume: Volume | None = None
        self._image: vtkImageData | None = None  # what the mapper renders (downsampled)
        self._findings: FindingSet | None = None
        self._ai: AiVisibility | None = None
        self._preset = LUNG_PRESET
        self._sphere_actors: dict[str, vtkActor] = {}
        self._model_event.connect(self._dispatch_model_event)
        self._hop_finding_changed = partial(self._model_event.emit, self._on_finding_changed)
        self._hop_findings_reset = partial(self._model_event.emit, self._on_findings_reset)
        self._hop_ai_changed = partial(self._model_event.emit, self._on_ai_changed)

        self.setObjectName("Volume3DView")
        self.setStyleSheet(
            "#Volume3DView { background: #1e1e1e; }"
            "QLabel { color: #d4d4d4; }"
            "QComboBox, QToolButton { background: #2d2d30; color: #d4d4d4;"
            " border: 1px solid #3f3f46; padding: 2px 6px; }"
        )
        self._preset_box = QComboBox()
        self._preset_box.addItems([p.name for p in PRESETS])
        self._preset_box.setToolTip("Volume rendering preset")
        self._preset_box.currentTextChanged.connect(self.set_preset)
        reset = QToolButton()
        reset.setIcon(qta.icon("fa5s.compress-arrows-alt", color="#d4d4d4"))
        reset.setToolTip("Reset view (anterior)")
        reset.clicked.connect(self.reset_camera)
        self._status = QLabel()
        bar = QHBoxLayout()
        bar.setContentsMargins(8, 4, 8, 4)
        bar.setSpacing(6)
        bar.addWidget(QLabel("3D"))
        bar.addWidget(self._preset_box)
        bar.addWidget(reset)
        bar.addStretch(1)
        bar.addWidget(self._status)

        self._vtk = _SceneWidget(self)
        self._render_window = self._vtk.GetRenderWindow()
        # Layer 0: the volume; layer 1: finding spheres, drawn over the volume so a nodule
        # behind the chest wall is still seen. Both share one camera.
        self._render_window.SetNumberOfLayers(2)
        self._renderer = vtkRenderer()
        self._renderer.SetBackground(*BACKGROUND)
        self._overlay = vtkRenderer()
        self._overlay.SetLayer(1)
        self._overlay.InteractiveOff()
        self._overlay.SetActiveCamera(self._renderer.GetActiveCamera())
        self._render_window.AddRenderer(self._renderer)
        self._render_window.AddRenderer(self._overlay)

        self._mapper = vtkGPUVolumeRayCastMapper()
        self._mapper.SetAutoAdjustSampleDistances(True)
        # Jittered ray starts turn wood-grain rings at thin HU bands (the lung preset's
        # interfaces) into fine noise.
        self._mapper.SetUseJittering(True)
        self._volume_prop = vtkVolumeProperty()
        self._volume_prop.SetInterpolationTypeToLinear()
        self._volume_actor = vtkVolume()
        self._volume_actor.SetMapper(self._mapper)
        self._volume_actor.SetProperty(self._volume_prop)
        self._volume_actor.PickableOff()

        self._picker = vtkCellPicker()
        self._picker.SetTolerance(0.0005)
        self._picker.PickFromListOn()

        self._annotation = vtkCornerAnnotation()
        self._annotation.GetTextProperty().SetColor(0.83, 0.83, 0.83)
        self._annotation.SetMaximumFontSize(16)
        self._annotation.SetText(3, "LPS · anterior view")
        self._renderer.AddViewProp(self._annotation)

        iren = self._vtk.GetRenderWindow().GetInteractor()
        iren.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self._vtk.left_clicked.connect(self._on_left_clicked)
        self._orientation = self._make_orientation_marker(iren)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self._vtk, 1)
        self._vtk.Initialize()
        self._apply_preset()
        self._update_status()

    # ------------------------------------------------------------------ public API

    def sizeHint(self) -> QSize:
        return QSize(800, 640)

    def set_volume(self, volume: Volume) -> None:
        """Show `volume` (downsampled for interactivity) and reset the camera to fit it."""
        self._volume = volume
        voxels, affine = downsample_for_rendering(volume, self._max_voxels)
        self._image = image_data_from(voxels, affine)
        self._mapper.SetInputData(self._image)
        if not self._renderer.HasViewProp(self._volume_actor):
            self._renderer.AddVolume(self._volume_actor)
        # Opacity is per unit length: one sample distance of about one (rendered) voxel.
        self._volume_prop.SetScalarOpacityUnitDistance(float(min(self._image.GetSpacing())))
        self.reset_camera()

    def set_findings(self, findings: FindingSet) -> None:
        if self._findings is not None:
            self._findings.changed.disconnect(self._hop_finding_changed)
            self._findings.reset.disconnect(self._hop_findings_reset)
        self._findings = findings
        findings.changed.connect(self._hop_finding_changed)
        findings.reset.connect(self._hop_findings_reset)
        self._on_findings_reset(findings)

    def set_ai_visibility(self, ai: AiVisibility) -> None:
        if self._ai is not None:
            self._ai.changed.disconnect(self._hop_ai_changed)
        self._ai = ai
        ai.changed.connect(self._hop_ai_changed)
        self._on_ai_changed(ai.visible)

    def set_preset(self, name: str) -> None:
        """Switch the transfer function ("Lung", "Bone")."""
        preset = next((p for p in PRESETS if p.name.lower() == name.lower()), None)
        if preset is None:
            raise ValueError(f"unknown preset {name!r} (have {', '.join(p.name for p in PRESETS)})")
        if preset is not self._preset:
            self._preset = preset
            self._preset_box.setCurrentText(preset.name)
            self._apply_preset()
            self._render()

    @property
    def scene_widget(self) -> QWidget:
        """The Qt widget that holds the VTK scene (receives the mouse)."""
        return self._vtk

    @property
    def preset(self) -> str:
        return self._preset.name

    def reset_camera(self) -> None:
        """Anterior view (camera in front of the patient, patient's left on screen right,
        superior up), zoomed to fit the volume."""
        camera = self._renderer.GetActiveCamera()
        if self._volume is not None:
            x0, x1, y0, y1, z0, z1 = self._volume_actor.GetBounds()
            center = ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2)
        else:
            center = (0.0, 0.0, 0.0)
        camera.SetFocalPoint(*center)
        camera.SetPosition(center[0], center[1] - 1000.0, center[2])  # -y is anterior in LPS
        camera.SetViewUp(0.0, 0.0, 1.0)
        camera.ParallelProjectionOff()
        self._renderer.ResetCamera()
        camera.Zoom(1.35)  # ResetCamera fits the bounding sphere; a chest box can fill more
        self._renderer.ResetCameraClippingRange()
        self._render()

    def finding_at(self, x: int, y: int) -> str | None:
        """The finding whose sphere is under VTK display pixel (x, y) (origin bottom left)."""
        if not self._sphere_actors or not self._sphere_actors_visible():
            return None
        if not self._picker.Pick(float(x), float(y), 0.0, self._overlay):
            return None
        actor = self._picker.GetActor()
        for finding_id, a in self._sphere_actors.items():
            if a is actor:
                return finding_id
        return None

    def world_to_display(self, xyz: tuple[float, float, float]) -> tuple[float, float]:
        """VTK display coordinates (pixels, origin bottom left) of an LPS point in mm."""
        coord = vtkCoordinate()
        coord.SetCoordinateSystemToWorld()
        coord.SetValue(*(float(v) for v in xyz))
        dx, dy = coord.GetComputedDoubleDisplayValue(self._renderer)
        return float(dx), float(dy)

    def render_to_array(self) -> npt.NDArray[np.uint8]:
        """The rendered scene as RGB uint8 (rows, cols, 3), row 0 at the top."""
        if self._vtk.finalized:
            raise RuntimeError("the render window was closed")
        self._render_window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self._render_window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.ShouldRerenderOff()
        grab.Update()
        out = grab.GetOutput()
        w, h, _ = out.GetDimensions()
        arr = vtk_to_numpy(out.GetPointData().GetScalars()).reshape(h, w, -1)[..., :3]
        return np.ascontiguousarray(arr[::-1])

    def snapshot(self) -> QImage:
        """The whole widget (tool bar and 3D scene) as an image: grab() alone misses VTK."""
        image = self.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        rgb = self.render_to_array()
        scene = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0],
                       QImage.Format.Format_RGB888).copy()  # fmt: skip
        painter = QPainter(image)
        painter.drawImage(self._vtk.geometry(), scene)
        painter.end()
        return image

    def close_render_window(self) -> None:
        """Release the OpenGL context before the window goes (closing the view does it too)."""
        if not self._vtk.finalized:
            self._orientation.EnabledOff()
            self._vtk.Finalize()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.close_render_window()
        super().closeEvent(event)

    # ------------------------------------------------------------------ internals

    def _dispatch_model_event(self, handler: Callable[[Any], None], value: object) -> None:
        handler(value)

    def _render(self) -> None:
        if self.isVisible() and not self._vtk.finalized:
            self._render_window.Render()

    def _make_orientation_marker(self, iren: object) -> vtkOrientationMarkerWidget:
        cube = vtkAnnotatedCubeActor()
        # LPS: +x is the patient's left, +y posterior, +z superior.
        cube.SetXPlusFaceText("L")
        cube.SetXMinusFaceText("R")
        cube.SetYPlusFaceText("P")
        cube.SetYMinusFaceText("A")
        cube.SetZPlusFaceText("S")
        cube.SetZMinusFaceText("I")
        cube.SetFaceTextScale(0.6)
        cube.GetCubeProperty().SetColor(0.25, 0.25, 0.28)
        cube.GetTextEdgesProperty().SetColor(0.6, 0.6, 0.6)
        for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty()):
            prop.SetColor(0.95, 0.55, 0.35)
        for prop in (cube.GetYPlusFaceProperty(), cube.GetYMinusFaceProperty()):
            prop.SetColor(0.45, 0.85, 0.45)
        for prop in (cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
            prop.SetColor(0.45, 0.65, 1.0)
        marker = vtkOrientationMarkerWidget()
        marker.SetOrientationMarker(cube)
        marker.SetInteractor(iren)  # type: ignore[arg-type]
        marker.SetViewport(0.0, 0.0, 0.14, 0.2)
        marker.SetEnabled(1)
        marker.InteractiveOff()
        return marker

    def _apply_preset(self) -> None:
        colors = vtkColorTransferFunction()
        for hu, r, g, b in self._preset.colors:
            colors.AddRGBPoint(hu, r, g, b)
        opacity = vtkPiecewiseFunction()
        for hu, a in self._preset.opacities:
            opacity.AddPoint(hu, a)
        self._volume_prop.SetColor(colors)
        self._volume_prop.SetScalarOpacity(opacity)
        self._volume_prop.SetShade(self._preset.shade)
        self._volume_prop.SetAmbient(0.3)
        self._volume_prop.SetDiffuse(0.7)
        self._volume_prop.SetSpecular(0.2)
        self._annotation.SetText(2, f"{self._preset.name} preset")

    def _sphere_actors_visible(self) -> bool:
        return self._ai is None or self._ai.visible

    def _on_ai_changed(self, visible: bool) -> None:
        for actor in self._sphere_actors.values():
            actor.SetVisibility(self._sphere_actors_visible())
        self._update_status()
        self._render()

    def _on_findings_reset(self, findings: FindingSet) -> None:
        for actor in self._sphere_actors.values():
            self._overlay.RemoveActor(actor)
        self._sphere_actors.clear()
        self._picker.InitializePickList()
        for finding in findings:
            self._place_sphere(finding)
        self._update_status()
        self._render()

    def _on_finding_changed(self, finding: Finding) -> None:
        self._place_sphere(finding)
        self._update_status()
        self._render()

    def _place_sphere(self, finding: Finding) -> None:
        if finding.center_mm is None:
            return  # a frame finding (endoscopy) has no place in 3D
        actor = self._sphere_actors.get(finding.finding_id)
        if actor is None:
            actor = vtkActor()
            mapper = vtkPolyDataMapper()
            sphere = vtkSphereSource()
            sphere.SetThetaResolution(32)
            sphere.SetPhiResolution(24)
            mapper.SetInputConnection(sphere.GetOutputPort())
            actor.SetMapper(mapper)
            prop = actor.GetProperty()
            # Ambient + diffuse = 1: the sphere's centre (normal toward the headlight) shows the
            # status colour exactly; edges darken for depth.
            prop.SetAmbient(0.35)
            prop.SetDiffuse(0.65)
            prop.SetSpecular(0.0)
            self._sphere_actors[finding.finding_id] = actor
            self._overlay.AddActor(actor)
            self._picker.AddPickList(actor)
        source: Any = actor.GetMapper().GetInputConnection(0, 0).GetProducer()
        source.SetCenter(*(float(v) for v in finding.center_mm))
        source.SetRadius(float(finding.diameter_mm or 5.0) / 2.0)
        r, g, b = STATUS_COLORS[finding.status]
        actor.GetProperty().SetColor(r / 255.0, g / 255.0, b / 255.0)
        actor.SetVisibility(self._sphere_actors_visible())

    def _update_status(self) -> None:
        n = len(self._sphere_actors)
        text = f"{n} finding{'s' if n != 1 else ''}"
        if not self._sphere_actors_visible():
            text += " (AI hidden)"
        self._status.setText(text)

    def _on_left_clicked(self, x: int, y: int) -> None:
        finding_id = self.finding_at(x, y)
        if finding_id is not None:
            self.finding_clicked.emit(finding_id)
