"""Balanced kd order: recursive median splits of the widest axis, cut only at block boundaries.

Each split puts a whole number of blocks on each side, so every leaf is one block of B points that
are close in space. About 25% fewer tiles than Hilbert on uniform clouds (GUIDE §5), but it follows
geometry only, so it loses where density varies strongly or mesh topology departs from geometry;
``auto`` measures it against the others.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit, prange
from ._segments import aligned_cut


@njit(cache=True, nogil=True)
def _select(idx, pts, axis, lo, hi, k, state):
    """Rearranges idx[lo:hi] (and the rows of pts with it) so that pts[lo:k, axis] <= pts[k:hi, axis]
    (three-way quickselect). ``pts`` holds the coordinates in the current order of ``idx``, so every
    access is sequential instead of a gather through ``idx``."""
    dims = pts.shape[1]
    while hi - lo > 1:
        state = (state * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
        pivot = pts[lo + (state >> 16) % (hi - lo), axis]
        # Dutch-flag partition: [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot
        lt, i, gt = lo, lo, hi
        while i < gt:
            value = pts[i, axis]
            if value < pivot:
                _swap(idx, pts, dims, lt, i)
                lt += 1
                i += 1
            elif value > pivot:
                gt -= 1
                _swap(idx, pts, dims, gt, i)
            else:
                i += 1
        if k < lt:
            hi = lt
        elif k >= gt:
            lo = gt
        else:
            return state
    return state


@njit(cache=True, nogil=True, inline="always")
def _swap(idx, pts, dims, a, b):
    idx[a], idx[b] = idx[b], idx[a]
    for d in range(dims):
        pts[a, d], pts[b, d] = pts[b, d], pts[a, d]


@njit(cache=True, nogil=True, parallel=True)
def _kd_order(pos, offset, block_size, seed):
    n, dims = pos.shape
    idx = np.arange(n)
    pts = pos.copy()
    # Level-synchronous: the segments of one level are disjoint, so they split in parallel; each
    # segment's pivot stream is seeded by its start, so the result does not depend on threads.
    segments = np.zeros((1, 2), np.int64)
    segments[0, 1] = n
    while segments.shape[0] > 0:
        count = segments.shape[0]
        children = np.full((2 * count, 2), -1, np.int64)
        for s in prange(count):
            lo, hi = segments[s, 0], segments[s, 1]
            cut = aligned_cut(lo, hi, offset, block_size)
            if cut < 0:
                continue
            low = np.full(dims, np.inf)
            high = np.full(dims, -np.inf)
            for p in range(lo, hi):
                for d in range(dims):
                    low[d] = min(low[d], pts[p, d])
                    high[d] = max(high[d], pts[p, d])
            best_axis, best_extent = 0, -1.0
            for d in range(dims):
                if high[d] - low[d] > best_extent:
                    best_axis, best_extent = d, high[d] - low[d]
            _select(idx, pts, best_axis, lo, hi, cut, np.int64((seed * 2654435761 + lo * 40503 + 12345) & 0x7FFFFFFFFFFF))
            children[2 * s, 0], children[2 * s, 1] = lo, cut
            children[2 * s + 1, 0], children[2 * s + 1, 1] = cut, hi
        segments = children[children[:, 0] >= 0]
    return idx


def kd_order(pos: np.ndarray, block_size: int, offset: int = 0, seed: int = 0) -> np.ndarray:
    """Permutation (x_new = x[perm]) whose aligned blocks are the leaves of a balanced kd split."""
    return _kd_order(np.ascontiguousarray(pos, dtype=np.float64), offset, block_size, seed)
