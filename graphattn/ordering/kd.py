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
def _select(idx, keys, lo, hi, k, state):
    """Rearranges idx[lo:hi] so that keys[idx[lo:k]] <= keys[idx[k:hi]] (three-way quickselect)."""
    while hi - lo > 1:
        state = (state * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
        pivot = keys[idx[lo + (state >> 16) % (hi - lo)]]
        # Dutch-flag partition: [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot
        lt, i, gt = lo, lo, hi
        while i < gt:
            value = keys[idx[i]]
            if value < pivot:
                idx[lt], idx[i] = idx[i], idx[lt]
                lt += 1
                i += 1
            elif value > pivot:
                gt -= 1
                idx[gt], idx[i] = idx[i], idx[gt]
            else:
                i += 1
        if k < lt:
            hi = lt
        elif k >= gt:
            lo = gt
        else:
            return state
    return state


@njit(cache=True, nogil=True, parallel=True)
def _kd_order(pos, offset, block_size, seed):
    n, dims = pos.shape
    idx = np.arange(n)
    keys = np.empty(n, np.float64)
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
            best_axis, best_extent = 0, -1.0
            for d in range(dims):
                mn, mx = np.inf, -np.inf
                for p in range(lo, hi):
                    value = pos[idx[p], d]
                    mn = min(mn, value)
                    mx = max(mx, value)
                if mx - mn > best_extent:
                    best_axis, best_extent = d, mx - mn
            for p in range(lo, hi):
                keys[idx[p]] = pos[idx[p], best_axis]
            _select(idx, keys, lo, hi, cut, np.int64((seed * 2654435761 + lo * 40503 + 12345) & 0x7FFFFFFFFFFF))
            children[2 * s, 0], children[2 * s, 1] = lo, cut
            children[2 * s + 1, 0], children[2 * s + 1, 1] = cut, hi
        segments = children[children[:, 0] >= 0]
    return idx


def kd_order(pos: np.ndarray, block_size: int, offset: int = 0, seed: int = 0) -> np.ndarray:
    """Permutation (x_new = x[perm]) whose aligned blocks are the leaves of a balanced kd split."""
    return _kd_order(np.ascontiguousarray(pos, dtype=np.float64), offset, block_size, seed)
