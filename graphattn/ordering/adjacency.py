"""The undirected neighbour structure (CSR) that the graph orderings walk.

Orderings group nodes that are joined in either direction, so edges are symmetrised; self-loops
and duplicates are dropped (rows keep edge order, unsorted).
"""
from __future__ import annotations

import numpy as np

from ._numba import njit, prange
from .tiles import InEdges


@njit(cache=True, nogil=True, parallel=True)
def _transpose(in_ptr, in_src, num_nodes):
    """Out-edges of every node as CSR (by source), each row in increasing target order.

    Parallel over chunks of targets: each chunk counts its edges per source, a prefix over chunks
    gives every chunk its own slot range in each row, and the chunks scatter independently (the
    serial scatter was the slowest step of the symmetrised CSR at 1M nodes).
    """
    num_chunks = 4
    counts = np.zeros((num_chunks, num_nodes + 1), np.int64)
    for chunk in prange(num_chunks):
        for v in range(chunk * num_nodes // num_chunks, (chunk + 1) * num_nodes // num_chunks):
            for e in range(in_ptr[v], in_ptr[v + 1]):
                counts[chunk, in_src[e] + 1] += 1
    out_ptr = np.zeros(num_nodes + 1, np.int64)
    for u in range(num_nodes):
        total = out_ptr[u]
        for chunk in range(num_chunks):  # counts[chunk, u + 1] becomes the chunk's first slot in row u
            c = counts[chunk, u + 1]
            counts[chunk, u + 1] = total
            total += c
        out_ptr[u + 1] = total
    out_dst = np.empty(in_src.shape[0], in_src.dtype)
    for chunk in prange(num_chunks):
        for v in range(chunk * num_nodes // num_chunks, (chunk + 1) * num_nodes // num_chunks):
            for e in range(in_ptr[v], in_ptr[v + 1]):
                u = in_src[e]
                out_dst[counts[chunk, u + 1]] = v
                counts[chunk, u + 1] += 1
    return out_ptr, out_dst


@njit(cache=True, nogil=True, parallel=True)
def _merge_rows(in_ptr, in_src, out_ptr, out_dst, num_nodes, ptr, nbrs, fill_pass):
    """Row v = in-neighbours then out-neighbours of v, self-loops and duplicates squeezed out with
    a stamp per node. The count pass (fill_pass False) writes row lengths to ptr[1:]; the fill pass
    writes the rows at ptr. Rows are split into chunks, each with its own stamp array."""
    num_chunks = min(8, max(num_nodes, 1))
    for chunk in prange(num_chunks):
        stamp = np.full(num_nodes, -1, in_src.dtype)  # node ids fit the id dtype
        for v in range(chunk * num_nodes // num_chunks, (chunk + 1) * num_nodes // num_chunks):
            stamp[v] = v  # drops self-loops
            k = ptr[v] if fill_pass else 0
            for e in range(in_ptr[v], in_ptr[v + 1]):
                u = in_src[e]
                if stamp[u] != v:
                    stamp[u] = v
                    if fill_pass:
                        nbrs[k] = u
                    k += 1
            for e in range(out_ptr[v], out_ptr[v + 1]):
                u = out_dst[e]
                if stamp[u] != v:
                    stamp[u] = v
                    if fill_pass:
                        nbrs[k] = u
                    k += 1
            if not fill_pass:
                ptr[v + 1] = k


def _undirected_csr(in_ptr, in_src, num_nodes):
    """(ptr, nbrs): the symmetrised pattern without self-loops or duplicates, O(N + E), no sort."""
    out_ptr, out_dst = _transpose(in_ptr, in_src, num_nodes)
    ptr = np.zeros(num_nodes + 1, np.int64)
    _merge_rows(in_ptr, in_src, out_ptr, out_dst, num_nodes, ptr, in_src[:0], False)
    np.cumsum(ptr, out=ptr)
    nbrs = np.empty(int(ptr[-1]), in_src.dtype)
    _merge_rows(in_ptr, in_src, out_ptr, out_dst, num_nodes, ptr, nbrs, True)
    return ptr, nbrs


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
