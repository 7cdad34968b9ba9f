"""Orders computed from the graph alone: reverse Cuthill–McKee and approximate minimum degree.

RCM (scipy) numbers nodes by breadth-first levels from a pseudo-peripheral node, so neighbours sit
at nearby positions; on mesh-edge graphs of scans and thin parts it can beat the space-filling
curves. Minimum degree reduces fill in a sparse factorisation and does not cluster neighbours into
tiles (GUIDE §5: 1.5–4× worse than Hilbert); it is offered because users ask for it, never by
``auto``.
"""
from __future__ import annotations

import numpy as np

from ._numba import njit
from .adjacency import Adjacency


@njit(cache=True, nogil=True)
def _cuthill_mckee(ptr, nbrs, by_degree, degree):
    """Cuthill–McKee levels, exactly as scipy's ``reverse_cuthill_mckee`` builds them (before the
    reversal): each component is searched breadth first from its lowest-degree node (in the order
    ``by_degree``), and the nodes each node adds are insertion-sorted by degree. A plain visited
    array replaces scipy's double indirection, which roughly halves the time on 1M nodes."""
    n = ptr.shape[0] - 1
    order = np.empty(n, np.int64)
    visited = np.zeros(n, np.bool_)
    count = 0
    for seed in by_degree:
        if visited[seed]:
            continue
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
    return _cuthill_mckee(adjacency.ptr, adjacency.nbrs, by_degree, degree)[::-1].copy()


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
    if not hasattr(_ordering_native, "min_degree"):
        raise ImportError("graphattn._ordering_native is out of date; rebuild it with `pip install -e .`")
    return _ordering_native


def min_degree_order(adjacency: Adjacency) -> np.ndarray:
    """Approximate minimum degree elimination order (x_new = x[perm]), from the C++ core."""
    if adjacency.num_nodes == 0:
        return np.zeros(0, np.int64)
    return np.asarray(native_module().min_degree(adjacency.ptr, adjacency.nbrs), dtype=np.int64)
