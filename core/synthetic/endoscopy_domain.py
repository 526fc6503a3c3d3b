"""Domain-randomised synthetic endoscopy frames ("style A"): the training data of the
reference endoscopy model.

The scene (mucosa, folds, lumen, vessels, bubbles, specular highlights) is the renderer of
core.synthetic.endoscopy; what a real capture chain varies is randomised around it, because
a model trained on one frame size, one round field and one camera learns that camera: the
field of view (round of varying radius and offset, octagonal, round cropped by the frame,
full frame), the frame size and aspect ratio (576x768, 480x640, 1080x1350, square ...), the
black mask's level and burned-in text, illumination level, gradient and colour cast, gamma,
defocus, sensor noise and JPEG compression at varying quality and chroma subsampling.
Lesions vary in size, colour, contrast and relief and sit anywhere inside the field,
including at its edge. Everything is deterministic per seed.

core.synthetic.endoscopy_validation renders an independent style (B) for validation only.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from core.synthetic.endoscopy import (
    EndoscopyFrameTruth,
    _bubbles,
    _Frame,
    _motion_blur,
    _smooth_noise,
    _smoothstep,
    _speculars,
    _tissue,
)

__all__ = [
    "FIELD_KINDS",
    "FRAME_SIZES",
    "make_randomised_frame",
    "random_frame_size",
    "randomised_plan",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

# (rows, columns) of common endoscopy video processors' stills and captures.
FRAME_SIZES: tuple[tuple[int, int], ...] = (
    (576, 768),
    (480, 640),
    (1080, 1350),
    (1080, 1440),
    (1024, 1280),
    (720, 960),
    (600, 800),
    (480, 480),
    (720, 720),
    (512, 512),
    (1080, 1920),
)
FIELD_KINDS: tuple[str, ...] = ("circle", "cropped-circle", "octagon", "full")
_DEGRADE_WITH_LESION = ("blur", "defocus", "dark")
_DEGRADE = (*_DEGRADE_WITH_LESION, "bubbles", "stomach", "washout")
_LESION_KINDS = ("red", "white", "mixed", "yellow", "dark-red", "pale")


def randomised_plan(n: int, seed0: int) -> list[tuple[int, bool, bool]]:
    """(seed, lesion, informative) per frame: 45 % lesion; 30 % of normal and 15 % of lesion
    frames uninformative. Training and validation splits differ by `seed0`."""
    rng = np.random.default_rng([seed0, 0x91A7])
    out = []
    for k in range(n):
        lesion = bool(rng.random() < 0.45)
        informative = bool(rng.random() > (0.15 if lesion else 0.3))
        out.append((seed0 + k, lesion, informative))
    return out


def random_frame_size(rng: np.random.Generator, max_side: int | None = None) -> tuple[int, int]:
    """A frame size from FRAME_SIZES, in either orientation for square-ish ones, shrunk
    (aspect ratio kept) so its longer side is at most `max_side` (cheap training frames)."""
    rows, cols = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
    if max_side is not None and max(rows, cols) > max_side:
        s = max_side / max(rows, cols)
        rows, cols = max(48, round(rows * s)), max(48, round(cols * s))
    return rows, cols


@dataclass(frozen=True)
class _Field:
    """Field of view in frame pixels: centre, radius (pixels per scene unit) and shape."""

    kind: str
    cy: float
    cx: float
    radius: float
    octagon: tuple[float, float] = (1.0, 1.4)  # half-height / radius, |x|+|y| limit / radius

    def mask(self, rows: int, cols: int, sy: float = 1.0, sx: float = 1.0) -> F32:
        """Soft 0..1 mask (edge about 1.5 frame pixels wide) on a rows x cols grid whose cells
        are 1/sy x 1/sx frame pixels (1, 1: the frame itself)."""
        yy = ((np.arange(rows, dtype=np.float32) + 0.5) / sy - 0.5)[:, None]
        xx = ((np.arange(cols, dtype=np.float32) + 0.5) / sx - 0.5)[None, :]
        if self.kind == "full":
            return np.ones((rows, cols), dtype=np.float32)
        y = (yy - self.cy) / self.radius
        x = (xx - self.cx) / self.radius
        edge = 1.5 / self.radius  # the soft edge, in field radii
        if self.kind == "octagon":
            hy, diag = self.octagon
            d = np.maximum(np.maximum(np.abs(x), np.abs(y) / hy), (np.abs(x) + np.abs(y)) / diag)
        else:  # circle; a cropped circle is the same circle larger than the frame
            d = np.sqrt(x * x + y * y)
        return _smoothstep(1.0, 1.0 - edge, d.astype(np.float32))


def _random_field(rng: np.random.Generator, rows: int, cols: int) -> _Field:
    short, long_ = min(rows, cols), max(rows, cols)
    kind = FIELD_KINDS[int(rng.choice(len(FIELD_KINDS), p=[0.45, 0.2, 0.2, 0.15]))]
    if kind == "full":
        return _Field(kind, (rows - 1) / 2.0, (cols - 1) / 2.0, 0.5 * short * rng.uniform(1.0, 1.3))
    if kind == "cropped-circle":
        # Larger than the shorter side: the frame cuts the circle's caps off.
        radius = 0.5 * short * rng.uniform(1.05, 1.35)
        radius = min(radius, 0.49 * long_)
    else:
        radius = 0.5 * short * rng.uniform(0.8, 0.99)
    # Offsets: processors put the field left, right or centred on wide frames.
    sy = max(0.0, rows / 2.0 - radius) if kind != "cropped-circle" else 0.04 * rows
    sx = max(0.0, cols / 2.0 - radius) if kind != "cropped-circle" else max(0.0, cols / 2 - radius)
    cy = (rows - 1) / 2.0 + rng.uniform(-1.0, 1.0) * sy
    cx = (cols - 1) / 2.0 + rng.uniform(-1.0, 1.0) * sx
    oct_ = (rng.uniform(0.8, 1.0), rng.uniform(1.2, 1.42))
    return _Field(kind, cy, cx, radius, oct_)


def _paint_lesion(
    f: _Frame,
    rng: np.random.Generator,
    rgb: F32,
    illum: F32,
    inside: F32,
    lumen: tuple[float, float, float],
) -> F32 | None:
    """Paint a lesion anywhere inside the field (edge included, not in the lumen); return its
    0..1 mask, or None when no place was found."""
    ly, lx, lr = lumen
    for _ in range(60):
        size = rng.uniform(0.07, 0.3)
        i, j = int(rng.integers(f.rows)), int(rng.integers(f.cols))
        cy, cx = float(f.y[i, j]), float(f.x[i, j])
        if inside[i, j] < 0.9 or math.hypot(cy - ly, cx - lx) < lr + 0.6 * size:
            continue
        dy, dx = f.y - cy, f.x - cx
        r = np.sqrt(dy * dy + dx * dx)
        phi = np.arctan2(dy, dx)
        rad = np.full_like(r, size)
        aspect = rng.uniform(0.6, 1.0)  # elongated along the folds sometimes
        turn = rng.uniform(0.0, math.pi)
        rad = rad * (1.0 + (1.0 / aspect - 1.0) * np.cos(phi - turn) ** 2) ** -0.5
        for k in range(2, 7):
            rad = rad + size * rng.uniform(0.02, 0.16) / k**0.3 * np.cos(
                k * phi + rng.uniform(0.0, 2.0 * math.pi)
            )
        rough = max(3, int(f.unit * size / 3.0))
        rad = rad * (1.0 + 0.12 * _smooth_noise(rng, f.rows, f.cols, rough))
        soft = rng.uniform(0.01, 0.05)  # sharp or fading margin
        mask = _smoothstep(0.0, soft, (rad - r).astype(np.float32))
        total = float(mask.sum())
        if total < 4.0 or float((mask * inside).sum()) < 0.6 * total:
            continue  # mostly outside the field: not a frame showing this lesion
        break
    else:
        return None
    kind = _LESION_KINDS[int(rng.integers(len(_LESION_KINDS)))]
    strength = rng.uniform(0.55, 1.0)  # subtle to obvious
    granular = _smooth_noise(rng, f.rows, f.cols, 3)
    nodular = _smooth_noise(rng, f.rows, f.cols, max(4, int(f.unit * size / 4.0)))
    light = (0.25 + 0.75 * illum)[..., None]
    base = rgb.copy()
    if kind in ("red", "mixed", "dark-red"):
        g = rng.uniform(0.35, 0.65)
        tone = np.array([1.0, g, g * rng.uniform(0.9, 1.1)], dtype=np.float32)
        if kind == "dark-red":
            tone *= np.float32(rng.uniform(0.55, 0.75))
        base = base * tone * (1.0 + 0.05 * granular[..., None])
    if kind in ("white", "mixed", "yellow", "pale"):
        colour = {
            "white": (0.93, 0.87, 0.83),
            "mixed": (0.93, 0.87, 0.83),
            "yellow": (0.95, 0.85, 0.52),
            "pale": (0.95, 0.8, 0.74),
        }[kind]
        w = {"white": 0.6, "mixed": 0.5, "yellow": 0.6, "pale": 0.4}[kind]
        patchy = _smoothstep(-0.3, 0.6, nodular) if kind == "mixed" else np.ones_like(nodular)
        cover = (w * patchy)[..., None]
        base = base * (1.0 - cover) + np.array(colour, dtype=np.float32) * light * cover
    # Altered surface: coarse granular or nodular texture instead of the vessel pattern,
    # and sometimes relief (raised: lit side brighter, the other side in shadow).
    base *= (1.0 + 0.09 * granular + 0.07 * nodular)[..., None]
    if rng.random() < 0.4:
        ang = rng.uniform(0.0, 2.0 * math.pi)
        slope = np.gradient(mask, axis=0) * math.sin(ang) + np.gradient(mask, axis=1) * math.cos(
            ang
        )
        base *= (1.0 + 4.0 * f.unit * 0.01 * slope)[..., None].astype(np.float32)
    m = (mask * strength)[..., None]
    rgb[...] = rgb * (1.0 - m) + base * m
    return mask


def _capture(rng: np.random.Generator, rgb: F32, f: _Frame, *, informative_blur: bool) -> F32:
    """Illumination level, gradient, colour cast, gamma and mild defocus of the camera."""
    gain = rng.uniform(0.65, 1.3)
    ang = rng.uniform(0.0, 2.0 * math.pi)
    ramp = 1.0 + rng.uniform(0.0, 0.35) * (f.x * math.cos(ang) + f.y * math.sin(ang))
    cast = np.exp(rng.normal(0.0, 0.08, size=3)).astype(np.float32)
    out: F32 = (rgb * (gain * np.clip(ramp, 0.3, 2.0))[..., None] * cast).astype(np.float32)
    if informative_blur and rng.random() < 0.3:
        out = _gaussian_blur(out, rng.uniform(0.5, 1.5))
    gamma = rng.uniform(0.8, 1.25)
    return (np.clip(out, 0.0, None) ** gamma).astype(np.float32)


def _gaussian_blur(rgb: F32, sigma: float) -> F32:
    """Separable Gaussian blur (sigma in pixels), edges clamped."""
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    pad = np.pad(rgb, ((r, r), (r, r), (0, 0)), mode="edge")
    tmp = sum(k[i] * pad[i : i + rgb.shape[0]] for i in range(2 * r + 1))
    out = sum(k[i] * tmp[:, i : i + rgb.shape[1]] for i in range(2 * r + 1))
    return np.asarray(out, dtype=np.float32)


def _upsample(rgb: F32, rows: int, cols: int) -> F32:
    """Bilinear resize of a float RGB image (Pillow, one 'F' image per channel)."""
    if rgb.shape[:2] == (rows, cols):
        return rgb
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(rgb[..., c]), mode="F").resize(
                (cols, rows), Image.Resampling.BILINEAR
            )
        )
        for c in range(3)
    ]
    return np.stack(chans, axis=2).astype(np.float32)


def _burned_in_text(rng: np.random.Generator, out: F32, outside: F32) -> None:
    """Lines of block 'characters' (patient name, time, scope settings) on the black mask."""
    rows, cols = out.shape[:2]
    colour = [(0.95, 0.95, 0.95), (0.3, 0.95, 0.3), (0.95, 0.9, 0.3)][int(rng.integers(3))]
    ch = max(4, rows // 45)  # character height in pixels
    for _ in range(int(rng.integers(2, 9))):
        r = int(rng.integers(0, max(1, rows - ch)))
        c = int(rng.integers(0, max(1, cols - ch)))
        n = int(rng.integers(4, 16))
        for k in range(n):
            c0 = c + k * (ch * 2 // 3)
            if c0 + ch // 2 >= cols:
                break
            if rng.random() < 0.15:
                continue  # a space
            glyph = rng.random((ch, ch // 2)) < 0.45
            region = (slice(r, r + ch), slice(c0, c0 + ch // 2))
            keep = outside[region] > 0.99
            paint = glyph[: keep.shape[0], : keep.shape[1]] & keep
            out[region][paint] = colour


def _jpeg_round_trip(rng: np.random.Generator, img: U8) -> U8:
    """Compress and decode with Pillow at a random quality and chroma subsampling."""
    buf = io.BytesIO()
    Image.fromarray(img).save(
        buf,
        format="JPEG",
        quality=int(rng.integers(30, 96)),
        subsampling=int(rng.integers(0, 3)),  # 4:4:4, 4:2:2, 4:2:0
    )
    buf.seek(0)
    with Image.open(buf) as dec:
        out: U8 = np.asarray(dec.convert("RGB"), dtype=np.uint8).copy()
    return out


def make_randomised_frame(
    *,
    seed: int,
    lesion: bool,
    informative: bool = True,
    rows: int | None = None,
    cols: int | None = None,
    max_side: int | None = None,
) -> tuple[U8, EndoscopyFrameTruth]:
    """Render one domain-randomised RGB frame (uint8) and its truth.

    Frame size: (rows, cols) if given, else drawn from FRAME_SIZES (shrunk to `max_side`).
    An uninformative frame is motion-blurred, defocused, dark, bubble-covered, gastric or
    washed out; with lesion=True only blur, defocus or darkness is used, so the lesion is
    still in the frame. The lesion box is the part of the lesion inside the field of view.
    """
    rng = np.random.default_rng([seed, 0xD0A1])
    if rows is None or cols is None:
        rows, cols = random_frame_size(rng, max_side)
    if rows < 32 or cols < 32:
        raise ValueError("frame too small: need at least 32 x 32 pixels")
    field = _random_field(rng, rows, cols)
    # The scene is rendered at most ~320 px wide and scaled up (its detail below that scale
    # disappears in the model's 128x128 input anyway); the field mask is drawn at full size.
    scale = min(1.0, rng.uniform(240.0, 340.0) / max(rows, cols))
    rr, rc = max(32, round(rows * scale)), max(32, round(cols * scale))
    sy, sx = rr / rows, rc / cols
    f = _Frame.make(
        rr, rc, origin=((field.cy + 0.5) * sy - 0.5, (field.cx + 0.5) * sx - 0.5),
        unit=field.radius * sy,
    )  # fmt: skip
    degrade = ""
    if not informative:
        kinds = _DEGRADE_WITH_LESION if lesion else _DEGRADE
        degrade = kinds[int(rng.integers(len(kinds)))]
    rgb, illum, ridge, _dl, lumen = _tissue(
        f, rng, stomach=degrade == "stomach", lumen_offset=rng.uniform(0.0, 0.75)
    )
    inside_r = field.mask(rr, rc, sy, sx)
    lesion_mask: F32 | None = None
    if lesion:
        lesion_mask = _paint_lesion(f, rng, rgb, illum, inside_r, lumen)
    _speculars(f, rng, rgb, ridge, illum)
    if degrade == "bubbles":
        _bubbles(f, rng, rgb, int(rng.integers(50, 110)), 0.04, 0.2)
        rgb[...] = rgb * 0.75 + np.float32(0.18)
    else:
        _bubbles(f, rng, rgb, int(rng.integers(0, 5)), 0.015, 0.06)
    if degrade == "stomach":
        tilt = rng.uniform(-0.3, 0.3)
        pool = _smoothstep(0.0, 0.06, (f.y - rng.uniform(0.3, 0.6) + tilt * f.x).astype(np.float32))
        fluid = np.array([0.72, 0.66, 0.3], dtype=np.float32) * (0.3 + 0.7 * illum)[..., None]
        rgb[...] = rgb * (1.0 - 0.8 * pool[..., None]) + fluid * 0.8 * pool[..., None]
    rgb = _capture(rng, rgb, f, informative_blur=not degrade)
    if degrade == "blur":
        rgb = _motion_blur(rng, rgb)
    elif degrade == "defocus":
        rgb = _gaussian_blur(rgb, rng.uniform(2.5, 5.0) * rr / 256.0)
    elif degrade == "dark":
        rgb *= np.float32(rng.uniform(0.06, 0.18))
    elif degrade == "washout":
        grey = rgb.mean(axis=2, keepdims=True)
        rgb = np.clip((rgb * 0.5 + grey * 0.5) * rng.uniform(1.8, 3.0), 0.0, 1.0).astype(np.float32)
    vignette = (1.0 - rng.uniform(0.1, 0.45) * np.minimum(f.rho, 1.3) ** 2).astype(np.float32)
    rgb *= vignette[..., None]
    out = _upsample(rgb, rows, cols)
    inside = field.mask(rows, cols)
    level = rng.uniform(0.0, 14.0) / 255.0
    out = out * inside[..., None] + level * (1.0 - inside[..., None])
    if field.kind != "full" and rng.random() < 0.5:
        _burned_in_text(rng, out, 1.0 - inside)
    out += rng.normal(0.0, rng.uniform(0.003, 0.03), size=out.shape).astype(np.float32)
    img = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < 0.85:
        img = _jpeg_round_trip(rng, img)
    box: tuple[int, int, int, int] | None = None
    if lesion_mask is not None:
        seen = (lesion_mask > 0.5) & (inside_r > 0.5)
        rs, cs = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
        if rs.size:
            box = (
                int(rs[0] / sy),
                int(cs[0] / sx),
                min(rows, math.ceil((rs[-1] + 1) / sy)),
                min(cols, math.ceil((cs[-1] + 1) / sx)),
            )
    has_lesion = box is not None
    return img, EndoscopyFrameTruth(informative=informative, lesion=has_lesion, lesion_box=box)
