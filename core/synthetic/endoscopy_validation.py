"""Synthetic endoscopy frames in a second, independent style ("style B"), for validation only:
never used to train a model.

Written apart from core.synthetic.endoscopy and endoscopy_domain (no shared rendering code),
so that a model trained on those meets frames it has not seen: a measured gap between the two
styles says how much a model learnt the renderer rather than the lesion.

How it differs: the oesophagus is a cylinder ray-traced from a fisheye camera placed and tilted
at random inside it (depth, Lambert shading with inverse-square fall-off from the light at the
tip, Phong highlights on fold crests, redder far wall); folds are a height field; vessels are
the borders of Worley cells on the wall; lesions live on the wall (erythema without vessels,
raised white plaque, ulcer with fibrin and a red rim, nodule, salmon tongue) so they shrink
and foreshorten with depth. The capture chain has its own field shapes (round, round cut by
chords, rounded square, full frame), text drawn with a bitmap font, edge enhancement as
processors apply it, interlacing, white balance and saturation shifts, chroma noise and
JPEG. Uninformative frames are defocused, motion-blurred, dim, overexposed, foam-covered or
"red-out" (tip against the wall). Deterministic per seed.
"""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.synthetic.endoscopy import EndoscopyFrameTruth

__all__ = ["VALIDATION_SIZES", "make_validation_frame", "validation_plan"]

F = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

VALIDATION_SIZES: tuple[tuple[int, int], ...] = (
    (576, 768),
    (480, 640),
    (1080, 1350),
    (1080, 1920),
    (720, 1280),
    (768, 1024),
    (540, 720),
    (600, 600),
    (1000, 1000),
)
_BAD_WITH_LESION = ("defocus", "motion", "dim")
_BAD = (*_BAD_WITH_LESION, "overexposed", "foam", "red-out")
_LESIONS = ("erythema", "plaque", "ulcer", "nodule", "salmon")


def validation_plan(n: int, seed0: int) -> list[tuple[int, bool, bool]]:
    """(seed, lesion, informative) per frame: 35 % lesion; 20 % of normal and 15 % of lesion
    frames uninformative."""
    rng = np.random.default_rng([seed0, 0xB])
    plan = []
    for k in range(n):
        lesion = bool(rng.random() < 0.35)
        informative = bool(rng.random() > (0.15 if lesion else 0.2))
        plan.append((seed0 + k, lesion, informative))
    return plan


def _fft_noise(rng: np.random.Generator, shape: tuple[int, int], wavelength: float) -> F:
    """Gaussian random field with a Gaussian spectrum around 1/wavelength, unit SD."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.sqrt(ky * ky + kx * kx)
    spec = np.exp(-0.5 * (k * wavelength) ** 2)
    z = rng.standard_normal((shape[0], shape[1] // 2 + 1)) + 1j * rng.standard_normal(
        (shape[0], shape[1] // 2 + 1)
    )
    out = np.fft.irfft2(z * spec, s=shape)
    return np.asarray(out / max(float(out.std()), 1e-9))


def _worley_border(u: F, v: F, cell: float, rng: np.random.Generator) -> F:
    """Distance to the nearest border between Worley cells (F2 - F1) at (u, v)."""
    gu, gv = np.floor(u / cell).astype(np.int64), np.floor(v / cell).astype(np.int64)
    lo_u, lo_v = int(gu.min()) - 1, int(gv.min()) - 1
    jit = rng.random((int(gu.max()) - lo_u + 3, int(gv.max()) - lo_v + 3, 2))
    d1 = np.full(u.shape, np.inf)
    d2 = np.full(u.shape, np.inf)
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            cu, cv = gu + du, gv + dv
            j = jit[cu - lo_u, cv - lo_v]
            pu, pv = (cu + j[..., 0]) * cell, (cv + j[..., 1]) * cell
            d = np.hypot(u - pu, v - pv)
            d2 = np.where(d < d1, d1, np.minimum(d2, d))
            d1 = np.minimum(d1, d)
    return np.asarray(d2 - d1, dtype=np.float64)


def _field_mask(rng: np.random.Generator, rows: int, cols: int) -> tuple[F, str]:
    """0/1 field-of-view mask at frame size (anti-aliased over one pixel) and its kind."""
    kind = ["round", "chords", "rounded-square", "full"][
        int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15]))
    ]
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    short = min(rows, cols)
    cy = rows / 2.0 + rng.uniform(-0.03, 0.03) * rows
    cx = cols / 2.0 + rng.uniform(-0.12, 0.12) * max(0, cols - short)
    if kind == "full":
        return np.ones((rows, cols), dtype=np.float32), kind
    if kind == "round":
        r = short * rng.uniform(0.42, 0.5)
        sd = r - np.hypot(yy - cy, xx - cx)
    elif kind == "chords":
        r = short * rng.uniform(0.52, 0.62)
        cut = short * rng.uniform(0.4, 0.48)
        sd = np.minimum(r - np.hypot(yy - cy, xx - cx), cut - np.abs(yy - cy))
    else:
        half = short * rng.uniform(0.4, 0.48)
        corner = half * rng.uniform(0.25, 0.5)
        qy = np.maximum(np.abs(yy - cy) - (half - corner), 0.0)
        qx = np.maximum(np.abs(xx - cx) - (half * rng.uniform(1.0, 1.25) - corner), 0.0)
        sd = corner - np.hypot(qy, qx)
    return np.clip(sd + 0.5, 0.0, 1.0), kind


def _lesion_weight(
    rng: np.random.Generator, arc: F, s: F, centre: tuple[float, float], size: float
) -> F:
    """0..1 lesion footprint on the wall (arc length, depth), irregular margin."""
    da = np.angle(np.exp(1j * (arc - centre[0])))  # wall angle wraps at +-pi
    ds = s - centre[1]
    ang = rng.uniform(0.0, math.pi)
    a = da * math.cos(ang) + ds * math.sin(ang)
    b = -da * math.sin(ang) + ds * math.cos(ang)
    elong = rng.uniform(1.0, 2.2)
    rr = np.hypot(a, b * elong)
    phi = np.arctan2(b, a)
    edge = np.ones_like(rr)
    for k in (3, 4, 5, 7):
        edge += rng.uniform(0.0, 0.12) * np.cos(k * phi + rng.uniform(0.0, 2 * math.pi))
    return np.asarray(np.clip((size * edge - rr) / (0.12 * size) + 0.5, 0.0, 1.0))


def _render_scene(
    rng: np.random.Generator, rows: int, cols: int, *, lesion: bool, bad: str
) -> tuple[F, F | None]:
    """Linear RGB scene (rows, cols, 3) seen by the fisheye camera, and the lesion weight."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    half = 0.5 * min(rows, cols)
    u, v = (xx - cols / 2.0) / half, (yy - rows / 2.0) / half
    # Equidistant fisheye, about 140 degrees across the shorter side.
    theta = np.hypot(u, v) * math.radians(70.0)
    phi = np.arctan2(v, u)
    d = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    # Tube axis tilted from the view axis; camera off the axis.
    tilt, spin = rng.uniform(0.0, math.radians(28.0)), rng.uniform(0.0, 2 * math.pi)
    st = math.sin(tilt)
    axis = np.array([st * math.cos(spin), st * math.sin(spin), math.cos(tilt)])
    off_r = rng.uniform(0.0, 0.55) if bad != "red-out" else rng.uniform(0.85, 0.93)
    off_a = rng.uniform(0.0, 2 * math.pi)
    e1 = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.99 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    cam = -off_r * (math.cos(off_a) * e1 + math.sin(off_a) * e2)
    c_perp = cam - cam.dot(axis) * axis
    d_perp = d - (d @ axis)[..., None] * axis
    qa = np.maximum((d_perp * d_perp).sum(-1), 1e-9)
    qb = 2.0 * (d_perp @ c_perp)
    qc = c_perp.dot(c_perp) - 1.0
    t = (-qb + np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)
    t = np.minimum(t, 40.0)
    p = cam + t[..., None] * d
    p_perp = p - (p @ axis)[..., None] * axis
    wall_angle = np.arctan2(p_perp @ e2, p_perp @ e1)
    depth = p @ axis
    arc = wall_angle  # radius 1: arc length = angle
    normal = -p_perp / np.maximum(np.linalg.norm(p_perp, axis=-1, keepdims=True), 1e-9)
    # Folds: longitudinal ridges (height field over the wall angle, wavering with depth).
    n_folds = int(rng.integers(4, 9))
    waver = 0.6 * _fft_noise(rng, (rows, cols), half * 0.5)
    fold_amp = rng.uniform(0.04, 0.12)
    dh_da = -fold_amp * n_folds * np.sin(n_folds * wall_angle + waver)
    tangent = np.cross(axis, normal)
    lw: F | None = None
    bump = np.zeros((rows, cols))
    if lesion:
        for _ in range(40):
            i, j = int(rng.integers(rows)), int(rng.integers(cols))
            # On the lit wall (not deep in the lumen, where nothing can be seen).
            if 0.8 < t[i, j] < 3.2 and theta[i, j] < math.radians(66.0):
                break
        size = rng.uniform(0.18, 0.55)
        lw = _lesion_weight(rng, arc, depth, (arc[i, j], depth[i, j]), size)
    kind = _LESIONS[int(rng.integers(len(_LESIONS)))] if lesion else ""
    if lw is not None and kind in ("plaque", "nodule"):
        bump = lw * rng.uniform(0.6, 1.2)
        gy, gx = np.gradient(bump)
        dh_da = dh_da + 8.0 * (gx * np.cos(phi) + gy * np.sin(phi))
    n = normal - 0.5 * dh_da[..., None] * tangent
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    view = -d
    cos_i = np.clip((n * view).sum(-1), 0.0, 1.0)
    # Albedo: pink mucosa, redder with depth (scattering), Worley vessels.
    base = np.array([rng.uniform(0.8, 0.95), rng.uniform(0.42, 0.55), rng.uniform(0.38, 0.5)])
    albedo = np.broadcast_to(base, (rows, cols, 3)).copy()
    vessel = _worley_border(arc * 6.0, depth * 6.0, rng.uniform(0.7, 1.2), rng)
    present = np.clip(_fft_noise(rng, (rows, cols), half * 0.3) + 0.3, 0.0, 1.0)
    vessel_w = np.clip(1.0 - vessel / 0.035, 0.0, 1.0) * np.clip(2.5 / np.maximum(t, 1.0), 0, 1)
    vessel_w *= present * rng.uniform(0.4, 0.9)
    albedo *= 1.0 - vessel_w[..., None] * np.array([0.1, 0.35, 0.28])
    albedo *= (1.0 + 0.05 * _fft_noise(rng, (rows, cols), 3.0))[..., None]
    if lw is not None:
        m = lw[..., None]
        grain = 1.0 + 0.08 * _fft_noise(rng, (rows, cols), 2.0)[..., None]
        if kind == "erythema":
            target = np.broadcast_to(base * [1.0, 0.5, 0.52], albedo.shape) * grain
        elif kind == "plaque":
            target = np.broadcast_to([0.9, 0.86, 0.8], albedo.shape) * grain
        elif kind == "ulcer":
            ring = np.clip(1.0 - np.abs(lw - 0.5) / 0.5, 0.0, 1.0)[..., None]
            core = np.clip((lw - 0.6) / 0.3, 0.0, 1.0)[..., None]
            red = np.broadcast_to(base * [1.0, 0.45, 0.45], albedo.shape)
            fibrin = np.broadcast_to([0.92, 0.86, 0.6], albedo.shape)
            target = (red * (1 - core) + fibrin * core) * grain
            target = target * (0.5 + 0.5 * ring) + albedo * (0.5 - 0.5 * ring) * (1 - core)
        elif kind == "nodule":
            target = (
                albedo
                * [1.0, 0.75, 0.75]
                * (1.0 + 0.15 * _fft_noise(rng, (rows, cols), 4.0))[..., None]
            )
        else:  # salmon tongue
            target = np.broadcast_to([0.95, 0.52, 0.33], albedo.shape) * grain
        albedo = albedo * (1 - m) + target * m
    irr = cos_i / np.maximum(t, 0.4) ** 2
    scatter = np.exp(-np.maximum(t - 1.0, 0.0)[..., None] * np.array([0.05, 0.22, 0.25]))
    rgb = albedo * scatter * irr[..., None]
    # Automatic exposure, as the processor does: the bright end of the wall maps to ~0.9.
    rgb /= max(float(np.percentile(rgb.mean(axis=2), 97)), 1e-6)
    shininess = rng.uniform(60.0, 200.0)
    spec = cos_i**shininess / np.maximum(t, 0.4) ** 2
    spec /= max(float(np.percentile(spec, 99.5)), 1e-6)
    rgb += (rng.uniform(1.0, 3.0) * spec)[..., None]
    return rgb, lw


def _text_overlay(rng: np.random.Generator, img: Image.Image, outside: F) -> Image.Image:
    """Burned-in text (bitmap font) and a scope-settings box, on the black part only."""
    layer = Image.new("RGB", img.size, (0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default()
    fill = [(255, 255, 255), (200, 200, 200), (255, 255, 0)][int(rng.integers(3))]
    for _ in range(int(rng.integers(2, 7))):
        x, y = int(rng.integers(0, img.size[0] - 60)), int(rng.integers(0, img.size[1] - 12))
        text = "".join(chr(int(c)) for c in rng.integers(48, 91, size=int(rng.integers(5, 14))))
        draw.text((x, y), text, fill=fill, font=font)
    if rng.random() < 0.5:
        x, y = int(rng.integers(0, img.size[0] - 40)), int(rng.integers(0, img.size[1] - 30))
        draw.rectangle([x, y, x + 36, y + 24], outline=fill, width=2)
    lay = np.asarray(layer)
    keep = (outside > 0.999)[..., None] & (lay.max(axis=2, keepdims=True) > 0)
    return Image.fromarray(np.where(keep, lay, np.asarray(img)))


def make_validation_frame(
    *,
    seed: int,
    lesion: bool,
    informative: bool = True,
    rows: int | None = None,
    cols: int | None = None,
) -> tuple[U8, EndoscopyFrameTruth]:
    """Render one style-B RGB frame (uint8) and its truth. The lesion box is the lesion's
    visible part (weight >= 0.5 inside the field of view), in frame pixels."""
    rng = np.random.default_rng([seed, 0xB5])
    if rows is None or cols is None:
        rows, cols = VALIDATION_SIZES[int(rng.integers(len(VALIDATION_SIZES)))]
    bad = ""
    if not informative:
        kinds = _BAD_WITH_LESION if lesion else _BAD
        bad = kinds[int(rng.integers(len(kinds)))]
    scale = min(1.0, 300.0 / max(rows, cols))
    rr, rc = max(32, round(rows * scale)), max(32, round(cols * scale))
    for _attempt in range(8):
        scene, lw = _render_scene(rng, rr, rc, lesion=lesion, bad=bad)
        if not lesion or (lw is not None and float((lw > 0.5).sum()) >= 0.004 * rr * rc):
            break
    # Exposure, white balance, saturation, tone curve; then the uninformative kinds.
    exposure = {"dim": rng.uniform(0.18, 0.35), "overexposed": rng.uniform(4.0, 8.0)}.get(
        bad, rng.uniform(0.75, 1.25)
    )
    wb = np.array([1.0, rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)])
    lin = scene * exposure * wb
    grey = lin.mean(axis=2, keepdims=True)
    lin = grey + (lin - grey) * rng.uniform(0.8, 1.3)
    img8 = (255.0 * (1.0 - np.exp(-2.2 * np.clip(lin, 0.0, None)))).clip(0, 255).astype(np.uint8)
    pic = Image.fromarray(img8)
    if bad == "foam":
        d = ImageDraw.Draw(pic)
        for _ in range(int(rng.integers(80, 160))):
            x, y, r = rng.uniform(0, rc), rng.uniform(0, rr), rng.uniform(3, 0.12 * min(rr, rc))
            d.ellipse([x - r, y - r, x + r, y + r], outline=(240, 235, 225), width=1)
        pic = Image.blend(pic, Image.new("RGB", pic.size, (225, 215, 190)), 0.35)
    if bad == "red-out":
        pic = pic.filter(ImageFilter.GaussianBlur(6))
    if bad == "defocus":
        pic = pic.filter(ImageFilter.GaussianBlur(rng.uniform(3.0, 6.0) * rr / 300.0))
    if bad == "motion":
        a = np.asarray(pic).astype(np.float64)
        n, ang = int(rng.integers(10, 24)), rng.uniform(0, math.pi)
        acc = sum(
            np.roll(a, (round(k * math.sin(ang)), round(k * math.cos(ang))), axis=(0, 1))
            for k in range(n)
        )
        pic = Image.fromarray((np.asarray(acc) / n).astype(np.uint8))
    # Up to the frame size (bicubic), then the processor: edge enhancement, sometimes
    # interlacing; the field mask and its text; sensor chroma noise; JPEG.
    pic = pic.resize((cols, rows), Image.Resampling.BICUBIC)
    if rng.random() < 0.6:
        pic = pic.filter(ImageFilter.UnsharpMask(radius=2, percent=int(rng.integers(40, 140))))
    frame = np.asarray(pic).astype(np.float32)
    if rng.random() < 0.15:
        shift = int(rng.integers(1, 4))
        frame[1::2] = np.roll(frame[1::2], shift, axis=1)
    mask, field_kind = _field_mask(rng, rows, cols)
    black = np.float32(rng.choice([0.0, 0.0, 8.0, 16.0]))
    frame = (frame * mask[..., None] + black * (1 - mask[..., None])).astype(np.float32)
    # Luminance and chroma noise.
    frame += rng.standard_normal((rows, cols, 1), dtype=np.float32) * rng.uniform(0.5, 4.0)
    frame += rng.standard_normal((rows, cols, 3), dtype=np.float32) * rng.uniform(0.5, 3.0)
    pic = Image.fromarray(frame.clip(0, 255).astype(np.uint8))
    if field_kind != "full" and rng.random() < 0.6:
        pic = _text_overlay(rng, pic, 1.0 - mask)
    if rng.random() < 0.9:
        buf = io.BytesIO()
        pic.save(buf, format="JPEG", quality=int(rng.integers(50, 96)), subsampling=2)
        buf.seek(0)
        with Image.open(buf) as dec:
            pic = dec.convert("RGB")
    out: U8 = np.asarray(pic, dtype=np.uint8).copy()
    box: tuple[int, int, int, int] | None = None
    if lesion and lw is not None:
        small = Image.fromarray((lw * 255).astype(np.uint8))
        up = np.asarray(small.resize((cols, rows), Image.Resampling.BILINEAR))
        seen = (up >= 128) & (mask > 0.5)
        rs, cs = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
        if rs.size:
            box = (int(rs[0]), int(cs[0]), int(rs[-1]) + 1, int(cs[-1]) + 1)
    return out, EndoscopyFrameTruth(informative=informative, lesion=box is not None, lesion_box=box)
