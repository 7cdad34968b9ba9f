"""Packed (compacted) tiles: each query block's distinct key columns gathered into dense tiles.

An aligned tile holds the keys ``n*BN ... n*BN+BN-1``; a k=16 neighbourhood of a 64-query block
spreads over ~10 such tiles at ~2.5% fill. A packed tile instead holds BN arbitrary keys, the
block's distinct keys in ascending order, so the block needs only ceil(distinct / BN) tiles
(GUIDE §5; TC-GNN and Fused3S do the same). On Morton-ordered k=16 graphs of 262,144 points with
64×64 tiles that is 12,477 tiles instead of 43,728 (surface) and 16,790 instead of 91,048 (volume).
The price is a gathered load of K and V rows instead of a contiguous one.

The backward pass over keys (dK, dV) needs the transpose packed the same way: each key block's
distinct queries in packed tiles. Both layouts are derived from a GraphBlockMask once and cached
with it (``packed_tiles_of``), so repeated calls on one mask pay nothing. The blocks are the mask's
(BM queries per row block, BN keys per column block); the pack widths, PW_r keys per row-side tile
and PW_c queries per column-side tile, are chosen by ``tile_config.packed_shapes`` (32 by default:
one bit word per tile row, measured fastest).

Layout (T = row-side tiles, S = column-side tiles):
- ``row_ptr`` int32 [QB+1]; ``key_index`` int32 [T, PW_r], the key of each column, -1 for padding;
  ``row_bits`` int32 [T, BM, ceil(PW_r/32)]: bit ``c % 32`` of word ``[t, r, c // 32]`` says whether
  query ``m*BM + r`` attends to key ``key_index[t, c]``.
- ``col_ptr`` int32 [KB+1]; ``query_index`` int32 [S, PW_c], -1 for padding; ``col_bits`` int32
  [S, BN, ceil(PW_c/32)]: bit ``r % 32`` of word ``[s, c, r // 32]`` says whether key ``n*BN + c``
  is attended by query ``query_index[s, r]``.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch


@dataclass(eq=False)
class PackedTiles:
    """Row-side and column-side packed tiles of one block mask (see the module docstring)."""

    shape: tuple[int, int]
    row_shape: tuple[int, int]
    col_shape: tuple[int, int]
    row_ptr: torch.Tensor
    key_index: torch.Tensor
    row_bits: torch.Tensor
    col_ptr: torch.Tensor
    query_index: torch.Tensor
    col_bits: torch.Tensor

    @property
    def num_row_tiles(self) -> int:
        """Packed tiles walked by the forward and dQ passes."""
        return self.key_index.shape[0]

    @property
    def num_col_tiles(self) -> int:
        """Packed tiles walked by the dK/dV pass."""
        return self.query_index.shape[0]

    @classmethod
    def from_edges(cls, edge_index: torch.Tensor, shape: tuple[int, int], row_shape: tuple[int, int],
                   col_shape: tuple[int, int]) -> "PackedTiles":
        """Builds both layouts from distinct edges [2, E] (row 0 key/source, row 1 query/target).

        ``row_shape`` = (queries per block, keys per packed tile); ``col_shape`` = (keys per block,
        queries per packed tile). O(E log E) tensor work on the edges' device: two sorts, no Python
        loop over blocks.
        """
        num_q, num_kv = shape
        src, dst = edge_index[0].long(), edge_index[1].long()
        row_ptr, key_index, row_bits = _pack(dst, src, math.ceil(num_q / row_shape[0]), num_kv, *row_shape)
        col_ptr, query_index, col_bits = _pack(src, dst, math.ceil(num_kv / col_shape[0]), num_q, *col_shape)
        return cls(shape=(num_q, num_kv), row_shape=tuple(row_shape), col_shape=tuple(col_shape), row_ptr=row_ptr,
                   key_index=key_index, row_bits=row_bits, col_ptr=col_ptr, query_index=query_index,
                   col_bits=col_bits)


def _pack(owner: torch.Tensor, other: torch.Tensor, num_owner_blocks: int, num_other: int,
          owner_block: int, pack_width: int):
    """Packs, for each block of ``owner`` nodes, its distinct ``other`` nodes into tiles of ``pack_width``.

    Returns (ptr [blocks+1], index [tiles, pack_width] with -1 padding,
    bits [tiles, owner_block, ceil(pack_width/32)]).
    """
    device = owner.device
    words = math.ceil(pack_width / 32)
    block = owner // owner_block
    pair_keys, pair_of_edge = torch.unique(block * max(num_other, 1) + other, sorted=True, return_inverse=True)
    pair_block = pair_keys // max(num_other, 1)
    pair_other = pair_keys - pair_block * max(num_other, 1)
    pairs_per_block = torch.bincount(pair_block, minlength=num_owner_blocks)
    pair_start = torch.cumsum(pairs_per_block, 0) - pairs_per_block
    rank = torch.arange(pair_keys.numel(), device=device) - pair_start[pair_block]
    tiles_per_block = (pairs_per_block + pack_width - 1) // pack_width
    ptr = torch.zeros(num_owner_blocks + 1, dtype=torch.int64, device=device)
    ptr[1:] = torch.cumsum(tiles_per_block, 0)
    num_tiles = int(ptr[-1])
    pair_tile = ptr[:-1][pair_block] + rank // pack_width
    pair_slot = rank % pack_width
    index = torch.full((num_tiles, pack_width), -1, dtype=torch.int32, device=device)
    index[pair_tile, pair_slot] = pair_other.to(torch.int32)
    # Distinct edges set distinct bits, so a sum of powers of two is their OR.
    edge_tile, edge_slot = pair_tile[pair_of_edge], pair_slot[pair_of_edge]
    word_index = (edge_tile * owner_block + owner % owner_block) * words + edge_slot // 32
    word_sum = torch.zeros(num_tiles * owner_block * words, dtype=torch.int64, device=device)
    word_sum.scatter_add_(0, word_index, torch.ones_like(edge_slot) << (edge_slot % 32))
    word_sum = torch.where(word_sum >= (1 << 31), word_sum - (1 << 32), word_sum)
    bits = word_sum.to(torch.int32).view(num_tiles, owner_block, words)
    return ptr.to(torch.int32), index, bits


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _shapes(mask) -> tuple[tuple[int, int], tuple[int, int]]:
    from .tile_config import packed_shapes

    return packed_shapes(mask.block_shape)


def has_packed_tiles(mask) -> bool:
    """Whether ``packed_tiles_of(mask)`` is already built (a cache lookup torch.compile can trace)."""
    return _shapes(mask) in _CACHE.get(mask, {})


@torch.compiler.disable
def _build_and_cache(mask, row_shape, col_shape) -> PackedTiles:
    # Data-dependent sizes (tile counts): run eagerly even inside a compiled region.
    packed = PackedTiles.from_edges(mask.edge_index(), mask.shape, row_shape, col_shape)
    _CACHE.setdefault(mask, {})[(row_shape, col_shape)] = packed
    return packed


def packed_tiles_of(mask) -> PackedTiles:
    """The packed tiles of a GraphBlockMask, built on the mask's device on first use and cached.

    The tile shapes follow ``tile_config.packed_shapes(mask.block_shape)``. The cache holds the
    mask weakly: the packed tiles live as long as the mask object does.
    """
    row_shape, col_shape = _shapes(mask)
    packed = _CACHE.get(mask, {}).get((row_shape, col_shape))
    if packed is None:
        packed = _build_and_cache(mask, row_shape, col_shape)
    return packed
