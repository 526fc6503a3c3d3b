"""Validation-only synthetic chest CT: a second phantom style, modelled independently of chest_ct.

The reference nodule model is trained on core.synthetic.chest_ct phantoms and scores much better
on them than on CT made by other code. This module exists to measure that gap: it is used ONLY to
validate models and must never feed training. It shares nothing with chest_ct.py but the result
types (CtPhantom, NoduleTruth) and the nodule kind names; what differs, on purpose:

- Anatomy in physical millimetres, not scaled to the field of view: a superellipse body (random
  shape) with skin, subcutaneous fat and muscle layers whose thickness varies around the body and
  along z; lungs as implicit surfaces (costal pleura, mediastinum, domed diaphragm with
  costophrenic recesses, apical caps, varying volume and asymmetry) with fissures and lobes; heart
  with pericardium and chambers; aorta (ascending, arch, descending), pulmonary trunk and arteries,
  SVC, azygos, IVC, oesophagus with some air, trachea, main and lobar bronchi with walls; ribs as
  curved tubes with a cortical shell, costal cartilage, vertebrae (body, disc, pedicles, laminae,
  spinous and transverse processes, costovertebral joints), scapulae, clavicles, sternum,
  paraspinal muscles; liver, spleen, stomach; lymph nodes; a curved CT table.
- Pulmonary arteries and veins grown per lobe by territory bisection with Murray's law radii;
  vessel density and calibre vary per seed. Airways follow the arteries (bronchovascular bundles).
- Nodules of eight kinds (NODULE_KINDS plus calcified and perifissural), 3-30 mm, with
  lobulated, irregular or spiculated star-shaped surfaces, placed by rules per kind.
- Imaging chain: analytic partial volume, a slice sensitivity profile, an MTF per kernel (smooth
  "standard"; sharp "lung" with edge overshoot), noise with a ramp-shaped kernel-dependent noise
  power spectrum that is strongest at the body centre, a per-scanner HU offset and scale,
  breathing blur on a few slices, and the scanner's padding value (-2000 or -3024) outside the
  circular reconstruction field of view, as clinical series have.

Geometry as in chest_ct: hu is indexed [slice, row, column], patient LPS in mm, slice 0 the most
inferior. Inside the reconstruction circle hu is clipped to -1024..3071; outside it holds the
padding value (core.synthetic.chest_ct.write_ct_series writes any CtPhantom and clips that to
-1024). Nodule truth: the centre lies on a voxel centre; diameter_mm is the equivalent-sphere
diameter of the nodule body (spicules excluded).

Generation works slab by slab in float32 (per-slice 2D maps, batched tube rasterisation, one FFT
pair per slice for MTF and noise): 280 x 512 x 512 takes 10-20 s on two shared cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from core.synthetic.chest_ct import NODULE_KINDS, CtPhantom, NoduleTruth

__all__ = [
    "VALIDATION_NODULE_KINDS",
    "Coverage",
    "ReconKernel",
    "make_validation_ct",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


class ReconKernel(StrEnum):
    """Reconstruction kernel of the simulated series."""

    STANDARD = "standard"  # smooth soft-tissue kernel
    LUNG = "lung"  # sharp kernel: higher resolution, edge overshoot, more high-frequency noise


class Coverage(StrEnum):
    """How much of the lungs the scan range holds."""

    FULL = "full"  # apices to costophrenic recesses, with margins
    PARTIAL = "partial"  # apices or bases (or both, for short ranges) outside the range


VALIDATION_NODULE_KINDS: tuple[str, ...] = (*NODULE_KINDS, "calcified", "perifissural")

HU_MIN = -1024
HU_MAX = 3071
_SLAB = 32  # output slices per slab
_MAX_CHUNK = 120_000  # voxels per batched tube evaluation (keeps temporaries in cache)


# --------------------------------------------------------------------------------------------
# Small numeric helpers (work on floats and on arrays)


def _ss(e0: float, e1: float, v: Any) -> Any:
    """Smoothstep rising from 0 at e0 to 1 at e1."""
    t = np.clip((v - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _window(v: Any, lo: float, hi: float, ramp: float) -> Any:
    """1 on [lo, hi], smooth ramps of width `ramp` outside, 0 beyond."""
    return _ss(lo - ramp, lo, v) * (1.0 - _ss(hi, hi + ramp, v))


def _ell_sd(du: Any, dv: Any, a: float, b: float, dw: Any = 0.0, c: float = 1.0) -> Any:
    """Approximate signed distance (mm, < 0 inside) to an ellipse/ellipsoid along the ray from
    its centre; du, dv, dw are offsets along its semi-axes a, b, c."""
    q = np.sqrt((du / a) ** 2 + (dv / b) ** 2 + (dw / c) ** 2)
    length = np.sqrt(du * du + dv * dv + dw * dw)
    rmin = np.minimum(np.minimum(a, b), c)
    return (q - 1.0) * (length + 1e-3) / (q + 1e-3 / rmin)


def _occ(sd: Any, w: float) -> F32:
    """Fraction of a voxel (width w mm) inside a surface at signed distance sd: analytic partial
    volume with a linear ramp."""
    o = np.asarray(sd, dtype=np.float32) * np.float32(-1.0 / w)
    o += np.float32(0.5)
    np.clip(o, 0.0, 1.0, out=o)
    return o


def _blend(img: F32, occ: F32, hu: Any) -> None:
    """img <- img + occ * (hu - img), in place (hu a number or an array)."""
    t = np.subtract(hu, img, dtype=np.float32)
    t *= occ
    img += t


def _unit(v: F64) -> F64:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else np.array([1.0, 0.0, 0.0])


def _perp(v: F64, rng: np.random.Generator) -> F64:
    """A random unit vector perpendicular to v."""
    a = rng.normal(size=3)
    a -= v * float(a @ v) / max(float(v @ v), 1e-12)
    return _unit(a)


def _spline(ctrl: list[tuple[float, float, float]], step: float = 3.0) -> F64:
    """Catmull-Rom curve through control points (z, y, x) sampled about every `step` mm."""
    p = np.asarray(ctrl, dtype=np.float64)
    if len(p) < 3:
        n = max(2, int(np.linalg.norm(p[-1] - p[0]) / step) + 1)
        t = np.linspace(0.0, 1.0, n)[:, None]
        return np.asarray(p[0] * (1.0 - t) + p[-1] * t)
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[:1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        n = max(2, int(np.linalg.norm(p2 - p1) / step) + 1)
        t = np.linspace(0.0, 1.0, n)[1:, None]
        seg = 0.5 * (
            2 * p1
            + (-p0 + p2) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
        )
        out.append(seg)
    return np.vstack(out)


def _fibonacci_sphere(n: int) -> F64:
    i = np.arange(n) + 0.5
    phi = np.arccos(1.0 - 2.0 * i / n)
    theta = math.pi * (1.0 + math.sqrt(5.0)) * i
    return np.stack([np.cos(phi), np.sin(phi) * np.sin(theta), np.sin(phi) * np.cos(theta)], axis=1)


_SPHERE = _fibonacci_sphere(1500)


# --------------------------------------------------------------------------------------------
# Grid


class _Grid:
    """Voxel grid; internal coordinates are (z, y, x) in mm, patient LPS."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        origin_zyx: tuple[float, float, float],
    ) -> None:
        self.nz, self.ny, self.nx = shape
        self.dz, self.dy, self.dx = spacing
        self.z0, self.y0, self.x0 = origin_zyx
        self.z = self.z0 + self.dz * np.arange(self.nz, dtype=np.float64)
        self.y = self.y0 + self.dy * np.arange(self.ny, dtype=np.float64)
        self.x = self.x0 + self.dx * np.arange(self.nx, dtype=np.float64)
        self.w3 = (self.dz + self.dy + self.dx) / 3.0  # partial-volume width for 3D surfaces

    def snap(self, p: F64) -> F64 | None:
        """The voxel centre nearest to p (z, y, x), or None outside the grid."""
        k = round((p[0] - self.z0) / self.dz)
        i = round((p[1] - self.y0) / self.dy)
        j = round((p[2] - self.x0) / self.dx)
        if not (0 <= k < self.nz and 0 <= i < self.ny and 0 <= j < self.nx):
            return None
        return np.array([self.z[k], self.y[i], self.x[j]])

    def rows(self, lo: float, hi: float) -> slice:
        return slice(
            int(np.searchsorted(self.y, lo)), int(np.searchsorted(self.y, hi, side="right"))
        )

    def cols(self, lo: float, hi: float) -> slice:
        return slice(
            int(np.searchsorted(self.x, lo)), int(np.searchsorted(self.x, hi, side="right"))
        )


# --------------------------------------------------------------------------------------------
# Tubes: capsules (segments with linearly varying radius) rasterised in batches


@dataclass(frozen=True, eq=False)
class _Caps:
    p0: F64  # (n, 3) z, y, x
    p1: F64
    r0: F64  # (n,)
    r1: F64
    zlo: F64
    zhi: F64

    @staticmethod
    def empty() -> _Caps:
        e3 = np.zeros((0, 3))
        e1 = np.zeros(0)
        return _Caps(e3, e3, e1, e1, e1, e1)


class _TubeSet:
    """Collects polylines with radii and splits them into short capsules (compact boxes)."""

    def __init__(self, voxel: float) -> None:
        self.voxel = voxel
        self._p0: list[F64] = []
        self._p1: list[F64] = []
        self._r0: list[F64] = []
        self._r1: list[F64] = []

    def add(self, pts: F64, radii: F64 | float) -> None:
        """A polyline (n, 3) with radii per point, or given at a few stations along it."""
        pts = np.asarray(pts, dtype=np.float64)
        r_in = np.atleast_1d(np.asarray(radii, dtype=np.float64))
        if len(r_in) == len(pts):
            r = r_in
        else:  # radii given at a few stations along the line: interpolate
            r = np.interp(np.linspace(0, 1, len(pts)), np.linspace(0, 1, len(r_in)), r_in)
        if len(pts) == 1:
            self._segments(pts, pts, r, r)
        else:
            self._segments(pts[:-1], pts[1:], r[:-1], r[1:])

    def add_many(self, pts: F64, radii: F64) -> None:
        """Many polylines at once: pts (b, m, 3), radii (b, m)."""
        self._segments(
            pts[:, :-1].reshape(-1, 3),
            pts[:, 1:].reshape(-1, 3),
            radii[:, :-1].reshape(-1),
            radii[:, 1:].reshape(-1),
        )

    def _segments(self, a: F64, b: F64, ra: F64, rb: F64) -> None:
        seg = np.linalg.norm(b - a, axis=1)
        piece = np.maximum(0.8, np.maximum(ra, rb) + self.voxel)
        n = np.maximum(1, np.ceil(seg / piece).astype(np.int64))
        rep = np.repeat(np.arange(len(a)), n)
        local = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        nn = np.repeat(n, n)
        frac0, frac1 = local / nn, (local + 1) / nn
        d, dr = (b - a)[rep], (rb - ra)[rep]
        self._p0.append(a[rep] + d * frac0[:, None])
        self._p1.append(a[rep] + d * frac1[:, None])
        self._r0.append(ra[rep] + dr * frac0)
        self._r1.append(ra[rep] + dr * frac1)

    def ball(self, c: F64, r: float) -> None:
        self.add(np.asarray(c, dtype=np.float64)[None, :], r)

    def build(self, shrink: float = 0.0) -> _Caps:
        """All capsules, radii reduced by `shrink` mm (inner layers: marrow, lumen)."""
        if not self._p0:
            return _Caps.empty()
        p0 = np.vstack(self._p0)
        p1 = np.vstack(self._p1)
        r0 = np.maximum(np.concatenate(self._r0) - shrink, 0.0)
        r1 = np.maximum(np.concatenate(self._r1) - shrink, 0.0)
        keep = (r0 > 0.05) | (r1 > 0.05)
        p0, p1, r0, r1 = p0[keep], p1[keep], r0[keep], r1[keep]
        rm = np.maximum(r0, r1)
        zlo = np.minimum(p0[:, 0], p1[:, 0]) - rm
        zhi = np.maximum(p0[:, 0], p1[:, 0]) + rm
        return _Caps(p0, p1, r0, r1, zlo, zhi)


@dataclass(frozen=True, eq=False)
class _Layer:
    """One rasterisation pass: capsules composited with one HU value."""

    caps: _Caps
    hu: float
    mode: str = "over"  # "over", "max" (ground glass) or "min" (emphysema)
    lung_excluded: bool = False  # voxels at least half covered leave the lung mask


_LADDER = np.array([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80,
                    96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512])  # fmt: skip


def _quantise(n: I64) -> I64:
    idx = np.searchsorted(_LADDER, n)
    return np.asarray(
        np.where(idx < len(_LADDER), _LADDER[np.minimum(idx, len(_LADDER) - 1)], n),
        dtype=np.int64,
    )


def _caps_occupancy(g: _Grid, z_first: float, nzs: int, caps: _Caps, sel: I64) -> tuple[I64, F32]:
    """Flat slab indices and occupancies of the selected capsules (union not yet taken)."""
    w = g.w3
    anisotropic = max(g.dz, g.dy, g.dx) > 1.5 * min(g.dz, g.dy, g.dx)
    p0, p1, r0, r1 = caps.p0[sel], caps.p1[sel], caps.r0[sel], caps.r1[sel]
    rm = np.maximum(r0, r1) + w
    lo = np.minimum(p0, p1) - rm[:, None]
    hi = np.maximum(p0, p1) + rm[:, None]
    k0 = np.maximum(np.ceil((lo[:, 0] - z_first) / g.dz), 0).astype(np.int64)
    k1 = np.minimum(np.floor((hi[:, 0] - z_first) / g.dz), nzs - 1).astype(np.int64)
    i0 = np.maximum(np.ceil((lo[:, 1] - g.y0) / g.dy), 0).astype(np.int64)
    i1 = np.minimum(np.floor((hi[:, 1] - g.y0) / g.dy), g.ny - 1).astype(np.int64)
    j0 = np.maximum(np.ceil((lo[:, 2] - g.x0) / g.dx), 0).astype(np.int64)
    j1 = np.minimum(np.floor((hi[:, 2] - g.x0) / g.dx), g.nx - 1).astype(np.int64)
    nk, ni, nj = k1 - k0 + 1, i1 - i0 + 1, j1 - j0 + 1
    ok = (nk > 0) & (ni > 0) & (nj > 0)
    if not ok.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    qk, qi, qj = _quantise(nk), _quantise(ni), _quantise(nj)
    key = (qk * 1024 + qi) * 1024 + qj
    key = np.where(ok, key, -1)
    idx_out: list[I64] = []
    occ_out: list[F32] = []
    d = p1 - p0
    inv_l2 = 1.0 / np.maximum((d * d).sum(axis=1), 1e-9)
    for kval in np.unique(key):
        if kval < 0:
            continue
        members = np.nonzero(key == kval)[0]
        bz, bi, bj = int(kval // (1024 * 1024)), int(kval // 1024 % 1024), int(kval % 1024)
        per = max(1, _MAX_CHUNK // (bz * bi * bj))
        for c0 in range(0, len(members), per):
            m = members[c0 : c0 + per]
            kk = k0[m][:, None] + np.arange(bz)[None, :]
            ii = i0[m][:, None] + np.arange(bi)[None, :]
            jj = j0[m][:, None] + np.arange(bj)[None, :]
            zz = (z_first + kk * g.dz - p0[m, 0:1]).astype(np.float32)[:, :, None, None]
            yy = (g.y0 + ii * g.dy - p0[m, 1:2]).astype(np.float32)[:, None, :, None]
            xx = (g.x0 + jj * g.dx - p0[m, 2:3]).astype(np.float32)[:, None, None, :]
            dz = d[m, 0].astype(np.float32)[:, None, None, None]
            dy = d[m, 1].astype(np.float32)[:, None, None, None]
            dx = d[m, 2].astype(np.float32)[:, None, None, None]
            il = inv_l2[m].astype(np.float32)[:, None, None, None]
            t = (zz * (dz * il) + yy * (dy * il)) + xx * (dx * il)
            np.clip(t, 0.0, 1.0, out=t)
            qz = zz - t * dz
            qy = yy - t * dy
            qx = xx - t * dx
            if anisotropic:
                # Partial-volume width: the voxel's extent along the surface normal.
                wv = np.abs(qz) * np.float32(g.dz)
                wv += np.abs(qy) * np.float32(g.dy)
                wv += np.abs(qx) * np.float32(g.dx)
            qz *= qz
            qy *= qy
            qx *= qx
            qz += qy
            qz += qx
            dist = np.sqrt(qz, out=qz)
            ra = r0[m].astype(np.float32)[:, None, None, None]
            rb = r1[m].astype(np.float32)[:, None, None, None]
            rad = ra + t * (rb - ra)
            occ = rad - dist
            if anisotropic:
                wv += np.float32(1e-3 * w)
                occ *= (dist + np.float32(1e-3)) / wv
            else:
                occ *= np.float32(1.0 / w)
            occ += np.float32(0.5)
            np.clip(occ, 0.0, 1.0, out=occ)
            # Thin tubes: cap the peak at their cross-section area over a voxel's.
            thin = rad * rad * np.float32(math.pi / (w * w))
            np.minimum(thin, 1.0, out=thin)
            occ *= thin
            valid = (
                (kk < nzs)[:, :, None, None]
                & (ii < g.ny)[:, None, :, None]
                & (jj < g.nx)[:, None, None, :]
            )
            occ *= valid
            flat = (
                np.minimum(kk, nzs - 1)[:, :, None, None] * g.ny
                + np.minimum(ii, g.ny - 1)[:, None, :, None]
            ) * g.nx + np.minimum(jj, g.nx - 1)[:, None, None, :]
            keep = occ > 0.0
            idx_out.append(flat[keep])
            occ_out.append(occ[keep])
    if not idx_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(idx_out), np.concatenate(occ_out)


def _paint_layer(
    g: _Grid, slab: F32, lung: Bool, scratch: F32, z_first: float, layer: _Layer
) -> None:
    """Composite one tube layer into the slab (union of its capsules by max occupancy)."""
    caps = layer.caps
    nzs = slab.shape[0]
    z_last = z_first + (nzs - 1) * g.dz
    sel = np.nonzero((caps.zhi >= z_first - g.dz) & (caps.zlo <= z_last + g.dz))[0]
    if sel.size == 0:
        return
    idx, occ = _caps_occupancy(g, z_first, nzs, caps, sel)
    if idx.size == 0:
        return
    flat_s = scratch.reshape(-1)
    np.maximum.at(flat_s, idx, occ)
    occ_u = flat_s[idx]
    flat_img = slab.reshape(-1)
    cur = flat_img[idx]
    if layer.mode == "max":
        target = np.maximum(cur, np.float32(layer.hu))
    elif layer.mode == "min":
        target = np.minimum(cur, np.float32(layer.hu))
    else:
        target = np.full_like(cur, layer.hu)
    flat_img[idx] = cur + occ_u * (target - cur)
    flat_s[idx] = 0.0
    if layer.lung_excluded:
        lung.reshape(-1)[idx[occ_u >= 0.5]] = False


# --------------------------------------------------------------------------------------------
# Anatomy


class _Anatomy:
    """One patient, drawn per seed: analytic surfaces in (z, y, x) mm plus per-slice rendering.

    Body wall layers are polar radius functions around the body centre (angle maps precomputed
    once, z-dependent scalars per slice); lungs are the intersection of implicit surfaces.
    """

    def __init__(
        self,
        g: _Grid,
        rng: np.random.Generator,
        coverage: Coverage,
        contrast: bool,
    ) -> None:
        self.g = g
        self.contrast = contrast
        fov = min(g.nx * g.dx, g.ny * g.dy)
        u = rng.uniform
        # --- body outline and wall layers (mm) -----------------------------------------------
        self.a0 = float(np.clip(u(135.0, 185.0), 125.0, max(125.0, 0.47 * fov)))
        self.S = self.a0 / 160.0
        self.ba0 = self.a0 * u(0.58, 0.70)
        self.bp0 = self.a0 * u(0.66, 0.76)
        self.pexp = u(2.0, 2.6)
        self.xc = u(-8.0, 8.0)
        self.yc = u(-8.0, 12.0)
        self.abd = u(0.0, 25.0) * self.S
        self.t_skin = u(1.5, 2.5)
        self.tf0 = u(4.0, 10.0) + rng.exponential(6.0)
        self.tm0 = u(3.0, 6.0)
        self.tpec = u(6.0, 16.0)
        self.ttrap = u(5.0, 12.0)
        self.tlat = u(4.0, 10.0)
        self.t_w = u(9.0, 12.0)
        self.t_epf = u(0.4, 1.2) + 0.05 * self.tf0
        # --- table under the back ------------------------------------------------------------
        self.y_tt0 = self.yc + self.bp0 * u(0.90, 0.96)
        self.t_pad = u(0.0, 8.0)
        self.k_tab = u(4e-4, 9e-4)
        self.x_tab = u(-5.0, 5.0)
        self.tab_half = u(200.0, 240.0)
        self.tab_core = u(25.0, 45.0)
        # --- z frame: u = 0 at the lung apex, 1 at the deepest costophrenic recess ------------
        extent = g.nz * g.dz
        z_top = g.z0 + (g.nz - 1) * g.dz
        h_phys = u(225.0, 285.0)
        if coverage is Coverage.FULL:
            m_top, m_bot = u(0.02, 0.08) * extent, u(0.04, 0.12) * extent
            h = extent - m_top - m_bot
            if h > 1.15 * h_phys:
                m_top += (h - h_phys) * u(0.3, 0.7)
                h = h_phys
            self.H = max(h, 20.0)
            self.z_apex = z_top - m_top
        else:
            self.H = h_phys
            span = extent / h_phys
            if span >= 0.9:
                top_u = u(0.08, 0.3) if rng.random() < 0.5 else u(0.6, 0.85) - span
            else:
                top_u = u(-0.05, 1.05 - span)
            self.z_apex = z_top + top_u * self.H
        hs = self.H / 250.0
        self.hs = hs
        # --- spine ---------------------------------------------------------------------------
        self.pitch = 1.05 * self.H / 12.0
        self.a_v0 = u(15.0, 19.0) * self.S**0.5
        self.b_v0 = u(12.0, 15.0) * self.S**0.5
        self.rc = u(7.0, 9.0)
        self.l_post = u(24.0, 30.0) * self.S**0.5
        self.sc0 = u(-3.0, 3.0)
        self.sc_amp = u(-6.0, 6.0) if rng.random() < 0.4 else u(-1.5, 1.5)
        self.m_off = u(-4.0, 4.0)
        self.v_shell = u(1.0, 1.6)
        # --- tissues (HU) --------------------------------------------------------------------
        self.hu_fat = u(-110.0, -88.0)
        self.hu_medfat = self.hu_fat + u(0.0, 20.0)
        self.hu_skin = u(15.0, 45.0)
        self.hu_muscle = u(42.0, 55.0) + (u(5.0, 15.0) if contrast else 0.0)
        self.hu_blood = u(150.0, 300.0) if contrast else u(35.0, 50.0)
        self.hu_pblood = self.hu_blood * u(0.9, 1.1) if contrast else self.hu_blood
        self.hu_myo = u(100.0, 140.0) if contrast else self.hu_blood + u(5.0, 12.0)
        self.hu_liver = u(95.0, 125.0) if contrast else u(50.0, 68.0)
        self.hu_spleen = u(105.0, 135.0) if contrast else u(42.0, 52.0)
        self.hu_thyroid = u(130.0, 180.0) if contrast else u(70.0, 100.0)
        self.hu_lymph = u(60.0, 90.0) if contrast else u(35.0, 55.0)
        self.hu_cortex = u(650.0, 1000.0)
        self.hu_marrow = u(170.0, 300.0)
        self.hu_disc = u(75.0, 100.0)
        self.hu_csf = u(12.0, 32.0)
        self.hu_cartilage = u(80.0, 140.0)
        self.hu_pleura = u(-20.0, 30.0)
        self.lung_l0 = u(-890.0, -862.0)
        self.lung_grad = u(20.0, 50.0)
        # --- per-slice maps on the body's bounding box (the rest of a slice is table and air) ---
        self.bg = self._background()
        ant = 1.2 * self.ba0 + self.abd + 45.0 * self.S + 5.0
        self.box = (
            g.rows(self.yc - ant, self.y_tt0 + 2.0),
            g.cols(self.xc - 1.05 * self.a0 - 3.0, self.xc + 1.05 * self.a0 + 3.0),
        )
        self.ys1, self.xs1 = g.y[self.box[0]], g.x[self.box[1]]
        x2 = self.xs1.astype(np.float32)[None, :]
        y2 = self.ys1.astype(np.float32)[:, None]
        self.X, self.Y = x2, y2
        dx2 = x2 - np.float32(self.xc)
        dy2 = y2 - np.float32(self.yc)
        r2 = np.sqrt(dx2 * dx2 + dy2 * dy2) + np.float32(1e-3)
        self.r2 = r2.astype(np.float32)
        self.M2 = {
            k: np.asarray(v, dtype=np.float32) for k, v in self._maps(dx2 / r2, dy2 / r2).items()
        }
        self.delta2 = np.arctan2(np.abs(dx2 / r2), dy2 / r2).astype(np.float32)
        self.table_sd = (y2 - self._y_table(x2)).astype(np.float32)
        # Cavity size at mid level (for placing organs).
        probe_c = np.array([1.0, -1.0, 0.0, 0.0])
        probe_s = np.array([0.0, 0.0, 1.0, -1.0])
        _, _, _, rc = self._radii(self._maps(probe_c, probe_s), self._cf(np.full(4, 0.6)))
        self.A_c = float(0.5 * (rc[0] + rc[1]))
        self.B_p = float(rc[2])
        self.B_a = float(rc[3])
        self.y_ant = self.yc - self.B_a
        # --- mediastinum, heart, diaphragm, apices, fissures ---------------------------------
        s = self.S
        self.wb_up = u(20.0, 27.0) * s
        self.wb_mid = u(14.0, 19.0) * s
        self.wb_low = u(10.0, 15.0) * s
        self.heart_phi = -math.radians(u(30.0, 50.0))
        self.heart_a = u(52.0, 64.0) * s
        self.heart_b = u(36.0, 46.0) * s
        self.heart_c = u(48.0, 60.0) * hs
        self.t_peric = u(2.5, 6.5)
        ca, sa = math.cos(self.heart_phi), math.sin(self.heart_phi)
        ext_y = math.hypot(self.heart_a * sa, self.heart_b * ca)
        self.heart_x = self.x_m(0.6) + u(12.0, 26.0) * s
        self.heart_y = self.y_ant + self.t_peric + ext_y * u(0.92, 1.05)
        self.u_dome_r = u(0.66, 0.74)
        self.u_dome_l = self.u_dome_r + u(0.02, 0.06)
        self.t_dia = u(3.0, 5.0)
        self.z_base = self.zu(1.0)
        xm = self.x_m(0.7)
        self._dome = [
            (xm - 0.45 * self.A_c, self.yc - 0.15 * self.B_a, self.zu(self.u_dome_r)),
            (xm + 0.45 * self.A_c, self.yc - 0.10 * self.B_a, self.zu(self.u_dome_l)),
        ]
        self._cap = [
            (xm - 0.42 * self.A_c, self.yc + 0.2 * self.B_p, self.z_apex),
            (xm + 0.42 * self.A_c, self.yc + 0.2 * self.B_p, self.z_apex - u(0.0, 8.0)),
        ]
        self.cap_depth = u(0.22, 0.30) * self.H
        # The heart rests on the diaphragm: its centre lies about half its height above it.
        self.heart_z = float(self.zdia(self.heart_x, self.heart_y)) + self.heart_c * u(0.5, 0.65)
        self._fis = []
        for _ in range(2):
            self._fis.append(
                (
                    self.zu(u(0.26, 0.36)),
                    self.zu(u(0.84, 0.95)),
                    u(-0.08, 0.08) * self.H,
                    u(-0.6, -0.25),
                )
            )
        self.z_minor = self.zu(u(0.42, 0.52))
        self.minor_tilt = (u(-0.08, 0.08), u(-0.05, 0.05))
        self.t_fissure = u(0.15, 0.3)
        # --- sternum, scapulae, breasts, abdomen ---------------------------------------------
        self.u_man = u(0.06, 0.13)
        self.u_angle = self.u_man + u(0.14, 0.2)
        self.u_xiph = u(0.72, 0.8)
        self.st_half = u(13.0, 17.0) * s
        self.st_thick = u(5.0, 7.0)
        self.scap_u0 = u(-0.12, -0.02)
        self.scap_u1 = u(0.40, 0.50)
        self.scap_off = u(6.0, 12.0)
        self.breast = None
        if rng.random() < 0.45:
            self.breast = (u(10.0, 35.0) * s, u(50.0, 70.0) * s, u(0.40, 0.52), u(0.3, 0.9))
        self.liver_ext = u(20.0, 40.0) * s
        self.spleen_r = (u(25.0, 32.0) * s, u(40.0, 55.0) * s, u(45.0, 60.0) * hs)
        self.stomach_r = (u(32.0, 45.0) * s, u(28.0, 40.0) * s, u(40.0, 55.0) * hs)
        self.stomach_gas = u(0.05, 0.4)
        # --- lung density and texture ------------------------------------------------------
        self.atelectasis = u(3.0, 9.0) if rng.random() < 0.35 else 0.0
        self.hu_atel = u(-650.0, -350.0)
        # --- cavity box (inside the body box): all pleural, pulmonary and abdominal work -----
        reach = np.zeros(self.r2.shape, dtype=np.bool_)
        for uu in np.linspace(-0.4, 1.4, 10):
            cf = {k: float(v) for k, v in self._cf(uu).items()}
            reach |= self.r2 < self._radii(self.M2, cf)[3] + 8.0
        rows_any, cols_any = np.nonzero(reach.any(axis=1))[0], np.nonzero(reach.any(axis=0))[0]
        if len(rows_any) == 0 or len(cols_any) == 0:
            rows_any = cols_any = np.zeros(1, dtype=np.int64)
        self.cb = (
            slice(int(rows_any[0]), int(rows_any[-1]) + 1),
            slice(int(cols_any[0]), int(cols_any[-1]) + 1),
        )
        self.ys2, self.xs2 = self.ys1[self.cb[0]], self.xs1[self.cb[1]]
        x3 = self.xs2.astype(np.float32)[None, :]
        y3 = self.ys2.astype(np.float32)[:, None]
        self.X2, self.Y2 = x3, y3
        self.Mtrap2 = np.clip(self.M2["Mtrap"][self.cb] * 3.0, 0.0, 1.0)
        waves = []
        for _ in range(3):
            d = _unit(rng.normal(size=3))
            k = 2.0 * math.pi / u(18.0, 60.0)
            waves.append((k * d, u(0.0, 2.0 * math.pi), u(2.0, 5.0)))
        self._waves = [
            (
                np.cos(kv[1] * y3 + kv[2] * x3).astype(np.float32),
                np.sin(kv[1] * y3 + kv[2] * x3).astype(np.float32),
                float(kv[0]),
                ph,
                amp,
            )
            for kv, ph, amp in waves
        ]
        self.lung_gy = (
            self.lung_l0
            + self.lung_grad * np.clip((y3 - self.y_ant) / (self.B_a + self.B_p), 0.0, 1.0) ** 1.3
        ).astype(np.float32)
        # --- height maps of the z-surfaces on the cavity box --------------------------------
        x2d = np.broadcast_to(self.xs2[None, :], (len(self.ys2), len(self.xs2)))
        y2d = np.broadcast_to(self.ys2[:, None], x2d.shape)
        self.Zdia, self.Gdia = self._surface_maps(self.zdia, x2d, y2d)
        self.Zcap, self.Gcap = self._surface_maps(self.zcap, x2d, y2d)
        self.Zfis, self.Gfis = self._surface_maps(self.zfis, x2d, y2d)
        self.Zmin, self.Gmin = self._surface_maps(self.zminor, x2d, y2d)
        tf = self.t_fissure
        self.Wdia = (g.dx + (g.dz - g.dx) * self.Gdia).astype(np.float32)
        self.Wcap = (g.dx + (g.dz - g.dx) * self.Gcap).astype(np.float32)
        wfis = g.dx + (g.dz - g.dx) * self.Gfis
        wmin = g.dx + (g.dz - g.dx) * self.Gmin
        self.HWfis, self.IWfis = ((wfis + tf) / 2).astype(np.float32), (1 / wfis).astype(np.float32)
        self.HWmin, self.IWmin = ((wmin + tf) / 2).astype(np.float32), (1 / wmin).astype(np.float32)
        # Row/column envelopes of each surface, widened by the height over which it can touch a
        # voxel, to restrict per-slice work to where a surface matters.
        self._env: dict[str, tuple[F64, F64, F64, F64]] = {}
        for name, zm, gm, wm in (
            ("dia", self.Zdia, self.Gdia, self.Wdia),
            ("cap", self.Zcap, self.Gcap, self.Wcap),
            ("fis", self.Zfis, self.Gfis, wfis),
            ("min", self.Zmin, self.Gmin, wmin),
        ):
            reach_z = np.minimum(0.5 * (wm + tf) / gm + 0.5, 60.0)
            lo, hi = zm - reach_z, zm + reach_z
            self._env[name] = (lo.min(axis=1), hi.max(axis=1), lo.min(axis=0), hi.max(axis=0))
        self.right2 = (x3 < xm).astype(np.float32)
        self.liver_x = (
            self.x_m(0.9) + self.liver_ext * (1.0 - _ss(self.yc - 40.0, self.yc + 30.0, y3)) - 12.0
        ).astype(np.float32)

    # ---- frame and landmarks -----------------------------------------------------------------

    def zu(self, uu: float) -> float:
        return self.z_apex - uu * self.H

    def uz(self, z: Any) -> Any:
        return (self.z_apex - z) / self.H

    def x_s(self, uu: Any) -> Any:
        return self.xc + self.sc0 + self.sc_amp * np.sin(math.pi * np.clip(uu, 0.0, 1.0))

    def x_m(self, uu: Any) -> Any:
        return self.x_s(uu) + self.m_off

    def a_v(self, uu: Any) -> Any:
        return self.a_v0 * (0.82 + 0.34 * np.clip(uu, -0.1, 1.1))

    def b_v(self, uu: Any) -> Any:
        return self.b_v0 * (0.85 + 0.3 * np.clip(uu, -0.1, 1.1))

    def y_vb(self, uu: Any) -> Any:
        """Vertebral body centre (y): measured forward from the back skin."""
        cf = self._cf(uu)
        back = np.minimum(self.yc + self.bp0 * cf["sw"], self.y_tt0)
        return back - self.t_skin - 0.5 * cf["tf"] - (self.l_post + 2.0 * self.rc + self.b_v(uu))

    # ---- body wall: angle maps x z-scalars -------------------------------------------------

    def _maps(self, c: Any, s: Any) -> dict[str, Any]:
        """Angle-dependent wall factors at unit directions (c, s) from the body centre."""
        b = np.where(s < 0.0, self.ba0, self.bp0)
        p = self.pexp
        r0 = (np.abs(c / self.a0) ** p + np.abs(s / b) ** p) ** (-1.0 / p)
        ac = np.abs(c)
        return {
            "R0": r0,
            "A": np.maximum(0.0, -s) ** 2,
            "Mf": 0.75 + 0.35 * c * c + 0.25 * np.maximum(0.0, s),
            "Mpec": np.exp(-((ac - 0.55) ** 2 + (s + 0.8) ** 2) / 0.08),
            "Mtrap": np.maximum(0.0, s) ** 4,
            "Mlat": np.exp(-((ac - 0.8) ** 2 + (s - 0.45) ** 2) / 0.1),
        }

    def body_radius(self, c: Any, s: Any) -> Any:
        """Body outline radius (mm, mid-chest) in direction (c, s) from the body centre."""
        return self._maps(c, s)["R0"]

    def _cf(self, uu: Any) -> dict[str, Any]:
        """z-dependent wall scalars at normalised height uu."""
        return {
            "sw": 1.0 - 0.06 * (1.0 - _ss(-0.05, 0.3, uu)) + 0.03 * _ss(0.7, 1.1, uu),
            "eab": self.abd * _ss(0.75, 1.15, uu),
            "tf": self.tf0 * (1.0 + 0.45 * _ss(0.55, 1.05, uu)),
            "pec": self.tpec * _window(uu, 0.0, 0.45, 0.2),
            "trap": self.ttrap * (1.0 - _ss(0.1, 0.5, uu)),
            "lat": self.tlat * _window(uu, 0.35, 0.9, 0.2),
            "scav": 0.8 + 0.2 * _ss(-0.1, 0.4, uu),
        }

    def _radii(self, m: dict[str, Any], cf: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
        """Body, fat-inner, muscle-inner and pleural (cavity) radii."""
        rb = cf["sw"] * m["R0"] + cf["eab"] * m["A"]
        rf = rb - (self.t_skin + cf["tf"] * m["Mf"])
        rm = rf - (
            self.tm0 + cf["pec"] * m["Mpec"] + cf["trap"] * m["Mtrap"] + cf["lat"] * m["Mlat"]
        )
        rc = cf["scav"] * (rm - self.t_w)
        return rb, rf, rm, rc

    def wall_point(self, delta: Any, side: float, uu: Any, depth: float) -> F64:
        """(z, y, x) at angle delta from the posterior midline on `side` (+1 left, -1 right),
        `depth` mm outside the pleura (negative: inside the lung); arrays give (n, 3)."""
        delta, uu = np.asarray(delta, dtype=np.float64), np.asarray(uu, dtype=np.float64)
        c, s = side * np.sin(delta), np.cos(delta)
        _, _, _, rc = self._radii(
            self._maps(np.atleast_1d(c), np.atleast_1d(s)), self._cf(np.atleast_1d(uu))
        )
        r = rc + depth
        out = np.stack(
            [self.z_apex - np.atleast_1d(uu) * self.H, self.yc + r * s, self.xc + r * c], axis=-1
        )
        return np.asarray(out[0] if delta.ndim == 0 and uu.ndim == 0 else out)

    # ---- table and background ----------------------------------------------------------------

    def _y_table(self, x: Any) -> Any:
        return self.y_tt0 - self.k_tab * (x - self.x_tab) ** 2

    def _background(self) -> F32:
        """Air, the pad and the carbon-fibre table: identical on every slice."""
        g = self.g
        img = np.full((g.ny, g.nx), -1000.0, dtype=np.float32)
        x = g.x.astype(np.float32)[None, :]
        y = g.y.astype(np.float32)[:, None]
        d = (y - self._y_table(x)).astype(np.float32)  # mm below the pad top
        inside_x = _occ(np.abs(x - np.float32(self.x_tab)) - np.float32(self.tab_half), g.dx)
        layers = [
            (0.0, -780.0),
            (self.t_pad, 250.0),
            (self.t_pad + 2.5, -960.0),
            (self.t_pad + 2.5 + self.tab_core, 250.0),
            (self.t_pad + 5.0 + self.tab_core, -1000.0),
        ]
        for top, hu in layers:
            _blend(img, _occ(np.float32(top) - d, g.dy) * inside_x, hu)
        return img

    # ---- implicit surfaces --------------------------------------------------------------------

    def _surface_maps(self, fn: Any, x: F64, y: F64) -> tuple[F32, F32]:
        """Height map z = fn(x, y) and the cosine of its slope (to turn dz into a distance)."""
        h = 0.5
        z = fn(x, y)
        gx = (fn(x + h, y) - fn(x - h, y)) / (2 * h)
        gy = (fn(x, y + h) - fn(x, y - h)) / (2 * h)
        return z.astype(np.float32), (1.0 / np.sqrt(1.0 + gx * gx + gy * gy)).astype(np.float32)

    def zdia(self, x: Any, y: Any) -> Any:
        """Diaphragm height: two domes sloping into lateral and posterior recesses."""
        zs = []
        for xd, yd, zd in self._dome:
            by = np.where(y > yd, 0.9 * self.B_p, 1.4 * self.B_a)
            q = ((x - xd) / (0.62 * self.A_c)) ** 2 + ((y - yd) / by) ** 2
            zs.append(zd - (zd - self.z_base) * np.minimum(q, 2.0))
        xm = self.x_m(0.7)
        wl = _ss(xm - 25.0, xm + 25.0, x)
        return zs[0] * (1.0 - wl) + zs[1] * wl

    def zcap(self, x: Any, y: Any) -> Any:
        """Upper lung boundary: an apical cap per side."""
        zs = []
        for xa, ya, za in self._cap:
            # Rounded dome, reaching the anterior chest wall soonest (the apex is posterior).
            by = np.where(y < ya, 1.3 * (self.B_a + 0.2 * self.B_p), 0.85 * self.B_p)
            q = ((x - xa) / (0.62 * self.A_c)) ** 2 + ((y - ya) / by) ** 2
            zs.append(za - self.cap_depth * q**0.8)
        return np.where(x < self.x_m(0.3), zs[0], zs[1])

    def zfis(self, x: Any, y: Any) -> Any:
        """Major fissure height per side: high at the back, low in front."""
        y_p, y_a = self.yc + 0.9 * self.B_p, self.yc - 0.9 * self.B_a
        t = (y_p - y) / (y_p - y_a)
        xm = self.x_m(0.5)
        zs = []
        for zp, za, kap, tau in self._fis:
            zs.append(
                zp + (za - zp) * t + kap * t * (1.0 - t) + tau * (np.abs(x - xm) - 0.5 * self.A_c)
            )
        return np.where(x < xm, zs[0], zs[1])

    def zminor(self, x: Any, y: Any) -> Any:
        """Right minor (horizontal) fissure height."""
        return (
            self.z_minor + self.minor_tilt[0] * (y - self.yc) + self.minor_tilt[1] * (x - self.xc)
        )

    def band_sd(self, x: Any, y: Any, uu: Any) -> Any:
        """Mediastinal band between the lungs, narrowest at the anterior junction."""
        wb = (
            self.wb_up * (1.0 - _ss(0.25, 0.45, uu))
            + self.wb_mid * _ss(0.25, 0.45, uu) * (1.0 - _ss(0.7, 0.9, uu))
            + self.wb_low * _ss(0.7, 0.9, uu)
        )
        fy = 0.35 + 0.65 * _ss(self.y_ant - 5.0, self.y_ant + 60.0, y)
        return np.abs(x - self.x_m(uu)) - wb * fy

    def bump_sd(self, x: Any, y: Any, uu: Any) -> Any:
        """Spine and paravertebral region, which the pleural cavity wraps around."""
        return _ell_sd(
            x - self.x_s(uu), y - (self.y_vb(uu) + 18.0), self.a_v(uu) + 5.0, self.b_v(uu) + 20.0
        )

    def heart_local(self, z: Any, y: Any, x: Any) -> tuple[Any, Any, Any]:
        ca, sa = math.cos(self.heart_phi), math.sin(self.heart_phi)
        dx, dy = x - self.heart_x, y - self.heart_y
        return dx * ca + dy * sa, -dx * sa + dy * ca, z - self.heart_z

    def outside_heart(self, p: F64, margin: float = 2.0) -> F64:
        """Points (..., 3) inside the pericardial sac pushed out to just beyond it (vessel and
        airway trees are grown straight towards their territories and would cross the heart)."""
        du, dv, dw = self.heart_local(p[..., 0], p[..., 1], p[..., 2])
        t = self.t_peric + margin
        rho = np.sqrt(
            (du / (self.heart_a + t)) ** 2
            + (dv / (self.heart_b + t)) ** 2
            + (dw / (self.heart_c + t)) ** 2
        )
        f = np.where(rho < 1.0, 1.0 / np.maximum(rho, 0.05), 1.0)
        du, dv, dw = du * f, dv * f, dw * f
        ca, sa = math.cos(self.heart_phi), math.sin(self.heart_phi)
        return np.stack(
            [self.heart_z + dw, self.heart_y + du * sa + dv * ca, self.heart_x + du * ca - dv * sa],
            axis=-1,
        )

    def sac_sd(self, z: Any, y: Any, x: Any) -> Any:
        """Pericardial sac (heart plus epicardial fat); its floor is the diaphragm."""
        du, dv, dw = self.heart_local(z, y, x)
        t = self.t_peric
        return _ell_sd(du, dv, self.heart_a + t, self.heart_b + t, dw, self.heart_c + t)

    def lung_parts(self, z: F64, y: F64, x: F64) -> dict[str, F64]:
        """Signed distances (mm, < 0 inside) of points to the lung and to its bounding surfaces."""
        uu = self.uz(z)
        dx, dy = x - self.xc, y - self.yc
        r = np.sqrt(dx * dx + dy * dy) + 1e-6
        _, _, _, rc = self._radii(self._maps(dx / r, dy / r), self._cf(uu))
        costal = r - rc
        cav = np.maximum(costal, -self.bump_sd(x, y, uu))
        dia = (z - self.zdia(x, y)) * self._g_at(self.zdia, x, y)
        med = np.minimum(self.band_sd(x, y, uu), np.maximum(self.sac_sd(z, y, x), self.t_dia - dia))
        cap = (z - self.zcap(x, y)) * self._g_at(self.zcap, x, y)
        lung = np.maximum(np.maximum(cav, -med), np.maximum(-dia, cap))
        return {"lung": lung, "costal": costal, "med": med, "dia": dia, "cap": cap}

    def _g_at(self, fn: Any, x: F64, y: F64) -> F64:
        h = 0.5
        gx = (fn(x + h, y) - fn(x - h, y)) / (2 * h)
        gy = (fn(x, y + h) - fn(x, y - h)) / (2 * h)
        return np.asarray(1.0 / np.sqrt(1.0 + gx * gx + gy * gy), dtype=np.float64)

    def fissure_dist(self, z: F64, y: F64, x: F64) -> tuple[F64, F64]:
        """Signed distances to the major fissure and (right lung) to the minor fissure."""
        major = (z - self.zfis(x, y)) * self._g_at(self.zfis, x, y)
        minor = (z - self.zminor(x, y)) * self._g_at(self.zminor, x, y)
        return major, minor

    def lobe_of(self, z: F64, y: F64, x: F64) -> I64:
        """0 RUL, 1 RML, 2 RLL, 3 LUL, 4 LLL."""
        major, minor = self.fissure_dist(z, y, x)
        right = x < self.x_m(self.uz(z))
        lobe = np.where(right, np.where(major > 0, np.where(minor > 0, 0, 1), 2), 0)
        lobe = np.where(right, lobe, np.where(major > 0, 3, 4))
        return np.asarray(lobe, dtype=np.int64)

    # ---- per-slice rendering ------------------------------------------------------------------

    def _strip(self, name: str, z: float, mode: str) -> tuple[slice, slice] | None:
        """Sub-box of the cavity box where surface `name` can matter on the slice at z: "below"
        (the slice is below part of the surface), "above", or "near" (it crosses it)."""
        rlo, rhi, clo, chi = self._env[name]
        if mode == "below":
            rows, cols = np.nonzero(rhi > z)[0], np.nonzero(chi > z)[0]
        elif mode == "above":
            rows, cols = np.nonzero(rlo < z)[0], np.nonzero(clo < z)[0]
        else:
            rows = np.nonzero((rlo < z) & (rhi > z))[0]
            cols = np.nonzero((clo < z) & (chi > z))[0]
        if len(rows) == 0 or len(cols) == 0:
            return None
        return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)

    def render_slice(self, z: float) -> tuple[F32, Bool]:
        """Noise-free HU of the analytic (non-tube) anatomy on one axial slice, and the lungs."""
        g = self.g
        uu = float(self.uz(z))
        cf = {k: float(v) for k, v in self._cf(uu).items()}
        w = g.dx
        zf = np.float32(z)
        full = self.bg.copy()
        img = full[self.box]
        r = self.r2
        rb, rf, rm, rc = self._radii(self.M2, cf)
        xs, xm = float(self.x_s(uu)), float(self.x_m(uu))
        yvb, av, bv = float(self.y_vb(uu)), float(self.a_v(uu)), float(self.b_v(uu))
        # Skin, subcutaneous fat (and breasts), muscle, fat plane, rib layer.
        tsd = self.table_sd
        sd = np.maximum(r - rb, tsd)
        br_box = self._breast_box(z)
        if br_box is not None:
            rs, cs, sd_breast = br_box
            sd[rs, cs] = np.minimum(sd[rs, cs], sd_breast)
        _blend(img, _occ(sd, w), self.hu_skin)
        sd += np.float32(self.t_skin)
        _blend(img, _occ(sd, w), self.hu_fat)
        if br_box is not None:
            self._glands(img, br_box)
        depth = self.t_skin + cf["tf"]
        fat_inner = np.maximum(r - rf, tsd + np.float32(depth))
        _blend(img, _occ(fat_inner, w), self.hu_muscle)
        depth += self.tm0 + cf["trap"]
        sd = np.maximum(r - rm, tsd + np.float32(depth))
        _blend(img, _occ(sd, w), self.hu_fat)
        sd += np.float32(1.5)
        _blend(img, _occ(sd, w), self.hu_muscle - 3.0)
        # Extrapleural fat and the pleural cavity (minus the spine), on the cavity box.
        cr, cc = self.cb
        imc = img[cr, cc]
        costal = r[cr, cc] - rc[cr, cc]
        _blend(imc, _occ(costal - np.float32(self.t_epf), w), self.hu_fat)
        cav = costal.copy()
        bh = self.b_v0 * 1.3 + 22.0
        rs_b = _rel(self.ys2, yvb - bh, yvb + 2 * bh)
        cs_b = _rel(self.xs2, xs - av - 10.0, xs + av + 10.0)
        bump = self.bump_sd(self.X2[:, cs_b], self.Y2[rs_b, :], uu).astype(np.float32)
        cav[rs_b, cs_b] = np.maximum(cav[rs_b, cs_b], -bump)
        # Above the lungs (thoracic inlet) the cavity holds muscle and vessels more than fat.
        inlet = 0.55 * float(_ss(0.12, -0.08, uu))
        _blend(imc, _occ(cav, w), self.hu_medfat + inlet * (self.hu_muscle - 15.0 - self.hu_medfat))
        self._paraspinal(img, xs, yvb, av, bv, fat_inner)
        self._vertebra(img, z, xs, yvb, av, bv)
        self._sternum(img, uu, xm, rc)
        self._scapulae(img, uu, r, rc)
        below = self._strip("dia", z, "below")
        if below is not None:
            self._abdomen(imc, z, cav, below, xm)
        # Lungs: cavity outside the mediastinum, above the diaphragm, below the apical caps.
        # Each bound is a distance in voxel widths; the lung is their maximum.
        lung_v = cav * np.float32(1.0 / w)
        med = self.band_sd(self.X2, self.Y2, uu).astype(np.float32)
        hbox = self._heart_box(z)
        if hbox is not None:
            rs, cs = hbox
            sac = self.sac_sd(z, self.Y2[rs, :], self.X2[:, cs]).astype(np.float32)
            dia_h = (zf - self.Zdia[rs, cs]) * self.Gdia[rs, cs]
            med[rs, cs] = np.minimum(med[rs, cs], np.maximum(sac, np.float32(self.t_dia) - dia_h))
        np.maximum(lung_v, med * np.float32(-1.0 / w), out=lung_v)
        if below is not None:
            rs, cs = below
            lv = lung_v[rs, cs]
            np.maximum(lv, (self.Zdia[rs, cs] - zf) * self.Gdia[rs, cs] / self.Wdia[rs, cs], out=lv)
        above = self._strip("cap", z, "above")
        if above is not None:
            rs, cs = above
            lv = lung_v[rs, cs]
            np.maximum(lv, (zf - self.Zcap[rs, cs]) * self.Gcap[rs, cs] / self.Wcap[rs, cs], out=lv)
        lung_mask = lung_v < 0.0
        rows = np.nonzero(lung_v.min(axis=1) < 0.5)[0]
        cols = np.nonzero(lung_v.min(axis=0) < 0.5)[0]
        if len(rows) and len(cols):
            lb = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
            occ_l = _occ(lung_v[lb], 1.0)
            lung_hu = self.lung_gy[lb[0], :] + np.float32(12.0 * (uu - 0.5))
            for cos_a, sin_a, kz, ph, amp in self._waves:
                b = kz * z + ph
                lung_hu = (
                    lung_hu
                    + cos_a[lb] * np.float32(amp * math.cos(b))
                    - sin_a[lb] * np.float32(amp * math.sin(b))
                )
            if self.atelectasis > 0.0 and uu > 0.45:
                band = _occ(-(costal[lb] + np.float32(self.atelectasis)), w)
                band *= self.Mtrap2[lb] * np.float32(_ss(0.45, 0.8, uu))
                lung_hu += band * (np.float32(self.hu_atel) - lung_hu)
            _blend(imc[lb], occ_l, lung_hu)
            self._fissures(imc, zf, occ_l, lb)
        if hbox is not None:
            self._heart(imc, z, hbox)
        mask = np.zeros((g.ny, g.nx), dtype=np.bool_)
        mask[self.box][cr, cc] = lung_mask
        return full, mask

    def _breast_box(self, z: float) -> tuple[slice, slice, F32] | None:
        if self.breast is None:
            return None
        proj, rad, u_mid, _ = self.breast
        dz = z - self.zu(u_mid)
        if abs(dz) > 0.8 * rad:
            return None
        sd_all: F32 | None = None
        rs = _rel(self.ys1, self.yc - 1.2 * self.ba0 - proj - 10.0, self.yc - 0.2 * self.ba0)
        cs = _rel(self.xs1, self.xc - self.a0, self.xc + self.a0)
        for side in (-1.0, 1.0):
            # Supine: a flattened mound on the anterolateral chest, sagging outwards.
            bx = self.xc + side * 0.42 * self.a0
            by = self.yc - 0.86 * self.ba0 + 0.3 * proj
            sd = _ell_sd(
                self.X[:, cs] - np.float32(bx),
                self.Y[rs, :] - np.float32(by),
                rad,
                1.3 * proj,
                dz,
                0.8 * rad,
            ).astype(np.float32)
            sd_all = sd if sd_all is None else np.minimum(sd_all, sd)
        assert sd_all is not None
        return rs, cs, sd_all

    def _glands(self, img: F32, box: tuple[slice, slice, F32]) -> None:
        """Fibroglandular tissue in the breasts: partial-density soft tissue within the fat."""
        assert self.breast is not None
        rs, cs, sd = box
        gl = self.breast[3]
        dens = _occ(sd + np.float32(6.0 + 8.0 * (1.0 - gl)), 6.0) * np.float32(0.35 + 0.5 * gl)
        _blend(img[rs, cs], dens, 25.0)

    def _paraspinal(
        self, img: F32, xs: float, yvb: float, av: float, bv: float, inner: F32
    ) -> None:
        """Erector spinae beside the spinous processes, kept inside the subcutaneous fat."""
        cy = yvb + bv + 2 * self.rc + 14.0
        ax, ay = (av + 8.0) * 0.95, 22.0 * self.S**0.5
        rs = _rel(self.ys1, cy - ay - 6, cy + ay + 6)
        for side in (-1.0, 1.0):
            cx = xs + side * (av + 10.0)
            cs = _rel(self.xs1, cx - ax - 6, cx + ax + 6)
            sd = _ell_sd(self.X[:, cs] - np.float32(cx), self.Y[rs, :] - np.float32(cy), ax, ay)
            sd = np.maximum(sd, inner[rs, cs])
            sub = img[rs, cs]
            _blend(sub, _occ(sd - 1.2, self.g.dx) * np.float32(0.6), self.hu_fat)
            _blend(sub, _occ(sd + 0.8, self.g.dx), self.hu_muscle)

    def _vertebra(self, img: F32, z: float, xs: float, yvb: float, av: float, bv: float) -> None:
        """Vertebral body (cortex, cancellous bone) or disc, and the spinal canal."""
        g = self.g
        i_lvl = round((self.z_apex + 0.25 * self.pitch - z) / self.pitch) + 1
        zc = self.z_apex + 0.25 * self.pitch - (i_lvl - 1) * self.pitch
        hb = 0.39 * self.pitch
        rs = _rel(self.ys1, yvb - bv - 4, yvb + bv + 2 * self.rc + 6)
        cs = _rel(self.xs1, xs - av - 4, xs + av + 4)
        du = self.X[:, cs] - np.float32(xs)
        dv = self.Y[rs, :] - np.float32(yvb)
        sub = img[rs, cs]
        sd_e = _ell_sd(du, dv, av, bv).astype(np.float32)
        dzl = abs(z - zc) - hb
        sd3 = np.maximum(sd_e, np.float32(dzl))
        _blend(sub, _occ(sd3, g.w3), self.hu_cortex * 0.8)
        _blend(sub, _occ(sd3 + np.float32(self.v_shell), g.w3), self.hu_marrow)
        _blend(sub, _occ(np.maximum(sd_e - 1.0, np.float32(-dzl)), g.w3), self.hu_disc)
        cyc = yvb + bv + self.rc + 1.0
        sd_c = np.sqrt(du * du + (self.Y[rs, :] - np.float32(cyc)) ** 2) - np.float32(self.rc)
        _blend(sub, _occ(sd_c, g.dx), self.hu_csf)

    def _sternum(self, img: F32, uu: float, xm: float, rc: Any) -> None:
        if not (self.u_man <= uu <= self.u_xiph + 0.03):
            return
        j = min(max(int(np.searchsorted(self.xs1, xm)), 0), len(self.xs1) - 1)
        front = np.where(self.ys1 < self.yc, np.abs(self.r2[:, j] - rc[:, j]), np.inf)
        y_st = float(self.ys1[int(np.argmin(front))]) - 0.5 * self.t_w
        if uu < self.u_angle:
            t = (uu - self.u_man) / (self.u_angle - self.u_man)
            half = self.st_half * (1.0 + 0.9 * (1.0 - t))
        elif uu > self.u_xiph - 0.05:
            half = self.st_half * 0.5
        else:
            half = self.st_half
        th = self.st_thick
        rs = _rel(self.ys1, y_st - th - 4, y_st + th + 4)
        cs = _rel(self.xs1, xm - half - 4, xm + half + 4)
        du = (self.X[:, cs] - np.float32(xm)) / np.float32(half)
        dv = (self.Y[rs, :] - np.float32(y_st)) / np.float32(th)
        q = np.sqrt(np.sqrt(du**4 + dv**4))
        sd = (q - 1.0) * np.float32(min(half, th))
        sub = img[rs, cs]
        _blend(sub, _occ(sd, self.g.dx), self.hu_cortex * 0.75)
        _blend(sub, _occ(sd + np.float32(1.3), self.g.dx), self.hu_marrow)

    def _scapulae(self, img: F32, uu: float, r: F32, rc: Any) -> None:
        """Scapular blades: thin curved plates outside the ribs, thicker at the lateral border."""
        if not (self.scap_u0 <= uu <= self.scap_u1):
            return
        t = ((uu - self.scap_u0) / (self.scap_u1 - self.scap_u0)) ** 1.5
        d_med = math.radians(24.0 + 14.0 * t)
        d_lat = math.radians(80.0 - 32.0 * t)
        rs = _rel(self.ys1, self.yc - 0.3 * self.ba0, math.inf)
        dl = self.delta2[rs, :]
        rr = r[rs, :]
        off = rc[rs, :] + np.float32(self.t_w + self.scap_off)
        thick = 2.5 + 3.0 * _ss(d_lat - 0.25, d_lat, dl) + 3.0 * (1.0 - _ss(-0.1, 0.05, uu))
        sd = np.abs(rr - off) - thick * 0.5
        sd = np.maximum(sd, (dl - np.float32(d_lat)) * rr)
        sd = np.maximum(sd, (np.float32(d_med) - dl) * rr)
        _blend(img[rs, :], _occ(sd, self.g.dx), 0.55 * self.hu_cortex)

    def _abdomen(self, imc: F32, z: float, cav: F32, box: tuple[slice, slice], xm: float) -> None:
        """Diaphragm muscle, then liver, spleen, stomach (gas anterior) and fat below it."""
        w = self.g.dx
        rs, cs = box
        sub = imc[rs, cs]
        cv = cav[rs, cs]
        x, y = self.X2[:, cs], self.Y2[rs, :]
        dia = (np.float32(z) - self.Zdia[rs, cs]) * self.Gdia[rs, cs]
        _blend(sub, _occ(np.maximum(cv, dia), w), self.hu_muscle)
        inner = np.maximum(cv, dia + np.float32(self.t_dia))
        _blend(sub, _occ(inner, w), self.hu_fat + 15.0)
        _blend(sub, _occ(np.maximum(inner, x - self.liver_x[rs, :]), w), self.hu_liver)
        z_l = self.zu(self.u_dome_l)
        sx, sy, sz = self.spleen_r
        sp_c = (xm + 0.78 * self.A_c, self.yc + 0.45 * self.B_p, z_l - 0.6 * sz)
        if abs(z - sp_c[2]) < sz:
            sd = _ell_sd(x - np.float32(sp_c[0]), y - np.float32(sp_c[1]), sx, sy, z - sp_c[2], sz)
            _blend(sub, _occ(np.maximum(sd, inner), w), self.hu_spleen)
        ax, ay, az = self.stomach_r
        st_c = (xm + 0.42 * self.A_c, self.yc - 0.1 * self.B_a, z_l - 0.5 * az)
        if abs(z - st_c[2]) < az:
            sd = _ell_sd(x - np.float32(st_c[0]), y - np.float32(st_c[1]), ax, ay, z - st_c[2], az)
            sd = np.maximum(sd, inner).astype(np.float32)
            _blend(sub, _occ(sd, w), self.hu_muscle)
            _blend(sub, _occ(sd + 4.0, w), 20.0)
            level = st_c[1] - ay * (1.0 - 2.0 * self.stomach_gas) * 0.8
            _blend(sub, _occ(np.maximum(sd + 4.0, y - np.float32(level)), w), -1000.0)

    def _fissures(self, imc: F32, zf: np.float32, occ_l: F32, lb: tuple[slice, slice]) -> None:
        """Major fissures and the right minor fissure: thin pleural sheets (partial volume)."""
        t = np.float32(self.t_fissure)
        box = _intersect(lb, self._strip("fis", float(zf), "near"))
        if box is not None:
            rs, cs = box
            d = (zf - self.Zfis[rs, cs]) * self.Gfis[rs, cs]
            frac = np.minimum(t, self.HWfis[rs, cs] - np.abs(d))
            np.clip(frac, 0.0, None, out=frac)
            frac *= self.IWfis[rs, cs] * occ_l[_shift(box, lb)]
            _blend(imc[rs, cs], frac, self.hu_pleura)
        box = _intersect(lb, self._strip("min", float(zf), "near"))
        if box is not None:
            rs, cs = box
            d = (zf - self.Zfis[rs, cs]) * self.Gfis[rs, cs]
            dm = (zf - self.Zmin[rs, cs]) * self.Gmin[rs, cs]
            frac = np.minimum(t, self.HWmin[rs, cs] - np.abs(dm))
            np.clip(frac, 0.0, None, out=frac)
            frac *= self.IWmin[rs, cs] * self.right2[:, cs] * occ_l[_shift(box, lb)]
            frac *= np.clip(d * self.IWfis[rs, cs] + 0.5, 0.0, 1.0)
            _blend(imc[rs, cs], frac, self.hu_pleura)

    def _heart_box(self, z: float) -> tuple[slice, slice] | None:
        """Rows and columns (of the cavity box) of the pericardial sac on this slice."""
        t = self.t_peric
        dz = z - self.heart_z
        c = self.heart_c + t
        if abs(dz) >= c:
            return None
        f = math.sqrt(1.0 - (dz / c) ** 2)
        a, b = (self.heart_a + t) * f, (self.heart_b + t) * f
        ca, sa = math.cos(self.heart_phi), math.sin(self.heart_phi)
        ex, ey = math.hypot(a * ca, b * sa) + 3, math.hypot(a * sa, b * ca) + 3
        rs = _rel(self.ys2, self.heart_y - ey, self.heart_y + ey)
        cs = _rel(self.xs2, self.heart_x - ex, self.heart_x + ex)
        if rs.stop <= rs.start or cs.stop <= cs.start:
            return None
        return rs, cs

    def _heart(self, imc: F32, z: float, box: tuple[slice, slice]) -> None:
        """Pericardium, epicardial fat, myocardium and (with contrast, bright) chambers."""
        rs, cs = box
        w = self.g.w3
        x, y = self.X2[:, cs], self.Y2[rs, :]
        dia = (np.float32(z) - self.Zdia[rs, cs]) * self.Gdia[rs, cs]
        sac = np.maximum(self.sac_sd(z, y, x).astype(np.float32), np.float32(self.t_dia) - dia)
        sub = imc[rs, cs]
        _blend(sub, _occ(sac, w), self.hu_muscle - 10.0)
        _blend(sub, _occ(sac + 1.3, w), self.hu_fat + 20.0)
        heart = sac + np.float32(self.t_peric)
        _blend(sub, _occ(heart, w), self.hu_myo)
        du, dv, dw = self.heart_local(z, y, x)
        a, b, c = self.heart_a, self.heart_b, self.heart_c
        chambers = (
            ((0.15 * a, 0.22 * b, -0.05 * c), (0.55 * a, 0.40 * b, 0.6 * c)),
            ((-0.05 * a, -0.45 * b, 0.0), (0.6 * a, 0.36 * b, 0.55 * c)),
            ((-0.15 * a, 0.5 * b, 0.55 * c), (0.38 * a, 0.38 * b, 0.35 * c)),
            ((-0.6 * a, -0.1 * b, 0.3 * c), (0.32 * a, 0.38 * b, 0.4 * c)),
        )
        for (cu, cv, cw), (ra, rb, rcc) in chambers:
            sd = _ell_sd(du - cu, dv - cv, ra, rb, dw - cw, rcc).astype(np.float32)
            sd = np.maximum(sd, heart + np.float32(3.0))
            _blend(sub, _occ(sd, w), self.hu_blood)


def _rel(c: F64, lo: float, hi: float) -> slice:
    """Index range of the sorted coordinates c within [lo, hi]."""
    return slice(int(np.searchsorted(c, lo)), int(np.searchsorted(c, hi, side="right")))


def _intersect(a: tuple[slice, slice], b: tuple[slice, slice] | None) -> tuple[slice, slice] | None:
    if b is None:
        return None
    r = slice(max(a[0].start, b[0].start), min(a[0].stop, b[0].stop))
    c = slice(max(a[1].start, b[1].start), min(a[1].stop, b[1].stop))
    if r.stop <= r.start or c.stop <= c.start:
        return None
    return r, c


def _shift(box: tuple[slice, slice], origin: tuple[slice, slice]) -> tuple[slice, slice]:
    """`box` expressed relative to the start of `origin` (both in the same frame)."""
    r0, c0 = origin[0].start, origin[1].start
    return slice(box[0].start - r0, box[0].stop - r0), slice(box[1].start - c0, box[1].stop - c0)


# --------------------------------------------------------------------------------------------
# Vessel trees: territory bisection with Murray's law


@dataclass(frozen=True, eq=False)
class _Branch:
    pts: F64  # (m, 3) polyline z, y, x
    r0: float
    r1: float
    parent: int  # index in the branch list, -1 for a root


_T5 = np.linspace(0.0, 1.0, 5)  # stations along a branch polyline


def _bent(a: F64, b: F64, wiggle: F64, rng: np.random.Generator) -> F64:
    """Gently curved polylines (k, 5, 3) from a[k] to b[k]: quadratic Beziers whose middle
    control point is pushed sideways by wiggle[k] times the length."""
    v = b - a
    length = np.linalg.norm(v, axis=1)
    side = rng.normal(size=v.shape)
    side -= v * ((side * v).sum(axis=1) / np.maximum(length**2, 1e-12))[:, None]
    side /= np.maximum(np.linalg.norm(side, axis=1), 1e-12)[:, None]
    mid = 0.5 * (a + b) + side * (rng.uniform(-1.0, 1.0, len(a)) * wiggle * length)[:, None]
    t = np.linspace(0.0, 1.0, 5)[None, :, None]
    return np.asarray(
        (1 - t) ** 2 * a[:, None, :] + 2 * (1 - t) * t * mid[:, None, :] + t**2 * b[:, None, :]
    )


def _grow_tree(
    root: F64,
    cloud: F64,
    r_root: float,
    r_min: float,
    rng: np.random.Generator,
    warp: Callable[[F64], F64],
) -> list[_Branch]:
    """Grow a vessel tree from `root` that supplies the points of `cloud`.

    Each branch heads for the centroid of its territory, then splits the territory in two
    across its widest direction perpendicular to the branch; child radii follow Murray's law
    (r^3 = r1^3 + r2^3) with flow proportional to territory size.
    """
    starts: list[F64] = []
    ends: list[F64] = []
    radii: list[tuple[float, float]] = []
    parents: list[int] = []
    wiggles: list[float] = []
    stack: list[tuple[F64, I64, float, int]] = [(root, np.arange(len(cloud)), r_root, -1)]
    while stack:
        start, idx, r, parent = stack.pop()
        pts = cloud[idx]
        c = pts.mean(axis=0)
        v = c - start
        length = float(np.linalg.norm(v))
        n = len(idx)
        starts.append(start)
        parents.append(parent)
        if n <= 2 or r < 1.26 * r_min or length < 1.5 * r:
            ends.append(c + 0.5 * v if n > 1 else pts[0])
            radii.append((r, 0.65 * r))  # terminal branches taper towards the periphery
            wiggles.append(0.08)
            continue
        e = v / length
        b = start + e * max(rng.uniform(0.3, 0.55) * length, 1.5 * r)
        d = pts - c
        dp = d - np.outer(d @ e, e)
        _, vecs = np.linalg.eigh(dp.T @ dp)
        order = np.argsort(d @ vecs[:, -1])
        k = max(1, min(n - 1, round(n * rng.uniform(0.3, 0.5))))
        me = len(ends)
        ends.append(b)
        radii.append((r, 0.97 * r))
        wiggles.append(0.05)
        stack.append((b, idx[order[:k]], r * (k / n) ** (1.0 / 3.0), me))
        stack.append((b, idx[order[k:]], r * ((n - k) / n) ** (1.0 / 3.0), me))
    lines = warp(_bent(np.array(starts), np.array(ends), np.array(wiggles), rng))
    return [_Branch(lines[i], radii[i][0], radii[i][1], parents[i]) for i in range(len(parents))]


def _lung_cloud(a: _Anatomy, rng: np.random.Generator, n_target: int) -> F64:
    """Uniform random points inside the lungs (z, y, x), at least 1.5 mm from the pleura."""
    lo = np.array([a.z_base - 5.0, a.yc - a.B_a - 5.0, a.xc - a.A_c - 5.0])
    hi = np.array([a.z_apex + 5.0, a.yc + a.B_p + 5.0, a.xc + a.A_c + 5.0])
    got: list[F64] = []
    total = 0
    for _ in range(12):
        p = lo + (hi - lo) * rng.random((max(4 * n_target, 20000), 3))
        sd = a.lung_parts(p[:, 0], p[:, 1], p[:, 2])["lung"]
        inside = p[sd < -1.5]
        got.append(inside)
        total += len(inside)
        if total >= n_target:
            break
    cloud = np.vstack(got)
    return cloud[:n_target] if len(cloud) >= n_target else cloud


# --------------------------------------------------------------------------------------------
# Explicit tubes: airways, great vessels, bones


@dataclass
class _Tubes:
    """All tube layers in painting order, plus what nodule placement needs to know."""

    layers: list[_Layer]
    vessels: list[_Branch]  # pulmonary arteries and veins (for juxtavascular nodules)
    cloud: F64  # points inside the lungs
    solid: _Caps  # mediastinal and hilar tubes nodules must keep clear of


def _build_tubes(a: _Anatomy, g: _Grid, rng: np.random.Generator) -> _Tubes:
    vox = g.w3
    u = rng.uniform
    s, hs = a.S, a.hs
    zu = a.zu

    def xm(uu: float) -> float:
        return float(a.x_m(uu))

    def xs(uu: float) -> float:
        return float(a.x_s(uu))

    def yvb(uu: float) -> float:
        return float(a.y_vb(uu))

    def bv(uu: float) -> float:
        return float(a.b_v(uu))

    def av(uu: float) -> float:
        return float(a.a_v(uu))

    u_car = u(0.30, 0.36)
    z_car = zu(u_car)
    r_oes = u(7.0, 10.0)

    def y_oes(uu: float) -> float:
        return yvb(uu) - bv(uu) - r_oes - 3.0

    r_tr = u(8.0, 11.0) * s**0.5
    t_tr = u(1.5, 2.5)

    def y_tr(uu: float) -> float:
        return float(y_oes(min(uu, u_car)) - r_oes - r_tr - 1.0)

    # --- airways -------------------------------------------------------------------------
    airway_wall_mask = _TubeSet(vox)  # trachea and main bronchi: not lung
    airway_wall = _TubeSet(vox)  # lobar and intrapulmonary bronchi
    car = np.array([z_car, y_tr(u_car) + 4.0, xm(u_car)])
    trachea = _spline(
        [
            (zu(-0.45), y_tr(-0.45), xm(-0.45)),
            (zu(-0.1), y_tr(-0.1), xm(-0.1)),
            (zu(0.2), y_tr(0.2) + 2.0, xm(0.2) - 3.0),
            tuple(car),
        ]
    )
    airway_wall_mask.add(trachea, r_tr)
    rb1 = car + np.array([-22.0 * hs, 4.0, -20.0 * s])
    lb1 = car + np.array([-28.0 * hs, 8.0, 40.0 * s])
    airway_wall_mask.add(np.vstack([car, rb1]), 0.72 * r_tr)
    airway_wall_mask.add(np.vstack([car, lb1]), 0.68 * r_tr)
    bi = rb1 + np.array([-25.0 * hs, 2.0, -6.0 * s])
    lobar_end = {
        0: rb1 + np.array([8.0 * hs, 2.0, -22.0 * s]),
        1: bi + np.array([-10.0 * hs, -22.0 * s, -12.0 * s]),
        2: bi + np.array([-20.0 * hs, 12.0 * s, -8.0 * s]),
        3: lb1 + np.array([6.0 * hs, -12.0 * s, 18.0 * s]),
        4: lb1 + np.array([-20.0 * hs, 12.0 * s, 8.0 * s]),
    }
    lobar_start = {0: rb1, 1: bi, 2: bi, 3: lb1, 4: lb1}
    lobar_r = {0: 0.5, 1: 0.38, 2: 0.48, 3: 0.5, 4: 0.5}
    airway_wall.add(np.vstack([rb1, bi]), 0.55 * r_tr)
    for lobe, end in lobar_end.items():
        airway_wall.add(np.vstack([lobar_start[lobe], end]), lobar_r[lobe] * r_tr)

    # --- pulmonary arteries and veins ------------------------------------------------------
    density = u(2.0, 3.2)
    r_min = max(u(0.4, 0.65), 0.45 * min(g.dx, g.dz))  # thinner would not show
    r_lung_a = u(5.0, 6.5) * s**0.5
    r_lung_v = r_lung_a * u(0.85, 1.0)
    cloud = _lung_cloud(a, rng, 40000)
    lobes = a.lobe_of(cloud[:, 0], cloud[:, 1], cloud[:, 2])
    h_r = np.array([zu(u_car + 0.07), car[1] - 2.0, xm(u_car) - 48.0 * s])
    h_l = np.array([zu(u_car + 0.03), car[1] + 10.0, xm(u_car) + 50.0 * s])
    pt0 = np.array([zu(u_car + 0.14), a.y_ant + 28.0 * s, xm(0.45) + 20.0 * s])
    ptb = np.array([zu(u_car + 0.04), car[1] - 16.0 * s, xm(u_car) + 14.0 * s])
    la = np.array(
        [a.heart_z + 0.45 * a.heart_c, a.heart_y + 0.55 * a.heart_b, 0.5 * (a.heart_x + xm(0.5))]
    )
    vein_root = {
        0: la + np.array([12.0 * hs, -4.0, -30.0 * s]),
        1: la + np.array([6.0 * hs, -6.0, -30.0 * s]),
        2: la + np.array([-10.0 * hs, 2.0, -30.0 * s]),
        3: la + np.array([14.0 * hs, -4.0, 28.0 * s]),
        4: la + np.array([-8.0 * hs, 2.0, 28.0 * s]),
    }
    arteries: list[_Branch] = []
    veins: list[_Branch] = []
    airways_intra = _TubeSet(vox)
    lumens_intra = _TubeSet(vox)
    r_aw_min = u(0.9, 1.3)
    k_ba = u(0.95, 1.2)
    for lobe in range(5):
        pts = cloud[lobes == lobe]
        if len(pts) < 8:
            continue
        side_frac = len(pts) / max(1, int(np.sum((lobes <= 2) if lobe <= 2 else (lobes >= 3))))
        for kind, r_lung in (("artery", r_lung_a), ("vein", r_lung_v)):
            r_root = r_lung * side_frac ** (1.0 / 3.0)
            n_pts = int(min(len(pts), 2500, density * (r_root / r_min) ** 3))
            sub = pts[rng.choice(len(pts), size=max(n_pts, 4), replace=False)]
            root = (h_r if lobe <= 2 else h_l) if kind == "artery" else vein_root[lobe]
            tree = _grow_tree(root, sub, r_root, r_min, rng, a.outside_heart)
            if kind == "artery":
                arteries.extend(tree)
                lines, r_out, r_in = _airways_along(
                    tree, lobar_end[lobe], k_ba, r_aw_min, rng, a.outside_heart
                )
                if len(lines):
                    airways_intra.add_many(lines, np.repeat(r_out[:, None], 5, axis=1))
                    lumens_intra.add_many(lines, np.repeat(r_in[:, None], 5, axis=1))
            else:
                veins.extend(tree)
    pulm = _TubeSet(vox)
    if arteries or veins:
        every = (*arteries, *veins)
        pulm.add_many(
            np.stack([br.pts for br in every]),
            np.array([[br.r0, br.r1] for br in every]) @ np.stack([1 - _T5, _T5]),
        )
    # Pulmonary trunk and main arteries.
    great_p = _TubeSet(vox)
    r_pt = u(12.0, 15.0) * s**0.5
    great_p.add(_spline([tuple(pt0), tuple(ptb)]), r_pt)
    great_p.add(
        _spline([tuple(ptb), (zu(u_car + 0.05), car[1] - 20.0 * s, xm(u_car) - 6.0), tuple(h_r)]),
        np.linspace(0.75 * r_pt, 0.6 * r_pt, 3),
    )
    great_p.add(
        _spline(
            [tuple(ptb), (zu(u_car + 0.0), car[1] - 6.0 * s, xm(u_car) + 30.0 * s), tuple(h_l)]
        ),
        np.linspace(0.72 * r_pt, 0.58 * r_pt, 3),
    )
    for root in vein_root.values():
        great_p.add(np.vstack([la, root]), 0.5 * r_lung_v)

    # --- systemic vessels --------------------------------------------------------------------
    great = _TubeSet(vox)
    r_ao = u(13.0, 17.0) * s**0.5
    aa_top = (zu(0.22), y_tr(0.22) - 28.0 * s, xm(0.22) - 8.0 * s)
    da_top = (zu(0.27), yvb(0.27) - 0.3 * bv(0.27), xs(0.27) + av(0.27) + 0.6 * r_ao)
    aorta = _spline(
        [
            (a.heart_z + 0.5 * a.heart_c, a.heart_y - 0.1 * a.heart_b, 0.5 * (a.heart_x + xm(0.5))),
            (zu(0.36), y_tr(0.3) - 30.0 * s, xm(0.36) - 6.0 * s),
            aa_top,
            (zu(0.175), y_tr(0.2) - 12.0, xm(0.2) + 6.0),
            (zu(0.19), y_tr(0.2) + 8.0, xm(0.2) + 18.0 * s),
            da_top,
            (zu(0.55), yvb(0.55) - 0.4 * bv(0.55), xs(0.55) + av(0.55) + 0.5 * r_ao),
            (zu(0.9), yvb(0.9) - bv(0.9) - 0.6 * r_ao, xs(0.9) + 8.0),
            (zu(1.3), yvb(1.3) - bv(1.3) - 0.7 * r_ao, xs(1.3) + 4.0),
        ]
    )
    n_a = len(aorta)
    great.add(
        aorta, np.interp(np.arange(n_a), [0, n_a * 0.35, n_a - 1], [r_ao, 0.85 * r_ao, 0.72 * r_ao])
    )
    arch = (zu(0.18), y_tr(0.2) - 5.0, xm(0.2))
    for dx_top, dy_top, dx_org, r_b in (
        (-18.0, -14.0, -6.0, 6.0),
        (20.0, -6.0, 6.0, 4.5),
        (34.0, 6.0, 16.0, 5.0),
    ):
        great.add(
            _spline(
                [
                    (arch[0], arch[1] + dy_top * 0.3, xm(0.18) + dx_org),
                    (zu(0.02), y_tr(0.0) + dy_top, xm(0.0) + dx_top * s),
                    (zu(-0.45), y_tr(-0.45) + dy_top, xm(-0.45) + dx_top * 1.2 * s),
                ]
            ),
            r_b * s**0.5,
        )
    r_svc = u(8.0, 11.0) * s**0.5
    svc_x = xm(0.3) - 30.0 * s
    great.add(
        _spline(
            [
                (zu(0.1), y_tr(0.1) - 22.0 * s, svc_x + 2.0),
                (zu(0.3), y_tr(0.3) - 16.0 * s, svc_x),
                (zu(0.46), a.heart_y - 0.1 * a.heart_b, svc_x - 2.0),
            ]
        ),
        r_svc,
    )
    great.add(
        _spline(
            [
                (zu(-0.45), y_tr(-0.4) - 14.0, xm(-0.4) - 40.0 * s),
                (zu(0.1), y_tr(0.1) - 22.0 * s, svc_x + 2.0),
            ]
        ),
        0.7 * r_svc,
    )
    great.add(
        _spline(
            [
                (zu(-0.3), y_tr(-0.3) - 8.0, xm(-0.3) + 48.0 * s),
                (zu(0.05), y_tr(0.05) - 30.0 * s, xm(0.05) + 22.0 * s),
                (zu(0.1), y_tr(0.1) - 24.0 * s, svc_x + 4.0),
            ]
        ),
        0.65 * r_svc,
    )
    great.add(
        _spline(
            [
                (zu(1.35), yvb(1.2) - bv(1.2) - 16.0, xm(1.2) - 24.0 * s),
                (zu(a.u_dome_r + 0.04), a.heart_y + 0.3 * a.heart_b, xm(0.7) - 26.0 * s),
            ]
        ),
        u(10.0, 13.0) * s**0.5,
    )
    great.add(
        _spline(
            [
                (zu(1.3), yvb(1.2) - 0.6 * bv(1.2), xs(1.2) - 10.0),
                (zu(0.6), yvb(0.6) - 0.75 * bv(0.6), xs(0.6) - 10.0),
                (zu(u_car - 0.02), yvb(u_car) - bv(u_car) - 2.0, xs(u_car) - 14.0),
                (zu(u_car - 0.04), y_tr(u_car) - 2.0, xm(u_car) - r_tr - 10.0),
                (zu(u_car - 0.05), y_tr(u_car) - 16.0 * s, svc_x),
            ]
        ),
        u(3.5, 5.0),
    )

    # --- oesophagus ------------------------------------------------------------------------
    oes = _TubeSet(vox)
    oes_air = _TubeSet(vox)
    u_ge = a.u_dome_l + 0.1
    path = _spline(
        [
            (
                zu(uu),
                y_oes(uu) - 18.0 * _ss(0.7, 1.0, uu),
                xm(uu) + 4.0 + 25.0 * s * _ss(0.65, 1.0, uu),
            )
            for uu in np.linspace(-0.45, u_ge, 9)
        ]
    )
    oes.add(path, r_oes)
    n_p = len(path)
    for _ in range(int(rng.integers(1, 4))):
        i0 = int(rng.integers(0, max(1, n_p - 6)))
        seg = path[i0 : i0 + int(rng.integers(3, 8))]
        if len(seg) >= 2:
            oes_air.add(seg, u(1.2, 0.6 * r_oes))

    # --- bones -------------------------------------------------------------------------------
    cortex = _TubeSet(vox)
    cart = _TubeSet(vox)
    levels = range(-3, 16)
    for i in levels:
        zc = a.z_apex + 0.25 * a.pitch - (i - 1) * a.pitch
        if zc < g.z0 - 2 * a.pitch or zc > g.z[-1] + 2 * a.pitch:
            continue
        ul = float(a.uz(zc))
        x_sp, y_b, b_b, a_b = xs(ul), yvb(ul), bv(ul), av(ul)
        y_c = y_b + b_b + a.rc + 1.0
        hb = 0.39 * a.pitch
        for side in (-1.0, 1.0):
            ped_a = np.array([zc + 0.2 * hb, y_b + 0.6 * b_b, x_sp + side * 0.55 * a_b])
            ped_b = np.array([zc + 0.2 * hb, y_c + 2.0, x_sp + side * (a.rc + 4.0)])
            cortex.add(np.vstack([ped_a, ped_b]), u(3.5, 4.5))
            lam = np.array([zc - 0.1 * hb, y_c + a.rc + 5.0, x_sp])
            cortex.add(np.vstack([ped_b, lam]), 3.5)
            tp = np.array([zc + 0.15 * hb, y_c + 10.0, x_sp + side * (a_b + 22.0) * s**0.5])
            cortex.add(np.vstack([ped_b, tp]), np.array([4.5, 4.0]))
            fac = np.array([zc + 0.55 * a.pitch, y_c + 5.0, x_sp + side * (a.rc + 6.0)])
            cortex.add(np.vstack([ped_b + np.array([0.0, 1.0, side * 2.0]), fac]), 3.2)
        lam = np.array([zc - 0.1 * hb, y_c + a.rc + 5.0, x_sp])
        spin = lam + np.array([-0.9 * a.pitch, u(22.0, 30.0) * s**0.5, 0.0])
        cortex.add(np.vstack([lam, spin]), np.array([3.5, 2.5]))
        if not 1 <= i <= 12:
            continue
        # Rib i: head at the vertebral body, tubercle at the transverse process, then around
        # the chest wall just outside the pleura, descending anteriorly.
        z_head = zc + 0.45 * a.pitch
        d_i = 2.2 + 0.2 * i if i <= 10 else 1.6
        if i == 1:
            d_i = 1.6
        z_end = z_head - a.pitch * d_i
        end_delta = math.radians(
            150.0 if i <= 7 else 140.0 if i <= 10 else 105.0 if i == 11 else 75.0
        )
        r_rib = u(4.2, 5.2) * s**0.3 * (0.8 if i >= 11 else 1.0)
        for side in (-1.0, 1.0):
            head = np.array([z_head, y_b - 0.1 * b_b, x_sp + side * (a_b + 4.0)])
            tub = np.array([z_head - 4.0, y_c + 8.0, x_sp + side * (a_b + 20.0) * s**0.5])
            pts = [head, tub]
            t = np.linspace(0.0, 1.0, 16)
            # Ribs run level near the spine and fall steeply along the lateral wall.
            zz = z_head - 3.0 - (z_head - 3.0 - z_end) * _ss(0.05, 0.85, t)
            arc = a.wall_point(
                math.radians(40.0) + (end_delta - math.radians(40.0)) * t,
                side,
                a.uz(zz),
                0.5 * a.t_w,
            )
            rib = _spline([tuple(p) for p in (*pts, *arc)], step=2.5)
            cortex.add(rib, r_rib)
            if i <= 10:
                # Costal cartilage to the sternum (ribs 1-7) or to the costal margin (8-10).
                z_j = zu(a.u_man + 0.03 + (min(i, 7) - 1) * (a.u_xiph - a.u_man - 0.05) / 6.0)
                if i > 7:
                    z_j -= (i - 7) * 12.0 * hs
                u_j = float(a.uz(z_j))
                mid = a.wall_point(
                    math.radians(168.0), side, 0.5 * (float(a.uz(z_end)) + u_j), 0.5 * a.t_w
                )
                tip = a.wall_point(math.radians(176.0 if i <= 7 else 165.0), side, u_j, 0.5 * a.t_w)
                tip[2] = xm(u_j) + side * (a.st_half * 0.9 + (i - 7) * 12.0 * s * (i > 7))
                cart.add(_spline([tuple(rib[-1]), tuple(mid), tuple(tip)], step=2.5), 0.85 * r_rib)
    # Clavicles at the thoracic inlet.
    for side in (-1.0, 1.0):
        sc = a.wall_point(math.radians(172.0), side, a.u_man - 0.02, a.t_w + 2.0)
        sc[2] = xm(a.u_man) + side * 20.0 * s
        lat = a.wall_point(math.radians(120.0), side, a.u_man - 0.08, a.t_w + 14.0)
        acr = a.wall_point(math.radians(95.0), side, a.u_man - 0.1, a.t_w + 18.0)
        cortex.add(_spline([tuple(sc), tuple(lat), tuple(acr)], step=2.5), u(6.0, 7.5) * s**0.3)
    shell = u(1.0, 1.5)
    calc_cart = rng.random() < 0.4

    # --- lymph nodes, thyroid, emphysema -----------------------------------------------------
    nodes = _TubeSet(vox)
    spots = [
        (zu(u_car - 0.08), y_tr(u_car - 0.08), xm(u_car) - r_tr - 8.0),
        (zu(u_car - 0.03), y_tr(u_car) - 6.0, xm(u_car) + 18.0),
        (z_car - 14.0 * hs, car[1] + 12.0, xm(u_car)),
        tuple(h_r + np.array([-6.0 * hs, 8.0, -4.0])),
        tuple(h_l + np.array([-6.0 * hs, 8.0, 4.0])),
        (zu(0.25), a.y_ant + 16.0, xm(0.25) + 6.0),
        (zu(0.2), y_tr(0.2) - 10.0, xm(0.2) - 14.0),
        tuple(h_r + np.array([-18.0 * hs, 4.0, 2.0])),
        tuple(h_l + np.array([-16.0 * hs, 6.0, -2.0])),
    ]
    for p in spots:
        if rng.random() < 0.65:
            c = np.asarray(p) + rng.uniform(-4.0, 4.0, 3)
            r_n = u(2.5, 6.5)
            half = np.array([r_n * 0.5, 0.0, 0.0])  # short vertical capsule: an ovoid node
            nodes.add(np.vstack([c - half, c + half]), r_n)
    thyroid = _TubeSet(vox)
    for side in (-1.0, 1.0):
        x_t = xm(-0.1) + side * (r_tr + 9.0)
        thyroid.add(
            np.array([[zu(-0.05), y_tr(-0.1) - 3.0, x_t], [zu(-0.3), y_tr(-0.2) - 5.0, x_t]]),
            u(8.0, 11.0),
        )
    emph = _TubeSet(vox)
    if rng.random() < 0.3:
        up = cloud[a.uz(cloud[:, 0]) < 0.55]
        for p in up[
            rng.choice(len(up), size=min(len(up), int(rng.integers(10, 40))), replace=False)
        ]:
            emph.ball(p, u(1.5, 6.0))

    hu_air = -1000.0
    lobar = _Layer(airway_wall.build(), a.hu_muscle - 15.0)
    layers = [
        _Layer(nodes.build(), a.hu_lymph, lung_excluded=True),
        _Layer(thyroid.build(), a.hu_thyroid, lung_excluded=True),
        _Layer(great.build(), a.hu_blood, lung_excluded=True),
        _Layer(great_p.build(), a.hu_pblood, lung_excluded=True),
        _Layer(oes.build(), a.hu_muscle - 5.0, lung_excluded=True),
        _Layer(oes_air.build(), hu_air, lung_excluded=True),
        _Layer(pulm.build(), a.hu_pblood),
        _Layer(airway_wall_mask.build(), a.hu_muscle - 15.0, lung_excluded=True),
        lobar,
        _Layer(airways_intra.build(), a.hu_muscle - 15.0),
        _Layer(airway_wall_mask.build(t_tr), hu_air, lung_excluded=True),
        _Layer(airway_wall.build(t_tr * 0.8), hu_air),
        _Layer(lumens_intra.build(), hu_air),
        _Layer(cortex.build(), a.hu_cortex),
        _Layer(cortex.build(shell), a.hu_marrow),
        _Layer(cart.build(), a.hu_cartilage + (250.0 if calc_cart else 0.0)),
        _Layer(cart.build(shell if calc_cart else 0.0), a.hu_cartilage),
        _Layer(emph.build(), -985.0, mode="min"),
    ]
    # Nodules keep clear of mediastinal and hilar tubes and of the lobar bronchi.
    solid = _concat_caps([ly.caps for ly in layers if ly.lung_excluded] + [lobar.caps])
    return _Tubes(layers=layers, vessels=[*arteries, *veins], cloud=cloud, solid=solid)


def _concat_caps(items: list[_Caps]) -> _Caps:
    return _Caps(
        *(
            np.concatenate([getattr(c, f) for c in items])
            for f in ("p0", "p1", "r0", "r1", "zlo", "zhi")
        )
    )


def _clearance(caps: _Caps, p: F64) -> F64:
    """Distance from p to the surface of each capsule (negative inside)."""
    d = caps.p1 - caps.p0
    t = np.clip(((p - caps.p0) * d).sum(axis=1) / np.maximum((d * d).sum(axis=1), 1e-9), 0, 1)
    q = caps.p0 + d * t[:, None] - p
    return np.asarray(np.sqrt((q * q).sum(axis=1)) - (caps.r0 + t * (caps.r1 - caps.r0)))


def _airways_along(
    tree: list[_Branch],
    start: F64,
    k_ba: float,
    r_min: float,
    rng: np.random.Generator,
    warp: Callable[[F64], F64],
) -> tuple[F64, F64, F64]:
    """Bronchi running beside the arteries of one lobe (bronchovascular bundles): polylines
    (b, 5, 3), outer radii and lumen radii."""
    ref = _unit(rng.normal(size=3))
    ends: dict[int, F64] = {}
    lines: list[F64] = []
    radii: list[float] = []
    for idx, br in enumerate(tree):
        if br.r0 < r_min:
            continue
        if br.parent >= 0 and br.parent not in ends:
            continue
        r_aw = k_ba * br.r0
        d = _unit(br.pts[-1] - br.pts[0])
        n = np.cross(d, ref)
        n = _unit(n) if np.linalg.norm(n) > 1e-3 else _perp(d, rng)
        pts = br.pts[1:] + n * (br.r0 + r_aw + 0.6)
        first = ends[br.parent] if br.parent >= 0 else start
        lines.append(np.vstack([first, pts]))
        radii.append(r_aw)
        ends[idx] = pts[-1]
    if not lines:
        return np.zeros((0, 5, 3)), np.zeros(0), np.zeros(0)
    # Warping each point on its own keeps children attached: a child starts at the very
    # point its parent ends.
    r = np.array(radii)
    return warp(np.stack(lines)), r, r - np.maximum(0.3, 0.18 * r)


# --------------------------------------------------------------------------------------------
# Nodules


@dataclass(frozen=True, eq=False)
class _Shape:
    """Star-shaped solid: radius r0 * (1 + sum_k a_k exp(s_k (w . d_k - 1))) in direction w,
    compressed by `flat` along the unit normal `axis`."""

    center: F64  # (z, y, x)
    r0: float
    dirs: F64  # (k, 3)
    amps: F64
    sharp: F64
    axis: F64
    flat: float
    hu: float
    edge: float  # soft-edge width, mm
    mode: str  # "over" or "max"

    def g(self, w: F64) -> F64:
        if len(self.amps) == 0:
            return np.ones(w.shape[:-1])
        dots = w @ self.dirs.T
        return np.asarray(1.0 + (self.amps * np.exp(self.sharp * (dots - 1.0))).sum(axis=-1))

    def rmax(self) -> float:
        return self.r0 * (1.0 + float(self.amps.sum()))

    def paint(self, g: _Grid, slab: F32, z_first: float) -> None:
        r = self.rmax() + self.edge + g.w3
        c = self.center
        nzs = slab.shape[0]
        k0 = max(0, math.ceil((c[0] - r - z_first) / g.dz))
        k1 = min(nzs - 1, math.floor((c[0] + r - z_first) / g.dz))
        if k1 < k0:
            return
        rs = g.rows(c[1] - r, c[1] + r)
        cs = g.cols(c[2] - r, c[2] + r)
        zz = (z_first + np.arange(k0, k1 + 1) * g.dz - c[0])[:, None, None]
        yy = (g.y[rs] - c[1])[None, :, None]
        xx = (g.x[cs] - c[2])[None, None, :]
        v = np.stack(np.broadcast_arrays(zz, yy, xx), axis=-1)
        if self.flat < 1.0:
            v = v + (1.0 / self.flat - 1.0) * (v @ self.axis)[..., None] * self.axis
        rho = np.linalg.norm(v, axis=-1) + 1e-6
        sd = (rho - self.r0 * self.g(v / rho[..., None])) * self.flat
        occ = _occ(sd, max(self.edge, g.w3))
        sub = slab[k0 : k1 + 1, rs, cs]
        if self.mode == "max":
            target = np.maximum(sub, np.float32(self.hu))
        else:
            # Keep bone (ribs next to juxtapleural nodules) where it is denser than the nodule.
            target = np.where(sub > max(150.0, self.hu), sub, np.float32(self.hu))
        sub += occ * (target - sub)


@dataclass(frozen=True, eq=False)
class _Nodule:
    kind: str
    diameter: float  # equivalent-sphere diameter of the body, mm
    parts: tuple[_Shape, ...]  # painted in order
    spicules: _Caps

    @property
    def center(self) -> F64:
        return self.parts[0].center

    def paint(self, g: _Grid, slab: F32, lung: Bool, scratch: F32, z_first: float) -> None:
        for part in self.parts:
            part.paint(g, slab, z_first)
        if len(self.spicules.r0):
            _paint_layer(g, slab, lung, scratch, z_first, _Layer(self.spicules, self.parts[0].hu))


def _morphology(kind: str, rng: np.random.Generator) -> str:
    if kind == "lobulated":
        return "lobulated"
    if kind in ("calcified", "perifissural"):
        return "round"
    if kind == "ground-glass":
        return str(rng.choice(["round", "irregular"]))
    if kind == "part-solid":
        return str(rng.choice(["irregular", "lobulated", "round"]))
    if kind == "solid":
        return str(
            rng.choice(["round", "lobulated", "irregular", "spiculated"], p=[0.35, 0.2, 0.25, 0.2])
        )
    return str(rng.choice(["round", "irregular", "lobulated"], p=[0.5, 0.3, 0.2]))


def _bumps(morph: str, rng: np.random.Generator) -> tuple[F64, F64, F64]:
    if morph == "lobulated":
        k, amp, sharp = int(rng.integers(4, 8)), (0.10, 0.25), (3.0, 6.0)
    elif morph in ("irregular", "spiculated"):
        k, amp, sharp = 10, (0.04, 0.14), (6.0, 14.0)
    else:
        k, amp, sharp = 4, (0.0, 0.07), (2.0, 4.0)
    dirs = np.array([_unit(rng.normal(size=3)) for _ in range(k)])
    return dirs, rng.uniform(*amp, size=k), rng.uniform(*sharp, size=k)


def _shape(
    center: F64,
    diameter: float,
    morph: str,
    rng: np.random.Generator,
    hu: float,
    edge: float,
    mode: str = "over",
    axis: F64 | None = None,
    flat: float = 1.0,
) -> _Shape:
    """A shape whose equivalent-sphere diameter is `diameter`."""
    dirs, amps, sharp = _bumps(morph, rng)
    probe = _Shape(center, 1.0, dirs, amps, sharp, np.array([1.0, 0.0, 0.0]), 1.0, hu, edge, mode)
    mean_g3 = float(np.mean(probe.g(_SPHERE) ** 3))
    r0 = diameter / (2.0 * (flat * mean_g3) ** (1.0 / 3.0))
    ax = np.array([1.0, 0.0, 0.0]) if axis is None else _unit(axis)
    return _Shape(center, r0, dirs, amps, sharp, ax, flat, hu, edge, mode)


def _spicules(sh: _Shape, rng: np.random.Generator, vox: float) -> _Caps:
    t = _TubeSet(vox)
    for _ in range(int(rng.integers(5, 14))):
        w = _unit(rng.normal(size=3))
        rr = sh.r0 * float(sh.g(w[None, :])[0])
        length = rng.uniform(0.4, 1.2) * sh.r0 + 2.0
        a = sh.center + w * 0.8 * rr
        b = sh.center + w * (rr + length)
        t.add(np.vstack([a, b]), np.array([rng.uniform(0.35, 0.6), 0.15]))
    return t.build()


_KIND_CAP_MM = {
    "calcified": 12.0,
    "perifissural": 10.0,
    "vessel-attached": 16.0,
    "juxtapleural": 20.0,
}


class _Placer:
    """Places nodules by kind; every centre is snapped to a voxel centre before the checks."""

    def __init__(self, a: _Anatomy, g: _Grid, tubes: _Tubes, fov_r: float) -> None:
        self.a, self.g, self.tubes, self.fov_r = a, g, tubes, fov_r
        segs_a, segs_b, radii = [], [], []
        for br in tubes.vessels:
            segs_a.append(br.pts[:-1])
            segs_b.append(br.pts[1:])
            radii.append(np.full(len(br.pts) - 1, 0.5 * (br.r0 + br.r1)))
        self.sa = np.vstack(segs_a) if segs_a else np.zeros((0, 3))
        self.sb = np.vstack(segs_b) if segs_b else np.zeros((0, 3))
        self.sr = np.concatenate(radii) if radii else np.zeros(0)
        self.placed: list[_Nodule] = []

    def vessel_clearance(self, p: F64) -> tuple[F64, F64]:
        """Distance from p to each vessel segment's surface, and the segment radii."""
        d = self.sb - self.sa
        t = np.clip(((p - self.sa) * d).sum(axis=1) / np.maximum((d * d).sum(axis=1), 1e-9), 0, 1)
        q = self.sa + d * t[:, None] - p
        return np.sqrt((q * q).sum(axis=1)) - self.sr, self.sr

    def inside_volume(self, c: F64, rmax: float) -> bool:
        g = self.g
        if c[0] - rmax < g.z[0] or c[0] + rmax > g.z[-1]:
            return False
        return math.hypot(c[1], c[2]) + rmax + 5.0 < self.fov_r

    def free(self, c: F64, rmax: float) -> bool:
        if len(self.tubes.solid.r0) and float(_clearance(self.tubes.solid, c).min()) < rmax + 2.0:
            return False
        return all(
            float(np.linalg.norm(c - n.center)) > rmax + n.parts[0].rmax() + 4.0
            for n in self.placed
        )

    def lung(self, c: F64) -> dict[str, float]:
        parts = self.a.lung_parts(c[None, 0], c[None, 1], c[None, 2])
        return {k: float(v[0]) for k, v in parts.items()}

    def try_place(self, kind: str, d: float, rng: np.random.Generator) -> _Nodule | None:
        a, g = self.a, self.g
        morph = _morphology(kind, rng)
        edge = g.w3
        solid_hu = rng.uniform(15.0, 60.0)
        if kind == "juxtapleural":
            uu = float(a.uz(rng.uniform(g.z[0], g.z[-1])))
            if not 0.12 < uu < 0.9:
                return None
            side = float(rng.choice([-1.0, 1.0]))
            delta = math.radians(rng.uniform(45.0, 150.0))
            flat = rng.uniform(0.7, 0.9)
            wall = a.wall_point(delta, side, uu, 0.0)
            inward = np.array([0.0, a.yc - wall[1], a.xc - wall[2]])
            inward = _unit(inward)
            probe = _shape(wall, d, morph, rng, solid_hu, edge, axis=inward, flat=flat)
            depth = flat * probe.r0 * rng.uniform(0.55, 0.85)
            c = g.snap(wall + inward * depth)
            if c is None:
                return None
            sh = _shape(c, d, morph, rng, solid_hu, edge, axis=inward, flat=flat)
            lp = self.lung(c)
            reach = flat * sh.r0
            if not (
                -0.95 * reach < lp["costal"] < -0.3 * reach and lp["lung"] <= lp["costal"] + 0.2
            ):
                return None
            if max(-lp["med"], -lp["dia"], lp["cap"]) > -(sh.rmax() + 3.0):
                return None
            return self._finish(kind, d, (sh,), None, rng)
        if kind == "vessel-attached":
            cand = np.nonzero((self.sr > 0.7) & (self.sr < 3.5))[0]
            if not len(cand):
                return None
            s = int(rng.choice(cand))
            p = self.sa[s] + (self.sb[s] - self.sa[s]) * rng.uniform(0.2, 0.8)
            dirv = _unit(self.sb[s] - self.sa[s])
            probe = _shape(p, d, morph, rng, solid_hu, edge)
            c = g.snap(p + _perp(dirv, rng) * (self.sr[s] + probe.r0 * rng.uniform(0.6, 0.85)))
            if c is None:
                return None
            sh = _shape(c, d, morph, rng, solid_hu, edge)
            clear, _ = self.vessel_clearance(c)
            # The nodule surface must reach into the vessel: centre within r0 of its wall.
            if not (0.3 * sh.r0 < clear[s] < 0.95 * sh.r0):
                return None
            if self.lung(c)["lung"] > -(sh.rmax() + 1.0):
                return None
            return self._finish(kind, d, (sh,), None, rng)
        if kind == "perifissural":
            p = self.tubes.cloud[int(rng.integers(len(self.tubes.cloud)))].copy()
            use_minor = p[2] < a.x_m(a.uz(p[0])) and rng.random() < 0.3
            fn = a.zminor if use_minor else a.zfis
            p[0] = float(fn(p[2], p[1]))
            h = 0.5
            n = np.array(
                [
                    1.0,
                    -(fn(p[2], p[1] + h) - fn(p[2], p[1] - h)) / (2 * h),
                    -(fn(p[2] + h, p[1]) - fn(p[2] - h, p[1])) / (2 * h),
                ]
            )
            n = _unit(n)
            flat = rng.uniform(0.45, 0.7)
            probe = _shape(p, d, morph, rng, solid_hu, edge, axis=n, flat=flat)
            c = g.snap(p + n * flat * probe.r0 * rng.uniform(-0.3, 0.3))
            if c is None:
                return None
            sh = _shape(c, d, morph, rng, solid_hu, edge, axis=n, flat=flat)
            major, minor = a.fissure_dist(c[None, 0], c[None, 1], c[None, 2])
            dist = float(minor[0] if use_minor else major[0])
            if abs(dist) > 0.7 * flat * sh.r0 or self.lung(c)["lung"] > -(sh.rmax() + 1.0):
                return None
            return self._finish(kind, d, (sh,), None, rng)
        # Nodules fully inside the parenchyma.
        c = g.snap(self.tubes.cloud[int(rng.integers(len(self.tubes.cloud)))])
        if c is None:
            return None
        parts: tuple[_Shape, ...]
        if kind == "ground-glass":
            parts = (_shape(c, d, morph, rng, rng.uniform(-720.0, -480.0), 1.5, "max"),)
        elif kind == "part-solid":
            outer = _shape(c, d, morph, rng, rng.uniform(-650.0, -450.0), 1.2, "max")
            core_c = c + _unit(rng.normal(size=3)) * outer.r0 * rng.uniform(0.0, 0.2)
            core = _shape(core_c, d * rng.uniform(0.35, 0.6), "irregular", rng, solid_hu, edge)
            parts = (outer, core)
        elif kind == "calcified":
            if rng.random() < 0.6:
                parts = (_shape(c, d, morph, rng, rng.uniform(250.0, 900.0), edge),)
            else:
                body = _shape(c, d, morph, rng, solid_hu, edge)
                parts = (
                    body,
                    _shape(
                        c, d * rng.uniform(0.35, 0.6), "round", rng, rng.uniform(400.0, 900.0), edge
                    ),
                )
        else:
            parts = (_shape(c, d, morph, rng, solid_hu, edge),)
        rmax = parts[0].rmax()
        if self.lung(c)["lung"] > -(rmax + 1.0):
            return None
        if len(self.sr):
            clear, radii = self.vessel_clearance(c)
            if kind == "ground-glass":  # small vessels may cross ground glass, big ones not
                if np.any((radii > 1.5) & (clear < 0.5 * rmax)):
                    return None
            elif np.any((radii > 1.2) & (clear < rmax + 0.5)):
                return None
        return self._finish(kind, d, parts, morph, rng)

    def _finish(
        self,
        kind: str,
        d: float,
        parts: tuple[_Shape, ...],
        morph: str | None,
        rng: np.random.Generator,
    ) -> _Nodule | None:
        c = parts[0].center
        spic = _spicules(parts[0], rng, self.g.w3) if morph == "spiculated" else _Caps.empty()
        reach = parts[0].rmax() + (parts[0].r0 * 1.2 + 2.0 if morph == "spiculated" else 0.0)
        if not self.inside_volume(c, reach) or not self.free(c, reach):
            return None
        nod = _Nodule(kind=kind, diameter=d, parts=parts, spicules=spic)
        self.placed.append(nod)
        return nod


def _place_nodules(
    a: _Anatomy,
    g: _Grid,
    tubes: _Tubes,
    rng: np.random.Generator,
    count: int,
    d_min: float,
    d_max: float,
    fov_r: float,
) -> list[_Nodule]:
    placer = _Placer(a, g, tubes, fov_r)
    order = [VALIDATION_NODULE_KINDS[i] for i in rng.permutation(len(VALIDATION_NODULE_KINDS))]
    kinds = [order[i % len(order)] for i in range(count)]
    for kind in kinds:
        hi = max(d_min, min(d_max, _KIND_CAP_MM.get(kind, d_max)))
        for _ in range(600):
            d = float(math.exp(rng.uniform(math.log(d_min), math.log(hi))))
            if placer.try_place(kind, round(d, 2), rng) is not None:
                break
        else:
            raise RuntimeError(
                f"could not place a {kind} nodule of {d_min:.1f}-{hi:.1f} mm in this volume"
            )
    return placer.placed


# --------------------------------------------------------------------------------------------
# Imaging chain


class _Scanner:
    """MTF, noise power spectrum, slice profile, HU calibration, motion and padding."""

    def __init__(
        self,
        g: _Grid,
        a: _Anatomy,
        rng: np.random.Generator,
        kernel: ReconKernel,
        noise_sd: float | None,
    ) -> None:
        u = rng.uniform
        self.g = g
        sharp = kernel is ReconKernel.LUNG
        default_sd = u(23.0, 28.0) if sharp else u(19.0, 25.0)
        self.sigma0 = default_sd if noise_sd is None else float(noise_sd)
        self.offset = u(-5.0, 5.0)
        self.scale = u(0.99, 1.01)
        self.pad = float(rng.choice([-2000.0, -3024.0]))
        self.ssp = u(0.1, 0.22)
        self.rho_z = u(0.05, 0.15) if sharp else u(0.15, 0.3)
        fy = np.fft.fftfreq(g.ny, d=g.dy)[:, None]
        fx_full = np.fft.fftfreq(g.nx, d=g.dx)[None, :]
        fx = np.fft.rfftfreq(g.nx, d=g.dx)[None, :]
        if sharp:
            f50, fb, boost = u(0.7, 0.9), u(0.3, 0.45), u(0.2, 0.4)

            def mtf(f: F64) -> F64:
                e = (f / fb) ** 2
                return np.asarray(2.0 ** (-((f / f50) ** 4)) * (1.0 + boost * e * np.exp(1.0 - e)))
        else:
            f50 = u(0.32, 0.42)

            def mtf(f: F64) -> F64:
                return np.asarray(2.0 ** (-((f / f50) ** 2)))

        f_half = np.sqrt(fy**2 + fx**2)
        f_full = np.sqrt(fy**2 + fx_full**2)
        self.mtf = mtf(f_half).astype(np.float32)

        def nps(f: F64) -> F64:
            m = mtf(f)
            return np.asarray(f * m * m + 0.004 * np.exp(-((f / 0.05) ** 2)))

        norm = math.sqrt(float(np.mean(nps(f_full))))
        amp = np.sqrt(nps(f_half)) / norm
        # Complex white noise in the half spectrum with E|Z|^2 = N gives unit-variance output.
        n_pix = g.ny * g.nx
        self.amp = (amp * math.sqrt(6.0 * n_pix)).astype(np.float32)  # uniform(-.5,.5): var 1/12
        # Noise is strongest at the body centre and falls towards the surface and the air.
        f_edge = u(0.6, 0.78)
        dx, dy = g.x[None, :] - a.xc, g.y[:, None] - a.yc
        r = np.sqrt(dx * dx + dy * dy) + 1e-3
        rho = r / a.body_radius(dx / r, dy / r)
        self.sigma = (self.sigma0 * (f_edge + (1.0 - f_edge) * np.exp(-(rho**2) / 0.35))).astype(
            np.float32
        )
        rr = np.sqrt(g.y[:, None] ** 2 + g.x[None, :] ** 2)
        self.fov_r = 0.5 * min(g.ny * g.dy, g.nx * g.dx)
        self.outside = rr > self.fov_r
        self.motion: dict[int, tuple[int, float]] = {}
        n_events = int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))
        lower = [k for k in range(g.nz) if 0.45 < a.uz(g.z[k]) < 0.95]
        for _ in range(n_events):
            if not lower:
                break
            kc = int(rng.choice(lower))
            half = int(rng.integers(1, 4))
            m_r = int(rng.integers(1, 3))
            strength = u(0.4, 0.9)
            for k in range(kc - half, kc + half + 1):
                if 0 <= k < g.nz:
                    self.motion[k] = (m_r, strength)
        self.rng = rng
        self._prev: F32 | None = None

    def halo(self, k0: int, k1: int) -> int:
        return 1 + max((self.motion[k][0] for k in range(k0, k1) if k in self.motion), default=0)

    def _ssp(self, slab: F32, i: int) -> F32:
        a = np.float32(self.ssp)
        out: F32 = slab[i] * (np.float32(1.0) - 2 * a)
        out += a * slab[i - 1]
        out += a * slab[i + 1]
        return out

    def finish(self, slab: F32, halo: int, k0: int, out: npt.NDArray[np.int16]) -> None:
        """Turn noise-free slab slices (with halo) into stored HU for slices k0.. in place."""
        g = self.g
        n_out = slab.shape[0] - 2 * halo
        half = (g.ny, g.nx // 2 + 1)
        for j in range(n_out):
            k = k0 + j
            i = halo + j
            img = self._ssp(slab, i)
            if k in self.motion:
                m_r, strength = self.motion[k]
                acc = np.zeros_like(img)
                wsum = 0.0
                for o in range(-m_r, m_r + 1):
                    wgt = m_r + 1 - abs(o)
                    acc += np.float32(wgt) * self._ssp(slab, i + o)
                    wsum += wgt
                img = img * np.float32(1.0 - strength) + acc * np.float32(strength / wsum)
            spec = np.fft.rfft2(img)
            spec *= self.mtf
            img = np.fft.irfft2(spec, s=(g.ny, g.nx)).astype(np.float32, copy=False)
            z = self.rng.random((*half, 2), dtype=np.float32)
            z -= np.float32(0.5)
            zc = z.view(np.complex64)[..., 0]
            zc *= self.amp
            noise = np.fft.irfft2(zc, s=(g.ny, g.nx)).astype(np.float32, copy=False)
            if self._prev is not None:
                noise *= np.float32(math.sqrt(1.0 - self.rho_z**2))
                noise += np.float32(self.rho_z) * self._prev
            self._prev = noise
            img *= np.float32(self.scale)
            img += np.float32(self.offset)
            img += noise * self.sigma
            np.clip(img, HU_MIN, HU_MAX, out=img)
            np.copyto(img, np.float32(self.pad), where=self.outside)
            out[j] = np.rint(img).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Public entry point


def make_validation_ct(
    *,
    seed: int,
    slices: int = 280,
    rows: int = 512,
    cols: int = 512,
    pixel_spacing_mm: float | None = None,
    slice_spacing_mm: float | None = None,
    kernel: ReconKernel | str = ReconKernel.STANDARD,
    nodule_count: int = 6,
    min_nodule_mm: float = 3.0,
    max_nodule_mm: float = 30.0,
    contrast: bool = False,
    coverage: Coverage | str = Coverage.FULL,
    noise_sd_hu: float | None = None,
) -> CtPhantom:
    """Generate a deterministic validation-style chest CT (HU, int16) with nodule truth.

    Spacings left as None are drawn per seed from clinical thin-slice ranges (pixel 0.70-0.87 mm,
    slice 0.95-1.15 mm); noise_sd_hu (the noise SD at the body centre) likewise (standard
    19-25 HU, lung 23-28 HU). Nodule kinds cycle through a seed-shuffled order of
    VALIDATION_NODULE_KINDS. For validation only: never train on these phantoms.
    Raises RuntimeError when the nodules cannot be fitted into the lungs in the volume.
    """
    try:
        kernel = ReconKernel(kernel)
    except ValueError:
        raise ValueError(
            f"kernel must be one of {[k.value for k in ReconKernel]}, got {kernel!r}"
        ) from None
    try:
        coverage = Coverage(coverage)
    except ValueError:
        raise ValueError(
            f"coverage must be one of {[c.value for c in Coverage]}, got {coverage!r}"
        ) from None
    if slices < 4 or rows < 32 or cols < 32:
        raise ValueError("volume too small: need at least 4 x 32 x 32 voxels")
    if not 0.0 < min_nodule_mm <= max_nodule_mm:
        raise ValueError("need 0 < min_nodule_mm <= max_nodule_mm")
    if nodule_count < 0:
        raise ValueError("nodule_count must be >= 0")
    if noise_sd_hu is not None and noise_sd_hu < 0:
        raise ValueError("noise_sd_hu must be >= 0")
    ss = np.random.SeedSequence([seed, 0x7A11D])
    rng_geo, rng_anat, rng_tree, rng_nod, rng_scan = (np.random.default_rng(s) for s in ss.spawn(5))
    dxy = pixel_spacing_mm if pixel_spacing_mm is not None else rng_geo.uniform(0.70, 0.87)
    dz = slice_spacing_mm if slice_spacing_mm is not None else rng_geo.uniform(0.95, 1.15)
    if dxy <= 0 or dz <= 0:
        raise ValueError("spacings must be positive")
    z_top = -rng_geo.uniform(40.0, 220.0)  # table position of the top slice
    origin = (z_top - (slices - 1) * dz, -(rows - 1) * dxy / 2.0, -(cols - 1) * dxy / 2.0)
    g = _Grid((slices, rows, cols), (dz, dxy, dxy), origin)
    anat = _Anatomy(g, rng_anat, coverage, contrast)
    tubes = _build_tubes(anat, g, rng_tree)
    scanner = _Scanner(g, anat, rng_scan, kernel, noise_sd_hu)
    nodules = _place_nodules(
        anat, g, tubes, rng_nod, nodule_count, min_nodule_mm, max_nodule_mm, scanner.fov_r
    )
    hu = np.empty((slices, rows, cols), dtype=np.int16)
    mask = np.zeros((slices, rows, cols), dtype=np.bool_)
    n_max = _SLAB + 2 * max(
        scanner.halo(k, min(slices, k + _SLAB)) for k in range(0, slices, _SLAB)
    )
    slab_buf = np.empty((n_max, rows, cols), dtype=np.float32)
    lung_buf = np.empty((n_max, rows, cols), dtype=np.bool_)
    scratch_buf = np.zeros((n_max, rows, cols), dtype=np.float32)  # kept zero between layers
    for k0 in range(0, slices, _SLAB):
        k1 = min(slices, k0 + _SLAB)
        h = scanner.halo(k0, k1)
        n = k1 - k0 + 2 * h
        z_first = g.z0 + (k0 - h) * dz
        slab, lung, scratch = slab_buf[:n], lung_buf[:n], scratch_buf[:n]
        for i in range(n):
            slab[i], lung[i] = anat.render_slice(z_first + i * dz)
        for layer in tubes.layers:
            _paint_layer(g, slab, lung, scratch, z_first, layer)
        for nod in nodules:
            nod.paint(g, slab, lung, scratch, z_first)
        scanner.finish(slab, h, k0, hu[k0:k1])
        mask[k0:k1] = lung[h : h + (k1 - k0)]
    mask &= ~scanner.outside
    truths = tuple(
        NoduleTruth(
            center_mm=(float(n.center[2]), float(n.center[1]), float(n.center[0])),
            diameter_mm=float(n.diameter),
            kind=n.kind,
        )
        for n in nodules
    )
    return CtPhantom(
        hu=hu,
        spacing_mm=(float(dz), float(dxy), float(dxy)),
        origin_mm=(origin[2], origin[1], origin[0]),
        nodules=truths,
        lung_mask=mask,
    )
