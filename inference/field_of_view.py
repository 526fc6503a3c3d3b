"""The endoscope's field of view in a frame: where the lit image is, and where the black mask
the video processor draws around it (often with burned-in text) begins.

Why: endoscopes image through a round (or octagonal, or cropped-round) optic, and the video
processor pads that image to a 4:3, 5:4 or 16:9 frame with black. The sharp edge between
tissue and black, and the text on the black, are not anatomy: a model that sees them learns
shortcuts (the reference model 1.0 flagged frame borders with p = 1.00). Loupe crops every
frame to its field of view before the model and blanks what lies outside it, and masks the
heatmap there, so the same code serves training and inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FieldOfView", "detect_field_of_view"]

U8 = npt.NDArray[np.uint8]
BoolGrid = npt.NDArray[np.bool_]

GRID_LONG_SIDE = 96  # cells along the frame's longer side for detection (and the heatmap)
_DARK_FRAME_LEVEL = 20.0  # 95th percentile of the brightest channel below this: nothing lit
_PROFILE_FRACTION = 0.08  # a row/column belongs to the field when this much of the peak is lit


@dataclass(frozen=True, eq=False)
class FieldOfView:
    """Field of view of one frame on a coarse grid of `step` x `step` pixel cells.

    `box` (row0, col0, row1, col1; exclusive ends, frame pixels) is the crop fed to the
    model; `mask` (grid rows, grid cols) is True on cells inside the field.
    """

    rows: int
    columns: int
    step: int
    box: tuple[int, int, int, int]
    mask: BoolGrid

    def __post_init__(self) -> None:
        r0, c0, r1, c1 = self.box
        if not (0 <= r0 < r1 <= self.rows and 0 <= c0 < c1 <= self.columns):
            raise ValueError(f"box {self.box} is not inside a {self.rows}x{self.columns} frame")
        if self.mask.shape != grid_shape(self.rows, self.columns, self.step):
            raise ValueError(f"mask shape {self.mask.shape} does not match the grid")

    @property
    def box_cells(self) -> tuple[int, int, int, int]:
        """`box` on the grid (cells the crop touches, exclusive ends)."""
        r0, c0, r1, c1 = self.box
        s = self.step
        return r0 // s, c0 // s, -(-r1 // s), -(-c1 // s)

    @property
    def full_frame(self) -> bool:
        return self.box == (0, 0, self.rows, self.columns) and bool(self.mask.all())


def grid_step(rows: int, columns: int) -> int:
    """Pixels per grid cell: the longer side gets about GRID_LONG_SIDE cells."""
    return max(1, math.ceil(max(rows, columns) / GRID_LONG_SIDE))


def grid_shape(rows: int, columns: int, step: int) -> tuple[int, int]:
    return -(-rows // step), -(-columns // step)


def _run_around_peak(profile: npt.NDArray[np.float64]) -> tuple[int, int]:
    """The contiguous run of `profile` >= _PROFILE_FRACTION x its peak that holds the peak:
    the field, without text blocks separated from it by black."""
    # A 3-cell mean smooths single dark cells (a dark lumen crossing a row, JPEG noise).
    k = np.convolve(profile, np.ones(3) / 3.0, mode="same")
    on = k >= _PROFILE_FRACTION * float(k.max())
    peak = int(np.argmax(k))
    lo = peak
    while lo > 0 and on[lo - 1]:
        lo -= 1
    hi = peak
    while hi + 1 < len(on) and on[hi + 1]:
        hi += 1
    return lo, hi + 1


def _fill_between_ends(lit: BoolGrid) -> BoolGrid:
    """Per row, everything between the first and last lit cell (a dark lumen inside the
    field is still inside it)."""
    any_lit: BoolGrid = np.asarray(lit.any(axis=1))
    first = np.argmax(lit, axis=1)
    last = lit.shape[1] - 1 - np.argmax(lit[:, ::-1], axis=1)
    idx = np.arange(lit.shape[1])[None, :]
    out: BoolGrid = (idx >= first[:, None]) & (idx <= last[:, None]) & any_lit[:, None]
    return out


def detect_field_of_view(rgb: U8) -> FieldOfView:
    """Find the lit field of a frame (RGB uint8): the black border's inner edge.

    Lit = brightest channel above 12 % of the frame's 95th percentile (at least 10; the mask
    is near 0-16 even after JPEG, mucosa is red so its red channel stays well above that).
    The field's rows and columns are the run of lit profiles around the peak (burned-in text
    separated from the field by black drops out); inside them a cell is in the field when it
    lies between lit cells along both its row and its column, then one cell is added around
    it (the vignetted rim). A frame with nothing lit (a dark frame) is all field.
    """
    rows, cols = int(rgb.shape[0]), int(rgb.shape[1])
    step = grid_step(rows, cols)
    gr, gc = grid_shape(rows, cols, step)
    # One sample per cell, from its centre (clipped for the last, partial cell).
    ri = np.minimum(np.arange(gr) * step + step // 2, rows - 1)
    ci = np.minimum(np.arange(gc) * step + step // 2, cols - 1)
    g = rgb[ri[:, None], ci[None, :]].max(axis=2).astype(np.float32)
    top = float(np.percentile(g, 95))
    full = FieldOfView(rows, cols, step, (0, 0, rows, cols), np.ones((gr, gc), dtype=bool))
    if top < _DARK_FRAME_LEVEL:
        return full
    lit = g > max(10.0, 0.12 * top)
    a0, a1 = _run_around_peak(lit.mean(axis=1))
    b0, b1 = _run_around_peak(lit.mean(axis=0))
    if (a1 - a0) < gr // 4 or (b1 - b0) < gc // 4:
        return full  # a small bright blob is not a field of view
    inner = np.zeros_like(lit)
    inner[a0:a1, b0:b1] = lit[a0:a1, b0:b1]
    mask = _fill_between_ends(inner) & _fill_between_ends(inner.T).T
    grown = mask.copy()  # one-cell dilation (3 x 3)
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    rs = np.flatnonzero(grown.any(axis=1))
    cs = np.flatnonzero(grown.any(axis=0))
    box = (
        int(rs[0]) * step,
        int(cs[0]) * step,
        min(rows, (int(rs[-1]) + 1) * step),
        min(cols, (int(cs[-1]) + 1) * step),
    )
    return FieldOfView(rows, cols, step, box, grown)
