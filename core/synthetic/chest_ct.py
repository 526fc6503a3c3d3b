"""Synthetic chest CT phantom with known nodules, and a writer for it as a CT Image Storage series.

The phantom is meant to look enough like a non-contrast chest CT for demos, tests and for training
nodule detectors: body with fat and muscle, lungs with a gravity gradient and texture, heart, great
vessels, trachea, spine, ribs, a branching pulmonary vessel/airway tree (the classic false-positive
source) and nodules of six kinds whose truth is returned exactly.

Coordinates: the volume is indexed [k, i, j] = [slice, row, column]. Patient coordinates are DICOM
LPS in mm: x = origin_x + j * dx grows to the patient's Left, y = origin_y + i * dy grows to
Posterior, z = origin_z + k * dz grows to Superior (slice 0 is the most inferior one).
The anatomy is scaled to the field of view and to the z range, so small test volumes still hold a
whole chest; nodule sizes stay physical.

Everything is vectorised with numpy (per-slice 2D work restricted to bounding boxes, tubes and
nodules painted as distance fields on their own bounding boxes): 300x512x512 takes a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from core.synthetic.dicom_writer import WrittenSeries, add_common_modules, make_uid, save_part10
from core.synthetic.interpolation import interp_matrix
from core.volume import Volume, affine_from_dicom

__all__ = [
    "NODULE_KINDS",
    "CtPhantom",
    "NoduleTruth",
    "WrittenSeries",
    "make_chest_ct",
    "write_ct_series",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I16 = npt.NDArray[np.int16]
Bool = npt.NDArray[np.bool_]

NODULE_KINDS: tuple[str, ...] = (
    "solid",
    "part-solid",
    "ground-glass",
    "juxtapleural",
    "vessel-attached",
    "lobulated",
)

# Stored range: unsigned 12-bit stored values with RescaleIntercept -1024 cover HU -1024..3071.
HU_MIN = -1024
HU_MAX = 3071

# Tissue values in HU (non-contrast CT).
HU_AIR = -1000
HU_FAT = -100
HU_MED_FAT = -85
HU_MUSCLE = 45
HU_SOFT = 38
HU_BLOOD = 42
HU_LIVER = 58
HU_ABDOMEN = 30
HU_CSF = 12
HU_CANCELLOUS = 230
HU_CORTICAL = 650
HU_CARTILAGE = 120
HU_DISC = 85
HU_VESSEL = 40
HU_AIRWAY_WALL = 15
HU_AIRWAY_LUMEN = -960
HU_SOLID = 35
HU_GGO = -620

# Noise: uniform noise before a [1,2,1]/4 x [1,2,1]/4 in-plane blur. The blur scales the noise SD
# by 0.375 and makes it near Gaussian (sum of 9 uniforms) and spatially correlated like real CT.
NOISE_SD_HU = 20.0
_UNIFORM_SD = 1.0 / math.sqrt(12.0)
_NOISE_AMPLITUDE = NOISE_SD_HU / (0.375 * _UNIFORM_SD)

# Reference field of view (512 x 0.7 mm) the in-plane anatomy sizes below are given for.
_REF_FOV_MM = 358.4
_SLAB = 16


@dataclass(frozen=True)
class NoduleTruth:
    """Ground truth of one synthetic nodule."""

    center_mm: tuple[float, float, float]  # patient LPS (x, y, z), mm; always on a voxel centre
    diameter_mm: float
    kind: str  # one of NODULE_KINDS


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays do not support dataclass ==
class CtPhantom:
    """A synthetic CT volume in HU with its geometry and truth."""

    hu: npt.NDArray[np.int16]  # (slices, rows, cols), HU, clipped to -1024..3071
    spacing_mm: tuple[float, float, float]  # (slice step z, row spacing y, column spacing x)
    origin_mm: tuple[float, float, float]  # LPS (x, y, z) of voxel [0, 0, 0]
    nodules: tuple[NoduleTruth, ...]
    lung_mask: npt.NDArray[np.bool_]  # same shape; both lungs (vessels and nodules inside count)


# --------------------------------------------------------------------------------------------
# Geometry helpers


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]  # (nz, ny, nx)
    spacing: tuple[float, float, float]  # (dz, dy, dx)
    origin: tuple[float, float, float]  # (z0, y0, x0) - note: (z, y, x) order internally
    z: F64
    y: F64
    x: F64

    @staticmethod
    def make(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> _Grid:
        nz, ny, nx = shape
        dz, dy, dx = spacing
        # Field of view centred on the scanner axis; table position z is negative as on scanners.
        z0 = -50.0 - (nz - 1) * dz
        y0 = -(ny - 1) * dy / 2.0
        x0 = -(nx - 1) * dx / 2.0
        return _Grid(
            shape=shape,
            spacing=spacing,
            origin=(z0, y0, x0),
            z=z0 + dz * np.arange(nz, dtype=np.float64),
            y=y0 + dy * np.arange(ny, dtype=np.float64),
            x=x0 + dx * np.arange(nx, dtype=np.float64),
        )

    def index(self, p: F64) -> tuple[int, int, int]:
        """Nearest voxel index of the (z, y, x) point p (may be outside the volume)."""
        k = round((p[0] - self.origin[0]) / self.spacing[0])
        i = round((p[1] - self.origin[1]) / self.spacing[1])
        j = round((p[2] - self.origin[2]) / self.spacing[2])
        return int(k), int(i), int(j)

    def inside(self, idx: tuple[int, int, int]) -> bool:
        return all(0 <= a < n for a, n in zip(idx, self.shape, strict=True))

    def center(self, idx: tuple[int, int, int]) -> F64:
        return np.array(
            [self.z[idx[0]], self.y[idx[1]], self.x[idx[2]]],
            dtype=np.float64,
        )

    def box(self, lo: F64, hi: F64) -> tuple[slice, slice, slice] | None:
        """Index slices of voxels whose centres lie in the mm box [lo, hi] (z, y, x)."""
        out: list[slice] = []
        for a in range(3):
            o, d, n = self.origin[a], self.spacing[a], self.shape[a]
            i0 = max(0, math.ceil((lo[a] - o) / d))
            i1 = min(n, math.floor((hi[a] - o) / d) + 1)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[F64, F64, F64]:
        """Broadcastable (z, y, x) coordinate arrays of a box."""
        return (
            self.z[sl[0]][:, None, None],
            self.y[sl[1]][None, :, None],
            self.x[sl[2]][None, None, :],
        )


def _span(c: F64, lo: float, hi: float) -> slice:
    """Index range of the sorted coordinate array c that lies within [lo, hi]."""
    i0 = int(np.searchsorted(c, lo, side="left"))
    i1 = int(np.searchsorted(c, hi, side="right"))
    return slice(i0, max(i0, i1))


def _q2(g: _Grid, sy: slice, sx: slice, cx: float, cy: float, ax: float, ay: float) -> F32:
    """Normalised squared elliptic radius ((x-cx)/ax)^2 + ((y-cy)/ay)^2 on a 2D box."""
    qy = ((g.y[sy] - cy) / ay) ** 2
    qx = ((g.x[sx] - cx) / ax) ** 2
    return (qy[:, None] + qx[None, :]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Anatomy


@dataclass(frozen=True)
class _Anatomy:
    s: float  # in-plane scale (mm per reference mm)
    body_a: float
    body_b: float
    yc: float
    fat: float
    cav_a: float
    cav_b: float
    cav_yc: float
    z_b: float  # lung base (posterior costophrenic recess)
    z_a: float  # lung apex
    lung_cx: tuple[float, float]  # (right, left)
    lung_cy: float
    lung_ax: tuple[float, float]
    lung_ay: float
    dome_h: tuple[float, float]
    spine_y: float
    heart: tuple[float, float, float, float, float, float]  # cx, cy, cz, ax, ay, az
    z_carina: float
    z_hilum: float
    z_arch: float
    rib_pitch: float
    rib_drop: float
    rib_phase: float
    disc_pitch: float
    disc_phase: float

    @property
    def hl(self) -> float:
        return self.z_a - self.z_b

    @property
    def zs(self) -> float:
        return self.hl / 270.0


def _sample_anatomy(g: _Grid, rng: np.random.Generator) -> _Anatomy:
    nz, ny, nx = g.shape
    dz, dy, dx = g.spacing
    s = min(nx * dx, ny * dy) / _REF_FOV_MM

    def jit(v: float, rel: float = 0.05) -> float:
        return float(v * (1.0 + rel * rng.uniform(-1.0, 1.0)))

    body_a = jit(158.0) * s
    body_b = jit(112.0) * s
    yc = -6.0 * s
    fat = jit(11.0, 0.35) * s
    cav_a = body_a - 30.0 * s
    cav_b = body_b - 24.0 * s
    cav_yc = yc + 2.0 * s
    z_range = (nz - 1) * dz
    hl = min(0.88 * z_range, jit(270.0, 0.06))
    z_mid = float(g.z[0]) + z_range / 2.0 + 0.02 * z_range
    z_b = z_mid - hl / 2.0
    spine_y = cav_yc + cav_b - 10.0 * s
    return _Anatomy(
        s=s,
        body_a=body_a,
        body_b=body_b,
        yc=yc,
        fat=fat,
        cav_a=cav_a,
        cav_b=cav_b,
        cav_yc=cav_yc,
        z_b=z_b,
        z_a=z_b + hl,
        lung_cx=(-0.5 * cav_a - 4.0 * s, 0.5 * cav_a + 6.0 * s),
        lung_cy=cav_yc + 6.0 * s,
        lung_ax=(0.53 * cav_a, 0.5 * cav_a),
        lung_ay=0.97 * cav_b,
        dome_h=(jit(0.30) * hl, jit(0.25) * hl),
        spine_y=spine_y,
        heart=(
            jit(22.0, 0.2) * s,
            yc - 12.0 * s,
            z_b + jit(0.41, 0.05) * hl,
            jit(62.0) * s,
            jit(50.0) * s,
            0.19 * hl,
        ),
        z_carina=z_b + 0.64 * hl,
        z_hilum=z_b + 0.57 * hl,
        z_arch=z_b + 0.75 * hl,
        rib_pitch=26.0 * hl / 270.0,
        rib_drop=95.0 * hl / 270.0,
        rib_phase=float(rng.uniform(0.0, 1.0)),
        disc_pitch=26.0 * hl / 270.0,
        disc_phase=float(rng.uniform(0.0, 1.0)),
    )


@dataclass(frozen=True)
class _Patch:
    """A 2D mask restricted to its bounding box."""

    sy: slice
    sx: slice
    mask: Bool

    def paint(self, sl: I16, hu: int) -> None:
        np.copyto(sl[self.sy, self.sx], np.int16(hu), where=self.mask)


def _ellipse_patch(g: _Grid, cx: float, cy: float, ax: float, ay: float) -> _Patch:
    sy = _span(g.y, cy - ay, cy + ay)
    sx = _span(g.x, cx - ax, cx + ax)
    return _Patch(sy, sx, _q2(g, sy, sx, cx, cy, ax, ay) < 1.0)


def _segment_d2(
    g: _Grid, p: tuple[float, float], q: tuple[float, float], r: float
) -> tuple[slice, slice, F64]:
    """Squared 2D distance to the segment p-q ((x, y) mm) on the box of its r-neighbourhood."""
    sy = _span(g.y, min(p[1], q[1]) - r, max(p[1], q[1]) + r)
    sx = _span(g.x, min(p[0], q[0]) - r, max(p[0], q[0]) + r)
    yy = g.y[sy][:, None] - p[1]
    xx = g.x[sx][None, :] - p[0]
    vx, vy = q[0] - p[0], q[1] - p[1]
    t = np.clip((xx * vx + yy * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
    return sy, sx, (xx - t * vx) ** 2 + (yy - t * vy) ** 2


def _capsule_patch(g: _Grid, p: tuple[float, float], q: tuple[float, float], r: float) -> _Patch:
    """2D stadium: points within r of the segment p-q, (x, y) in mm."""
    sy, sx, d2 = _segment_d2(g, p, q, r)
    return _Patch(sy, sx, d2 < r * r)


def _base_slice(g: _Grid, a: _Anatomy) -> I16:
    """z-invariant part of an axial slice: table, body wall, cavity fat, spine, oesophagus."""
    _, ny, nx = g.shape
    s = a.s
    full = (slice(0, ny), slice(0, nx))
    out = np.full((ny, nx), HU_AIR, dtype=np.int16)
    # Carbon-fibre table under the back: thin shell around foam.
    ty = a.yc + a.body_b + 4.0 * s
    yy = g.y[:, None]
    xx = g.x[None, :]
    table_outer = (yy > ty) & (yy < ty + 14.0 * s) & (np.abs(xx) < 0.85 * a.body_a)
    table_inner = (yy > ty + 2.0 * s) & (yy < ty + 12.0 * s) & (np.abs(xx) < 0.82 * a.body_a)
    out[table_outer] = 150
    out[table_inner] = -900
    # Body: ellipse flattened at the back where it lies on the table.
    body = (_q2(g, *full, 0.0, a.yc, a.body_a, a.body_b) < 1.0) & (yy < a.yc + 0.93 * a.body_b)
    out[body] = HU_FAT
    muscle = _q2(g, *full, 0.0, a.yc, a.body_a - a.fat, a.body_b - a.fat) < 1.0
    out[muscle & body] = HU_MUSCLE
    cavity = _q2(g, *full, 0.0, a.cav_yc, a.cav_a, a.cav_b) < 1.0
    out[cavity] = HU_MED_FAT
    # Spine (vertebral body with cortex, canal, posterior elements).
    vy = a.spine_y
    _ellipse_patch(g, 0.0, vy, 20.0 * s, 16.0 * s).paint(out, HU_CORTICAL)
    _ellipse_patch(g, 0.0, vy, 17.5 * s, 13.5 * s).paint(out, HU_CANCELLOUS)
    _ellipse_patch(g, 0.0, vy + 28.0 * s, 14.0 * s, 13.0 * s).paint(out, 520)
    for side in (-1.0, 1.0):
        _capsule_patch(
            g, (side * 8.0 * s, vy + 24.0 * s), (side * 34.0 * s, vy + 18.0 * s), 4.0 * s
        ).paint(out, 480)
    _capsule_patch(g, (0.0, vy + 30.0 * s), (0.0, vy + 52.0 * s), 4.0 * s).paint(out, 500)
    _ellipse_patch(g, 0.0, vy + 27.0 * s, 8.5 * s, 8.0 * s).paint(out, HU_CSF)
    # Oesophagus with a little air.
    _ellipse_patch(g, -3.0 * s, vy - 27.0 * s, 8.0 * s, 6.5 * s).paint(out, HU_SOFT)
    _ellipse_patch(g, -3.0 * s, vy - 27.0 * s, 2.0 * s, 1.5 * s).paint(out, -700)
    return out


def _lung_hu(y: F64, cy: float, ay: float) -> F32:
    """Parenchyma HU by row: dependent (posterior) lung is denser, as in supine patients."""
    w = np.clip((y - (cy - ay)) / (2.0 * ay), 0.0, 1.0)
    return (-870.0 + 60.0 * w**2).astype(np.float32)


def _render_anatomy(g: _Grid, a: _Anatomy, rng: np.random.Generator) -> tuple[I16, Bool]:
    """Draw the static anatomy slice by slice; returns (HU volume, lung mask)."""
    nz, ny, nx = g.shape
    s, hl, zs = a.s, a.hl, a.zs
    vol = np.empty(g.shape, dtype=np.int16)
    lung = np.zeros(g.shape, dtype=np.bool_)
    base = _base_slice(g, a)
    full = (slice(0, ny), slice(0, nx))
    cavity = _q2(g, *full, 0.0, a.cav_yc, a.cav_a, a.cav_b) < 1.0
    cav_in = _q2(g, *full, 0.0, a.cav_yc, a.cav_a - 2.0 * s, a.cav_b - 2.0 * s) < 1.0
    vy = a.spine_y
    aorta_c = (24.0 * s, vy - 20.0 * s)
    aorta_r = 12.5 * s
    # Regions lungs never occupy: mediastinum, paravertebral gutter, descending aorta.
    med = _q2(g, *full, 0.0, a.yc - 4.0 * s, 27.0 * s, a.body_b) < 1.0
    med |= _q2(g, *full, 0.0, vy, 27.0 * s, 23.0 * s) < 1.0
    med |= _q2(g, *full, aorta_c[0], aorta_c[1], aorta_r + 4 * s, aorta_r + 4 * s) < 1.0
    med |= _q2(g, *full, -3.0 * s, vy - 27.0 * s, 12.0 * s, 10.0 * s) < 1.0
    static_lung_ok = cav_in & ~med
    posterior_structs = med & (g.y[:, None] > vy - 40.0 * s)
    cavity_free = cavity & ~posterior_structs

    # Diaphragm height map (dome per side); lung exists only above it.
    zd = np.full((ny, nx), a.z_b, dtype=np.float32)
    for side in (0, 1):
        cx = a.lung_cx[side]
        dome = 1.0 - _q2(
            g, *full, cx, a.lung_cy - 0.2 * a.lung_ay, 1.3 * a.lung_ax[side], 1.25 * a.lung_ay
        )
        half = (g.x[None, :] < 0.0) if side == 0 else (g.x[None, :] >= 0.0)
        zd = np.where(half, a.z_b + a.dome_h[side] * np.clip(dome, 0.0, None), zd).astype(
            np.float32
        )
    zd_max = float(zd.max())
    liver_x = 20.0 * s
    abd_vals = np.where(g.x[None, :] < liver_x, HU_LIVER, HU_ABDOMEN).astype(np.int16)
    abd_vals = np.broadcast_to(abd_vals, (ny, nx))
    stomach = _ellipse_patch(g, 62.0 * s, a.yc - 8.0 * s, 38.0 * s, 30.0 * s)

    # Lung boxes per side with their precomputed 2D maps.
    sides = []
    for side in (0, 1):
        cx, ax, ay = a.lung_cx[side], a.lung_ax[side], a.lung_ay
        sy = _span(g.y, a.lung_cy - ay, a.lung_cy + ay)
        sx = _span(g.x, cx - ax, cx + ax)
        q = _q2(g, sy, sx, cx, a.lung_cy, ax, ay)
        hu2d = np.broadcast_to(_lung_hu(g.y[sy], a.lung_cy, ay)[:, None], q.shape)
        # Oblique fissure: a sheet high at the back (about T4) sloping down to the front of the
        # diaphragm, curved laterally; stored as its height z_f(y, x) in mm.
        w = np.clip((g.y[sy] - (a.lung_cy - ay)) / (2.0 * ay), 0.0, 1.0)[:, None]
        lat = ((g.x[sx] - cx) / ax)[None, :] ** 2
        zf = (a.z_b + hl * (0.08 + 0.68 * w - 0.12 * lat)).astype(np.float32)
        sides.append((sy, sx, q, static_lung_ok[sy, sx], zd[sy, sx], hu2d, zf))

    # Fissure sheet (about 1 mm) averaged over the slice: fainter in thick slices.
    fis_hz = np.float32(max(g.spacing[0] / 2.0, 0.8))
    fis_amp = np.float32(110.0 * min(1.0, 1.2 / g.spacing[0]))

    # Low-frequency parenchymal texture: coarse noise, linearly interpolated (z, then in-plane).
    gz, gy, gx = max(2, nz // 3 + 2), max(2, ny // 12 + 2), max(2, nx // 12 + 2)
    coarse = rng.standard_normal((gz, gy, gx)).astype(np.float32) * 28.0
    wz, wy, wx = interp_matrix(nz, gz), interp_matrix(ny, gy), interp_matrix(nx, gx)

    hx, hy, hz, hax, hay, haz = a.heart
    heart_sy = _span(g.y, hy - 1.15 * hay, hy + 1.15 * hay)
    heart_sx = _span(g.x, hx - 1.15 * hax, hx + 1.15 * hax)
    heart_q = _q2(g, heart_sy, heart_sx, hx, hy, hax, hay)
    heart_cav = cavity[heart_sy, heart_sx]

    trachea_c = (0.0, vy - 46.0 * s)
    trachea_out = _ellipse_patch(g, *trachea_c, 10.5 * s, 9.5 * s)
    trachea_in = _ellipse_patch(g, *trachea_c, 8.5 * s, 7.5 * s)
    aorta = _ellipse_patch(g, *aorta_c, aorta_r, aorta_r)
    asc_c = (-10.0 * s, a.yc - 26.0 * s)
    asc = _ellipse_patch(g, *asc_c, 15.0 * s, 15.0 * s)
    arch_r, arch_hz = 13.0 * s, 11.0 * zs
    arch_sy, arch_sx, arch_d2 = _segment_d2(g, asc_c, aorta_c, arch_r)
    sternum_o = _ellipse_patch(g, 0.0, a.cav_yc - a.cav_b - 7.0 * s, 16.0 * s, 7.0 * s)
    sternum_i = _ellipse_patch(g, 0.0, a.cav_yc - a.cav_b - 7.0 * s, 13.5 * s, 4.5 * s)
    vbody = _ellipse_patch(g, 0.0, vy, 20.0 * s, 16.0 * s)
    scap = [
        _capsule_patch(
            g,
            (sd * 0.55 * a.body_a, a.yc + 0.80 * a.body_b),
            (sd * 0.86 * a.body_a, a.yc + 0.45 * a.body_b),
            4.0 * s,
        )
        for sd in (-1.0, 1.0)
    ]

    # Rib band just outside the cavity: precomputed flat indices, radial position and z offset.
    rho = np.sqrt(_q2(g, *full, 0.0, a.cav_yc, a.cav_a, a.cav_b))
    mean_ax = 0.5 * (a.cav_a + a.cav_b)
    r0, r1 = 1.0 + 1.0 * s / mean_ax, 1.0 + 9.0 * s / mean_ax
    band = (rho > r0) & (rho < r1)
    yy2 = np.broadcast_to(g.y[:, None] - a.cav_yc, (ny, nx))
    xx2 = np.broadcast_to(g.x[None, :], (ny, nx))
    band &= ~((np.abs(xx2) < 18.0 * s) & (yy2 < 0))  # sternum gap
    band_idx = np.flatnonzero(band)
    band_t = ((rho.ravel()[band_idx] - r0) / (r1 - r0)).astype(np.float32)
    ang = np.arctan2(xx2.ravel()[band_idx], yy2.ravel()[band_idx])  # 0 = posterior midline
    band_h = (a.rib_drop * (1.0 - np.cos(ang)) / 2.0).astype(np.float32)
    band_cart = (np.abs(xx2.ravel()[band_idx]) < 55.0 * s) & (yy2.ravel()[band_idx] < 0)
    band_cortex = (band_t < 0.22) | (band_t > 0.78)

    for k in range(nz):
        z = float(g.z[k])
        sl = vol[k]
        sl[...] = base
        u = (z - a.z_b) / hl
        # Great vessels and airway.
        if z < a.z_arch:
            aorta.paint(sl, HU_BLOOD)
        if hz < z < a.z_arch:
            asc.paint(sl, HU_BLOOD)
        if abs(z - a.z_arch) < arch_hz:
            # The arch is a tube bending over: its axial section narrows away from its axis.
            r2 = arch_r**2 * (1.0 - ((z - a.z_arch) / arch_hz) ** 2)
            np.copyto(sl[arch_sy, arch_sx], np.int16(HU_BLOOD), where=arch_d2 < r2)
        if z > a.z_carina:
            trachea_out.paint(sl, HU_AIRWAY_WALL)
            trachea_in.paint(sl, HU_AIR)
        # Heart with epicardial fat.
        qz = ((z - hz) / haz) ** 2
        heart_excl: Bool | None = None
        if qz < 1.15**2:
            qh = heart_q + np.float32(qz)
            box = sl[heart_sy, heart_sx]
            np.copyto(box, np.int16(HU_MED_FAT), where=(qh < 1.1**2) & heart_cav)
            np.copyto(box, np.int16(HU_SOFT), where=(qh < 1.0) & heart_cav)
            heart_excl = qh < 1.13**2
        # Below the diaphragm: liver on the right, stomach (gas cap over fluid) on the left.
        if z < zd_max:
            below = cavity_free & (zd > z)
            np.copyto(sl, abd_vals, where=below)
            st_box = sl[stomach.sy, stomach.sx]
            st_below = below[stomach.sy, stomach.sx] & stomach.mask
            gas = zd[stomach.sy, stomach.sx] - z < 22.0 * zs
            np.copyto(st_box, np.int16(HU_AIR), where=st_below & gas)
            np.copyto(st_box, np.int16(15), where=st_below & ~gas)
        # Lungs.
        if 0.0 < u < 1.0:
            v = max(0.0, (u - 0.55) / 0.45)
            g2 = np.float32(max(1e-6, 1.0 - v * v))
            tex_plane = (wz[k] @ coarse.reshape(gz, -1)).reshape(gy, gx)
            for sy, sx, q, ok, zd_box, hu2d, zf in sides:
                m = (q < g2) & ok & (zd_box < z)
                if heart_excl is not None:
                    hsy = slice(max(sy.start, heart_sy.start), min(sy.stop, heart_sy.stop))
                    hsx = slice(max(sx.start, heart_sx.start), min(sx.stop, heart_sx.stop))
                    if hsy.stop > hsy.start and hsx.stop > hsx.start:
                        m[
                            hsy.start - sy.start : hsy.stop - sy.start,
                            hsx.start - sx.start : hsx.stop - sx.start,
                        ] &= ~heart_excl[
                            hsy.start - heart_sy.start : hsy.stop - heart_sy.start,
                            hsx.start - heart_sx.start : hsx.stop - heart_sx.start,
                        ]
                tex = wy[sy] @ tex_plane @ wx[sx].T
                fis = np.clip(1.0 - np.abs(zf - np.float32(z)) / fis_hz, 0.0, 1.0)
                vals = (hu2d + tex + fis * fis_amp).astype(np.int16)
                np.copyto(sl[sy, sx], vals, where=m)
                lung[k, sy, sx] = m
        # Ribs: bands whose z phase depends on the angle (they descend anteriorly).
        if a.z_b - 30.0 * zs < z < a.z_a + 6.0 * zs:
            ph = np.mod((z + band_h) / a.rib_pitch + a.rib_phase, 1.0)
            on = ph < 0.42
            edge = (ph < 0.07) | (ph > 0.35)
            vals = np.where(band_cortex | edge, HU_CORTICAL, HU_CANCELLOUS - 30)
            vals = np.where(band_cart, HU_CARTILAGE, vals).astype(np.int16)
            flat = sl.reshape(-1)
            flat[band_idx[on]] = vals[on]
        # Sternum, scapulae, intervertebral discs.
        if a.z_b + 0.25 * hl < z < a.z_a - 0.05 * hl:
            sternum_o.paint(sl, HU_CORTICAL)
            sternum_i.paint(sl, HU_CANCELLOUS)
        if z > a.z_b + 0.55 * hl:
            for sp in scap:
                sp.paint(sl, 450)
        if np.mod((z - a.z_b) / a.disc_pitch + a.disc_phase, 1.0) < 0.2:
            vbody.paint(sl, HU_DISC)
    return vol, lung


# --------------------------------------------------------------------------------------------
# Painting tubes and nodules as anti-aliased distance fields on bounding boxes

_Mode = Literal["raise", "lower", "blend"]


def _z_offsets(g: _Grid) -> tuple[float, ...]:
    """Sub-slice sample offsets approximating the partial-volume effect of thick slices."""
    dz, dy, dx = g.spacing
    if dz > 1.5 * min(dy, dx):
        return (-dz / 3.0, 0.0, dz / 3.0)
    return (0.0,)


def _composite(
    vol: I16,
    allowed: Bool | None,
    sl: tuple[slice, slice, slice],
    frac: F64,
    hu: float,
    mode: _Mode,
) -> None:
    m = frac > 0.0
    if allowed is not None:
        m &= allowed[sl]
    if not m.any():
        return
    box = vol[sl]
    old = box.astype(np.float64)
    new = old + frac * (hu - old)
    if mode == "raise":
        new = np.maximum(new, old)
    elif mode == "lower":
        new = np.minimum(new, old)
    np.copyto(box, np.rint(new).astype(np.int16), where=m)


def _paint_tube(
    vol: I16,
    allowed: Bool | None,
    g: _Grid,
    p0: F64,
    p1: F64,
    r0: float,
    r1: float,
    hu: float,
    mode: _Mode,
) -> None:
    """Tapered tube (capsule) from p0 (radius r0) to p1 (radius r1); points are (z, y, x) mm."""
    h = min(g.spacing[1], g.spacing[2])
    pad = max(r0, r1) + h + g.spacing[0] / 2.0
    sl = g.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if sl is None:
        return
    zc, yc, xc = g.coords(sl)
    ab = p1 - p0
    l2 = max(float(ab @ ab), 1e-9)
    wy, wx = yc - p0[1], xc - p0[2]
    acc: F64 | None = None
    offs = _z_offsets(g)
    for off in offs:
        wz = zc + (off - p0[0])
        t = np.clip((wz * ab[0] + wy * ab[1] + wx * ab[2]) / l2, 0.0, 1.0)
        d = np.sqrt((wz - t * ab[0]) ** 2 + (wy - t * ab[1]) ** 2 + (wx - t * ab[2]) ** 2)
        f = np.clip((r0 + t * (r1 - r0) - d) / h + 0.5, 0.0, 1.0)
        acc = f if acc is None else acc + f
    assert acc is not None
    _composite(vol, allowed, sl, acc / len(offs), hu, mode)


def _paint_blob(
    vol: I16,
    allowed: Bool | None,
    g: _Grid,
    c: F64,
    r: float,
    hu: float,
    mode: _Mode,
    *,
    lobes: F64 | None = None,
    lobe_amp: float = 0.0,
    edge_mm: float | None = None,
) -> None:
    """Sphere (optionally lobulated) of nominal radius r at c (z, y, x) mm."""
    h = edge_mm if edge_mm is not None else min(g.spacing[1], g.spacing[2])
    rmax = r * (1.0 + lobe_amp) + h
    pad = rmax + g.spacing[0] / 2.0
    sl = g.box(c - pad, c + pad)
    if sl is None:
        return
    zc, yc, xc = g.coords(sl)
    wy, wx = yc - c[1], xc - c[2]
    acc: F64 | None = None
    offs = _z_offsets(g)
    for off in offs:
        wz = zc + (off - c[0])
        d = np.sqrt(wz**2 + wy**2 + wx**2)
        reff: F64 | float = r
        if lobes is not None and lobe_amp > 0.0:
            inv = 1.0 / np.maximum(d, 1e-6)
            bump = np.zeros(np.broadcast_shapes(wz.shape, wy.shape, wx.shape))
            for u in lobes:
                cosang = (wz * u[0] + wy * u[1] + wx * u[2]) * inv
                bump = np.maximum(bump, np.clip(cosang, 0.0, 1.0) ** 6)
            reff = r * (1.0 - 0.5 * lobe_amp + lobe_amp * bump)
        f = np.clip((reff - d) / h + 0.5, 0.0, 1.0)
        acc = f if acc is None else acc + f
    assert acc is not None
    _composite(vol, allowed, sl, acc / len(offs), hu, mode)


# --------------------------------------------------------------------------------------------
# Vessel and airway tree


@dataclass(frozen=True)
class _Piece:
    p0: F64
    p1: F64
    r0: float
    r1: float
    gen: int


class _LungSampler:
    """Draws random points inside either lung from a coarse list of lung voxels (built once)."""

    def __init__(self, g: _Grid, lung: Bool) -> None:
        self.g = g
        self.lung = lung
        self.kstep = max(1, g.shape[0] // 40)
        ks, is_, js = np.nonzero(lung[:: self.kstep, ::4, ::4])
        ks, is_, js = ks * self.kstep, is_ * 4, js * 4
        right = g.x[js] < 0.0  # patient's right is -x in LPS
        self.sides = [(ks[sel], is_[sel], js[sel]) for sel in (right, ~right)]

    def sample(self, rng: np.random.Generator, side: int, n: int) -> F64:
        """Up to n random (z, y, x) points inside one lung (side 0 = right, 1 = left)."""
        g = self.g
        ks, is_, js = self.sides[side]
        if ks.size == 0:
            return np.zeros((0, 3))
        pick = rng.integers(0, ks.size, size=n)
        pts = np.stack([g.z[ks[pick]], g.y[is_[pick]], g.x[js[pick]]], axis=1)
        # Jitter within the sampling cell, then keep those still inside the lung.
        cell = np.array([g.spacing[0] * self.kstep, 4 * g.spacing[1], 4 * g.spacing[2]])
        pts = pts + rng.uniform(-0.5, 0.5, size=pts.shape) * cell
        keep = [i for i in range(n) if _in_mask(g, self.lung, pts[i])]
        return np.asarray(pts[keep], dtype=np.float64)


def _in_mask(g: _Grid, mask: Bool, p: F64) -> bool:
    idx = g.index(p)
    return g.inside(idx) and bool(mask[idx])


def _grow_tree(
    g: _Grid,
    lung: Bool,
    rng: np.random.Generator,
    start: F64,
    pts: F64,
    radius: float,
    gen: int,
    out: list[_Piece],
) -> None:
    """Recursive space-filling tree: go part way to the attractors' centroid, split, recurse.

    Child radii follow Murray's law with flow proportional to the number of attractors served.
    """
    m = len(pts)
    if m == 0:
        return
    if m == 1:
        _add_polyline(rng, start, pts[0], radius, radius * 0.7, gen, out)
        return
    c = pts.mean(axis=0)
    end = start + (c - start) * rng.uniform(0.35, 0.6)
    if not _in_mask(g, lung, end):
        end = pts[int(np.argmin(((pts - end) ** 2).sum(axis=1)))]
    _add_polyline(rng, start, end, radius, radius * 0.93, gen, out)
    cov = np.cov((pts - c).T) if m > 2 else np.outer(pts[1] - pts[0], pts[1] - pts[0])
    _, vecs = np.linalg.eigh(cov)
    order = np.argsort((pts - c) @ vecs[:, -1])
    split = int(np.clip(round(m * rng.uniform(0.35, 0.65)), 1, m - 1))
    for group in (pts[order[:split]], pts[order[split:]]):
        rc = radius * 0.93 * (len(group) / m) ** (1.0 / 3.0)
        _grow_tree(g, lung, rng, end, group, rc, gen + 1, out)


def _add_polyline(
    rng: np.random.Generator,
    a: F64,
    b: F64,
    ra: float,
    rb: float,
    gen: int,
    out: list[_Piece],
) -> None:
    """Split a branch into <= 8 mm pieces with a gentle random bend."""
    length = float(np.linalg.norm(b - a))
    n = max(1, math.ceil(length / 8.0))
    bend = rng.normal(0.0, 0.06 * length, size=3)
    prev = a
    for i in range(1, n + 1):
        t = i / n
        p = a + t * (b - a) + (bend * math.sin(math.pi * t) if i < n else 0.0)
        out.append(_Piece(prev, p, ra + (t - 1 / n) * (rb - ra), ra + t * (rb - ra), gen))
        prev = p


def _draw_vessels(
    g: _Grid,
    a: _Anatomy,
    vol: I16,
    lung: Bool,
    sampler: _LungSampler,
    rng: np.random.Generator,
) -> list[_Piece]:
    """Pulmonary arteries (with paired bronchi) and veins; returns the painted vessel pieces."""
    s = a.s
    vessels: list[_Piece] = []
    n_attr = 450
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        hilum = np.array([a.z_hilum, a.lung_cy - 8.0 * s, sign * 36.0 * s])
        # Make sure the hilum is in the lung (walk laterally until it is).
        for _ in range(40):
            if _in_mask(g, lung, hilum):
                break
            hilum = hilum + np.array([0.0, 0.0, sign * 2.0 * s])
        # Arteries with bronchi alongside.
        arteries: list[_Piece] = []
        pts = sampler.sample(rng, side, n_attr)
        _grow_tree(g, lung, rng, hilum, pts, 5.5 * s, 0, arteries)
        # Veins drain lower and more anteriorly, towards the left atrium.
        vein_root = hilum + np.array([-0.08 * a.hl, -12.0 * s, sign * 4.0 * s])
        if not _in_mask(g, lung, vein_root):
            vein_root = hilum
        veins: list[_Piece] = []
        pts = sampler.sample(rng, side, n_attr)
        _grow_tree(g, lung, rng, vein_root, pts, 5.0 * s, 0, veins)
        for pc in arteries + veins:
            _paint_tube(vol, lung, g, pc.p0, pc.p1, pc.r0, pc.r1, HU_VESSEL, "raise")
        for pc in arteries:
            if pc.gen > 4 or pc.r0 < 1.2:
                continue
            off0 = _bronchus_offset(pc.p0, hilum, pc.r0)
            off1 = _bronchus_offset(pc.p1, hilum, pc.r1)
            b0, b1 = pc.p0 + off0, pc.p1 + off1
            rb0, rb1 = 0.8 * pc.r0, 0.8 * pc.r1
            _paint_tube(vol, lung, g, b0, b1, rb0, rb1, HU_AIRWAY_WALL, "raise")
            wall = max(0.6, 0.18 * rb0)
            _paint_tube(vol, lung, g, b0, b1, rb0 - wall, rb1 - wall, HU_AIRWAY_LUMEN, "lower")
        # Main bronchus from the carina to the hilum (through the mediastinum).
        carina = np.array([a.z_carina, a.spine_y - 46.0 * s, 0.0])
        hb = hilum + _bronchus_offset(hilum, hilum - np.array([1.0, 0, 0]), 5.5 * s)
        _paint_tube(vol, None, g, carina, hb, 8.0 * s, 6.0 * s, HU_AIRWAY_WALL, "blend")
        _paint_tube(vol, None, g, carina, hb, 6.5 * s, 4.7 * s, HU_AIR, "blend")
        vessels += arteries + veins
    return vessels


def _bronchus_offset(p: F64, hilum: F64, r: float) -> F64:
    """Offset of the bronchus from its artery: perpendicular to the hilum direction, in plane."""
    d = p - hilum
    perp = np.array([0.0, d[2], -d[1]])
    n = float(np.linalg.norm(perp))
    perp = np.array([0.0, 1.0, 0.0]) if n < 1e-6 else perp / n
    return perp * (1.85 * r + 0.5)


# --------------------------------------------------------------------------------------------
# Nodules


def _ball_mask(g: _Grid, c: F64, r: float) -> tuple[tuple[slice, slice, slice], Bool] | None:
    """Voxels of the ball (c, r); None unless the whole ball lies inside the volume."""
    lo = np.array(g.origin)
    hi = lo + (np.array(g.shape) - 1) * np.array(g.spacing)
    if np.any(c - r < lo) or np.any(c + r > hi):
        return None
    sl = g.box(c - r, c + r)
    if sl is None:
        return None
    zc, yc, xc = g.coords(sl)
    return sl, ((zc - c[0]) ** 2 + (yc - c[1]) ** 2 + (xc - c[2]) ** 2) <= r * r


def _clear_of_structures(g: _Grid, vol: I16, lung: Bool, c: F64, r: float) -> bool:
    """True if the lung part of the ball holds only parenchyma (no vessels, no other nodule)."""
    bm = _ball_mask(g, c, r)
    if bm is None:
        return False
    sl, m = bm
    m = m & lung[sl]
    return not bool((vol[sl][m] > -700).any())


def _lung_fraction(g: _Grid, lung: Bool, c: F64, r: float) -> float:
    """Fraction of the ball's voxels inside the lung (0 if the ball leaves the volume)."""
    bm = _ball_mask(g, c, r)
    if bm is None:
        return 0.0
    sl, m = bm
    n = int(np.count_nonzero(m))
    return float(np.count_nonzero(lung[sl] & m)) / n if n else 0.0


def _place_nodules(
    g: _Grid,
    vol: I16,
    lung: Bool,
    sampler: _LungSampler,
    vessels: list[_Piece],
    rng: np.random.Generator,
    count: int,
    dmin: float,
    dmax: float,
) -> tuple[NoduleTruth, ...]:
    kinds = [NODULE_KINDS[i] for i in rng.permutation(len(NODULE_KINDS))]
    placed: list[tuple[F64, float]] = []
    truths: list[NoduleTruth] = []
    attached = [p for p in vessels if 0.9 <= 0.5 * (p.r0 + p.r1) <= 3.0]
    dz = g.spacing[0]
    for n in range(count):
        kind = kinds[n % len(kinds)]
        lo = max(dmin, 6.0) if kind in ("part-solid", "ground-glass") and dmax >= 6.0 else dmin
        diam = float(rng.uniform(lo, dmax))
        for attempt in range(1200):
            if attempt and attempt % 300 == 0:
                diam = max(dmin * 0.5, diam * 0.8)  # hard to fit: try smaller
            r = diam / 2.0
            c = _candidate(g, lung, sampler, rng, kind, r, attached)
            if c is None:
                continue
            idx = g.index(c)
            if not g.inside(idx) or not lung[idx]:
                continue
            c = g.center(idx)  # truth centres sit on voxel centres
            if any(np.linalg.norm(c - pc) < r + pr + 3.0 for pc, pr in placed):
                continue
            if kind == "juxtapleural":
                frac = _lung_fraction(g, lung, c, r)
                if not 0.5 <= frac <= 0.93:
                    continue
                if not _clear_of_structures(g, vol, lung, c, r + 1.0):
                    continue
            elif kind == "vessel-attached":
                if _lung_fraction(g, lung, c, r + 1.0) < 0.999:
                    continue
                if not _clear_of_structures(g, vol, lung, c, max(r - 1.2, 0.6 * r)):
                    continue
            else:
                if _lung_fraction(g, lung, c, r + 1.5) < 0.999:
                    continue
                if not _clear_of_structures(g, vol, lung, c, r + 1.0):
                    continue
            _paint_nodule(g, vol, lung, rng, c, r, kind)
            placed.append((c, r))
            truths.append(
                NoduleTruth(
                    center_mm=(float(c[2]), float(c[1]), float(c[0])),
                    diameter_mm=round(diam, 2),
                    kind=kind,
                )
            )
            break
        else:
            raise RuntimeError(
                f"could not place a {kind} nodule of {diam:.1f} mm: lungs too small for the "
                f"requested nodules (slice step {dz} mm)"
            )
    return tuple(truths)


def _candidate(
    g: _Grid,
    lung: Bool,
    sampler: _LungSampler,
    rng: np.random.Generator,
    kind: str,
    r: float,
    attached: list[_Piece],
) -> F64 | None:
    """A proposed nodule centre (z, y, x) for the given kind, or None."""
    side = int(rng.integers(0, 2))
    if kind == "vessel-attached":
        if not attached:
            return None
        pc = attached[int(rng.integers(0, len(attached)))]
        ks = np.nonzero((g.z >= min(pc.p0[0], pc.p1[0])) & (g.z <= max(pc.p0[0], pc.p1[0])))[0]
        if ks.size == 0 or abs(pc.p1[0] - pc.p0[0]) < 1e-6:
            return None
        k = int(ks[int(rng.integers(0, ks.size))])
        t = (g.z[k] - pc.p0[0]) / (pc.p1[0] - pc.p0[0])
        on_axis = pc.p0 + t * (pc.p1 - pc.p0)
        rv = pc.r0 + t * (pc.r1 - pc.r0)
        axis = pc.p1 - pc.p0
        perp = np.array([0.0, axis[2], -axis[1]])
        nrm = float(np.linalg.norm(perp))
        ang = rng.uniform(0.0, 2.0 * math.pi)
        if nrm < 1e-6:
            perp = np.array([0.0, math.sin(ang), math.cos(ang)])
        else:
            perp = perp / nrm * (1.0 if rng.uniform() < 0.5 else -1.0)
        return np.asarray(on_axis + perp * (r + rv - 0.4), dtype=np.float64)
    pts = sampler.sample(rng, side, 1)
    if len(pts) == 0:
        return None
    p = np.asarray(pts[0], dtype=np.float64)
    if kind != "juxtapleural":
        return p
    # March in-plane towards the chest wall until leaving the lung, then step back inside.
    ang = rng.uniform(0.0, 2.0 * math.pi)
    direction = np.array([0.0, math.sin(ang), math.cos(ang)])
    step = 0.5 * min(g.spacing[1], g.spacing[2])
    q = p.copy()
    for _ in range(4000):
        nq = q + direction * step
        if not _in_mask(g, lung, nq):
            break
        q = nq
    else:
        return None
    return np.asarray(q - direction * r * rng.uniform(0.35, 0.6), dtype=np.float64)


def _paint_nodule(
    g: _Grid, vol: I16, lung: Bool, rng: np.random.Generator, c: F64, r: float, kind: str
) -> None:
    solid_hu = HU_SOLID + float(rng.uniform(-10.0, 10.0))
    if kind in ("ground-glass", "part-solid"):
        ggo_hu = HU_GGO + float(rng.uniform(-50.0, 50.0))
        edge = max(1.2, min(g.spacing[1], g.spacing[2]))
        _paint_blob(vol, lung, g, c, r, ggo_hu, "raise", edge_mm=edge)
        if kind == "part-solid":
            rc = r * float(rng.uniform(0.4, 0.6))
            _paint_blob(vol, lung, g, c, rc, solid_hu, "raise")
        return
    lobes = rng.normal(size=(6 if kind == "lobulated" else 3, 3))
    lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
    amp = 0.35 if kind == "lobulated" else 0.08
    _paint_blob(vol, lung, g, c, r, solid_hu, "raise", lobes=lobes, lobe_amp=amp)


# --------------------------------------------------------------------------------------------
# Noise, blur and the public generator


def _finish(vol: I16, rng: np.random.Generator) -> None:
    """Add noise and an in-plane [1,2,1] blur slab by slab, clip to the stored range, in place."""
    nz = vol.shape[0]
    for z0 in range(0, nz, _SLAB):
        sub = vol[z0 : z0 + _SLAB]
        f = rng.random(sub.shape, dtype=np.float32)
        f -= np.float32(0.5)
        f *= np.float32(_NOISE_AMPLITUDE)
        f += sub
        b = f * np.float32(0.5)
        b[:, :, 1:] += f[:, :, :-1] * np.float32(0.25)
        b[:, :, :-1] += f[:, :, 1:] * np.float32(0.25)
        b[:, :, 0] += f[:, :, 0] * np.float32(0.25)
        b[:, :, -1] += f[:, :, -1] * np.float32(0.25)
        c = b * np.float32(0.5)
        c[:, 1:, :] += b[:, :-1, :] * np.float32(0.25)
        c[:, :-1, :] += b[:, 1:, :] * np.float32(0.25)
        c[:, 0, :] += b[:, 0, :] * np.float32(0.25)
        c[:, -1, :] += b[:, -1, :] * np.float32(0.25)
        np.rint(c, out=c)
        np.clip(c, HU_MIN, HU_MAX, out=c)
        sub[...] = c


def make_chest_ct(
    *,
    seed: int,
    slices: int = 120,
    rows: int = 512,
    cols: int = 512,
    pixel_spacing_mm: float = 0.7,
    slice_spacing_mm: float = 2.5,
    nodule_count: int = 4,
    min_nodule_mm: float = 4.0,
    max_nodule_mm: float = 20.0,
) -> CtPhantom:
    """Generate a deterministic synthetic chest CT (HU, int16) with nodule truth.

    Nodule kinds cycle through a seed-shuffled order of NODULE_KINDS. Raises RuntimeError if the
    requested nodules cannot be fitted into the lungs of a very small volume.
    """
    if slices < 4 or rows < 32 or cols < 32:
        raise ValueError("volume too small: need at least 4 x 32 x 32 voxels")
    if not 0.0 < min_nodule_mm <= max_nodule_mm:
        raise ValueError("need 0 < min_nodule_mm <= max_nodule_mm")
    rng = np.random.default_rng(seed)
    g = _Grid.make((slices, rows, cols), (slice_spacing_mm, pixel_spacing_mm, pixel_spacing_mm))
    anatomy = _sample_anatomy(g, rng)
    vol, lung = _render_anatomy(g, anatomy, rng)
    sampler = _LungSampler(g, lung)
    vessels = _draw_vessels(g, anatomy, vol, lung, sampler, rng)
    nodules = _place_nodules(
        g, vol, lung, sampler, vessels, rng, nodule_count, min_nodule_mm, max_nodule_mm
    )
    _finish(vol, rng)
    z0, y0, x0 = g.origin
    return CtPhantom(
        hu=vol,
        spacing_mm=(slice_spacing_mm, pixel_spacing_mm, pixel_spacing_mm),
        origin_mm=(x0, y0, z0),
        nodules=nodules,
        lung_mask=lung,
    )


# --------------------------------------------------------------------------------------------
# DICOM writer


def write_ct_series(
    phantom: CtPhantom,
    out_dir: Path,
    *,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str | None = None,
    study_date: str = "20260101",
    accession_number: str = "",
    study_description: str = "CT CHEST",
    series_description: str = "Synthetic chest CT",
    uid_seed: str | None = None,
) -> WrittenSeries:
    """Write the phantom as one CT Image Storage file per slice (CT000001.dcm, ...).

    Pixel encoding: unsigned 16-bit words, BitsStored 12, RescaleIntercept -1024, slope 1, so the
    stored value is HU + 1024 (HU -1024..3071), the classic CT layout.
    """
    # Validation: dciodvfy (dicom3tools 1.00~20220618) reports 0 errors and 0 warnings for these
    # files, and dcentvfy finds the series consistent. No known warnings remain.
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = phantom.hu.shape
    dz, dy, dx = phantom.spacing_mm
    x0, y0, z0 = phantom.origin_mm
    study_uid = study_instance_uid or make_uid(uid_seed, "study")
    series_uid = make_uid(uid_seed, study_uid, "ct-series")
    frame_uid = make_uid(uid_seed, study_uid, "ct-frame-of-reference")
    study_time = "090000"
    sop_uids: list[str] = []
    paths: list[Path] = []
    stored = (np.clip(phantom.hu, HU_MIN, HU_MAX).astype(np.int32) + 1024).astype("<u2")
    for k in range(nz):
        sop_uid = make_uid(uid_seed, series_uid, "ct-instance", str(k))
        ds = Dataset()
        add_common_modules(
            ds,
            sop_class_uid=CTImageStorage,
            sop_instance_uid=sop_uid,
            patient_id=patient_id,
            patient_name=patient_name,
            study_instance_uid=study_uid,
            study_date=study_date,
            study_time=study_time,
            accession_number=accession_number,
            study_description=study_description,
            series_instance_uid=series_uid,
            series_number=1,
            series_description=series_description,
            modality="CT",
            instance_number=k + 1,
        )
        # General Series: PatientPosition is Type 2C, required for CT (head first supine).
        ds.PatientPosition = "HFS"
        ds.BodyPartExamined = "CHEST"
        # Frame of Reference.
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        # General Acquisition / General Image.
        ds.AcquisitionNumber = 1
        ds.AcquisitionDate = study_date
        ds.AcquisitionTime = study_time
        ds.ContentDate = study_date
        ds.ContentTime = study_time
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        # Image Plane: rows run along +x (L), columns along +y (P); IPP is the centre of the
        # first transmitted voxel in mm; PixelSpacing is [row spacing (y), column spacing (x)].
        z = z0 + k * dz
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.PixelSpacing = [_ds(dy), _ds(dx)]
        ds.SliceThickness = _ds(dz)
        ds.SpacingBetweenSlices = _ds(dz)
        ds.SliceLocation = _ds(z)
        # Image Pixel / CT Image.
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.KVP = "120"
        ds.XRayTubeCurrent = 200
        ds.ExposureTime = 500
        ds.ConvolutionKernel = "STANDARD"
        ds.ReconstructionDiameter = _ds(max(nx * dx, ny * dy))
        ds.DataCollectionDiameter = "500"
        ds.GantryDetectorTilt = "0"
        ds.RotationDirection = "CW"
        # VOI LUT: lung window first, mediastinal window second.
        ds.WindowCenter = ["-600", "40"]
        ds.WindowWidth = ["1500", "400"]
        ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
        ds.PixelData = stored[k].tobytes()
        ds["PixelData"].VR = "OW"
        path = out_dir / f"CT{k + 1:06d}.dcm"
        save_part10(ds, path)
        sop_uids.append(sop_uid)
        paths.append(path)
    return WrittenSeries(
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uids=tuple(sop_uids),
        paths=tuple(paths),
    )


def _ds(v: float) -> str:
    """Format a number as a DICOM DS: the most precise form that fits in 16 characters."""
    for digits in range(12, 0, -1):
        s = f"{v:.{digits}g}"
        if len(s) <= 16:
            return s
    raise ValueError(f"cannot encode {v} as DS")


def phantom_volume(phantom: CtPhantom, *, series_instance_uid: str = "") -> Volume:
    """The phantom as a core Volume (axial, LPS), without going through DICOM files."""
    sz, sy, sx = phantom.spacing_mm
    affine = affine_from_dicom(
        phantom.origin_mm, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (sy, sx), (0.0, 0.0, sz)
    )
    return Volume(voxels=phantom.hu, affine=affine, series_instance_uid=series_instance_uid)
