"""Display models (Qt-free): window/level with presets, colour maps, heatmap and finding layers.

Each model emits `changed` when a setter changes it; views subscribe and write back through
the setters (the napari pattern in STYLE.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.events import Signal
from core.findings import ReviewStatus


@dataclass(frozen=True)
class WindowPreset:
    name: str
    center: float
    width: float
    key: str  # keyboard shortcut in the viewer


WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("Lung", -600.0, 1500.0, "1"),
    WindowPreset("Mediastinum", 40.0, 400.0, "2"),
    WindowPreset("Bone", 400.0, 1800.0, "3"),
    WindowPreset("Brain", 40.0, 80.0, "4"),
    WindowPreset("Abdomen", 50.0, 350.0, "5"),
)


class WindowLevel:
    """Window centre/width in HU. `apply` maps HU to 0..255 grey (DICOM linear VOI LUT)."""

    def __init__(self, center: float = -600.0, width: float = 1500.0):
        self._center = float(center)
        self._width = max(1.0, float(width))
        self.changed: Signal[WindowLevel] = Signal()

    @property
    def center(self) -> float:
        return self._center

    @property
    def width(self) -> float:
        return self._width

    def set(self, center: float, width: float) -> None:
        width = max(1.0, float(width))
        if (center, width) != (self._center, self._width):
            self._center, self._width = float(center), width
            self.changed.emit(self)

    def apply_preset(self, name: str) -> None:
        preset = next(p for p in WINDOW_PRESETS if p.name.lower() == name.lower())
        self.set(preset.center, preset.width)

    def apply(self, hu: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
        # PS3.3 C.11.2.1.2.1 linear function, simplified to the continuous form.
        lo = self._center - self._width / 2.0
        scale = 255.0 / self._width
        grey = (hu.astype(np.float32) - np.float32(lo)) * np.float32(scale)
        out: npt.NDArray[np.uint8] = np.clip(grey, 0, 255).astype(np.uint8)
        return out


def _lut(stops: list[tuple[float, tuple[int, int, int]]]) -> npt.NDArray[np.uint8]:
    xs = np.array([s[0] for s in stops])
    cols = np.array([s[1] for s in stops], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, xs, cols[:, c]) for c in range(3)], axis=1)
    out: npt.NDArray[np.uint8] = np.round(lut).astype(np.uint8)
    return out


# 256-entry RGB colour maps. "hot" ends in white, "jet"-like "turbo" in dark red.
COLOR_MAPS: dict[str, npt.NDArray[np.uint8]] = {
    "hot": _lut(
        [(0.0, (0, 0, 0)), (0.375, (255, 0, 0)), (0.75, (255, 255, 0)), (1.0, (255, 255, 255))]
    ),
    "turbo": _lut(
        [
            (0.0, (48, 18, 59)),
            (0.25, (40, 150, 240)),
            (0.5, (100, 250, 90)),
            (0.75, (250, 180, 40)),
            (1.0, (122, 4, 3)),
        ]
    ),
    "magma": _lut(
        [(0.0, (0, 0, 4)), (0.33, (114, 31, 129)), (0.66, (241, 96, 93)), (1.0, (252, 253, 191))]
    ),
}


class BlendMode(enum.StrEnum):
    ALONE = "alone"  # heatmap pane shows the colour-mapped probability only
    BLENDED = "blended"  # heatmap over the grey slice


class HeatmapLayer:
    """How a probability map is shown: colour map, opacity, threshold (below: transparent)."""

    def __init__(
        self,
        color_map: str = "hot",
        opacity: float = 0.6,
        threshold: float = 0.1,
        blend: BlendMode = BlendMode.BLENDED,
    ):
        self._color_map = color_map
        self._opacity = opacity
        self._threshold = threshold
        self._blend = blend
        self._visible = True
        self.changed: Signal[HeatmapLayer] = Signal()

    color_map = property(lambda self: self._color_map)
    opacity = property(lambda self: self._opacity)
    threshold = property(lambda self: self._threshold)
    blend = property(lambda self: self._blend)
    visible = property(lambda self: self._visible)

    def update(
        self,
        *,
        color_map: str | None = None,
        opacity: float | None = None,
        threshold: float | None = None,
        blend: BlendMode | None = None,
        visible: bool | None = None,
    ) -> None:
        if color_map is not None and color_map not in COLOR_MAPS:
            raise ValueError(f"unknown colour map {color_map!r} (have {', '.join(COLOR_MAPS)})")
        if opacity is not None and not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {opacity}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        new = (
            self._color_map if color_map is None else color_map,
            self._opacity if opacity is None else float(opacity),
            self._threshold if threshold is None else float(threshold),
            self._blend if blend is None else BlendMode(blend),
            self._visible if visible is None else bool(visible),
        )
        old = (self._color_map, self._opacity, self._threshold, self._blend, self._visible)
        if new != old:
            (self._color_map, self._opacity, self._threshold, self._blend, self._visible) = new
            self.changed.emit(self)

    def colorize(
        self, prob_u8: npt.NDArray[np.uint8], grey: npt.NDArray[np.uint8] | None
    ) -> npt.NDArray[np.uint8]:
        """RGB from probabilities coded 0..255 (p*255): alone, or blended over `grey`.
        Below the threshold (or when hidden) the pane shows black (alone) or the grey slice."""
        alone = self._blend is BlendMode.ALONE or grey is None
        if alone:
            out = np.zeros((*prob_u8.shape, 3), dtype=np.uint8)
        else:
            assert grey is not None
            out = np.repeat(grey[..., None], 3, axis=2)
        if not self._visible:
            return out
        # Only pixels at or above the threshold change; heatmaps are mostly empty, so work
        # on those alone (keeps a 512x512 blend well inside a 16 ms frame).
        above = prob_u8 >= np.uint8(round(self._threshold * 255))
        if not above.any():
            return out
        rgb = COLOR_MAPS[self._color_map][prob_u8[above]]
        if alone:
            out[above] = rgb
        else:
            a = np.float32(self._opacity)
            base = out[above].astype(np.float32)
            out[above] = (base + (rgb - base) * a).astype(np.uint8)
        return out


STATUS_COLORS: dict[ReviewStatus, tuple[int, int, int]] = {
    ReviewStatus.PENDING: (255, 200, 0),  # amber: waiting for the reader
    ReviewStatus.ACCEPTED: (0, 220, 90),
    ReviewStatus.REJECTED: (150, 150, 150),
    ReviewStatus.MODIFIED: (0, 200, 255),
    ReviewStatus.ADDED: (220, 80, 255),
}


class AiVisibility:
    """One switch for everything AI (markers, heatmaps): the reader's 'show me the image'."""

    def __init__(self) -> None:
        self._visible = True
        self.changed: Signal[bool] = Signal()

    @property
    def visible(self) -> bool:
        return self._visible

    def set(self, visible: bool) -> None:
        if visible != self._visible:
            self._visible = visible
            self.changed.emit(visible)

    def toggle(self) -> None:
        self.set(not self._visible)
