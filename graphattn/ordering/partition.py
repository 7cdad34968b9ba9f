"""Graph-only partition order: recursive bisection by breadth-first level sets, parts of exactly B.

Each segment of the order is split in two: a breadth-first search inside the segment from a
pseudo-peripheral node (the farthest node found by a first search) sorts its nodes by graph
distance along the segment's longest direction, and the cut falls on the block boundary nearest to
the middle. Recursing until each segment is one block gives compact groups of exactly B nodes
without coordinates — the graph's analogue of the kd split. Disconnected pieces of a segment are
searched one after another, so they stay together.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit
from ._segments import aligned_cut
from .adjacency import Adjacency


@njit(cache=True, nogil=True)
def _bfs_in_segment(ptr, nbrs, idx, lo, hi, label, seg_label, seen, sweep, start, out):
    """Breadth-first order of the nodes idx[lo:hi] (those with seg_label == label) into out[lo:hi],
    starting at ``start`` and continuing from the first unreached node whenever a piece runs out.
    Returns the last node reached from ``start``'s piece (a far node)."""
    head = lo
    tail = lo
    scan = lo
    out[tail] = start
    seen[start] = sweep
    tail += 1
    far = start
    first_piece = True
    while tail < hi or head < tail:
        if head == tail:
            first_piece = False
            while seen[idx[scan]] == sweep:
                scan += 1
            v = idx[scan]
            seen[v] = sweep
            out[tail] = v
            tail += 1
        v = out[head]
        head += 1
        if first_piece:
            far = v
        for e in range(ptr[v], ptr[v + 1]):
            u = nbrs[e]
            if seg_label[u] == label and seen[u] != sweep:
                seen[u] = sweep
                out[tail] = u
                tail += 1
    return far


@njit(cache=True, nogil=True)
def _partition_order(ptr, nbrs, n, offset, block_size):
    idx = np.arange(n)
    out = np.empty(n, np.int64)
    seg_label = np.zeros(n, np.int64)
    seen = np.full(n, -1, np.int64)
    sweep = 0
    next_label = 1
    stack = np.empty((2 * (n // block_size + 2) + 64, 3), np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 0
    top = 1
    while top > 0:
        top -= 1
        lo, hi, label = stack[top, 0], stack[top, 1], stack[top, 2]
        cut = aligned_cut(lo, hi, offset, block_size)
        if cut < 0:
            continue
        far = _bfs_in_segment(ptr, nbrs, idx, lo, hi, label, seg_label, seen, sweep, idx[lo], out)
        sweep += 1
        _bfs_in_segment(ptr, nbrs, idx, lo, hi, label, seg_label, seen, sweep, far, out)
        sweep += 1
        for p in range(lo, hi):
            idx[p] = out[p]
        for p in range(cut, hi):
            seg_label[idx[p]] = next_label + 1
        for p in range(lo, cut):
            seg_label[idx[p]] = next_label
        stack[top, 0], stack[top, 1], stack[top, 2] = lo, cut, next_label
        stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = cut, hi, next_label + 1
        next_label += 2
        top += 2
    return idx


def partition_order(adjacency: Adjacency, block_size: int, offset: int = 0) -> np.ndarray:
    """Permutation (x_new = x[perm]) whose aligned blocks are parts of a recursive graph bisection."""
    return _partition_order(adjacency.ptr, adjacency.nbrs, adjacency.num_nodes, offset, block_size)
