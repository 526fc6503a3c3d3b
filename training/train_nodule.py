"""Train the reference lung nodule detector on synthetic chest CT phantoms and export it to ONNX.

    .venv/bin/python training/train_nodule.py --out resources/models/lung-nodule-ref

Training data: core.synthetic.chest_ct phantoms with seeds first_seed..first_seed+N-1 (default
1000; validation uses 700000+ (training/tune_nodule.py), evaluation >= 900000, never seen
here). The second phantom style (core.synthetic.validation_ct) is never used here: it only
measures how far the model carries to data made differently.

Domain randomisation (`randomise_scan`, on each phantom at its own resolution, before the
same anti-aliased resampling and lung segmentation inference uses): matrix 320-512 and
field of view 300-420 mm (pixel spacing 0.6-1.3 mm), slice spacing 0.625-3 mm, HU offset and
scale, reconstruction kernel (smooth blur or sharpening with overshoot), extra noise of
random level and texture (correlation length), contrast in the vessels, and breathing motion
(slices blended with their neighbours in a random slab).

The network is a small fully convolutional 3D CNN on 2 mm isotropic patches; it outputs,
at 4 mm, a centre heatmap logit, log(diameter mm) and three texture logits (solid,
part-solid, ground-glass). Each batch mixes nodule patches (small and faint nodules weighted
up), hard negatives (`--mine`: false-positive peaks of a previous model on the training
phantoms), lung vessels, patches at the first/last slice placed as the sliding window places
them, and random lung. `--init` fine-tunes previous weights. Torch is a training-time
dependency only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.synthetic.chest_ct import make_chest_ct
from core.volume import Volume
from inference.ct_preprocess import resample_isotropic, window
from inference.lung_segmentation import segment_lungs
from inference.manifest import load_manifest
from inference.nodule_detector import NoduleDetector

SPACING_MM = 2.0
OUT_STRIDE = 2  # output voxel = 4 mm
WINDOW = (-1000.0, 400.0)
TEXTURES = ("solid", "part-solid", "ground-glass")
TRAIN_PATCH = 48
EXPORT_PATCH = 64
PLEURAL_MARGIN_MM = 6.0  # as the detector's default: candidates live in lungs + this margin
# Patch kinds cycled through each batch (batch 8: half positives). "wall" patches are centred
# in the band just outside the lungs (mediastinum, hila, paraspinal muscles, costovertebral
# joints, chest wall): the false positives an air-threshold lung mask let in.
KINDS = ("positive", "hard", "positive", "wall", "positive", "vessel", "positive", "edge")


class NoduleNet(nn.Module):
    """Encoder to 8 mm, decoder back to 4 mm; 5 output channels at 4 mm."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1, dil: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, stride=stride, padding=dil, dilation=dil, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
            )

        self.c1 = block(1, 16, stride=2)
        self.c2 = block(16, 16)
        self.c3 = block(16, 32, stride=2)
        self.c4 = block(32, 32)
        self.c5 = block(32, 32, dil=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = nn.Sequential(nn.Conv3d(48, 16, 1, bias=False), nn.BatchNorm3d(16), nn.ReLU())
        self.c6 = block(16, 16)
        self.head = nn.Conv3d(16, 5, 1)
        nn.init.constant_(self.head.bias, 0.0)
        with torch.no_grad():
            self.head.bias[0] = -4.0  # rare positives: start with low probability
            self.head.bias[1] = math.log(8.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c2(self.c1(x))
        b = self.c5(self.c4(self.c3(a)))
        y = self.c6(self.fuse(torch.cat([a, self.up(b)], dim=1)))
        return self.head(y)


class ExportNet(nn.Module):
    """Export wrapper: probability (sigmoid), diameter in mm and texture probabilities."""

    def __init__(self, net: NoduleNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.net(x)
        return (
            torch.sigmoid(y[:, 0:1]),
            torch.exp(y[:, 1:2]),
            torch.softmax(y[:, 2:5], dim=1),
        )


def init_from_onnx(net: NoduleNet, path: Path) -> None:
    """Start from an exported model: its convolutions carry the batch norms folded in, so the
    convolutions take the folded weights and biases and each batch norm becomes the identity
    (mean 0, variance 1 - eps, scale 1, shift = folded bias). Train with the batch norms in
    eval mode (`freeze_batch_norms`) so that identity holds."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [
        node for node in model.graph.node if node.op_type == "Conv"
    ]  # graph order = module order: c1, c2, c3, c4, c5, fuse, c6, head
    mods: list[tuple[nn.Conv3d, nn.BatchNorm3d | None]] = [
        (net.c1[0], net.c1[1]),
        (net.c2[0], net.c2[1]),
        (net.c3[0], net.c3[1]),
        (net.c4[0], net.c4[1]),
        (net.c5[0], net.c5[1]),
        (net.fuse[0], net.fuse[1]),
        (net.c6[0], net.c6[1]),
        (net.head, None),
    ]
    if len(convs) != len(mods):
        raise SystemExit(f"{path}: {len(convs)} convolutions, expected {len(mods)}")
    with torch.no_grad():
        for node, (conv, bn) in zip(convs, mods, strict=True):
            w = torch.from_numpy(inits[node.input[1]].copy())
            b = torch.from_numpy(inits[node.input[2]].copy())
            conv.weight.copy_(w)
            if bn is None:
                conv.bias.copy_(b)
            else:
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.copy_(b)


def freeze_batch_norms(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eval()


def texture_of(kind: str) -> int:
    return TEXTURES.index(kind) if kind in TEXTURES else 0


HARD_KINDS = ("ground-glass", "part-solid", "juxtapleural")


def randomise_scan(
    hu: np.ndarray, dz: float, lung: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Scanner variety on a phantom (float32 HU, (slices, rows, cols)), at its own voxel size:
    kernel, noise level and texture, HU calibration, vessel contrast and breathing motion."""
    import SimpleITK as sitk

    x = hu.astype(np.float32)
    # Contrast: enhanced pulmonary vessels (and so the hila) on a third of the scans.
    if rng.random() < 0.33:
        vessels = lung & (x > -300.0) & (x < 200.0)
        x[vessels] += float(rng.uniform(60.0, 250.0))
    img = sitk.GetImageFromArray(x)
    img.SetSpacing((1.0, 1.0, 1.0))  # pixel units: in-plane only below
    kernel = rng.random()
    if kernel < 0.35:  # smooth (soft-tissue) kernel
        s = float(rng.uniform(0.4, 1.0))
        img = sitk.DiscreteGaussian(img, [s * s, s * s, 0.0], 8, 0.01, False)
    elif kernel < 0.7:  # sharp (lung) kernel: unsharp mask, edges overshoot
        blur = sitk.DiscreteGaussian(img, [1.0, 1.0, 0.0], 8, 0.01, False)
        amount = float(rng.uniform(0.3, 1.2))
        img = img + (img - blur) * amount
    x = sitk.GetArrayFromImage(img)
    # Extra noise of random level and texture (white, or correlated over ~1-2 pixels).
    sd = float(rng.uniform(0.0, 30.0))
    if sd > 1.0:
        n = rng.standard_normal(x.shape, dtype=np.float32)
        corr = float(rng.uniform(0.0, 1.2))
        if corr > 0.3:
            nimg = sitk.DiscreteGaussian(
                sitk.GetImageFromArray(n), [corr * corr, corr * corr, 0.0], 8, 0.01, False
            )
            n = sitk.GetArrayFromImage(nimg)
            n /= max(float(n.std()), 1e-3)
        x += sd * n
    # Breathing motion: a slab of slices blended with their neighbours.
    if rng.random() < 0.25 and x.shape[0] > 12:
        k0 = int(rng.integers(0, x.shape[0] - 10))
        k1 = k0 + int(rng.integers(3, max(4, round(20.0 / dz))))
        sl = slice(k0 + 1, min(k1, x.shape[0] - 1))
        w = float(rng.uniform(0.2, 0.4))
        x[sl] = (
            (1 - 2 * w) * x[sl]
            + w * x[sl.start - 1 : sl.stop - 1]
            + w * x[sl.start + 1 : sl.stop + 1]
        )
    # HU calibration of the scanner.
    x = x * float(rng.uniform(0.97, 1.03)) + float(rng.uniform(-25.0, 25.0))
    return x


def _boundary_points(
    lung: np.ndarray,
    rng: np.random.Generator,
    n: int,
    spacing: tuple[float, float, float],
    medial: bool = False,
) -> list[np.ndarray]:
    """Up to n points (voxel z, y, x, float) just inside the lung surface, found by marching
    in-plane from random lung voxels; `medial` marches towards the body's midline (hila)."""
    pts = []
    zs, ys, xs = np.nonzero(lung[:: max(1, lung.shape[0] // 60)])
    if len(zs) == 0:
        return pts
    step_z = max(1, lung.shape[0] // 60)
    mid_x = lung.shape[2] / 2.0
    for _ in range(n * 4):
        if len(pts) >= n:
            break
        i = int(rng.integers(len(zs)))
        q = np.array([zs[i] * step_z, ys[i], xs[i]], dtype=np.float64)
        if medial:
            d = np.array([0.0, rng.uniform(-0.5, 0.5), 1.0 if q[2] < mid_x else -1.0])
        elif rng.random() < 0.5:  # posterior, where ribs meet the spine
            a = rng.uniform(0.15 * math.pi, 0.85 * math.pi)
            d = np.array([0.0, math.sin(a), math.cos(a)])
        else:
            a = rng.uniform(0.0, 2.0 * math.pi)
            d = np.array([0.0, math.sin(a), math.cos(a)])
        d /= np.linalg.norm(d)
        for _ in range(2000):
            nq = q + d
            k, j, ii = np.rint(nq).astype(int)
            if not (0 <= j < lung.shape[1] and 0 <= ii < lung.shape[2]) or not lung[k, j, ii]:
                break
            q = nq
        else:
            continue
        pts.append(q)
    return pts


def _paint_capsule(
    x: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    r_mm: float,
    hu: float,
    spacing: tuple[float, float, float],
) -> None:
    """Set voxels within r_mm of the segment p0-p1 (voxel coordinates) to hu, in place, with a
    one-voxel linear edge (partial volume)."""
    sp = np.asarray(spacing, dtype=np.float64)
    lo = np.floor(np.minimum(p0, p1) - r_mm / sp - 2).astype(int)
    hi = np.ceil(np.maximum(p0, p1) + r_mm / sp + 2).astype(int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array(x.shape) - 1)
    if np.any(hi <= lo):
        return
    g = np.meshgrid(*[np.arange(lo[a], hi[a] + 1) for a in range(3)], indexing="ij")
    pts = np.stack([gi.astype(np.float64) for gi in g], axis=-1) * sp
    a, b = p0 * sp, p1 * sp
    ab = b - a
    t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    d = np.linalg.norm(pts - (a + t[..., None] * ab), axis=-1)
    w = np.clip(r_mm + 0.5 * sp[1] - d, 0.0, sp[1]) / sp[1]
    sl = tuple(slice(lo[i], hi[i] + 1) for i in range(3))
    x[sl] = x[sl] * (1.0 - w) + hu * w


def add_confounders(
    x: np.ndarray,
    lung: np.ndarray,
    spacing: tuple[float, float, float],
    nodules_vox: np.ndarray,
    nodule_radii_mm: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Paint structures that are not nodules where a detector meets them on clinical scans,
    in place (HU, phantom resolution), and return their centres (voxel z, y, x):
    - ribs and costovertebral joints that run along and into the lung surface (bone,
      150-600 HU, 3-6 mm thick, 20-70 mm long, mostly in-plane and posterior);
    - large hilar vessels and bronchial walls entering the lung from the mediastinum
      (5-10 mm calibre, 30-60 HU, or 150-350 HU with contrast).
    The training generator puts its ribs in the chest wall behind muscle and its hila in the
    mediastinum, so a model trained on it alone calls these elongated bright structures
    nodules on scans made otherwise. They are kept 12 mm clear of every nodule."""
    sp = np.asarray(spacing, dtype=np.float64)
    centres: list[np.ndarray] = []

    def clear(p0: np.ndarray, p1: np.ndarray, r: float) -> bool:
        if len(nodules_vox) == 0:
            return True
        for t in np.linspace(0.0, 1.0, 9):
            q = (p0 + t * (p1 - p0)) * sp
            d = np.linalg.norm(nodules_vox * sp - q, axis=1) - nodule_radii_mm
            if np.any(d < r + 12.0):
                return False
        return True

    n_ribs = int(rng.integers(2, 9))
    for q in _boundary_points(lung, rng, n_ribs, spacing):
        r = float(rng.uniform(1.5, 3.0))
        length = float(rng.uniform(20.0, 70.0))
        inward = np.array([0.0, x.shape[1] / 2.0 - q[1], x.shape[2] / 2.0 - q[2]])
        inward /= max(float(np.linalg.norm(inward)), 1e-6)
        if rng.random() < 0.7:  # along the surface, as ribs run
            d = np.array([rng.uniform(-0.3, 0.3), -inward[2], inward[1]])
        else:
            a = rng.uniform(0.0, 2.0 * math.pi)
            d = np.array([rng.uniform(-0.3, 0.3), math.sin(a), math.cos(a)])
        d /= np.linalg.norm(d)
        depth = float(rng.uniform(-1.0, 4.0))  # mm of the rib inside the lung surface
        c = q  # on the surface; shift along the inward normal is approximated by the march
        p0 = c - d * (length / 2.0) / sp
        p1 = c + d * (length / 2.0) / sp
        if depth > 0:
            p0 = p0 + inward * depth / sp
            p1 = p1 + inward * depth / sp
        if not clear(p0, p1, r):
            continue
        _paint_capsule(x, p0, p1, r, float(rng.uniform(150.0, 600.0)), spacing)
        centres.append(0.5 * (p0 + p1))
    n_hila = int(rng.integers(1, 5))
    for q in _boundary_points(lung, rng, n_hila, spacing, medial=True):
        r = float(rng.uniform(2.5, 5.0))
        length = float(rng.uniform(25.0, 60.0))
        inward = np.array(
            [rng.uniform(-0.4, 0.4), rng.uniform(-0.5, 0.5), -1.0 if q[2] < x.shape[2] / 2 else 1.0]
        )
        inward /= np.linalg.norm(inward)
        p0 = q - inward * 10.0 / sp
        p1 = q + inward * (length - 10.0) / sp
        if not clear(p0, p1, r):
            continue
        hu = (
            float(rng.uniform(150.0, 350.0))
            if rng.random() < 0.4
            else float(rng.uniform(30.0, 60.0))
        )
        _paint_capsule(x, p0, p1, r, hu, spacing)
        centres.append(q + inward * 8.0 / sp)
    # Great vessels beside the mediastinum (superior vena cava, azygos arch, aorta, pulmonary
    # arteries): tubes running mostly head to foot, 12-26 mm across, lying against the medial
    # lung so that on an axial slice they are round soft-tissue discs with lung around much of
    # them. Only their length in z tells them from a nodule; the training generator's
    # mediastinum never shows them that way.
    for q in _boundary_points(lung, rng, int(rng.integers(0, 4)), spacing, medial=True):
        r = float(rng.uniform(6.0, 13.0))
        length = float(rng.uniform(40.0, 120.0))
        axis = np.array([1.0, rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)])
        axis /= np.linalg.norm(axis)
        inward = np.array([0.0, 0.0, -1.0 if q[2] < x.shape[2] / 2 else 1.0])
        c = q + inward * float(rng.uniform(0.0, 1.0)) * r / sp
        p0 = c - axis * (length / 2.0) / sp
        p1 = c + axis * (length / 2.0) / sp
        if not clear(p0, p1, r):
            continue
        hu = (
            float(rng.uniform(150.0, 350.0))
            if rng.random() < 0.35
            else float(rng.uniform(25.0, 60.0))
        )
        _paint_capsule(x, p0, p1, r, hu, spacing)
        centres.append(c)
    # Fissures: thin oblique sheets (-750..-450 HU, about 1 mm) across a lung; perifissural
    # nodules sit on them and must stay nodules, the sheets themselves are not.
    for _ in range(int(rng.integers(0, 3))):
        zs, ys, xs = np.nonzero(lung[:: max(1, lung.shape[0] // 40), ::8, ::8])
        if len(zs) == 0:
            break
        i = int(rng.integers(len(zs)))
        c = np.array([zs[i] * max(1, lung.shape[0] // 40), ys[i] * 8, xs[i] * 8]) * sp
        n = np.array([rng.uniform(0.5, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(-0.3, 0.3)])
        n /= np.linalg.norm(n)
        hu = float(rng.uniform(-750.0, -450.0))
        half = float(rng.uniform(0.4, 0.8))
        for k in range(x.shape[0]):
            zk = k * sp[0]
            # signed distance of the in-plane grid to the plane, one slice at a time
            dy = np.arange(x.shape[1])[:, None] * sp[1] - c[1]
            dx = np.arange(x.shape[2])[None, :] * sp[2] - c[2]
            dist = np.abs(n[0] * (zk - c[0]) + n[1] * dy + n[2] * dx)
            m = (dist < half) & lung[k]
            if m.any():
                x[k][m] = np.maximum(x[k][m], hu)
    return centres


def make_case(
    seed: int,
    miner: NoduleDetector | None = None,
    hard_weight: float = 1.0,
    small_hard_weight: float = 0.0,
    confounders_on: bool = False,
) -> dict[str, np.ndarray]:
    """One training phantom at 2 mm with its targets; `miner` (a detector on the previous
    model, edge margin 0) adds its false-positive peaks as hard negatives. Nodule patches are
    drawn with weight 1 + 1.5 (<= 8 mm) + hard_weight (ground-glass, part-solid,
    juxtapleural) + small_hard_weight (both)."""
    rng = np.random.default_rng(seed + 77)
    size = int(rng.choice([320, 384, 448, 512]))
    fov = float(rng.uniform(300.0, 420.0))
    dz = float(rng.choice([0.625, 1.0, 1.25, 2.0, 2.5, 3.0]))
    slices = round(float(rng.uniform(240.0, 330.0)) / dz)
    ph = make_chest_ct(
        seed=seed,
        slices=slices,
        rows=size,
        cols=size,
        pixel_spacing_mm=fov / size,
        slice_spacing_mm=dz,
        nodule_count=int(rng.integers(5, 9)),
        min_nodule_mm=3.0,
        max_nodule_mm=30.0,
    )
    x0, y0, z0 = ph.origin_mm
    nod_vox = np.array(
        [
            [
                (n.center_mm[2] - z0) / dz,
                (n.center_mm[1] - y0) / ph.spacing_mm[1],
                (n.center_mm[0] - x0) / ph.spacing_mm[2],
            ]
            for n in ph.nodules
        ]
    ).reshape(-1, 3)
    nod_r = np.array([n.diameter_mm / 2.0 for n in ph.nodules]).reshape(-1)
    raw = ph.hu.astype(np.float32)
    confounders = (
        add_confounders(raw, ph.lung_mask, ph.spacing_mm, nod_vox, nod_r, rng)
        if confounders_on
        else []
    )
    hu = randomise_scan(raw, dz, ph.lung_mask, rng)
    del raw
    vol = volume_from_phantom(hu, ph.spacing_mm, ph.origin_mm)
    rs = resample_isotropic(vol, SPACING_MM, antialias=True)
    del hu, vol
    x = window(rs.hu, *WINDOW).astype(np.float16)
    seg = segment_lungs(rs.hu, SPACING_MM)
    lung = seg.region(PLEURAL_MARGIN_MM)
    wall = seg.region(PLEURAL_MARGIN_MM + 12.0) & ~seg.lungs & seg.body
    # Targets at 4 mm: Gaussian of the centre, diameter and texture.
    oshape = tuple(s // OUT_STRIDE for s in x.shape)
    heat = np.zeros(oshape, dtype=np.float32)
    diam = np.zeros(oshape, dtype=np.float32)
    tex = np.zeros(oshape, dtype=np.int64)
    inv = np.linalg.inv(rs.affine)
    osp = SPACING_MM * OUT_STRIDE
    centres = []
    weights = []
    for n in ph.nodules:
        kji = inv[:3, :3] @ np.array(n.center_mm) + inv[:3, 3]
        c = (kji - 0.5) / OUT_STRIDE  # output voxel centre o covers input voxels 2o, 2o+1
        centres.append(kji)
        # Balanced sampling: small and faint/pleural nodules are the hard ones.
        small = n.diameter_mm <= 8.0
        hard_kind = n.kind in HARD_KINDS
        weights.append(
            1.0 + 1.5 * small + hard_weight * hard_kind + small_hard_weight * (small and hard_kind)
        )
        sigma = max(n.diameter_mm / 4.0, 3.0) / osp
        rad = math.ceil(3 * sigma)
        lo = np.maximum(np.floor(c).astype(int) - rad, 0)
        hi = np.minimum(np.floor(c).astype(int) + rad + 2, oshape)
        if np.any(hi <= lo):
            continue
        g = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d2 = (g[0] - c[0]) ** 2 + (g[1] - c[1]) ** 2 + (g[2] - c[2]) ** 2
        blob = np.exp(-d2 / (2 * sigma * sigma)).astype(np.float32)
        blob /= blob.max()  # the grid voxel nearest the centre is 1, even for small nodules
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        sel = blob > heat[sl]
        heat[sl] = np.maximum(heat[sl], blob)
        diam[sl][sel] = n.diameter_mm
        tex[sl][sel] = texture_of(n.kind)
    # Vessel voxels inside the lungs (the main false-positive source), away from nodules.
    lm = resample_isotropic(
        volume_from_phantom(ph.lung_mask.astype(np.float32), ph.spacing_mm, ph.origin_mm),
        SPACING_MM,
    ).hu
    cand = np.argwhere((rs.hu > -500.0) & (lm > 0.5))
    cen = np.array(centres).reshape(-1, 3)
    radii = np.array([n.diameter_mm / 2 for n in ph.nodules]).reshape(-1)

    def far(pts: np.ndarray) -> np.ndarray:
        if len(pts) == 0 or len(cen) == 0:
            return pts
        d = np.linalg.norm((pts[:, None, :] - cen[None]) * SPACING_MM, axis=2)
        return pts[np.all(d > radii[None] + 8.0, axis=1)]

    if len(cand) > 4000:
        cand = cand[rng.choice(len(cand), 4000, replace=False)]
    vessels = far(cand.astype(np.float64))
    hard = np.zeros((0, 3))
    if miner is not None:
        from inference.series_input import volume_from_phantom as vfp

        res = miner.detect(vfp(ph.hu, ph.spacing_mm, ph.origin_mm, f"train-{seed}"))
        pts = np.array([inv[:3, :3] @ np.array(f.center_mm) + inv[:3, 3] for f in res.findings])
        hard = far(pts.reshape(-1, 3))
    if confounders:
        mm = [
            np.array([x0 + c[2] * ph.spacing_mm[2], y0 + c[1] * ph.spacing_mm[1], z0 + c[0] * dz])
            for c in confounders
        ]
        pts = np.array([inv[:3, :3] @ p + inv[:3, 3] for p in mm])
        hard = np.concatenate([hard.reshape(-1, 3), far(pts.reshape(-1, 3))])
    return {
        "x": x,
        "lung_factor": np.array(seg.factor),
        "wall": np.argwhere(wall).astype(np.int32),
        "heat": heat,
        "diam": diam,
        "tex": tex,
        "lung": lung,
        "centres": cen,
        "weights": np.array(weights, dtype=np.float64),
        "vessels": vessels.reshape(-1, 3),
        "hard": hard.reshape(-1, 3),
    }


def volume_from_phantom(
    hu: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float]
) -> Volume:
    dz, dy, dx = spacing
    a = np.eye(4)
    a[:3, 0] = (0.0, 0.0, dz)
    a[:3, 1] = (0.0, dy, 0.0)
    a[:3, 2] = (dx, 0.0, 0.0)
    a[:3, 3] = origin
    return Volume(voxels=hu, affine=a)


def sample_patch(
    case: dict[str, np.ndarray], rng: np.random.Generator, kind: str
) -> tuple[np.ndarray, ...]:
    """kind: positive (near a nodule), hard (a mined false positive), vessel, wall (just
    outside the lungs), edge (touching the first/last slice, placed and padded as the sliding
    window does; half of them lung anywhere instead)."""
    p = TRAIN_PATCH
    shape = np.array(case["x"].shape)
    if kind == "hard" and not len(case["hard"]):
        kind = "vessel"
    if kind == "vessel" and not len(case["vessels"]):
        kind = "lung"
    if kind == "wall" and not len(case["wall"]):
        kind = "lung"
    if kind == "edge" and rng.random() < 0.5:
        kind = "lung"
    f = float(case["lung_factor"])
    edge_z = None
    if kind == "positive" and len(case["centres"]):
        w = case["weights"] / case["weights"].sum()
        c = case["centres"][rng.choice(len(case["centres"]), p=w)]
        start = c - p / 2 + rng.integers(-14, 15, size=3)
    elif kind in ("hard", "vessel"):
        pts = case["hard" if kind == "hard" else "vessels"]
        c = pts[rng.integers(len(pts))]
        start = c - p / 2 + rng.integers(-14, 15, size=3)
    elif kind == "wall":
        w = case["wall"]
        c = (w[rng.integers(len(w))] + 0.5) * f
        start = c - p / 2 + rng.integers(-6, 7, size=3)
    else:
        lung = np.argwhere(case["lung"])
        if kind == "edge":
            top = rng.random() < 0.5
            kz = lung[:, 0]
            sel = lung[kz <= kz.min() + 3] if top else lung[kz >= kz.max() - 3]
            lung = sel if len(sel) else lung
            # The sliding window starts at 0 and ends at the volume padded to a multiple of 4.
            edge_z = 0 if top else max(-(-int(shape[0]) // 4) * 4 - p, 0)
        c = (lung[rng.integers(len(lung))] + 0.5) * f
        start = c - p / 2 + rng.integers(-8, 9, size=3)
    start = (np.clip(start, 0, np.maximum(shape - p, 0)) // 4 * 4).astype(int)
    if edge_z is not None:
        start[0] = edge_z
    x = np.full((p, p, p), 0.0, dtype=np.float32)
    src = case["x"][start[0] : start[0] + p, start[1] : start[1] + p, start[2] : start[2] + p]
    x[: src.shape[0], : src.shape[1], : src.shape[2]] = src
    o = start // OUT_STRIDE
    q = p // OUT_STRIDE
    outs = []
    for key, fill in (("heat", 0.0), ("diam", 0.0), ("tex", 0)):
        arr = case[key]
        t = np.full((q, q, q), fill, dtype=arr.dtype)
        s = arr[o[0] : o[0] + q, o[1] : o[1] + q, o[2] : o[2] + q]
        t[: s.shape[0], : s.shape[1], : s.shape[2]] = s
        outs.append(t)
    # Augmentation: flips along x (left/right) and small intensity changes (scanner variety).
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
        outs = [t[:, :, ::-1] for t in outs]
    if rng.random() < 0.5:  # front/back: the anatomy is not symmetric but nodules look alike
        x = x[:, ::-1, :]
        outs = [t[:, ::-1, :] for t in outs]
    x = x * rng.uniform(0.95, 1.05) + rng.uniform(-0.03, 0.03)
    x = x + rng.normal(0.0, rng.uniform(0.0, 0.015), size=x.shape)
    return (np.ascontiguousarray(x, dtype=np.float32), *[np.ascontiguousarray(t) for t in outs])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", type=int, default=28)
    ap.add_argument("--minutes", type=float, default=14.0, help="training time budget")
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", type=Path, help="torch weights saved here (not shipped)")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--init", type=Path, help="start from these torch weights")
    ap.add_argument(
        "--init-onnx", type=Path, help="start from an exported model.onnx (batch norms frozen)"
    )
    ap.add_argument(
        "--mine",
        type=Path,
        help="model directory (ONNX + manifest) whose false positives on the training "
        "phantoms become hard negatives",
    )
    ap.add_argument(
        "--hard-weight",
        type=float,
        default=1.0,
        help="extra sampling weight of ground-glass, part-solid and juxtapleural nodules",
    )
    ap.add_argument(
        "--small-hard-weight",
        type=float,
        default=0.0,
        help="further extra weight when such a nodule is also <= 8 mm",
    )
    ap.add_argument(
        "--confounders",
        action="store_true",
        help="paint ribs along the lung surface and large hilar vessels (add_confounders) "
        "and train on them as negatives",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    t0 = time.time()
    miner = None
    if args.mine is not None:
        man = load_manifest(args.mine)
        dec = dict(man.decoding, edge_margin_mm=0.0, threshold=0.05, max_findings=40)
        # Training phantoms go beyond the model's pixel-spacing range (up to 1.8 mm).
        at = dataclasses.replace(man.applies_to, pixel_spacing_mm=None, slice_spacing_mm=None)
        miner = NoduleDetector(dataclasses.replace(man, decoding=dec, applies_to=at))
    cases = [
        make_case(
            args.first_seed + s,
            miner,
            args.hard_weight,
            args.small_hard_weight,
            confounders_on=args.confounders,
        )
        for s in range(args.cases)
    ]
    n_hard = sum(len(c["hard"]) for c in cases)
    print(
        f"{len(cases)} phantoms, {n_hard} mined negatives in {time.time() - t0:.0f} s", flush=True
    )
    net = NoduleNet()
    if args.init is not None:
        net.load_state_dict(torch.load(args.init))
    if args.init_onnx is not None:
        init_from_onnx(net, args.init_onnx)
    if args.resume:
        if args.checkpoint is None:
            ap.error("--resume needs --checkpoint")
        net.load_state_dict(torch.load(args.checkpoint))
        rng = np.random.default_rng(1)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    t1 = time.time()
    budget = args.minutes * 60.0
    step = 0
    while time.time() - t1 < budget:
        frac = (time.time() - t1) / budget
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        batch = [
            sample_patch(cases[rng.integers(len(cases))], rng, KINDS[b % len(KINDS)])
            for b in range(args.batch)
        ]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        heat = torch.from_numpy(np.stack([b[1] for b in batch]))
        diam = torch.from_numpy(np.stack([b[2] for b in batch]))
        tex = torch.from_numpy(np.stack([b[3] for b in batch]))
        if args.init_onnx is not None:
            freeze_batch_norms(net)
        y = net(x)
        w = 1.0 + 30.0 * heat
        l_heat = (
            w * nn.functional.binary_cross_entropy_with_logits(y[:, 0], heat, reduction="none")
        ).mean()
        m = heat > 0.3
        if m.any():
            l_d = (y[:, 1][m] - torch.log(diam[m])).abs().mean()
            l_t = nn.functional.cross_entropy(y[:, 2:5].permute(0, 2, 3, 4, 1)[m], tex[m])
        else:
            l_d = l_t = torch.zeros(())
        loss = l_heat + 1.0 * l_d + 0.1 * l_t
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(
                f"step {step} {time.time() - t1:.0f}s loss {loss.item():.4f} "
                f"heat {l_heat.item():.4f} diam {l_d.item():.3f} tex {l_t.item():.3f}",
                flush=True,
            )
    net.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.checkpoint is not None:
        torch.save(net.state_dict(), args.checkpoint)
    dummy = torch.zeros(1, 1, EXPORT_PATCH, EXPORT_PATCH, EXPORT_PATCH)
    torch.onnx.export(
        ExportNet(net),
        (dummy,),
        str(args.out / "model.onnx"),
        input_names=["ct_patch"],
        output_names=["nodule_probability", "diameter_mm", "texture_probability"],
        opset_version=17,
        dynamo=False,
        do_constant_folding=True,
    )
    print(f"trained {step} steps in {time.time() - t1:.0f} s; exported {args.out / 'model.onnx'}")


if __name__ == "__main__":
    main()
