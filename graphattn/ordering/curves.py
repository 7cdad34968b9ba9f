"""Space-filling-curve orders of 2D or 3D coordinates: Morton (Z-order) and Hilbert.

Coordinates are quantised on one cube grid that spans the bounding box's longest side (a common
scale keeps the curve's cells cubic, so locality is the same along every axis), with 21 bits per
axis in 3D and 31 in 2D, so one code fits in an int64. Points with equal codes keep their input
order (stable sort), which makes both orders deterministic.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit, prange


def _quantise(pos: np.ndarray) -> tuple[np.ndarray, int]:
    dims = pos.shape[1]
    bits = 21 if dims == 3 else 31
    lo = pos.min(axis=0)
    extent = float((pos.max(axis=0) - lo).max())
    scale = ((1 << bits) - 1) / extent if extent > 0 else 0.0
    grid = np.floor((pos - lo) * scale).astype(np.int64)
    np.clip(grid, 0, (1 << bits) - 1, out=grid)
    return grid, bits


@njit(cache=True, nogil=True, parallel=True)
def _morton_codes(grid, bits):
    n, dims = grid.shape
    codes = np.zeros(n, np.int64)
    for i in prange(n):
        code = 0
        for bit in range(bits - 1, -1, -1):
            for d in range(dims):
                code = (code << 1) | ((grid[i, d] >> bit) & 1)
        codes[i] = code
    return codes


@njit(cache=True, nogil=True, inline="always")
def _untangle(x0, xd, q, p):
    """One step of Skilling's inverse undo for axis d against axis 0."""
    if xd & q:
        x0 ^= p
    else:
        t = (x0 ^ xd) & p
        x0 ^= t
        xd ^= t
    return x0, xd


@njit(cache=True, nogil=True, parallel=True)
def _hilbert_codes(grid, bits):
    """Skilling's transform ("Programming the Hilbert curve", 2004) then bit interleaving.

    Written out for two and three axes with scalar registers: the general n-axis loop over a
    scratch array is twice as slow in numba.
    """
    n, dims = grid.shape
    codes = np.zeros(n, np.int64)
    top = np.int64(1) << (bits - 1)
    for i in prange(n):
        x0 = grid[i, 0]
        x1 = grid[i, 1]
        x2 = grid[i, 2] if dims == 3 else np.int64(0)
        q = top
        while q > 1:
            p = q - 1
            if x0 & q:
                x0 ^= p
            x0, x1 = _untangle(x0, x1, q, p)
            if dims == 3:
                x0, x2 = _untangle(x0, x2, q, p)
            q >>= 1
        x1 ^= x0
        if dims == 3:
            x2 ^= x1
        last = x2 if dims == 3 else x1
        t = 0
        q = top
        while q > 1:
            if last & q:
                t ^= q - 1
            q >>= 1
        x0 ^= t
        x1 ^= t
        x2 ^= t
        code = 0
        for bit in range(bits - 1, -1, -1):
            code = (code << 1) | ((x0 >> bit) & 1)
            code = (code << 1) | ((x1 >> bit) & 1)
            if dims == 3:
                code = (code << 1) | ((x2 >> bit) & 1)
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
