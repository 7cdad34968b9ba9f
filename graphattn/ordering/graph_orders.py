"""Orders computed from the graph alone: Cuthill–McKee bands and approximate minimum degree.

RCM numbers nodes by breadth-first levels (scipy's variant: from each component's lowest-degree
node), so neighbours sit at nearby positions; on mesh-edge graphs of scans and thin parts it can
beat the space-filling curves. ``bands`` starts the levels at the ends of a pseudo-diameter
(George and Liu's pseudo-peripheral node search) instead, which makes the levels thin cross-sections
of long parts: up to 14% fewer tiles than RCM on the benchmark meshes (never more than the
lowest of the four variants it measures). Minimum degree reduces fill in a sparse factorisation and does not cluster neighbours into
tiles (GUIDE §5: 1.5–4× worse than Hilbert); it is offered because users ask for it, never by
``auto``.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit
from .adjacency import Adjacency


@njit(cache=True, nogil=True)
def _levels(ptr, nbrs, start, stamp, mark, queue):
    """Breadth-first search of start's component (nodes with stamp != mark), into queue.
    Returns (number of levels, where the last level starts in queue, nodes reached)."""
    queue[0] = start
    stamp[start] = mark
    head, tail, levels, level_start = 0, 1, 0, 0
    while head < tail:
        level_start = head
        level_end = tail
        levels += 1
        while head < level_end:
            v = queue[head]
            head += 1
            for e in range(ptr[v], ptr[v + 1]):
                u = nbrs[e]
                if stamp[u] != mark:
                    stamp[u] = mark
                    queue[tail] = u
                    tail += 1
    return levels, level_start, tail


@njit(cache=True, nogil=True)
def _lowest_degree(queue, lo, hi, degree):
    best = queue[lo]
    for k in range(lo + 1, hi):
        if degree[queue[k]] < degree[best]:
            best = queue[k]
    return best


@njit(cache=True, nogil=True)
def _pseudo_diameter(ptr, nbrs, seed, degree, stamp, mark, queue):
    """George and Liu's pseudo-peripheral node search from seed: (one end, the other end, next mark).
    Repeats the search from the lowest-degree node of the last level while the depth grows."""
    levels, last, reached = _levels(ptr, nbrs, seed, stamp, mark, queue)
    mark += 1
    start = seed
    far = _lowest_degree(queue, last, reached, degree)
    for _ in range(8):
        depth, last2, reached2 = _levels(ptr, nbrs, far, stamp, mark, queue)
        mark += 1
        next_far = _lowest_degree(queue, last2, reached2, degree)
        if depth <= levels:
            return far, next_far, mark
        start, levels, far = far, depth, next_far
    return start, far, mark


@njit(cache=True, nogil=True)
def _cuthill_mckee(ptr, nbrs, by_degree, degree, start_mode):
    """Cuthill–McKee levels (before RCM's reversal). Components are taken in the order of their
    lowest-degree node (``by_degree``) and searched breadth first from that node (start_mode 0:
    exactly scipy's ``reverse_cuthill_mckee``, reversed), from a pseudo-peripheral node (1) or from
    the far end of its pseudo-diameter (2); the nodes each node adds are insertion-sorted by degree.
    A plain visited array replaces scipy's double indirection (about half the time at 1M nodes)."""
    n = ptr.shape[0] - 1
    order = np.empty(n, np.int64)
    visited = np.zeros(n, np.bool_)
    stamp = np.full(n, -1, np.int64) if start_mode else np.zeros(0, np.int64)
    queue = np.empty(n if start_mode else 0, np.int64)
    mark = 0
    count = 0
    for seed in by_degree:
        if visited[seed]:
            continue
        if start_mode:
            one_end, other_end, mark = _pseudo_diameter(ptr, nbrs, seed, degree, stamp, mark, queue)
            seed = one_end if start_mode == 1 else other_end
        visited[seed] = True
        order[count] = seed
        count += 1
        head = count - 1
        while head < count:
            i = order[head]
            head += 1
            added = count
            for e in range(ptr[i], ptr[i + 1]):
                j = nbrs[e]
                if not visited[j]:
                    visited[j] = True
                    order[count] = j
                    count += 1
            for k in range(added + 1, count):  # insertion sort of the new nodes by degree (stable)
                node = order[k]
                key = degree[node]
                m = k
                while m > added and key < degree[order[m - 1]]:
                    order[m] = order[m - 1]
                    m -= 1
                order[m] = node
        if count == n:
            break
    return order


def rcm_order(adjacency: Adjacency) -> np.ndarray:
    """Reverse Cuthill–McKee permutation (x_new = x[perm]); each component from its own start.

    The same permutation as scipy's ``reverse_cuthill_mckee(..., symmetric_mode=True)`` (tested),
    computed in numba.
    """
    if adjacency.num_nodes == 0:
        return np.zeros(0, np.int64)
    degree = np.diff(adjacency.ptr).astype(np.int32)
    by_degree = np.argsort(degree)  # scipy's tie order: numpy's default sort of int32 degrees
    return _cuthill_mckee(adjacency.ptr, adjacency.nbrs, by_degree, degree, 0)[::-1].copy()


def band_orders(adjacency: Adjacency):
    """Cuthill–McKee orders from both ends of each component's pseudo-diameter, each forwards and
    reversed (the reversal moves the short last block to the front, which shifts every block
    boundary against the levels). Yields the four permutations; ``bands`` keeps the fewest tiles."""
    if adjacency.num_nodes == 0:
        yield np.zeros(0, np.int64)
        return
    degree = np.diff(adjacency.ptr).astype(np.int32)
    by_degree = np.argsort(degree)
    for start_mode in (1, 2):
        forwards = _cuthill_mckee(adjacency.ptr, adjacency.nbrs, by_degree, degree, start_mode)
        yield forwards
        yield forwards[::-1].copy()


# The interface version csrc/ordering_module.cpp must export (5: refine takes the in-edge CSR and
# the graph's offset).
NATIVE_ABI_VERSION = 5


def native_module():
    """The compiled ordering core, or an ImportError that says how to build it."""
    import importlib

    try:
        _ordering_native = importlib.import_module("graphattn._ordering_native")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "graphattn._ordering_native (the C++ core used by min_degree and refine) is not built. "
            "Build it with `pip install -e .` (or `python setup.py build_ext --inplace`) in the "
            "graphattn checkout; morton, hilbert, rcm, kd, partition and auto without refine work "
            "without it.") from exc
    if getattr(_ordering_native, "abi_version", 0) < NATIVE_ABI_VERSION:
        raise ImportError("graphattn._ordering_native is out of date; rebuild it with `pip install -e .`")
    return _ordering_native


def min_degree_order(adjacency: Adjacency) -> np.ndarray:
    """Approximate minimum degree elimination order (x_new = x[perm]), from the C++ core."""
    if adjacency.num_nodes == 0:
        return np.zeros(0, np.int64)
    return np.asarray(native_module().min_degree(adjacency.ptr, adjacency.nbrs), dtype=np.int64)
