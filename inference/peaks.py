"""Peak finding in a 3-D probability map and non-maximum suppression by distance in mm."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_OFFSETS = np.array(
    [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=np.int64
)


def local_maxima(prob: F32, threshold: float) -> I64:
    """(n, 3) indices of voxels >= threshold that are maxima of their 3x3x3 neighbourhood
    (ties broken to the first voxel in C order), sorted by probability, highest first."""
    cand = np.argwhere(prob >= threshold)
    if len(cand) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    padded = np.pad(prob, 1, mode="constant", constant_values=-np.inf)
    centre = prob[cand[:, 0], cand[:, 1], cand[:, 2]]
    keep = np.ones(len(cand), dtype=bool)
    shape = np.array(prob.shape)
    flat_c = np.ravel_multi_index(cand.T, prob.shape)
    for off in _OFFSETS:
        if not off.any():
            continue
        nb = cand + off + 1
        v = padded[nb[:, 0], nb[:, 1], nb[:, 2]]
        nbi = np.clip(cand + off, 0, shape - 1)
        flat_n = np.ravel_multi_index(nbi.T, prob.shape)
        # A neighbour with a higher value, or an equal value earlier in C order, wins.
        keep &= ~((v > centre) | ((v == centre) & (flat_n < flat_c)))
    peaks = cand[keep]
    order = np.argsort(-prob[peaks[:, 0], peaks[:, 1], peaks[:, 2]], kind="stable")
    out: I64 = peaks[order].astype(np.int64)
    return out


def refine_centroid(prob: F32, peak: I64, radius: int = 1) -> F64:
    """Probability-weighted centroid (fractional index) of the neighbourhood of a peak."""
    lo = np.maximum(peak - radius, 0)
    hi = np.minimum(peak + radius + 1, prob.shape)
    block = prob[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float64)
    w = np.clip(block - 0.5 * float(prob[tuple(peak)]), 0.0, None)
    total = w.sum()
    if total <= 0:
        return peak.astype(np.float64)
    g = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    out: F64 = np.array([(gi * w).sum() / total for gi in g], dtype=np.float64)
    return out


def nms_by_distance(points_mm: F64, scores: F64, radius_mm: float, max_keep: int) -> list[int]:
    """Indices kept by greedy NMS: highest score first, dropping any point closer than
    radius_mm to one already kept."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if len(kept) >= max_keep:
            break
        if kept:
            d = np.linalg.norm(points_mm[kept] - points_mm[i], axis=1)
            if np.any(d < radius_mm):
                continue
        kept.append(int(i))
    return kept
