"""Mask families of sequence models as GraphBlockMasks, and masks from dense tensors or mask_mods.

Exact definitions (query i attends to key j, both in ``[0, n)``):

- ``sliding_window(n, window)``: ``|i - j| <= window``
- ``causal(n)``: ``j <= i``
- ``longformer(n, window, global_tokens)``: ``|i - j| <= window``, or i or j is a global token
- ``bigbird(n, window, global_tokens, random_blocks, seed)``: the Longformer pattern, plus every
  pair in ``random_blocks`` random key blocks of each query block (see :func:`bigbird_random_blocks`)
- ``from_dense(dense)``: ``dense[i, j]``
- ``from_mask_mod(fn, n)``: ``fn(b, h, i, j)`` (FlexAttention's signature) or ``fn(i, j)``

The families are built on the CPU (move them with ``.to(device)``) tile by tile from closed forms
(a row's window is an interval of columns, so each 32-bit word of a tile is one subtraction of two
powers of two), in O(tiles) memory and without enumerating pairs. Tiles entirely inside the pattern
come out marked full.
``global_tokens`` is an int g (the first g tokens are global, as in Longformer's usual set-up) or
a sequence/tensor of token indices.
"""
from __future__ import annotations

import inspect
import math
import sys

import torch

from ._checks import check_block_shape, check_num_nodes
from .mask.block_mask import GraphBlockMask, _parse_num_nodes

__all__ = ["sliding_window", "causal", "longformer", "bigbird", "bigbird_random_blocks", "from_dense",
           "from_mask_mod"]

_WORD_MASK = 0xFFFFFFFF
# (query, key) pairs per vectorised batch of from_mask_mod: keeps fn's temporaries (4 MiB per int32
# pass) near the CPU caches; fewer, larger batches were slower.
_PAIRS_PER_BATCH = 1 << 20


# ---------------------------------------------------------------------- argument checks
def _check_window(window, name: str = "window") -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"{name} must be a non-negative int, got {window!r}")
    return window


def _global_token_indices(global_tokens, n: int) -> torch.Tensor:
    """Sorted distinct global token indices (int64) from an int count or a list of indices."""
    if isinstance(global_tokens, bool):
        raise TypeError("global_tokens must be an int count or a sequence of token indices, got bool")
    if isinstance(global_tokens, int):
        if not 0 <= global_tokens <= n:
            raise ValueError(f"global_tokens must be a count in [0, n={n}], got {global_tokens}")
        return torch.arange(global_tokens)
    indices = torch.as_tensor(global_tokens)
    if indices.is_floating_point() or indices.dtype == torch.bool or indices.dim() > 1:
        raise TypeError(f"global_tokens must be an int or a 1-D sequence of int indices, got "
                        f"{indices.dtype} of shape {tuple(indices.shape)}")
    indices = indices.long().reshape(-1).cpu()
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise ValueError(f"global_tokens holds indices in [{int(indices.min())}, {int(indices.max())}], "
                         f"expected indices in [0, n={n})")
    return torch.unique(indices)


# ---------------------------------------------------------------------- bit-level helpers
def _column_bitmap(columns: torch.Tensor, n: int) -> torch.Tensor:
    """int64 words of 32 bits with the bits of ``columns`` set, zero past n."""
    bitmap = torch.zeros((n + 256) // 32 + 2, dtype=torch.int64)  # room for words past n in the last tile
    if columns.numel():
        bitmap.index_add_(0, columns >> 5, torch.ones_like(columns) << (columns & 31))
    return bitmap


def _to_int32_words(words: torch.Tensor) -> torch.Tensor:
    words = words & _WORD_MASK
    return torch.where(words >= (1 << 31), words - (1 << 32), words).to(torch.int32)


def pack_bool_tiles(dense_tiles: torch.Tensor) -> torch.Tensor:
    """bool [T, BM, BN] -> int32 [T, BM, ceil(BN/32)] in the mask's bit layout (bit c%32 of word c//32).

    A numba loop on the CPU; elsewhere tensor ops (on little-endian hosts eight bools are read as
    one int64 and packed by one multiply)."""
    tiles, bm, bn = dense_tiles.shape
    words = math.ceil(bn / 32)
    if dense_tiles.device.type == "cpu":
        from .mask import _cpu_kernels
        return torch.from_numpy(_cpu_kernels.pack_tiles(dense_tiles.contiguous().numpy())[0])
    return _pack_bool_tiles_tensor(dense_tiles)


def _pack_bool_tiles_tensor(dense_tiles: torch.Tensor) -> torch.Tensor:
    tiles, bm, bn = dense_tiles.shape
    words = math.ceil(bn / 32)
    if sys.byteorder == "little":
        # Eight bools are the eight bytes of one int64; one multiply gathers their low bits into the
        # top byte (the products land on distinct bit positions, so nothing carries).
        eights = dense_tiles.contiguous().view(torch.int64).view(tiles, bm, bn // 8)
        packed = ((eights * 0x0102040810204080) >> 56) & 0xFF                 # [T, BM, BN/8]
        if bn < 32:
            packed = torch.nn.functional.pad(packed, (0, 4 - bn // 8))
        packed = packed.view(tiles, bm, words, 4) << torch.tensor([0, 8, 16, 24], device=packed.device)
        return _to_int32_words(packed.sum(-1))
    padded = torch.nn.functional.pad(dense_tiles, (0, words * 32 - bn)).view(tiles, bm, words, 32)
    return _to_int32_words((padded.to(torch.int64) << torch.arange(32, device=padded.device)).sum(-1))


def _sorted_tiles(tile_row: torch.Tensor, tile_col: torch.Tensor, kv_blocks: int):
    keys = torch.unique(tile_row.long() * max(kv_blocks, 1) + tile_col.long())
    return keys // max(kv_blocks, 1), keys % max(kv_blocks, 1)


def _build(shape, block_shape, tile_row, tile_col, words_of_batch) -> GraphBlockMask:
    """Evaluates ``words_of_batch(batch_rows, batch_cols) -> int64 words [t, BM, W]`` on sorted,
    distinct candidate tiles, batch by batch, then drops empty tiles and completes the mask."""
    batch = max(_PAIRS_PER_BATCH // (block_shape[0] * block_shape[1]), 1)
    pieces = [_to_int32_words(words_of_batch(tile_row[s:s + batch], tile_col[s:s + batch]))
              for s in range(0, tile_row.numel(), batch)]
    bm, bn = block_shape
    bits = torch.cat(pieces) if pieces else torch.empty(0, bm, math.ceil(bn / 32), dtype=torch.int32)
    return GraphBlockMask._from_tiles(shape, block_shape, tile_row, tile_col, bits)


# ---------------------------------------------------------------------- candidate tiles
def _window_tiles(n: int, window: int, block_shape):
    """Tiles that meet the band |i - j| <= window, in (row, column) order."""
    bm, bn = block_shape
    q_blocks = math.ceil(n / bm)
    m = torch.arange(q_blocks)
    first = torch.clamp(m * bm - window, min=0) // bn
    last = torch.clamp((m + 1) * bm - 1 + window, max=n - 1) // bn
    return _expand_ranges(m, first, last)


def _expand_ranges(rows, first, last):
    counts = torch.clamp(last - first + 1, min=0)
    tile_row = torch.repeat_interleave(rows, counts)
    starts = torch.repeat_interleave(first - torch.cumsum(counts, 0) + counts, counts)
    return tile_row, starts + torch.arange(tile_row.numel())


def _global_tiles(global_idx, n, block_shape):
    """Tiles of the global rows (every key block) and of the global columns (every query block)."""
    bm, bn = block_shape
    q_blocks, kv_blocks = math.ceil(n / bm), math.ceil(n / bn)
    row_blocks = torch.unique(global_idx // bm)
    col_blocks = torch.unique(global_idx // bn)
    rows_a = row_blocks.repeat_interleave(kv_blocks)
    cols_a = torch.arange(kv_blocks).repeat(row_blocks.numel())
    rows_b = torch.arange(q_blocks).repeat_interleave(col_blocks.numel())
    cols_b = col_blocks.repeat(q_blocks)
    return torch.cat([rows_a, rows_b]), torch.cat([cols_a, cols_b])


# ---------------------------------------------------------------------- families
def sliding_window(n: int, window: int, *, block_size=64) -> GraphBlockMask:
    """Node i attends to j when ``|i - j| <= window``."""
    n = check_num_nodes(n, "n")
    window = _check_window(window)
    return longformer(n, window, 0, block_size=block_size)


def causal(n: int, *, block_size=64) -> GraphBlockMask:
    """Node i attends to j when ``j <= i`` (the lower triangle, diagonal included)."""
    n = check_num_nodes(n, "n")
    block_shape = check_block_shape(block_size)
    bm, bn = block_shape
    m = torch.arange(math.ceil(n / bm))
    tile_row, tile_col = _expand_ranges(m, torch.zeros_like(m), torch.clamp((m + 1) * bm - 1, max=n - 1) // bn)
    return _build_pattern(n, block_shape, tile_row, tile_col, left=n, right=0)


def longformer(n: int, window: int, global_tokens, *, block_size=64) -> GraphBlockMask:
    """Node i attends to j when ``|i - j| <= window`` or i or j is a global token."""
    return _longformer_with_random(n, window, global_tokens, None, block_size, "longformer")


def bigbird_random_blocks(n: int, random_blocks: int, seed: int = 0, block_size=64) -> torch.Tensor:
    """The random key blocks of BigBird: int64 [QB, min(random_blocks, KB)], each row distinct.

    Row m lists the key blocks (of BN columns) whose every pair query block m attends to, drawn
    uniformly without replacement from all key blocks by a ``torch.Generator`` seeded with ``seed``,
    so the same arguments give the same blocks on every machine.
    """
    n = check_num_nodes(n, "n")
    if isinstance(random_blocks, bool) or not isinstance(random_blocks, int) or random_blocks < 0:
        raise ValueError(f"random_blocks must be a non-negative int, got {random_blocks!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    bm, bn = check_block_shape(block_size)
    q_blocks, kv_blocks = math.ceil(n / bm), math.ceil(n / bn)
    count = min(random_blocks, kv_blocks)
    generator = torch.Generator().manual_seed(seed)
    if count == 0:
        return torch.empty(q_blocks, 0, dtype=torch.int64)
    if q_blocks * kv_blocks <= 1 << 24:
        return torch.rand(q_blocks, kv_blocks, generator=generator).topk(count, dim=1).indices.sort(1).values
    # Many blocks, few draws: draw with replacement, keep the first `count` distinct per row, and
    # redraw the rare rows that came up short.
    chosen = torch.empty(q_blocks, count, dtype=torch.int64)
    pending = torch.arange(q_blocks)
    while pending.numel():
        draws = torch.randint(0, kv_blocks, (pending.numel(), 2 * count + 8), generator=generator)
        ordered = draws.sort(1).values
        repeat = torch.zeros_like(ordered, dtype=torch.bool)
        repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        distinct = torch.where(repeat, torch.full_like(ordered, kv_blocks), ordered).sort(1).values
        ok = distinct[:, count - 1] < kv_blocks
        chosen[pending[ok]] = distinct[ok, :count]
        pending = pending[~ok]
    return chosen


def bigbird(n: int, window: int, global_tokens, random_blocks: int, seed: int = 0, *,
            block_size=64) -> GraphBlockMask:
    """The Longformer pattern plus, for each query block, ``random_blocks`` random key blocks
    (all their pairs); the blocks are :func:`bigbird_random_blocks` of the same arguments."""
    random = bigbird_random_blocks(n, random_blocks, seed, block_size)
    return _longformer_with_random(n, window, global_tokens, random, block_size, "bigbird")


def _longformer_with_random(n, window, global_tokens, random, block_size, name) -> GraphBlockMask:
    n = check_num_nodes(n, "n")
    window = _check_window(window)
    block_shape = check_block_shape(block_size)
    bm, bn = block_shape
    global_idx = _global_token_indices(global_tokens, n)
    rows_w, cols_w = _window_tiles(n, window, block_shape)
    rows_g, cols_g = _global_tiles(global_idx, n, block_shape)
    rows_r = cols_r = torch.empty(0, dtype=torch.int64)
    if random is not None and random.numel():
        rows_r = torch.arange(random.shape[0]).repeat_interleave(random.shape[1])
        cols_r = random.reshape(-1)
    kv_blocks = math.ceil(n / bn)
    tile_row, tile_col = _sorted_tiles(torch.cat([rows_w, rows_g, rows_r]), torch.cat([cols_w, cols_g, cols_r]),
                                       kv_blocks)
    tile_all = None
    if rows_r.numel():
        random_keys = torch.unique(rows_r * kv_blocks + cols_r)
        key = tile_row * kv_blocks + tile_col
        position = torch.clamp(torch.searchsorted(random_keys, key), max=random_keys.numel() - 1)
        tile_all = random_keys[position] == key
    return _build_pattern(n, block_shape, tile_row, tile_col, left=window, right=window,
                          global_idx=global_idx, tile_all=tile_all)


def _build_pattern(n, block_shape, tile_row, tile_col, *, left, right, global_idx=None, tile_all=None):
    """Mask of the pattern ``i - left <= j <= i + right``, or i or j in ``global_idx``, or the tile
    in ``tile_all``, on sorted distinct candidate tiles (one pass of a numba kernel)."""
    from .mask import _cpu_kernels

    bm, bn = block_shape
    global_idx = torch.empty(0, dtype=torch.int64) if global_idx is None else global_idx
    is_global_row = torch.zeros(n, dtype=torch.bool)
    is_global_row[global_idx] = True
    if tile_all is None:
        tile_all = torch.zeros(tile_row.numel(), dtype=torch.bool)
    bits, counts = _cpu_kernels.pattern_words(
        tile_row.long().contiguous().numpy(), tile_col.long().contiguous().numpy(), bm, bn, n, n, left, right,
        _column_bitmap(global_idx, n).numpy(), is_global_row.numpy(), tile_all.contiguous().numpy())
    return GraphBlockMask._from_tiles((n, n), block_shape, tile_row, tile_col, torch.from_numpy(bits),
                                      torch.from_numpy(counts))


# ---------------------------------------------------------------------- generic sources
def from_dense(dense: torch.Tensor, *, block_size=64) -> GraphBlockMask:
    """The mask of a bool matrix ``dense[i, j]`` (query i attends to key j), any [num_q, num_kv]."""
    if not isinstance(dense, torch.Tensor):
        raise TypeError(f"dense must be a bool torch.Tensor [num_q, num_kv], got {type(dense).__name__}")
    if dense.dtype != torch.bool:
        raise TypeError(f"dense must have dtype torch.bool, got {dense.dtype} (compare it with 0 first)")
    if dense.dim() != 2:
        raise ValueError(f"dense must have shape [num_q, num_kv], got {tuple(dense.shape)}")
    dst, src = dense.nonzero(as_tuple=True)
    return GraphBlockMask.from_edge_index(torch.stack([src, dst]), tuple(dense.shape), block_size=block_size)


def _candidate_tiles(candidate_tiles, shape, block_shape, max_evaluated_tiles):
    bm, bn = block_shape
    q_blocks, kv_blocks = math.ceil(shape[0] / bm), math.ceil(shape[1] / bn)
    if candidate_tiles is None:
        if q_blocks * kv_blocks > max_evaluated_tiles:
            raise ValueError(
                f"from_mask_mod would evaluate all {q_blocks} x {kv_blocks} = {q_blocks * kv_blocks} tiles, more than "
                f"max_evaluated_tiles={max_evaluated_tiles}: a generic callable cannot tell which tiles are empty "
                f"without evaluating them. Pass candidate_tiles (a GraphBlockMask of the same shape and block "
                f"shape whose tiles cover the pattern, e.g. masks.sliding_window(n, w), or a [2, C] tensor of "
                f"(query block, key block) pairs), or raise max_evaluated_tiles")
        rows = torch.arange(q_blocks).repeat_interleave(kv_blocks)
        return rows, torch.arange(kv_blocks).repeat(q_blocks)
    if isinstance(candidate_tiles, GraphBlockMask):
        if candidate_tiles.block_shape != tuple(block_shape):
            raise ValueError(f"candidate_tiles has block shape {candidate_tiles.block_shape}, expected {block_shape}")
        candidate_tiles.check_compatible(*shape, name="candidate_tiles")
        return candidate_tiles.tile_rows().cpu(), candidate_tiles.col_idx.long().cpu()
    if not isinstance(candidate_tiles, torch.Tensor) or candidate_tiles.dim() != 2 or candidate_tiles.shape[0] != 2 \
            or candidate_tiles.is_floating_point() or candidate_tiles.dtype == torch.bool:
        raise TypeError("candidate_tiles must be a GraphBlockMask or an integer tensor [2, C] of "
                        f"(query block, key block) pairs, got {candidate_tiles!r:.80}")
    pairs = candidate_tiles.long().cpu()
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs[0].max()) >= q_blocks or int(pairs[1].max()) >= kv_blocks):
        raise ValueError(f"candidate_tiles holds blocks outside [0, {q_blocks}) x [0, {kv_blocks})")
    return _sorted_tiles(pairs[0], pairs[1], kv_blocks)


def from_mask_mod(fn, n, block_size=64, *, candidate_tiles=None, max_evaluated_tiles: int = 1 << 20) -> GraphBlockMask:
    """The mask of a FlexAttention-style predicate, evaluated tile by tile.

    ``fn(b, h, q_idx, kv_idx)`` (FlexAttention's ``mask_mod``; called with b = h = 0) or
    ``fn(q_idx, kv_idx)`` returns a bool tensor for int32 index tensors (int64 beyond 2^31 nodes)
    that broadcast to [tiles, BM, BN]. Indices are clamped to the last node before the call (so ``fn`` may index
    per-token tensors) and pairs past it are dropped. ``n`` is an int or (num_q, num_kv).

    Exact on the tiles it evaluates, in memory O(tiles): batches of tiles are evaluated and packed
    to bits at once. A generic callable gives no way to know which tiles are empty without
    evaluating them, so without ``candidate_tiles`` every one of the QB x KB tiles is evaluated
    (O(n^2) work; refused above ``max_evaluated_tiles``). With ``candidate_tiles`` (a GraphBlockMask
    whose tiles cover the pattern, or a [2, C] tensor of (query block, key block) pairs) only those
    are evaluated, and pairs of the pattern outside them are not seen: the result is exact when the
    candidates cover the pattern, which is the caller's promise.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    num_q, num_kv = _parse_num_nodes(n)
    block_shape = check_block_shape(block_size)
    bm, bn = block_shape
    if isinstance(max_evaluated_tiles, bool) or not isinstance(max_evaluated_tiles, int) or max_evaluated_tiles < 0:
        raise ValueError(f"max_evaluated_tiles must be a non-negative int, got {max_evaluated_tiles!r}")
    try:
        flex_style = len(inspect.signature(fn).parameters) >= 4
    except (TypeError, ValueError):
        flex_style = True
    tile_row, tile_col = _candidate_tiles(candidate_tiles, (num_q, num_kv), block_shape, max_evaluated_tiles)
    # int32 indices, as in FlexAttention's kernels: half the memory traffic of int64 in fn.
    index_dtype = torch.int32 if max(num_q, num_kv) < 2**31 - 256 else torch.int64
    zero = torch.zeros((), dtype=index_dtype)
    row_offsets = torch.arange(bm, dtype=index_dtype)[None, :, None]
    col_offsets = torch.arange(bn, dtype=index_dtype)[None, None, :]

    def words(batch_rows, batch_cols):
        rows = batch_rows.to(index_dtype)[:, None, None] * bm + row_offsets                 # [t, BM, 1]
        cols = batch_cols.to(index_dtype)[:, None, None] * bn + col_offsets                 # [t, 1, BN]
        at_edge = bool(rows.max() >= num_q) or bool(cols.max() >= num_kv)
        if at_edge:
            q_idx, kv_idx = torch.clamp(rows, max=max(num_q - 1, 0)), torch.clamp(cols, max=max(num_kv - 1, 0))
        else:
            q_idx, kv_idx = rows, cols
        result = fn(zero, zero, q_idx, kv_idx) if flex_style else fn(q_idx, kv_idx)
        if not isinstance(result, torch.Tensor) or result.dtype != torch.bool:
            raise TypeError(f"fn must return a bool tensor, got {getattr(result, 'dtype', type(result).__name__)}")
        if at_edge:
            result = result & (rows < num_q) & (cols < num_kv)
        return pack_bool_tiles(result.expand(batch_rows.numel(), bm, bn)).to(torch.int64)

    return _build((num_q, num_kv), block_shape, tile_row, tile_col, words)
