"""The undirected neighbour structure (CSR) that the graph orderings walk.

Orderings group nodes that are joined in either direction, so edges are symmetrised; self-loops
and duplicates are dropped (rows keep edge order, unsorted).
"""
from __future__ import annotations

import numpy as np

from ._numba import njit


@njit(cache=True, nogil=True)
def _undirected_csr(src, dst, num_nodes):
    degree = np.zeros(num_nodes + 1, np.int64)
    for e in range(src.shape[0]):
        if src[e] != dst[e]:
            degree[src[e] + 1] += 1
            degree[dst[e] + 1] += 1
    for v in range(num_nodes):
        degree[v + 1] += degree[v]
    fill = degree[:-1].copy()
    nbrs = np.empty(degree[num_nodes], np.int64)
    for e in range(src.shape[0]):
        a, b = src[e], dst[e]
        if a != b:
            nbrs[fill[a]] = b
            fill[a] += 1
            nbrs[fill[b]] = a
            fill[b] += 1
    # squeeze out duplicates in place (a stamp per node: O(E), no sorting)
    ptr = np.zeros(num_nodes + 1, np.int64)
    stamp = np.full(num_nodes, -1, np.int64)
    out = 0
    for v in range(num_nodes):
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

    def __init__(self, src: np.ndarray, dst: np.ndarray, num_nodes: int):
        self.ptr, self.nbrs = _undirected_csr(src.astype(np.int64), dst.astype(np.int64), num_nodes)
        self.num_nodes = num_nodes

    def to_scipy(self):
        """The pattern as a scipy CSR matrix (values 1)."""
        import scipy.sparse as sp

        data = np.ones(self.nbrs.shape[0], np.int8)
        return sp.csr_matrix((data, self.nbrs.astype(np.int32), self.ptr.astype(np.int32)),
                             shape=(self.num_nodes, self.num_nodes))
