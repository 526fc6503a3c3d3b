"""Shared by the phantom generators: smooth fields from coarse random grids."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def interp_matrix(n_fine: int, n_coarse: int) -> npt.NDArray[np.float32]:
    """Linear interpolation weights (n_fine, n_coarse) spreading the coarse grid over the fine."""
    pos = np.linspace(0.0, n_coarse - 1.0, n_fine)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_coarse - 2)
    w = pos - i0
    m = np.zeros((n_fine, n_coarse), dtype=np.float32)
    m[np.arange(n_fine), i0] = 1.0 - w
    m[np.arange(n_fine), i0 + 1] = w
    return m
