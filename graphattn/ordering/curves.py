"""Space-filling-curve orders of 2D or 3D coordinates: Morton (Z-order) and Hilbert.

Coordinates are quantised on one cube grid that spans the bounding box's longest side (a common
scale keeps the curve's cells cubic, so locality is the same along every axis), with 21 bits per
axis in 3D and 31 in 2D, so one code fits in an int64. Points with equal codes keep their input
order (stable sort), which makes both orders deterministic.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit


def _quantise(pos: np.ndarray) -> tuple[np.ndarray, int]:
    dims = pos.shape[1]
    bits = 21 if dims == 3 else 31
    lo = pos.min(axis=0)
    extent = float((pos.max(axis=0) - lo).max())
    scale = ((1 << bits) - 1) / extent if extent > 0 else 0.0
    grid = np.floor((pos - lo) * scale).astype(np.int64)
    np.clip(grid, 0, (1 << bits) - 1, out=grid)
    return grid, bits


@njit(cache=True, nogil=True)
def _morton_codes(grid, bits):
    n, dims = grid.shape
    codes = np.zeros(n, np.int64)
    for i in range(n):
        code = 0
        for bit in range(bits - 1, -1, -1):
            for d in range(dims):
                code = (code << 1) | ((grid[i, d] >> bit) & 1)
        codes[i] = code
    return codes


@njit(cache=True, nogil=True)
def _hilbert_codes(grid, bits):
    """Skilling's transform ("Programming the Hilbert curve", 2004) then bit interleaving."""
    n, dims = grid.shape
    codes = np.zeros(n, np.int64)
    x = np.zeros(dims, np.int64)
    top = np.int64(1) << (bits - 1)
    for i in range(n):
        for d in range(dims):
            x[d] = grid[i, d]
        q = top
        while q > 1:
            p = q - 1
            for d in range(dims):
                if x[d] & q:
                    x[0] ^= p
                else:
                    t = (x[0] ^ x[d]) & p
                    x[0] ^= t
                    x[d] ^= t
            q >>= 1
        for d in range(1, dims):
            x[d] ^= x[d - 1]
        t = 0
        q = top
        while q > 1:
            if x[dims - 1] & q:
                t ^= q - 1
            q >>= 1
        for d in range(dims):
            x[d] ^= t
        code = 0
        for bit in range(bits - 1, -1, -1):
            for d in range(dims):
                code = (code << 1) | ((x[d] >> bit) & 1)
        codes[i] = code
    return codes


def curve_codes(pos: np.ndarray, curve: str) -> np.ndarray:
    """Morton or Hilbert code (int64) of each point of ``pos`` [N, 2|3]."""
    if pos.shape[0] == 0:
        return np.zeros(0, np.int64)
    grid, bits = _quantise(np.ascontiguousarray(pos, dtype=np.float64))
    return (_hilbert_codes if curve == "hilbert" else _morton_codes)(grid, bits)


def morton_order(pos: np.ndarray) -> np.ndarray:
    """Permutation (x_new = x[perm]) sorting the points along the Morton curve."""
    return np.argsort(curve_codes(pos, "morton"), kind="stable")


def hilbert_order(pos: np.ndarray) -> np.ndarray:
    """Permutation (x_new = x[perm]) sorting the points along the Hilbert curve."""
    return np.argsort(curve_codes(pos, "hilbert"), kind="stable")
