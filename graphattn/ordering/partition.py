"""Graph-only partition orders: recursive bisection into parts of exactly B, two ways.

``partition`` (numba, below) bisects by breadth-first level sets; ``multilevel`` (C++,
csrc/bisection.cpp) bisects by minimum cut, METIS-style (heavy-edge coarsening, greedy growing,
Fiduccia–Mattheyses refinement on the way back). The multilevel cut costs more (~1 s for a
100k-node k=16 graph on a 2-core CPU, against ~0.2 s) and gives compact parts: 20-25% fewer tiles
than kd on k-NN graphs of thin CAD parts, ~4% on uniform volumes; on mesh-edge graphs RCM's bands
stay better. Both recurse until every segment is one block.

The breadth-first bisection:

Each segment of the order is split in two: a breadth-first search inside the segment from a
pseudo-peripheral node (the farthest node found by a first search) sorts its nodes by graph
distance along the segment's longest direction, and the cut falls on the block boundary nearest to
the middle. Recursing until each segment is one block gives compact groups of exactly B nodes
without coordinates — the graph's analogue of the kd split. Disconnected pieces of a segment are
searched one after another, so they stay together.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit, prange
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


@njit(cache=True, nogil=True, parallel=True)
def _partition_order(ptr, nbrs, n, offset, block_size):
    idx = np.arange(n)
    out = np.empty(n, np.int64)
    seg_label = np.zeros(n, np.int64)
    seen = np.full(n, -1, np.int64)
    # Level-synchronous: the segments of one level cover disjoint nodes, so they are split in
    # parallel; sweep ids and labels are numbered per level so no two searches share one.
    segments = np.zeros((1, 3), np.int64)
    segments[0, 1] = n
    next_id = 1
    while segments.shape[0] > 0:
        count = segments.shape[0]
        children = np.full((2 * count, 3), -1, np.int64)
        for s in prange(count):
            lo, hi, label = segments[s, 0], segments[s, 1], segments[s, 2]
            cut = aligned_cut(lo, hi, offset, block_size)
            if cut < 0:
                continue
            sweep = next_id + 2 * s
            far = _bfs_in_segment(ptr, nbrs, idx, lo, hi, label, seg_label, seen, sweep, idx[lo], out)
            _bfs_in_segment(ptr, nbrs, idx, lo, hi, label, seg_label, seen, sweep + 1, far, out)
            for p in range(lo, hi):
                idx[p] = out[p]
            for p in range(lo, cut):
                seg_label[idx[p]] = sweep
            for p in range(cut, hi):
                seg_label[idx[p]] = sweep + 1
            children[2 * s, 0], children[2 * s, 1], children[2 * s, 2] = lo, cut, sweep
            children[2 * s + 1, 0], children[2 * s + 1, 1], children[2 * s + 1, 2] = cut, hi, sweep + 1
        next_id += 2 * count
        segments = children[children[:, 0] >= 0]
    return idx


def partition_order(adjacency: Adjacency, block_size: int, offset: int = 0) -> np.ndarray:
    """Permutation (x_new = x[perm]) whose aligned blocks are parts of a recursive graph bisection."""
    return _partition_order(adjacency.ptr, adjacency.nbrs, adjacency.num_nodes, offset, block_size)


def multilevel_order(adjacency: Adjacency, block_size: int, offset: int = 0, seed: int = 0) -> np.ndarray:
    """Permutation (x_new = x[perm]) whose aligned blocks are parts of a multilevel min-cut bisection
    (the C++ core; see csrc/bisection.cpp)."""
    from .graph_orders import native_module

    if adjacency.num_nodes == 0:
        return np.zeros(0, np.int64)
    return np.asarray(native_module().multilevel_order(adjacency.ptr, adjacency.nbrs, block_size, offset, seed),
                      dtype=np.int64)
