"""The adjacency forms a PyG layer accepts, turned into (source, target) index vectors.

TransformerConv takes an ``edge_index`` ``[2, E]`` (row 0 source j, row 1 target i), PyG's
``EdgeIndex``, a ``torch_sparse.SparseTensor`` or a ``torch.sparse`` tensor. The sparse forms are the
*transposed* adjacency ``adj_t`` of shape ``[num_dst, num_src]``: entry ``(i, j)`` is the edge
``j → i``. Their values become edge features when they have more than one dimension (PyG's rule).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import _describe


@dataclass
class Adjacency:
    """Edges as two int64 vectors, in the order PyG reports per-edge results for this input."""

    src: torch.Tensor
    dst: torch.Tensor
    num_src: int
    num_dst: int
    values: torch.Tensor | None  # the sparse tensor's values, None for an edge_index
    is_sparse: bool


def _sparse_tensor_class():
    from torch_geometric.typing import SparseTensor  # a placeholder class without torch_sparse
    return SparseTensor


def parse_adjacency(edge_index, num_src: int, num_dst: int, name: str = "edge_index") -> Adjacency:
    """Reads ``edge_index`` in any accepted form, checking its kind, shape and sizes (not its values)."""
    sparse_tensor = _sparse_tensor_class()
    if isinstance(edge_index, sparse_tensor):
        rows, cols, values = edge_index.coo()
        size = (edge_index.size(0), edge_index.size(1))
        _check_sparse_size(size, num_src, num_dst, name)
        return Adjacency(cols.long(), rows.long(), num_src, num_dst, values, True)
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [2, E], a torch.sparse tensor or a "
                        f"torch_sparse.SparseTensor, got {type(edge_index).__name__}")
    layout = edge_index.layout
    if layout == torch.strided:
        if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers (int64 or int32), got {_describe(edge_index)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"{name} must have shape [2, E] (row 0 source, row 1 target), "
                             f"got {_describe(edge_index)}")
        return Adjacency(edge_index[0].long(), edge_index[1].long(), num_src, num_dst, None, False)
    if edge_index.dim() != 2 and layout != torch.sparse_coo:
        raise ValueError(f"{name} as a sparse tensor must be a 2-D adjacency [num_dst, num_src], "
                         f"got {_describe(edge_index)}")
    _check_sparse_size((edge_index.shape[0], edge_index.shape[1]), num_src, num_dst, name)
    if layout == torch.sparse_coo:
        if edge_index.sparse_dim() != 2:
            raise ValueError(f"{name} as a sparse COO tensor must have 2 sparse dimensions "
                             f"[num_dst, num_src], got {edge_index.sparse_dim()}")
        # Raw order, as PyG reads it, so per-edge results line up with TransformerConv's.
        rows, cols = edge_index._indices()
        values = edge_index._values()
    elif layout == torch.sparse_csr:
        counts = edge_index.crow_indices().diff()
        rows = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
        cols = edge_index.col_indices()
        values = edge_index.values()
    elif layout == torch.sparse_csc:
        counts = edge_index.ccol_indices().diff()
        cols = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
        rows = edge_index.row_indices()
        values = edge_index.values()
    else:
        raise ValueError(f"{name} has unsupported sparse layout {layout}; use an edge_index [2, E], "
                         f"or a sparse COO, CSR or CSC adjacency [num_dst, num_src]")
    return Adjacency(cols.long(), rows.long(), num_src, num_dst, values, True)


def _check_sparse_size(size, num_src: int, num_dst: int, name: str) -> None:
    if (int(size[0]), int(size[1])) != (num_dst, num_src):
        raise ValueError(f"{name} is a sparse adjacency of size {tuple(int(s) for s in size)}, expected "
                         f"[num_dst, num_src] = [{num_dst}, {num_src}] (the transposed adjacency adj_t)")
