"""Sliding-window inference over a 3-D array with fixed patches, overlap and Gaussian blending."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.errors import Cancelled

F32 = npt.NDArray[np.float32]
Progress = Callable[[float, str], None]


def gaussian_weights(shape: tuple[int, int, int], sigma_scale: float = 0.125) -> F32:
    """Blending weights peaking at the patch centre (sigma = sigma_scale * size, as nnU-Net),
    floored so border voxels still count where only one patch covers them."""
    axes = []
    for n in shape:
        c = (n - 1) / 2.0
        s = max(sigma_scale * n, 1e-3)
        axes.append(np.exp(-((np.arange(n) - c) ** 2) / (2 * s * s)))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    w = w / w.max()
    out: F32 = np.maximum(w, 1e-3).astype(np.float32)
    return out


def window_starts(n: int, patch: int, stride: int, align: int) -> list[int]:
    """Patch start indices covering [0, n) (n already padded to >= patch and to `align`)."""
    if n <= patch:
        return [0]
    starts = list(range(0, n - patch, stride))
    last = (n - patch) // align * align
    if not starts or starts[-1] != last:
        starts.append(last)
    return starts


@dataclass(frozen=True)
class PatchGrid:
    padded_shape: tuple[int, int, int]
    starts: list[tuple[int, int, int]]


def plan_patches(
    shape: tuple[int, int, int],
    patch: tuple[int, int, int],
    overlap: float,
    align: int,
    keep: Callable[[tuple[int, int, int]], bool] | None = None,
) -> PatchGrid:
    """Patch starts (multiples of `align`) over `shape` padded up to the patch size and to
    `align`; `keep(start)` can drop patches with nothing to look at (e.g. outside the lungs)."""
    padded = tuple(max(p, -(-n // align) * align) for n, p in zip(shape, patch, strict=True))
    per_axis = []
    for n, p in zip(padded, patch, strict=True):
        stride = max(align, int(p * (1.0 - overlap)) // align * align)
        per_axis.append(window_starts(n, p, stride, align))
    starts = [(a, b, c) for a in per_axis[0] for b in per_axis[1] for c in per_axis[2]]
    if keep is not None:
        starts = [s for s in starts if keep(s)]
    return PatchGrid((int(padded[0]), int(padded[1]), int(padded[2])), starts)


def run_sliding_window(
    x: F32,
    grid: PatchGrid,
    patch: tuple[int, int, int],
    stride_out: int,
    infer: Callable[[F32], list[F32]],
    channels: int,
    pad_value: float,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[F32, F32]:
    """Run `infer` on each patch; blend its outputs (list of (C_n, q, q, q) arrays, stacked to
    `channels`) at output stride `stride_out`. Returns (blended (channels, ...), coverage)."""
    padded = np.full(grid.padded_shape, pad_value, dtype=np.float32)
    padded[: x.shape[0], : x.shape[1], : x.shape[2]] = x
    q = tuple(p // stride_out for p in patch)
    out_shape = tuple(n // stride_out for n in grid.padded_shape)
    acc = np.zeros((channels, *out_shape), dtype=np.float32)
    wsum = np.zeros(out_shape, dtype=np.float32)
    w = gaussian_weights((q[0], q[1], q[2]))
    n = len(grid.starts)
    for idx, (a, b, c) in enumerate(grid.starts):
        if cancel is not None and cancel():
            raise Cancelled("cancelled")
        tile = padded[a : a + patch[0], b : b + patch[1], c : c + patch[2]]
        outs = infer(tile)
        y = np.concatenate([o.reshape(-1, *q) for o in outs], axis=0)
        oa, ob, oc = a // stride_out, b // stride_out, c // stride_out
        sl = (slice(oa, oa + q[0]), slice(ob, ob + q[1]), slice(oc, oc + q[2]))
        acc[(slice(None), *sl)] += y * w
        wsum[sl] += w
        if progress is not None:
            progress((idx + 1) / max(n, 1), f"patch {idx + 1}/{n}")
    covered = wsum > 0
    acc[:, covered] /= wsum[covered]
    return acc, covered.astype(np.float32)
