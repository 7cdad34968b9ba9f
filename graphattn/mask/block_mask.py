"""GraphBlockMask: which (query block, key block) tiles of a graph's adjacency hold edges.

The format (GUIDE §4) is the sparse cousin of FlexAttention's BlockMask. For a graph with
``num_q`` target nodes and ``num_kv`` source nodes, cut into tiles of ``BM × BN``:

- ``row_ptr`` int32 [QB + 1], ``col_idx`` int32 [T]: CSR over query-block rows; row ``m`` owns the
  tiles ``row_ptr[m] : row_ptr[m+1]`` whose key-block columns ``col_idx`` ascend. A tile's position
  ``t`` in this order is its *tile id*, used by every other array.
- ``tile_full`` bool [T]: every valid (query, key) pair of the tile is an edge, so kernels may skip
  the bit test. Pairs past the last node count as absent, so a boundary tile is full when all of its
  in-range pairs are edges.
- ``bits`` int32 [T, BM, W] with ``W = ceil(BN / 32)``: bit ``c % 32`` of word ``bits[t, r, c // 32]``
  says whether query ``m*BM + r`` attends to key ``col_idx[t]*BN + c``. Kept for full tiles too, so a
  tile id indexes it directly.
- ``col_ptr`` int32 [KB + 1], ``row_idx`` int32 [T], ``t_tile`` int32 [T]: the transpose, CSR over
  key-block columns with ascending query-block rows; ``t_tile`` maps each entry back to its tile id.
  The backward pass for dK/dV walks it.
- ``shape`` (num_q, num_kv), ``block_shape`` (BM, BN), and ``fingerprint``: a 64-bit hash of the
  edge set it was built from, so a mask built for another graph can be recognised.

Edges follow PyG's flow: ``edge_index[0]`` is the source j (a key), ``edge_index[1]`` the target i
(a query). The mask is a set: duplicate edges count once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_block_shape, check_edge_index, check_num_nodes

_MASK64 = (1 << 64) - 1


def _splitmix64(x: torch.Tensor) -> torch.Tensor:
    """Mixes int64 keys (wrapping arithmetic; logical shifts via masking)."""
    x = x + 0x1E3779B97F4A7C15
    x = x * -7046029254386353131  # 0xBF58476D1CE4E5B9 as signed int64
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * -7723592293110705685  # 0x94D049BB133111EB as signed int64
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * -7046029254386353131
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    return x


def edge_fingerprint(keys: torch.Tensor, shape: tuple[int, int]) -> int:
    """Order-independent 64-bit hash of distinct edge keys (dst * num_kv + src) and the shape."""
    total = int(_splitmix64(keys).sum()) if keys.numel() else 0
    total = (total + shape[0] * 0x9E3779B1 + shape[1] * 0x85EBCA77 + keys.numel()) & _MASK64
    return total


@dataclass(eq=False)
class GraphBlockMask:
    shape: tuple[int, int]
    block_shape: tuple[int, int]
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    tile_full: torch.Tensor
    bits: torch.Tensor
    col_ptr: torch.Tensor
    row_idx: torch.Tensor
    t_tile: torch.Tensor
    fingerprint: int

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edge_index(cls, edge_index: torch.Tensor, num_nodes, *, block_size=64) -> "GraphBlockMask":
        """Builds the mask of ``edge_index`` (already in working order) where the edges live.

        ``num_nodes`` is an int, or a pair ``(num_dst, num_src)`` for a bipartite graph whose
        queries are the targets and keys the sources. ``block_size`` is an int B (B×B tiles) or a
        pair (BM, BN), each a power of two in [16, 256]. O(E log E) tensor work (one sort of the edge
        keys, one of the tile keys), no Python loop over rows.
        """
        if isinstance(num_nodes, (tuple, list)):
            if len(num_nodes) != 2:
                raise ValueError(f"num_nodes must be an int or a pair (num_dst, num_src), got {num_nodes!r}")
            num_q = check_num_nodes(num_nodes[0], "num_nodes[0]")
            num_kv = check_num_nodes(num_nodes[1], "num_nodes[1]")
        else:
            num_q = num_kv = check_num_nodes(num_nodes)
        edge_index, _ = check_edge_index(edge_index, num_q, num_src_nodes=num_kv)
        bm, bn = check_block_shape(block_size)
        src, dst = edge_index[0], edge_index[1]
        keys = torch.unique(dst * max(num_kv, 1) + src)  # sorted, distinct: (dst, src) order
        return cls._from_sorted_keys(keys, (num_q, num_kv), (bm, bn))

    @classmethod
    def _from_sorted_keys(cls, keys: torch.Tensor, shape, block_shape) -> "GraphBlockMask":
        """Builds from distinct, ascending keys ``dst * num_kv + src`` (int64)."""
        num_q, num_kv = shape
        bm, bn = block_shape
        device = keys.device
        q_blocks = math.ceil(num_q / bm)
        kv_blocks = math.ceil(num_kv / bn)
        words = math.ceil(bn / 32)
        dst = keys // max(num_kv, 1)
        src = keys - dst * max(num_kv, 1)
        qb, kb = dst // bm, src // bn
        tile_keys, tile_of_edge, edges_per_tile = torch.unique(
            qb * kv_blocks + kb, sorted=True, return_inverse=True, return_counts=True)
        num_tiles = tile_keys.numel()
        tile_row = tile_keys // max(kv_blocks, 1)
        tile_col = tile_keys - tile_row * max(kv_blocks, 1)
        row_counts = torch.bincount(tile_row, minlength=q_blocks)
        row_ptr = torch.zeros(q_blocks + 1, dtype=torch.int64, device=device)
        row_ptr[1:] = torch.cumsum(row_counts, 0)

        # Bits: distinct edges are distinct powers of two within a word, so a sum is an OR.
        r, c = dst - qb * bm, src - kb * bn
        word_index = (tile_of_edge * bm + r) * words + c // 32
        word_sum = torch.zeros(num_tiles * bm * words, dtype=torch.int64, device=device)
        word_sum.scatter_add_(0, word_index, torch.ones_like(c) << (c % 32))
        word_sum = torch.where(word_sum >= (1 << 31), word_sum - (1 << 32), word_sum)
        bits = word_sum.to(torch.int32).view(num_tiles, bm, words)

        valid_rows = torch.clamp(num_q - tile_row * bm, max=bm)
        valid_cols = torch.clamp(num_kv - tile_col * bn, max=bn)
        tile_full = edges_per_tile == valid_rows * valid_cols

        order_t = torch.argsort(tile_col * max(q_blocks, 1) + tile_row)
        col_counts = torch.bincount(tile_col, minlength=kv_blocks)
        col_ptr = torch.zeros(kv_blocks + 1, dtype=torch.int64, device=device)
        col_ptr[1:] = torch.cumsum(col_counts, 0)

        return cls(
            shape=(num_q, num_kv),
            block_shape=(bm, bn),
            row_ptr=row_ptr.to(torch.int32),
            col_idx=tile_col.to(torch.int32),
            tile_full=tile_full,
            bits=bits,
            col_ptr=col_ptr.to(torch.int32),
            row_idx=tile_row[order_t].to(torch.int32),
            t_tile=order_t.to(torch.int32),
            fingerprint=edge_fingerprint(keys, (num_q, num_kv)),
        )

    # ------------------------------------------------------------------ statistics
    @property
    def num_nodes(self) -> int:
        """Number of query (target) nodes; equals the key count for an ordinary graph."""
        return self.shape[0]

    @property
    def device(self) -> torch.device:
        return self.col_idx.device

    @property
    def num_q_blocks(self) -> int:
        return self.row_ptr.numel() - 1

    @property
    def num_kv_blocks(self) -> int:
        return self.col_ptr.numel() - 1

    @property
    def num_tiles(self) -> int:
        return self.col_idx.numel()

    @property
    def num_full_tiles(self) -> int:
        return int(self.tile_full.sum())

    @property
    def tiles_per_row(self) -> tuple[float, int]:
        """(mean, max) non-empty tiles per query-block row."""
        if self.num_q_blocks == 0:
            return 0.0, 0
        counts = (self.row_ptr[1:] - self.row_ptr[:-1])
        return float(counts.float().mean()), int(counts.max())

    @property
    def num_edges(self) -> int:
        """Number of distinct edges (set bits)."""
        if self.num_tiles == 0:
            return 0
        b = self.bits.to(torch.int64) & 0xFFFFFFFF
        count = torch.zeros_like(b)
        for shift in range(32):
            count += (b >> shift) & 1
        return int(count.sum())

    @property
    def fill(self) -> float:
        """Fraction of the processed tiles' pairs that are edges."""
        if self.num_tiles == 0:
            return 0.0
        return self.num_edges / (self.num_tiles * self.block_shape[0] * self.block_shape[1])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (
            self.row_ptr, self.col_idx, self.tile_full, self.bits, self.col_ptr, self.row_idx, self.t_tile))

    def check_compatible(self, num_q, num_kv=None, name: str = "mask") -> None:
        """Raises ValueError naming the mismatch unless this mask was built for ``num_q`` queries
        and ``num_kv`` keys (``num_kv`` defaults to ``num_q``).

        Kernels and layers call it before using a mask with a graph, so a mask built for another
        graph size is refused instead of reading out of range.
        """
        num_kv = num_q if num_kv is None else num_kv
        if (int(num_q), int(num_kv)) != tuple(self.shape):
            raise ValueError(f"{name} was built for a graph of shape (num_q, num_kv) = {tuple(self.shape)}, "
                             f"but is used with ({int(num_q)}, {int(num_kv)}) nodes; rebuild the mask "
                             f"for this graph")

    def to(self, device) -> "GraphBlockMask":
        device = torch.device(device)
        moved = {name: getattr(self, name).to(device) for name in (
            "row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")}
        return GraphBlockMask(shape=self.shape, block_shape=self.block_shape,
                              fingerprint=self.fingerprint, **moved)

    def edge_index(self) -> torch.Tensor:
        """The edges back, as [2, E] int64 (row 0 source, row 1 target), sorted by (target, source)."""
        bm, bn = self.block_shape
        words = self.bits.shape[-1] if self.bits.dim() == 3 else 1
        device = self.device
        if self.num_tiles == 0:
            return torch.empty(2, 0, dtype=torch.int64, device=device)
        b = self.bits.to(torch.int64) & 0xFFFFFFFF                      # [T, BM, W]
        shifts = torch.arange(32, device=device)
        on = ((b[..., None] >> shifts) & 1).bool().view(self.num_tiles, bm, words * 32)[..., :bn]
        t, r, c = on.nonzero(as_tuple=True)
        tile_row = torch.repeat_interleave(
            torch.arange(self.num_q_blocks, device=device),
            (self.row_ptr[1:] - self.row_ptr[:-1]).long())
        dst = tile_row[t] * bm + r
        src = self.col_idx.long()[t] * bn + c
        keys = torch.sort(dst * max(self.shape[1], 1) + src).values
        dst = keys // max(self.shape[1], 1)
        return torch.stack([keys - dst * max(self.shape[1], 1), dst])

    def __repr__(self) -> str:
        mean, most = self.tiles_per_row
        return (f"GraphBlockMask(shape={self.shape}, block_shape={self.block_shape}, "
                f"tiles={self.num_tiles}, full_tiles={self.num_full_tiles}, "
                f"tiles_per_row=(mean={mean:.2f}, max={most}), fill={self.fill:.4f}, "
                f"nbytes={self.nbytes}, device={self.device})")
