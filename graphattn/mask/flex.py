"""FlexAttention interop: GraphBlockMask <-> torch.nn.attention.flex_attention.BlockMask.

FlexAttention keeps, per query-block row, a dense row of key-block indices ([QB, KB] int32 for
partial blocks and again for full blocks) and evaluates a Python ``mask_mod`` inside partial blocks.
``to_flex`` hands it our tiles: full tiles become its full blocks (no mask_mod), partial tiles its
partial blocks, and the mask_mod reads our bits through a dense [QB, KB] tile-id table (the same
O(QB·KB) size as FlexAttention's own index tables; a sorted lookup would be smaller but is not
traceable by every FlexAttention backend).
"""
from __future__ import annotations

import math

import torch

from .._checks import check_block_shape
from .block_mask import GraphBlockMask, _parse_num_nodes


def _dense_rows(tile_row, tile_col, q_blocks, kv_blocks, device):
    """(num_blocks [1, 1, QB] int32, indices [1, 1, QB, KB] int32) of tiles in (row, col) order."""
    counts = torch.bincount(tile_row, minlength=q_blocks)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(tile_row.numel(), device=device) - starts[tile_row]
    indices = torch.zeros(q_blocks, max(kv_blocks, 1), dtype=torch.int32, device=device)
    indices[tile_row, rank] = tile_col.to(torch.int32)
    return counts.to(torch.int32)[None, None], indices[None, None]


def to_flex(mask: GraphBlockMask):
    """A FlexAttention BlockMask (BLOCK_SIZE = mask.block_shape) with the same pairs as ``mask``."""
    from torch.nn.attention.flex_attention import BlockMask

    (num_q, num_kv), (bm, bn) = mask.shape, mask.block_shape
    device = mask.device
    q_blocks, kv_blocks = mask.num_q_blocks, mask.num_kv_blocks
    tile_row, tile_col = mask.tile_rows(), mask.col_idx.long()
    full = mask.tile_full
    kv_num, kv_idx = _dense_rows(tile_row[~full], tile_col[~full], q_blocks, kv_blocks, device)
    full_num = full_idx = None   # without full tiles, no second pair of dense tables
    if bool(full.any()):
        full_num, full_idx = _dense_rows(tile_row[full], tile_col[full], q_blocks, kv_blocks, device)
    tile_id = torch.full((max(q_blocks, 1), max(kv_blocks, 1)), -1, dtype=torch.int32, device=device)
    tile_id[tile_row, tile_col] = torch.arange(mask.num_tiles, dtype=torch.int32, device=device)
    bits = mask.bits if mask.num_tiles else torch.zeros(1, bm, mask.bits.shape[-1], dtype=torch.int32, device=device)

    def mask_mod(b, h, q_idx, kv_idx):
        tid = tile_id[q_idx // bm, kv_idx // bn]
        column = kv_idx % bn
        word = bits[torch.clamp(tid, min=0), q_idx % bm, column // 32]
        return (tid >= 0) & (((word >> (column % 32)) & 1) != 0)

    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=(bm, bn),
                                    mask_mod=mask_mod, seq_lengths=(num_q, num_kv))


def from_flex(block_mask, num_nodes) -> GraphBlockMask:
    """The GraphBlockMask of a FlexAttention BlockMask's batch 0, head 0, for ``num_nodes``
    (an int or (num_q, num_kv)) queries and keys.

    Full blocks are taken whole; the mask_mod is evaluated only inside the partial blocks, batch by
    batch of blocks (graphattn.masks.from_mask_mod with those blocks as candidates).
    """
    from torch.nn.attention.flex_attention import BlockMask

    from .. import masks

    if not isinstance(block_mask, BlockMask):
        raise TypeError(f"block_mask must be a torch.nn.attention.flex_attention.BlockMask, got "
                        f"{type(block_mask).__name__}")
    num_q, num_kv = _parse_num_nodes(num_nodes)
    bm, bn = check_block_shape(tuple(block_mask.BLOCK_SIZE), "block_mask.BLOCK_SIZE")
    q_blocks, kv_blocks = math.ceil(num_q / bm), math.ceil(num_kv / bn)
    if block_mask.kv_num_blocks.shape[-1] != q_blocks:
        raise ValueError(f"block_mask has {block_mask.kv_num_blocks.shape[-1]} query blocks of {bm}, but "
                         f"num_nodes={num_nodes!r} needs {q_blocks}")

    def listed(num_blocks, indices):
        if num_blocks is None:
            return torch.empty(2, 0, dtype=torch.int64)
        num_blocks, indices = num_blocks[0, 0].long().cpu(), indices[0, 0].long().cpu()
        slots = torch.arange(indices.shape[-1])[None, :] < num_blocks[:, None]
        rows, slot = slots.nonzero(as_tuple=True)
        pairs = torch.stack([rows, indices[rows, slot]])
        if pairs.numel() and int(pairs[1].max()) >= kv_blocks:
            raise ValueError(f"block_mask lists key block {int(pairs[1].max())}, but num_nodes={num_nodes!r} "
                             f"has only {kv_blocks} key blocks of {bn}")
        return pairs

    partial = listed(block_mask.kv_num_blocks, block_mask.kv_indices)
    full = listed(block_mask.full_kv_num_blocks, block_mask.full_kv_indices)
    full_table = torch.zeros(max(q_blocks, 1), max(kv_blocks, 1), dtype=torch.bool)
    full_table[full[0], full[1]] = True
    user_mod = block_mask.mask_mod
    device = block_mask.kv_num_blocks.device  # where mask_mod's own tensors live

    def combined(b, h, q_idx, kv_idx):
        # Partial blocks follow mask_mod; full blocks take every pair (FlexAttention skips the mask).
        inside_full = full_table[q_idx.long() // bm, kv_idx.long() // bn]
        inside = user_mod(b.to(device), h.to(device), q_idx.to(device), kv_idx.to(device))
        return inside_full | inside.to(device="cpu", dtype=torch.bool)

    return masks.from_mask_mod(combined, (num_q, num_kv), (bm, bn),
                               candidate_tiles=torch.cat([partial, full], dim=1))
