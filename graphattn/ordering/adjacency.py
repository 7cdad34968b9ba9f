"""The undirected neighbour structure (CSR) that the graph orderings walk.

Orderings group nodes that are joined in either direction, so edges are symmetrised; self-loops
and duplicates are dropped (rows keep edge order, unsorted).
"""
from __future__ import annotations

import numpy as np

from ._numba import njit
from .tiles import InEdges


@njit(cache=True, nogil=True)
def _undirected_csr(in_ptr, in_src, num_nodes):
    """Rows = in-neighbours (copied in order) then out-neighbours (scattered), self-loops and
    duplicates squeezed out with a stamp per node: O(N + E), no sorting."""
    degree = np.zeros(num_nodes + 1, np.int64)
    for v in range(num_nodes):
        degree[v + 1] += in_ptr[v + 1] - in_ptr[v]
        for e in range(in_ptr[v], in_ptr[v + 1]):
            degree[in_src[e] + 1] += 1
    for v in range(num_nodes):
        degree[v + 1] += degree[v]
    nbrs = np.empty(degree[num_nodes], in_src.dtype)
    fill = degree[:-1].copy()
    for v in range(num_nodes):
        for e in range(in_ptr[v], in_ptr[v + 1]):
            nbrs[fill[v]] = in_src[e]
            fill[v] += 1
    for v in range(num_nodes):
        for e in range(in_ptr[v], in_ptr[v + 1]):
            u = in_src[e]
            nbrs[fill[u]] = v
            fill[u] += 1
    ptr = np.zeros(num_nodes + 1, np.int64)
    stamp = np.full(num_nodes, -1, np.int64)
    out = 0
    for v in range(num_nodes):
        stamp[v] = v  # drops self-loops
        for k in range(degree[v], degree[v + 1]):
            u = nbrs[k]
            if stamp[u] != v:
                stamp[u] = v
                nbrs[out] = u
                out += 1
        ptr[v + 1] = out
    return ptr, nbrs[:out].copy()


class Adjacency:
    """Undirected, simple adjacency in CSR form (rows unsorted): neighbours of v are ``nbrs[ptr[v]:ptr[v+1]]``."""

    def __init__(self, in_edges: InEdges):
        self.ptr, self.nbrs = _undirected_csr(in_edges.ptr, in_edges.src, in_edges.num_nodes)
        self.num_nodes = in_edges.num_nodes

    def to_scipy(self):
        """The pattern as a scipy CSR matrix (values 1)."""
        import scipy.sparse as sp

        data = np.ones(self.nbrs.shape[0], np.int8)
        index = np.int32 if self.nbrs.shape[0] < 2**31 else np.int64
        return sp.csr_matrix((data, self.nbrs.astype(index, copy=False), self.ptr.astype(index)),
                             shape=(self.num_nodes, self.num_nodes))
