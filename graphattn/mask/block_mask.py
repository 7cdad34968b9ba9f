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
  tile id indexes it directly. Bits of pairs past the last node are always 0.
- ``col_ptr`` int32 [KB + 1], ``row_idx`` int32 [T], ``t_tile`` int32 [T]: the transpose, CSR over
  key-block columns with ascending query-block rows; ``t_tile`` maps each entry back to its tile id.
  The backward pass for dK/dV walks it.
- ``shape`` (num_q, num_kv), ``block_shape`` (BM, BN), and ``fingerprint``: a 64-bit hash of the
  edge set and the shape (see :func:`mask_fingerprint`), so a mask built for another graph can be
  recognised. It does not depend on the block shape or on the order or repetition of the edges.

Edges follow PyG's flow: ``edge_index[0]`` is the source j (a key), ``edge_index[1]`` the target i
(a query). The mask is a set: duplicate edges count once.

Saving, FlexAttention interop, plotting and batching live in sibling modules (serialization.py,
flex.py, plot.py, batch.py); the methods here only delegate to them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_block_shape, check_edge_index, check_num_nodes

_MASK64 = (1 << 64) - 1
_ARRAY_FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")
# to_dense() refuses masks with more pairs than this (64 Mi booleans = 64 MiB).
DENSE_LIMIT = 1 << 26


# ---------------------------------------------------------------------- bit helpers
def _splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 keys (wrapping arithmetic; logical shifts via masking)."""
    x = x + 0x1E3779B97F4A7C15
    x = (x ^ ((x >> 30) & ((1 << 34) - 1))) * -4658895280553007687   # 0xBF58476D1CE4E5B9
    x = (x ^ ((x >> 27) & ((1 << 37) - 1))) * -7723592293110705685   # 0x94D049BB133111EB
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def popcount32(words: torch.Tensor) -> torch.Tensor:
    """Set bits of each int32 word, as int32 (SWAR; every shift is masked so sign bits never leak)."""
    x = words.to(torch.int32)
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    x = x + (x >> 8)
    x = x + (x >> 16)
    return x & 0x3F


def _bit_values(positions: torch.Tensor) -> torch.Tensor:
    """``1 << p`` for bit positions 0..31, as int32 words (bit 31 is the sign bit)."""
    values = torch.ones_like(positions, dtype=torch.int64) << positions
    return torch.where(positions == 31, torch.full_like(values, -(1 << 31)), values).to(torch.int32)


def valid_tile_extent(tile_row: torch.Tensor, tile_col: torch.Tensor, shape, block_shape):
    """Number of in-range rows and columns of each tile (smaller than the block at the boundary)."""
    (num_q, num_kv), (bm, bn) = shape, block_shape
    rows = torch.clamp(num_q - tile_row.long() * bm, max=bm)
    cols = torch.clamp(num_kv - tile_col.long() * bn, max=bn)
    return rows, cols


def mask_fingerprint(shape, block_shape, tile_row, tile_col, bits, *, _force_tensor_path=False) -> int:
    """Order-independent 64-bit hash of an edge set and its shape, computed from its tiles.

    The edge set is cut into 16-column units (query i, key columns 16u..16u+15) with their 16-bit
    pattern; the hash sums ``splitmix64(unit_key << 16 | pattern)`` over non-empty units, plus
    the shape. Any block shape (BN is a multiple of 16) cuts the same units, so the fingerprint is
    a property of the edges and the node counts only.
    """
    num_q, num_kv = shape
    bm, bn = block_shape
    units_per_row = (num_kv + 15) // 16
    total = shape[0] * 0x9E3779B1 + shape[1] * 0x85EBCA77
    if bits.numel() and bits.device.type == "cpu" and not _force_tensor_path:
        from . import _cpu_kernels
        total += int(_cpu_kernels.fingerprint_sum(tile_row.long().numpy(), tile_col.long().numpy(),
                                                  bits.contiguous().numpy(), bm, bn, num_kv,
                                                  _cpu_kernels.threads()))
    elif bits.numel():
        words = bits.shape[-1]
        halves_per_word = 1 if bn == 16 else 2
        low = bits.to(torch.int64) & 0xFFFF
        high = (bits.to(torch.int64) >> 16) & 0xFFFF
        pattern = torch.stack([low, high], dim=-1)[..., :halves_per_word]            # [T, BM, W, h]
        t, r, w, h = pattern.nonzero(as_tuple=True)
        values = pattern[t, r, w, h]
        dst = tile_row.long()[t] * bm + r
        unit = (tile_col.long()[t] * bn + w * 32 + h * 16) >> 4
        total += int(_splitmix64(((dst * units_per_row + unit) << 16) | values).sum())
    return total & _MASK64


def _with_packed_tiles(mask: "GraphBlockMask") -> "GraphBlockMask":
    """On CUDA, builds the kernels' packed tile layout now (cached with the mask, a few ms).

    An eager call would build it on first use anyway; a compiled model's first call cannot (its
    sizes are data-dependent) and would walk the 2-3x slower aligned tiles instead, so the masks a
    user builds for a compiled model get it here. CPU masks and masks moved or loaded onto the GPU
    build it on first use (docs/kernels.md, torch.compile).
    """
    if mask.device.type == "cuda":
        from ..ops.packed_tiles import packed_tiles_of
        packed_tiles_of(mask)
    return mask


def _parse_num_nodes(num_nodes) -> tuple[int, int]:
    if isinstance(num_nodes, (tuple, list)):
        if len(num_nodes) != 2:
            raise ValueError(f"num_nodes must be an int or a pair (num_dst, num_src), got {num_nodes!r}")
        return check_num_nodes(num_nodes[0], "num_nodes[0]"), check_num_nodes(num_nodes[1], "num_nodes[1]")
    n = check_num_nodes(num_nodes)
    return n, n


@dataclass(eq=False)
class GraphBlockMask:
    """The block-sparse mask of one graph: non-empty tiles, their bits and the transpose.

    Build it with :meth:`from_edge_index` (or a family in :mod:`graphattn.masks`), then pass it to
    every layer and step that works on that graph. See the module docstring for the exact format;
    :meth:`check_compatible` refuses a mask used with another graph size.
    """

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
        pair (BM, BN), each a power of two in [16, 256]. Tensor work only, no Python loop over rows:
        one sort of the edges by (tile, row, column), then run-length and scatter passes.
        Duplicate edges count once.
        """
        num_q, num_kv = _parse_num_nodes(num_nodes)
        edge_index, _ = check_edge_index(edge_index, num_q, num_src_nodes=num_kv)
        bm, bn = check_block_shape(block_size)
        if edge_index.device.type == "cpu":
            return cls._from_edge_index_cpu(edge_index, (num_q, num_kv), (bm, bn))
        return _with_packed_tiles(cls._from_edge_index_tensor(edge_index, (num_q, num_kv), (bm, bn)))

    @classmethod
    def _from_edge_index_cpu(cls, edge_index, shape, block_shape) -> "GraphBlockMask":
        """The numba builder (mask/_cpu_kernels.py); same arrays as the tensor path."""
        from . import _cpu_kernels

        (num_q, num_kv), (bm, bn) = shape, block_shape
        edge_index = edge_index.contiguous()
        row_ptr, col_idx, bits, edges_per_tile, col_ptr, row_idx, t_tile = _cpu_kernels.build_tiles(
            edge_index[0].numpy(), edge_index[1].numpy(), num_q, num_kv, bm, bn, _cpu_kernels.threads())
        row_ptr = torch.from_numpy(row_ptr)
        tile_row = torch.repeat_interleave(torch.arange(row_ptr.numel() - 1), row_ptr[1:] - row_ptr[:-1])
        tile_col = torch.from_numpy(col_idx)
        bits = torch.from_numpy(bits)
        rows, cols = valid_tile_extent(tile_row, tile_col, shape, block_shape)
        return cls(
            shape=(num_q, num_kv),
            block_shape=(bm, bn),
            row_ptr=row_ptr.to(torch.int32),
            col_idx=tile_col.to(torch.int32),
            tile_full=torch.from_numpy(edges_per_tile) == rows * cols,
            bits=bits,
            col_ptr=torch.from_numpy(col_ptr).to(torch.int32),
            row_idx=torch.from_numpy(row_idx).to(torch.int32),
            t_tile=torch.from_numpy(t_tile).to(torch.int32),
            fingerprint=mask_fingerprint((num_q, num_kv), (bm, bn), tile_row, tile_col, bits),
        )

    @classmethod
    def _from_edge_index_tensor(cls, edge_index, shape, block_shape) -> "GraphBlockMask":
        """The tensor builder (any device; the one used on GPUs): sort by tile order, then scatter."""
        (num_q, num_kv), (bm, bn) = shape, block_shape
        keys = _tile_order_keys(edge_index[0], edge_index[1], num_kv, bm, bn)
        keys = torch.sort(keys).values
        if keys.numel() > 1:
            distinct = keys[1:] != keys[:-1]
            if not bool(distinct.all()):
                keys = keys[torch.cat([distinct.new_ones(1), distinct])]
        return cls._from_tile_order_keys(keys, (num_q, num_kv), (bm, bn))

    @classmethod
    def _from_tile_order_keys(cls, keys: torch.Tensor, shape, block_shape) -> "GraphBlockMask":
        """Builds from distinct ascending keys ``((qb * KB + kb) * BM + r) * BN + c`` (int64)."""
        num_q, num_kv = shape
        bm, bn = block_shape
        kv_blocks = math.ceil(num_kv / bn)
        words = math.ceil(bn / 32)
        in_tile_bits = (bm * bn).bit_length() - 1
        device = keys.device
        if keys.numel() == 0:
            empty = torch.empty(0, dtype=torch.int64, device=device)
            return cls._from_tiles(shape, block_shape, empty, empty,
                                   torch.empty(0, bm, words, dtype=torch.int32, device=device))
        tile = keys >> in_tile_bits
        new_tile = torch.ones_like(tile, dtype=torch.bool)
        new_tile[1:] = tile[1:] != tile[:-1]
        tile_start = new_tile.nonzero().squeeze(1)
        tile_keys = tile[tile_start]
        edges_per_tile = torch.diff(tile_start, append=tile_start.new_full((1,), keys.numel()))
        tile_of_edge = torch.cumsum(new_tile, 0) - 1
        in_tile = keys & (bm * bn - 1)
        # Word of (r, c) inside the tile: r * W + c // 32, which is (r * BN + c) >> 5 when BN >= 32.
        word_in_tile = (in_tile >> 5) if bn >= 32 else (in_tile >> (bn.bit_length() - 1))
        word = tile_of_edge * (bm * words) + word_in_tile
        # Distinct edges are distinct powers of two within a word, so a sum is an OR (no overflow).
        bits = torch.zeros(tile_keys.numel() * bm * words, dtype=torch.int32, device=device)
        bits.index_add_(0, word, _bit_values(in_tile & min(bn - 1, 31)))
        bits = bits.view(-1, bm, words)
        tile_row = tile_keys // max(kv_blocks, 1)
        tile_col = tile_keys - tile_row * max(kv_blocks, 1)
        return cls._from_tiles(shape, block_shape, tile_row, tile_col, bits, edges_per_tile)

    @classmethod
    def _from_tiles(cls, shape, block_shape, tile_row, tile_col, bits, edges_per_tile=None) -> "GraphBlockMask":
        """Completes a mask from its tiles, given in ascending (row, column) order without repeats.

        ``bits`` int32 [T, BM, W] must have no bit set outside the graph; ``edges_per_tile`` (set
        bits per tile) is computed when not given. Empty tiles are dropped.
        Computes the CSR, the full flags, the transpose and the fingerprint.
        """
        num_q, num_kv = shape
        bm, bn = block_shape
        device = bits.device
        q_blocks, kv_blocks = math.ceil(num_q / bm), math.ceil(num_kv / bn)
        tile_row, tile_col = tile_row.long(), tile_col.long()
        if edges_per_tile is None:
            edges_per_tile = popcount32(bits).sum(dim=(1, 2)) if bits.numel() else tile_row.new_zeros(0)
        nonempty = edges_per_tile > 0
        if not bool(nonempty.all()):
            tile_row, tile_col = tile_row[nonempty], tile_col[nonempty]
            bits, edges_per_tile = bits[nonempty], edges_per_tile[nonempty]
        rows, cols = valid_tile_extent(tile_row, tile_col, shape, block_shape)
        tile_full = edges_per_tile == rows * cols

        row_ptr = torch.zeros(q_blocks + 1, dtype=torch.int64, device=device)
        row_ptr[1:] = torch.cumsum(torch.bincount(tile_row, minlength=q_blocks), 0)
        order_t = torch.argsort(tile_col * max(q_blocks, 1) + tile_row)
        col_ptr = torch.zeros(kv_blocks + 1, dtype=torch.int64, device=device)
        col_ptr[1:] = torch.cumsum(torch.bincount(tile_col, minlength=kv_blocks), 0)
        return cls(
            shape=(num_q, num_kv),
            block_shape=(bm, bn),
            row_ptr=row_ptr.to(torch.int32),
            col_idx=tile_col.to(torch.int32),
            tile_full=tile_full,
            bits=bits.contiguous(),
            col_ptr=col_ptr.to(torch.int32),
            row_idx=tile_row[order_t].to(torch.int32),
            t_tile=order_t.to(torch.int32),
            fingerprint=mask_fingerprint((num_q, num_kv), (bm, bn), tile_row, tile_col, bits),
        )

    @classmethod
    def from_flex(cls, block_mask, num_nodes) -> "GraphBlockMask":
        """Converts a FlexAttention ``BlockMask`` (batch and head 0) to a GraphBlockMask.

        Evaluates its ``mask_mod`` on its non-empty blocks only, in vectorised batches of blocks;
        ``num_nodes`` is an int or (num_q, num_kv), the sequence lengths the mask is used with.
        """
        from .flex import from_flex
        return from_flex(block_mask, num_nodes)

    @staticmethod
    def cat(masks) -> "GraphBlockMask":
        """Block-diagonal mask of several graphs, nodes concatenated without padding.

        Graph ``g``'s nodes start right after graph ``g-1``'s, as PyG batching puts them; sizes that
        are not multiples of the block are handled by shifting each graph's bits to its offset, so
        the result equals building from the concatenated (offset) edges. See mask/batch.py.
        """
        from .batch import cat
        return _with_packed_tiles(cat(masks))

    @staticmethod
    def load(path, *, num_nodes=None, device=None) -> "GraphBlockMask":
        """Reads a mask written by :meth:`save`; checks it and, if given, its node count.

        Raises ValueError on a truncated or altered file, an unknown format version, or a mask whose
        shape differs from ``num_nodes`` (an int or (num_q, num_kv)). Never executes code.
        """
        from .serialization import load
        return load(path, num_nodes=num_nodes, device=device)

    def save(self, path) -> None:
        """Writes the mask to ``path`` atomically in graphattn's checked binary format (no pickle)."""
        from .serialization import save
        save(self, path)

    def to_flex(self):
        """The same mask as a FlexAttention ``BlockMask`` (BLOCK_SIZE = block shape).

        Full tiles become FlexAttention's full blocks; the ``mask_mod`` of partial blocks reads the
        bits through a dense [QB, KB] tile-id table.
        """
        from .flex import to_flex
        return to_flex(self)

    def plot(self, path, *, resolution: int = 1024, title: str | None = None) -> None:
        """Writes a PNG of the tile occupancy (full vs partial tiles) with the mask's statistics."""
        from .plot import plot
        plot(self, path, resolution=resolution, title=title)

    # ------------------------------------------------------------------ statistics
    @property
    def num_nodes(self) -> int:
        """Number of query (target) nodes; equals the key count for an ordinary graph."""
        return self.shape[0]

    @property
    def device(self) -> torch.device:
        """The device that holds the mask's arrays."""
        return self.col_idx.device

    @property
    def num_q_blocks(self) -> int:
        """Query-block rows QB = ceil(num_q / BM)."""
        return self.row_ptr.numel() - 1

    @property
    def num_kv_blocks(self) -> int:
        """Key-block columns KB = ceil(num_kv / BN)."""
        return self.col_ptr.numel() - 1

    @property
    def num_tiles(self) -> int:
        """Non-empty tiles T."""
        return self.col_idx.numel()

    @property
    def num_full_tiles(self) -> int:
        """Tiles whose every in-range pair is an edge."""
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
        return int(popcount32(self.bits).sum(dtype=torch.int64))

    @property
    def fill(self) -> float:
        """Fraction of the processed tiles' pairs that are edges."""
        if self.num_tiles == 0:
            return 0.0
        return self.num_edges / (self.num_tiles * self.block_shape[0] * self.block_shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the mask's arrays (the bits dominate: BM * ceil(BN/32) * 4 per tile)."""
        return sum(getattr(self, name).numel() * getattr(self, name).element_size() for name in _ARRAY_FIELDS)

    def tile_rows(self) -> torch.Tensor:
        """Query-block row of every tile, int64 [T] (the expanded ``row_ptr``)."""
        return torch.repeat_interleave(torch.arange(self.num_q_blocks, device=self.device),
                                       (self.row_ptr[1:] - self.row_ptr[:-1]).long())

    # ------------------------------------------------------------------ use
    def to(self, device) -> "GraphBlockMask":
        """The same mask on ``device`` (arrays copied; fields and fingerprint unchanged)."""
        device = torch.device(device)
        moved = {name: getattr(self, name).to(device) for name in _ARRAY_FIELDS}
        return GraphBlockMask(shape=self.shape, block_shape=self.block_shape,
                              fingerprint=self.fingerprint, **moved)

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

    def matches(self, edge_index: torch.Tensor) -> bool:
        """Whether ``edge_index`` has exactly this mask's edge set (compared by fingerprint)."""
        other = GraphBlockMask.from_edge_index(edge_index.to(self.device), self.shape, block_size=self.block_shape)
        return other.fingerprint == self.fingerprint

    def edge_index(self) -> torch.Tensor:
        """The edges back, as [2, E] int64 (row 0 source, row 1 target), sorted by (target, source)."""
        bm, bn = self.block_shape
        device = self.device
        num_kv = max(self.shape[1], 1)
        if device.type == "cpu":
            from . import _cpu_kernels
            src, dst = _cpu_kernels.edges_of_tiles(self.row_ptr.long().numpy(), self.col_idx.long().numpy(),
                                                   self.bits.contiguous().numpy(), bm, bn, self.shape[0])
            return torch.stack([torch.from_numpy(src), torch.from_numpy(dst)])
        return self._edge_index_tensor()

    def _edge_index_tensor(self) -> torch.Tensor:
        """edge_index() in tensor ops (any device; the one used on GPUs)."""
        bm, bn = self.block_shape
        device = self.device
        num_kv = max(self.shape[1], 1)
        tile_row = self.tile_rows()
        t, r, w = self.bits.nonzero(as_tuple=True)          # only non-zero words are expanded
        shifts = torch.arange(min(bn, 32), device=device)
        keys = []
        chunk = 1 << 20
        for start in range(0, t.numel(), chunk):
            tc, rc, wc = t[start:start + chunk], r[start:start + chunk], w[start:start + chunk]
            word = self.bits[tc, rc, wc].to(torch.int64) & 0xFFFFFFFF
            word_i, bit = (((word[:, None] >> shifts) & 1) != 0).nonzero(as_tuple=True)
            dst = tile_row[tc[word_i]] * bm + rc[word_i]
            src = self.col_idx.long()[tc[word_i]] * bn + wc[word_i] * 32 + bit
            keys.append(dst * num_kv + src)
        if not keys:
            return torch.empty(2, 0, dtype=torch.int64, device=device)
        keys = torch.sort(torch.cat(keys)).values
        dst = keys // num_kv
        return torch.stack([keys - dst * num_kv, dst])

    def to_dense(self, *, limit: int = DENSE_LIMIT) -> torch.Tensor:
        """The bool adjacency [num_q, num_kv] (``dense[i, j]``: i attends to j), for small graphs.

        Refuses masks with more than ``limit`` pairs: a dense mask is what this class avoids.
        """
        num_q, num_kv = self.shape
        if num_q * num_kv > limit:
            raise ValueError(f"to_dense() would allocate {num_q} x {num_kv} = {num_q * num_kv} booleans, more "
                             f"than limit={limit}; use edge_index() or the tiles for a graph this large")
        dense = torch.zeros(num_q, num_kv, dtype=torch.bool, device=self.device)
        src, dst = self.edge_index()
        dense[dst, src] = True
        return dense

    def __repr__(self) -> str:
        mean, most = self.tiles_per_row
        return (f"GraphBlockMask(shape={self.shape}, block_shape={self.block_shape}, "
                f"tiles={self.num_tiles}, full_tiles={self.num_full_tiles}, "
                f"tiles_per_row=(mean={mean:.2f}, max={most}), fill={self.fill:.4f}, "
                f"nbytes={self.nbytes}, device={self.device})")


def _tile_order_keys(src: torch.Tensor, dst: torch.Tensor, num_kv: int, bm: int, bn: int) -> torch.Tensor:
    """``((dst // BM * KB + src // BN) * BM + dst % BM) * BN + src % BN``: sorting these groups the
    edges by tile (in CSR order) and by row and column inside each tile. In-place ops: at 17M edges
    every temporary costs ~130 MB and a page-faulting pass."""
    kv_blocks = max(math.ceil(num_kv / bn), 1)
    log_bm, log_bn = bm.bit_length() - 1, bn.bit_length() - 1
    keys = dst >> log_bm
    keys *= kv_blocks
    keys += src >> log_bn
    keys <<= log_bm
    keys |= dst & (bm - 1)
    keys <<= log_bn
    keys |= src & (bn - 1)
    return keys
