"""Batching: the block-diagonal GraphBlockMask of several graphs, without going back to edges.

Graphs are concatenated the way PyG batches them: graph g's queries start at the sum of the
previous graphs' query counts, its keys at the sum of their key counts, with no padding. Offsets
that are not multiples of the block shift a graph's tiles across tile boundaries: each row moves
to its new row (and maybe a new row block), and each 32-column word of bits is shifted by the
column offset modulo the word width, spilling its high part into the next word (possibly in the
next tile). All of it is vectorised over the non-zero words; the result is identical (fingerprint
included) to building the mask from the concatenated, offset edges.
"""
from __future__ import annotations

import math

import torch

from .block_mask import GraphBlockMask


def _check_masks(masks) -> list[GraphBlockMask]:
    masks = list(masks) if not isinstance(masks, GraphBlockMask) else None
    if not masks:
        raise ValueError("masks must be a non-empty sequence of GraphBlockMask")
    for g, mask in enumerate(masks):
        if not isinstance(mask, GraphBlockMask):
            raise TypeError(f"masks[{g}] must be a GraphBlockMask, got {type(mask).__name__}")
        if mask.block_shape != masks[0].block_shape:
            raise ValueError(f"masks[{g}] has block shape {mask.block_shape}, masks[0] has {masks[0].block_shape}; "
                             f"rebuild them with one block size")
        if mask.device != masks[0].device:
            raise ValueError(f"masks[{g}] is on {mask.device}, masks[0] on {masks[0].device}")
    return masks


def cat(masks) -> GraphBlockMask:
    """Block-diagonal mask of ``masks`` (graphs concatenated without padding; see module docstring)."""
    masks = _check_masks(masks)
    bm, bn = masks[0].block_shape
    device = masks[0].device
    width = min(bn, 32)                      # bits used per word: 16 when BN is 16
    words_per_tile = math.ceil(bn / 32)
    num_q = sum(m.shape[0] for m in masks)
    num_kv = sum(m.shape[1] for m in masks)
    kv_blocks = math.ceil(num_kv / bn)
    rows, slots, values = [], [], []
    q_offset = kv_offset = 0
    for mask in masks:
        t, r, w = mask.bits.nonzero(as_tuple=True)
        if t.numel():
            value = mask.bits[t, r, w].to(torch.int64) & 0xFFFFFFFF
            row = mask.tile_rows()[t] * bm + r + q_offset
            column = mask.col_idx.long()[t] * bn + w * 32 + kv_offset     # global column of bit 0
            slot, shift = column // width, column % width               # width-aligned word slots
            low = (value << shift) & ((1 << width) - 1)
            high = value >> (width - shift)                              # spill into the next slot
            rows += [row, row]
            slots += [slot, slot + 1]
            values += [low, high]
        q_offset += mask.shape[0]
        kv_offset += mask.shape[1]
    if not rows:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        return GraphBlockMask._from_tiles((num_q, num_kv), (bm, bn), empty, empty,
                                          torch.empty(0, bm, words_per_tile, dtype=torch.int32, device=device))
    row, slot, value = torch.cat(rows), torch.cat(slots), torch.cat(values)
    keep = value != 0
    row, slot, value = row[keep], slot[keep], value[keep]
    column = slot * width
    tile_key = (row // bm) * kv_blocks + column // bn
    word_key = (tile_key * bm + row % bm) * words_per_tile + (column % bn) // 32
    words, inverse = torch.unique(word_key, return_inverse=True)
    # Pieces landing on one word come from different source words: disjoint bits, so sum = OR.
    merged = torch.zeros(words.numel(), dtype=torch.int64, device=device).index_add_(0, inverse, value)
    tile_of_word = words // (bm * words_per_tile)
    tiles, tile_index = torch.unique(tile_of_word, return_inverse=True)
    bits = torch.zeros(tiles.numel() * bm * words_per_tile, dtype=torch.int64, device=device)
    bits[tile_index * (bm * words_per_tile) + words % (bm * words_per_tile)] = merged
    bits = torch.where(bits >= (1 << 31), bits - (1 << 32), bits).to(torch.int32).view(-1, bm, words_per_tile)
    return GraphBlockMask._from_tiles((num_q, num_kv), (bm, bn), tiles // max(kv_blocks, 1),
                                      tiles % max(kv_blocks, 1), bits)
