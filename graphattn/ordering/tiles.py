"""Counting the non-empty B×B tiles of a reordered adjacency.

A tile is a pair (block(inverse[dst]), block(inverse[src])) with block(p) = p // B; the count is the
number of distinct pairs over all edges. Only the block each node lands in matters (GUIDE §5), so
the kernels here take a per-node block id and never look at the order inside a block.

The count is O(E + N): edges are bucketed by their target node's block (a counting sort over
node CSR rows), and a stamp array over source blocks marks which tiles a block row already has.
"""
from __future__ import annotations

import numpy as np
import torch

from .._checks import check_block_size, check_edge_index, check_node_vector, check_num_nodes
from ._numba import njit, prange

# Keys per row-side packed tile (queries per column-side one) of the GPU kernel for blocks of 32 or
# more: graphattn.ops.tile_config.PACKED_WIDTH (tests check that the two agree; the ordering package
# does not import the kernels).
PACK_WIDTH = 32


@njit(cache=True, nogil=True, parallel=True)
def _distinct_per_row(in_ptr, in_src, column_of, block_nodes_ptr, block_nodes, num_columns):
    """Distinct ``column_of[source]`` per block, over the in-edges of the block's nodes.

    With ``column_of`` = each node's block this counts a block row's non-empty tiles; with the
    identity, its distinct sources (the keys its queries attend to, for packed tiles).
    ``in_ptr``/``in_src`` are the in-edges of each node (CSR by target); ``block_nodes`` lists the
    nodes of each block (CSR by block, pointer ``block_nodes_ptr``). Blocks are split into a few
    chunks counted in parallel, each with its own stamp array over the columns.
    """
    num_blocks = block_nodes_ptr.shape[0] - 1
    per_row = np.zeros(num_blocks, np.int64)
    num_chunks = min(8, num_blocks)
    for chunk in prange(num_chunks):
        stamp = np.full(num_columns, -1, np.int32)
        for b in range(chunk * num_blocks // num_chunks, (chunk + 1) * num_blocks // num_chunks):
            count = 0
            for k in range(block_nodes_ptr[b], block_nodes_ptr[b + 1]):
                v = block_nodes[k]
                for e in range(in_ptr[v], in_ptr[v + 1]):
                    c = column_of[in_src[e]]
                    if stamp[c] != b:
                        stamp[c] = b
                        count += 1
            per_row[b] = count
    return per_row


@njit(cache=True, nogil=True, parallel=True)
def _relabel_rows(ptr, src, perm, inverse, new_ptr):
    """Row i of the result is row perm[i] of (ptr, src) with every source renamed by ``inverse``."""
    new_src = np.empty_like(src)
    for i in prange(perm.shape[0]):
        v = perm[i]
        k = new_ptr[i]
        for e in range(ptr[v], ptr[v + 1]):
            new_src[k] = inverse[src[e]]
            k += 1
    return new_src


@njit(cache=True, nogil=True)
def _group_by_key(keys, num_keys):
    """Counting sort: (pointer [num_keys + 1], items sorted by key, stable)."""
    ptr = np.zeros(num_keys + 1, np.int64)
    for i in range(keys.shape[0]):
        ptr[keys[i] + 1] += 1
    for k in range(num_keys):
        ptr[k + 1] += ptr[k]
    fill = ptr[:-1].copy()
    items = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        k = keys[i]
        items[fill[k]] = i
        fill[k] += 1
    return ptr, items


class InEdges:
    """The in-edges of every node as CSR (by target), built once and reused for every candidate."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, num_nodes: int):
        # int32 node ids halve the memory traffic of the random accesses that dominate counting
        id_dtype = node_id_dtype(num_nodes)
        if dst.shape[0] < 2 or bool((dst[1:] >= dst[:-1]).all()):
            # Already grouped by target (knn_graph's output, CSR-derived graphs): no sort needed,
            # which saves ~0.25 s of a 16M-edge graph's ~2.5 s auto order.
            self.ptr = np.zeros(num_nodes + 1, np.int64)
            np.cumsum(np.bincount(dst, minlength=num_nodes), out=self.ptr[1:])
            self.src = src.astype(id_dtype)
        else:
            ptr, items = _group_by_key(dst, num_nodes)
            self.ptr = ptr
            self.src = src[items].astype(id_dtype, copy=False)
        self.num_nodes = num_nodes

    @classmethod
    def from_csr(cls, ptr: np.ndarray, src: np.ndarray, num_nodes: int) -> "InEdges":
        """Wraps an existing CSR (pointer [num_nodes + 1], sources) without regrouping."""
        self = cls.__new__(cls)
        self.ptr, self.src, self.num_nodes = ptr, src, num_nodes
        return self

    def relabelled(self, perm: np.ndarray) -> "InEdges":
        """The same graph with node ``perm[i]`` renamed ``i`` (each row keeps its edge order).

        Renaming the nodes in a local order (kd's) turns the random accesses of every later
        search and count into nearby ones: at 1M nodes, 16M edges, it costs ~0.25 s and saves
        ~0.9 s of auto's candidates (docs/orderings.md, "At 1M nodes, in kd's numbering")."""
        inverse = np.empty(perm.shape[0], self.src.dtype)
        inverse[perm] = np.arange(perm.shape[0], dtype=self.src.dtype)
        ptr = np.zeros(self.num_nodes + 1, np.int64)
        np.cumsum(np.diff(self.ptr)[perm], out=ptr[1:])
        return InEdges.from_csr(ptr, _relabel_rows(self.ptr, self.src, perm, inverse, ptr), self.num_nodes)

    def transposed(self) -> "InEdges":
        """The out-edges of every node as CSR (by source): the same edges grouped by the other end."""
        from .adjacency import _transpose  # adjacency builds on InEdges

        ptr, dst = _transpose(self.ptr, self.src, self.num_nodes)
        return InEdges.from_csr(ptr, dst, self.num_nodes)

    def targets(self) -> np.ndarray:
        """The target of each edge, in this CSR's edge order."""
        return np.repeat(np.arange(self.num_nodes, dtype=self.src.dtype), np.diff(self.ptr))

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


def node_id_dtype(num_nodes: int):
    """int32 while node ids fit, else int64."""
    return np.int32 if num_nodes < 2**31 - 1 else np.int64


def tiles_per_block_row(in_edges: InEdges, node_block: np.ndarray, num_blocks: int) -> np.ndarray:
    """Non-empty tiles in each block row, for a node→block assignment (int [N])."""
    if num_blocks == 0:
        return np.zeros(0, np.int64)
    node_block = node_block.astype(node_id_dtype(num_blocks), copy=False)
    block_ptr, block_nodes = _group_by_key(node_block, num_blocks)
    return _distinct_per_row(in_edges.ptr, in_edges.src, node_block, block_ptr, block_nodes, num_blocks)


def tiles_of_perm(in_edges: InEdges, perm: np.ndarray, block_size: int, offset: int = 0) -> int:
    """Tile count of the order ``perm`` (x_new = x[perm]) placed at global position ``offset``."""
    if in_edges.num_nodes == 0 or in_edges.num_edges == 0:
        return 0
    # A block's nodes are a contiguous run of ``perm``: ``perm`` itself lists the nodes by block,
    # so no grouping is needed, only each node's block and the run boundaries.
    n = perm.shape[0]
    run_ptr = _block_runs(n, block_size, offset)
    num_blocks = run_ptr.shape[0] - 1
    node_block = np.empty(n, np.int32)
    node_block[perm] = (np.arange(n, dtype=np.int64) + offset) // block_size - offset // block_size
    return int(_distinct_per_row(in_edges.ptr, in_edges.src, node_block, run_ptr, perm, num_blocks).sum())


def _block_runs(n: int, block_size: int, offset: int) -> np.ndarray:
    """Where each block's run of positions starts and ends (pointer [num_blocks + 1]) for n positions
    placed at global position ``offset`` on the grid of ``block_size``."""
    first = offset // block_size
    num_blocks = (offset + n - 1) // block_size - first + 1
    return np.clip((np.arange(num_blocks + 1, dtype=np.int64) + first) * block_size - offset, 0, n)


def pack_width_for(block_size: int) -> int:
    """Keys per packed tile of the GPU kernel for this block size: ``min(block_size, PACK_WIDTH)``."""
    return min(block_size, PACK_WIDTH)


def packed_tiles_of_perm(in_edges: InEdges, out_edges: InEdges, perm: np.ndarray, block_size: int,
                         offset: int = 0) -> int:
    """The packed tiles the GPU kernel walks under the order ``perm`` (``objective="packed"``).

    Each block of queries gathers its distinct keys into tiles of ``pack_width_for(block_size)``
    (forward and dQ passes), and each block of keys its distinct queries (dK/dV pass), so the count
    is sum over blocks of ceil(distinct sources of its in-edges / W) + ceil(distinct targets of its
    out-edges / W). ``out_edges`` is ``in_edges.transposed()``. It depends only on which nodes share
    a block, like the aligned count, but rewards blocks with few distinct neighbours rather than
    neighbours in few blocks.
    """
    if in_edges.num_nodes == 0 or in_edges.num_edges == 0:
        return 0
    runs = _block_runs(perm.shape[0], block_size, offset)
    width = pack_width_for(block_size)
    itself = np.arange(in_edges.num_nodes, dtype=in_edges.src.dtype)
    total = 0
    for edges in (in_edges, out_edges):
        distinct = _distinct_per_row(edges.ptr, edges.src, itself, runs, perm, edges.num_nodes)
        total += int(((distinct + width - 1) // width).sum())
    return total


def tiles_of_inverse(in_edges: InEdges, inverse: np.ndarray, block_size: int) -> int:
    """Tile count of the order whose node v sits at position ``inverse[v]``."""
    n = in_edges.num_nodes
    if n == 0 or in_edges.num_edges == 0:
        return 0
    num_blocks = -(-n // block_size)
    return int(tiles_per_block_row(in_edges, inverse // block_size, num_blocks).sum())


def count_tiles(edge_index: torch.Tensor, num_nodes: int, block_size: int = 64,
                perm: torch.Tensor | None = None) -> int:
    """Number of non-empty ``block_size``² tiles of the adjacency after reordering by ``perm``.

    A tile is a distinct pair (block of the target's new position, block of the source's new
    position); duplicate edges and self-loops count like any other edge (the mask is a set).
    ``perm`` follows the library convention ``x_new = x[perm]``; ``None`` means the current order.
    """
    num_nodes = check_num_nodes(num_nodes)
    edge_index, num_nodes = check_edge_index(edge_index, num_nodes)
    block_size = check_block_size(block_size)
    inverse = None
    if perm is not None:
        inverse = inverse_of(check_permutation(perm, num_nodes))
    else:
        inverse = np.arange(num_nodes, dtype=np.int64)
    ei = edge_index.cpu().numpy()
    return tiles_of_inverse(InEdges(ei[0], ei[1], num_nodes), inverse, block_size)


def count_packed_tiles(edge_index: torch.Tensor, num_nodes: int, block_size: int = 64,
                       perm: torch.Tensor | None = None) -> int:
    """Number of packed tiles the GPU kernel walks after reordering by ``perm``.

    ``graph_attention`` gathers each block's distinct keys into tiles of ``min(block_size, 32)``
    (forward and dQ passes) and each block's distinct queries likewise (dK/dV pass); this counts
    both sides, the work of one forward + backward in tiles. Duplicate edges count once; an edge
    ``(j, i)`` means query i attends to key j (PyG's source-to-target flow). ``perm`` follows
    ``x_new = x[perm]``; ``None`` means the current order. ``order(..., objective="packed")``
    minimises this instead of :func:`count_tiles`.
    """
    num_nodes = check_num_nodes(num_nodes)
    edge_index, num_nodes = check_edge_index(edge_index, num_nodes)
    block_size = check_block_size(block_size)
    perm_np = np.arange(num_nodes, dtype=np.int64) if perm is None else check_permutation(perm, num_nodes)
    ei = edge_index.cpu().numpy()
    in_edges = InEdges(ei[0], ei[1], num_nodes)
    return packed_tiles_of_perm(in_edges, in_edges.transposed(), perm_np, block_size)


def check_permutation(perm, num_nodes: int, name: str = "perm") -> np.ndarray:
    """Checks that ``perm`` is a permutation of range(num_nodes); returns it as int64 numpy."""
    arr = check_node_vector(perm, num_nodes, name)
    if num_nodes and (arr.min() < 0 or arr.max() >= num_nodes
                      or np.bincount(arr, minlength=num_nodes).max() != 1):
        raise ValueError(f"{name} must be a permutation of range({num_nodes}): every index exactly once")
    return arr


def inverse_of(perm: np.ndarray) -> np.ndarray:
    """Position of each node: inverse[perm[p]] = p."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.shape[0], dtype=perm.dtype)
    return inverse
