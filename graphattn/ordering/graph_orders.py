"""Orders computed from the graph alone: reverse Cuthill–McKee and approximate minimum degree.

RCM (scipy) numbers nodes by breadth-first levels from a pseudo-peripheral node, so neighbours sit
at nearby positions; on mesh-edge graphs of scans and thin parts it can beat the space-filling
curves. Minimum degree reduces fill in a sparse factorisation and does not cluster neighbours into
tiles (GUIDE §5: 1.5–4× worse than Hilbert); it is offered because users ask for it, never by
``auto``.
"""
from __future__ import annotations

import numpy as np

from .adjacency import Adjacency


def rcm_order(adjacency: Adjacency) -> np.ndarray:
    """Reverse Cuthill–McKee permutation (x_new = x[perm]); each component from its own start."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    if adjacency.num_nodes == 0:
        return np.zeros(0, np.int64)
    return reverse_cuthill_mckee(adjacency.to_scipy(), symmetric_mode=True).astype(np.int64)


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
