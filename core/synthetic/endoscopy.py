"""Synthetic upper-GI endoscopy frames (oesophagus) with lesion and frame-quality truth.

A frame is rendered procedurally: pink oesophageal mucosa with longitudinal folds converging on a
dark lumen, fine submucosal vessels, illumination falling off with depth, the endoscope's round
field with vignetting, specular highlights and a few bubbles. Lesions are irregular reddish or
whitish patches with altered texture. Uninformative frames are motion-blurred, too dark, covered
by bubbles, or show the stomach instead of the oesophagus. Everything is deterministic per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import VLEndoscopicImageStorage

from core.synthetic.dicom_writer import WrittenSeries, add_common_modules, make_uid, save_part10
from core.synthetic.interpolation import interp_matrix

__all__ = [
    "UNINFORMATIVE_KINDS",
    "EndoscopyFrameTruth",
    "WrittenSeries",
    "make_endoscopy_frame",
    "write_endoscopy_study",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

UNINFORMATIVE_KINDS: tuple[str, ...] = ("blur", "dark", "bubbles", "stomach")


@dataclass(frozen=True)
class EndoscopyFrameTruth:
    """Ground truth of one frame."""

    informative: bool  # False for blurred / dark / bubbles-only / out-of-oesophagus frames
    lesion: bool
    lesion_box: tuple[int, int, int, int] | None  # (row0, col0, row1, col1), row1/col1 exclusive


def _smooth_noise(rng: np.random.Generator, rows: int, cols: int, cell: int) -> F32:
    """Band-limited noise (about unit SD) with features about `cell` pixels wide."""
    gh, gw = max(2, rows // cell + 2), max(2, cols // cell + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    out = interp_matrix(rows, gh) @ g @ interp_matrix(cols, gw).T
    return (out / max(float(out.std()), 1e-6)).astype(np.float32)


def _smoothstep(e0: float, e1: float, x: F32) -> F32:
    t: F32 = np.clip((x - e0) / (e1 - e0), 0.0, 1.0).astype(np.float32)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


@dataclass(frozen=True)
class _Frame:
    rows: int
    cols: int
    y: F32  # normalised coordinates: unit = half the shorter side, origin at the centre
    x: F32
    rho: F32  # distance from the origin
    origin: tuple[float, float]  # pixel (row, col) of the origin
    unit: float  # pixels per coordinate unit

    @staticmethod
    def make(
        rows: int, cols: int, origin: tuple[float, float] | None = None, unit: float | None = None
    ) -> _Frame:
        """Coordinates of a rows x cols grid; by default centred, unit = half the shorter
        side (core.synthetic.endoscopy_domain places them on a field of view instead)."""
        half = 0.5 * min(rows, cols) if unit is None else unit
        oy, ox = ((rows - 1) / 2.0, (cols - 1) / 2.0) if origin is None else origin
        y = ((np.arange(rows, dtype=np.float32) - oy) / half)[:, None]
        x = ((np.arange(cols, dtype=np.float32) - ox) / half)[None, :]
        y2 = np.broadcast_to(y, (rows, cols)).astype(np.float32)
        x2 = np.broadcast_to(x, (rows, cols)).astype(np.float32)
        rho = np.sqrt(y2 * y2 + x2 * x2).astype(np.float32)
        return _Frame(rows, cols, y2, x2, rho, (float(oy), float(ox)), float(half))


def _tissue(
    f: _Frame, rng: np.random.Generator, *, stomach: bool, lumen_offset: float = 0.35
) -> tuple[F32, F32, F32, F32, tuple[float, float, float]]:
    """Mucosa colour (rows, cols, 3), illumination, fold ridge map, distance to lumen, lumen."""
    ang = rng.uniform(0.0, 2.0 * math.pi)
    off = rng.uniform(0.0, lumen_offset)
    ly, lx = off * math.sin(ang), off * math.cos(ang)
    lr = rng.uniform(0.08, 0.16) if not stomach else rng.uniform(0.15, 0.3)
    dy, dx = f.y - ly, f.x - lx
    dl: F32 = np.sqrt(dy * dy + dx * dx).astype(np.float32)
    theta: F32 = np.arctan2(dy, dx).astype(np.float32)
    # Illumination from the scope tip: distant tissue (near the lumen) is dark.
    illum = (0.12 + 0.88 * _smoothstep(lr * 0.5, lr + 0.75, dl) ** 0.8).astype(np.float32)
    n1 = _smooth_noise(rng, f.rows, f.cols, max(8, f.rows // 8))
    if stomach:
        # Gastric rugae: thick tortuous ridges; orange-red mucosa.
        a = rng.uniform(0.0, math.pi)
        along = f.x * math.cos(a) + f.y * math.sin(a)
        ridge: F32 = ((0.5 + 0.5 * np.cos(rng.uniform(14.0, 22.0) * along + 2.5 * n1)) ** 2).astype(
            np.float32
        )
        near = np.array([0.92, 0.42, 0.27], dtype=np.float32)
        far = np.array([0.5, 0.1, 0.05], dtype=np.float32)
    else:
        # Longitudinal oesophageal folds seen end-on: radial ridges converging on the lumen.
        n_folds = int(rng.integers(5, 10))
        wobble = 0.6 * n1 + rng.uniform(0.0, 2.0 * math.pi)
        folds = (0.5 + 0.5 * np.cos(n_folds * theta + wobble)) ** 3
        ridge = (folds * _smoothstep(lr, lr + 0.5, dl)).astype(np.float32)
        near = np.array(
            [rng.uniform(0.9, 0.98), rng.uniform(0.5, 0.62), rng.uniform(0.42, 0.54)],
            dtype=np.float32,
        )
        far = np.array([0.55, 0.12, 0.09], dtype=np.float32)
    depth_mix = illum[..., None]
    rgb = (far + (near - far) * depth_mix).astype(np.float32)
    # Ridge shading: fold crests catch more light.
    shade = 0.82 + 0.3 * ridge
    # Fine submucosal vessels: thin lines on the zero crossings of band-limited noise.
    v1 = np.exp(-((_smooth_noise(rng, f.rows, f.cols, max(6, f.rows // 20)) / 0.06) ** 2))
    v2 = np.exp(-((_smooth_noise(rng, f.rows, f.cols, max(4, f.rows // 40)) / 0.05) ** 2))
    vessels = (0.7 * v1 + 0.35 * v2).astype(np.float32) * (0.4 + 0.6 * illum)
    tint = np.array([0.08, 0.5, 0.45], dtype=np.float32)
    rgb *= 1.0 - np.clip(vessels, 0.0, 1.0)[..., None] * tint
    rgb *= (shade * illum)[..., None]
    # Mucosal micro texture.
    rgb *= (1.0 + 0.04 * _smooth_noise(rng, f.rows, f.cols, 3))[..., None]
    return rgb.astype(np.float32), illum, ridge, dl, (ly, lx, lr)


def _draw_lesion(
    f: _Frame,
    rng: np.random.Generator,
    rgb: F32,
    illum: F32,
    dl: F32,
    lumen: tuple[float, float, float],
) -> tuple[int, int, int, int]:
    """Paint an irregular discoloured patch away from the lumen; return its bounding box."""
    ly, lx, lr = lumen
    size = 0.0
    cy = cx = 0.0
    for _ in range(200):
        size = rng.uniform(0.1, 0.22)
        ang = rng.uniform(0.0, 2.0 * math.pi)
        dist = rng.uniform(lr + size + 0.08, 0.95)
        cy, cx = ly + dist * math.sin(ang), lx + dist * math.cos(ang)
        if math.hypot(cy, cx) + size * 1.3 < 0.88:
            break
    dy, dx = f.y - cy, f.x - cx
    r = np.sqrt(dy * dy + dx * dx)
    phi = np.arctan2(dy, dx)
    rad = np.full_like(r, size)
    for k in range(2, 7):
        rad = rad + size * rng.uniform(0.02, 0.14) / k**0.3 * np.cos(
            k * phi + rng.uniform(0.0, 2.0 * math.pi)
        )
    # Boundary roughness from noise, so the margin is irregular rather than a smooth star.
    rad = rad * (1.0 + 0.12 * _smooth_noise(rng, f.rows, f.cols, max(4, f.rows // 40)))
    mask = _smoothstep(0.0, 0.02, (rad - r).astype(np.float32))
    kind = rng.choice(["red", "white", "mixed"])
    granular = _smooth_noise(rng, f.rows, f.cols, 3)
    nodular = _smooth_noise(rng, f.rows, f.cols, max(4, f.rows // 30))
    base = rgb.copy()
    light = (0.25 + 0.75 * illum)[..., None]
    if kind in ("red", "mixed"):
        red = np.array([1.0, 0.45, 0.45], dtype=np.float32)
        base = base * red * (1.0 + 0.05 * granular[..., None])
        base[..., 0] = np.maximum(base[..., 0], 0.55 * light[..., 0])
    if kind in ("white", "mixed"):
        patchy = _smoothstep(-0.3, 0.6, nodular) if kind == "mixed" else np.ones_like(nodular)
        white = np.array([0.92, 0.86, 0.82], dtype=np.float32) * light
        w = (0.55 * patchy)[..., None]
        base = base * (1.0 - w) + white * w
    # Altered texture: coarse granular surface instead of the smooth vessel pattern.
    base *= (1.0 + 0.09 * granular + 0.06 * nodular)[..., None]
    rgb[...] = rgb * (1.0 - mask[..., None]) + base * mask[..., None]
    rows_on = np.flatnonzero((mask > 0.5).any(axis=1))
    cols_on = np.flatnonzero((mask > 0.5).any(axis=0))
    return int(rows_on[0]), int(cols_on[0]), int(rows_on[-1]) + 1, int(cols_on[-1]) + 1


def _bubbles(
    f: _Frame, rng: np.random.Generator, rgb: F32, count: int, rmin: float, rmax: float
) -> None:
    """Translucent bubbles with bright rims and a specular dot."""
    for _ in range(count):
        rad = rng.uniform(rmin, rmax)
        ang = rng.uniform(0.0, 2.0 * math.pi)
        dist = rng.uniform(0.0, 0.9)
        cy, cx = dist * math.sin(ang), dist * math.cos(ang)
        # Work on the bubble's bounding box only.
        half, (oy, ox) = f.unit, f.origin
        r0 = max(0, int((cy - rad) * half + oy) - 1)
        r1 = min(f.rows, int((cy + rad) * half + oy) + 2)
        c0 = max(0, int((cx - rad) * half + ox) - 1)
        c1 = min(f.cols, int((cx + rad) * half + ox) + 2)
        if r1 <= r0 or c1 <= c0:
            continue
        yy, xx = f.y[r0:r1, c0:c1] - cy, f.x[r0:r1, c0:c1] - cx
        d = np.sqrt(yy * yy + xx * xx) / rad
        inside = (d < 1.0).astype(np.float32)
        rim = np.exp(-(((d - 0.95) / 0.06) ** 2)).astype(np.float32)
        spot = np.exp(-((yy + 0.45 * rad) ** 2 + (xx + 0.35 * rad) ** 2) / (0.12 * rad) ** 2)
        box = rgb[r0:r1, c0:c1]
        box *= (1.0 - 0.15 * inside)[..., None]
        box += (0.15 * inside + 0.55 * rim + 0.9 * spot.astype(np.float32))[..., None] * 0.9


def _speculars(f: _Frame, rng: np.random.Generator, rgb: F32, ridge: F32, illum: F32) -> None:
    """Specular reflections of the light guide on wet fold crests close to the scope."""
    score = ridge * illum
    flat = np.flatnonzero((score > 0.5 * float(score.max())) & (f.rho < 0.85))
    if flat.size == 0:
        return
    for idx in rng.choice(flat, size=min(int(rng.integers(3, 11)), flat.size), replace=False):
        i, j = divmod(int(idx), f.cols)
        s = rng.uniform(0.004, 0.018) * min(f.rows, f.cols)
        e = rng.uniform(1.0, 3.0)
        ang = rng.uniform(0.0, math.pi)
        rad = int(3 * s * e) + 2
        r0, r1 = max(0, i - rad), min(f.rows, i + rad + 1)
        c0, c1 = max(0, j - rad), min(f.cols, j + rad + 1)
        yy = np.arange(r0, r1, dtype=np.float32)[:, None] - i
        xx = np.arange(c0, c1, dtype=np.float32)[None, :] - j
        u = xx * math.cos(ang) + yy * math.sin(ang)
        v = -xx * math.sin(ang) + yy * math.cos(ang)
        g = np.exp(-((u / (s * e)) ** 2 + (v / s) ** 2))
        rgb[r0:r1, c0:c1] += (1.6 * g)[..., None].astype(np.float32)


def _motion_blur(rng: np.random.Generator, rgb: F32) -> F32:
    length = int(rng.integers(12, 30))
    ang = rng.uniform(0.0, math.pi)
    acc = np.zeros_like(rgb)
    for t in range(length):
        s = t - length / 2.0
        acc += np.roll(rgb, (round(s * math.sin(ang)), round(s * math.cos(ang))), axis=(0, 1))
    return (acc / length).astype(np.float32)


def make_endoscopy_frame(
    *,
    seed: int,
    rows: int = 480,
    cols: int = 480,
    lesion: bool,
    informative: bool = True,
) -> tuple[npt.NDArray[np.uint8], EndoscopyFrameTruth]:
    """Render one RGB frame (uint8, (rows, cols, 3)) and its truth.

    An uninformative frame is blurred, dark, bubble-covered or gastric (chosen by the seed); with
    lesion=True only blur or darkness is used, so the lesion is still in the frame.
    """
    if rows < 32 or cols < 32:
        raise ValueError("frame too small: need at least 32 x 32 pixels")
    rng = np.random.default_rng(seed)
    f = _Frame.make(rows, cols)
    degrade = ""
    if not informative:
        kinds = UNINFORMATIVE_KINDS[:2] if lesion else UNINFORMATIVE_KINDS
        degrade = str(kinds[int(rng.integers(0, len(kinds)))])
    rgb, illum, ridge, dl, lumen = _tissue(f, rng, stomach=degrade == "stomach")
    box: tuple[int, int, int, int] | None = None
    if lesion:
        box = _draw_lesion(f, rng, rgb, illum, dl, lumen)
    if degrade == "stomach":
        # A pool of gastric fluid in the dependent part.
        tilt = rng.uniform(-0.3, 0.3)
        pool = _smoothstep(
            0.0, 0.06, (f.y - rng.uniform(0.35, 0.6) + tilt * f.x).astype(np.float32)
        )
        fluid = np.array([0.72, 0.66, 0.3], dtype=np.float32) * (0.3 + 0.7 * illum)[..., None]
        rgb[...] = rgb * (1.0 - 0.8 * pool[..., None]) + fluid * 0.8 * pool[..., None]
    _speculars(f, rng, rgb, ridge, illum)
    if degrade == "bubbles":
        _bubbles(f, rng, rgb, int(rng.integers(60, 110)), 0.04, 0.18)
        rgb[...] = rgb * 0.75 + np.float32(0.18)  # turbid fluid veil
    else:
        _bubbles(f, rng, rgb, int(rng.integers(0, 4)), 0.015, 0.05)
    if degrade == "blur":
        rgb = _motion_blur(rng, rgb)
    elif degrade == "dark":
        rgb *= np.float32(rng.uniform(0.06, 0.16))
    # Endoscope optics: round field of view with vignetting and a soft edge.
    field_r = rng.uniform(0.93, 0.99)
    vignette = (1.0 - 0.35 * f.rho**2) * _smoothstep(field_r, field_r - 0.02, f.rho)
    rgb *= vignette[..., None]
    # Sensor noise, then gamma-free quantisation to 8 bits.
    rgb += rng.normal(0.0, 0.012, size=rgb.shape).astype(np.float32)
    out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return out, EndoscopyFrameTruth(informative=informative, lesion=lesion, lesion_box=box)


def _frame_plan(seed: int, frames: int) -> list[tuple[int, bool, bool]]:
    """(frame seed, lesion, informative) per frame: about 1/3 lesions, 1/4 uninformative."""
    rng = np.random.default_rng([seed, 0x5EED])
    order = rng.permutation(frames)
    n_les = max(1, frames // 3) if frames >= 2 else 0
    n_bad = max(1, frames // 4) if frames >= 3 else 0
    lesion_set = set(order[:n_les].tolist())
    bad_set = set(order[n_les : n_les + n_bad].tolist())
    seeds = rng.integers(0, 2**31 - 1, size=frames)
    return [(int(seeds[i]), i in lesion_set, i not in bad_set) for i in range(frames)]


def write_endoscopy_study(
    out_dir: Path,
    *,
    seed: int,
    frames: int = 24,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str | None = None,
    study_date: str = "20260101",
    uid_seed: str | None = None,
) -> tuple[WrittenSeries, tuple[EndoscopyFrameTruth, ...]]:
    """Write frames as VL Endoscopic Image Storage files (ES000001.dcm, ...), one per frame.

    Lesion frames are always informative; the uninformative ones have no lesion.
    """
    # Validation: dciodvfy (dicom3tools 1.00~20220618) reports 0 errors and 0 warnings for these
    # files. No known warnings remain.
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_instance_uid or make_uid(uid_seed, "study")
    series_uid = make_uid(uid_seed, study_uid, "es-series")
    study_time = "100000"
    sop_uids: list[str] = []
    paths: list[Path] = []
    truths: list[EndoscopyFrameTruth] = []
    for n, (fseed, lesion, informative) in enumerate(_frame_plan(seed, frames)):
        img, truth = make_endoscopy_frame(seed=fseed, lesion=lesion, informative=informative)
        sop_uid = make_uid(uid_seed, series_uid, "es-instance", str(n))
        ds = Dataset()
        add_common_modules(
            ds,
            sop_class_uid=VLEndoscopicImageStorage,
            sop_instance_uid=sop_uid,
            patient_id=patient_id,
            patient_name=patient_name,
            study_instance_uid=study_uid,
            study_date=study_date,
            study_time=study_time,
            accession_number="",
            study_description="UPPER GI ENDOSCOPY",
            series_instance_uid=series_uid,
            series_number=1,
            series_description="Synthetic oesophagoscopy frames",
            modality="ES",
            instance_number=n + 1,
        )
        # One frame every 2 s from 10:00:00; TM is HHMMSS, DT is YYYYMMDDHHMMSS.
        secs = 2 * n
        tm = f"10{secs // 60:02d}{secs % 60:02d}"
        ds.ContentDate = study_date
        ds.ContentTime = tm
        ds.AcquisitionDateTime = study_date + tm
        ds.AcquisitionNumber = 1
        # VL Image module: ImageType values 1-2 only (ORIGINAL/PRIMARY); never compressed.
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"
        ds.PatientOrientation = ""
        # Anatomic region: SNOMED CT "Esophagus".
        region = Dataset()
        region.CodeValue = "32849002"
        region.CodingSchemeDesignator = "SCT"
        region.CodeMeaning = "Esophagus"
        ds.AnatomicRegionSequence = Sequence([region])
        # Acquisition Context module: Type 2 sequence, present and empty.
        ds.AcquisitionContextSequence = Sequence([])
        # Image Pixel: 8-bit RGB, colour-by-pixel (PlanarConfiguration 0).
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(img).tobytes()
        ds["PixelData"].VR = "OB"
        path = out_dir / f"ES{n + 1:06d}.dcm"
        save_part10(ds, path)
        sop_uids.append(sop_uid)
        paths.append(path)
        truths.append(truth)
    series = WrittenSeries(
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uids=tuple(sop_uids),
        paths=tuple(paths),
    )
    return series, tuple(truths)
