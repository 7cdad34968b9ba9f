"""Triton forward kernel of graph attention: visits only the block mask's non-empty tiles.

One program per (query block, head). It walks its block row's tiles in the mask's CSR order
(``row_ptr`` / ``col_idx``), keeps an online softmax in float32 with ``exp2`` (the scale
``scale * log2(e)`` applied inside the exponent), and writes the output and the base-2
log-sum-exp ``lse`` [H, Nq] that the backward pass needs. Partial tiles test the edge bits; full tiles skip the test (one inner helper
with a ``constexpr`` flag, as in Triton's fused-attention tutorial). A row without edges keeps
``l == 0`` and is written as exactly 0, with ``lse = -inf``.

The tile shape is the mask's block shape (BM, BN); head dims are padded in registers to a power of
two of at least 16 (the smallest ``tl.dot`` operand), with masked loads, so any D in [1, 128] runs.
"""
from __future__ import annotations

import triton
import triton.language as tl

# Whether these kernels run under Triton's CPU interpreter (decided, like triton.jit itself, when
# this module is imported). The interpreter needs two detours, both exact:
# - tile loops are while loops: Triton 3.6's interpreter cannot take loop bounds loaded from memory
#   under NumPy >= 2.4 (``int()`` of a one-element array); compiled code keeps the ``for`` loop that
#   the software pipeliner understands;
# - bf16 dot operands are upcast to fp32 first: the interpreter stores bf16 as raw uint16 and would
#   multiply the integers. A product of two bf16 values is exact in fp32, as on the tensor cores.
INTERPRETER = tl.constexpr(bool(triton.knobs.runtime.interpret))


@triton.jit
def mma(a, b, acc, INPUT_PRECISION: tl.constexpr):
    """tl.dot(a, b, acc) with fp32 accumulation; see INTERPRETER for the bf16 detour."""
    if INTERPRETER:
        if a.dtype == tl.bfloat16:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=INPUT_PRECISION)


@triton.jit
def edge_bits(bits_ptr, tile, offs_row, offs_col, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              WORDS: tl.constexpr, TRANSPOSED: tl.constexpr):
    """Expands one tile's bitmask to booleans.

    ``offs_row`` are local query rows [BLOCK_M] and ``offs_col`` local key columns. The result is
    [rows, cols] or, with TRANSPOSED, [cols, rows] (the layout of the dK/dV pass). Each word is
    loaded once per row as a vector. Per pair the test costs one select per word beyond the first
    (which word holds the pair's bit) and one AND with the column's bit, a constant per column:
    the kernels are bound by such per-pair ALU work at small head dims, so this is kept minimal
    (an earlier shift-mask-select per word cost 7 operations per pair at 64 columns instead of 3).
    """
    base = bits_ptr + tile.to(tl.int64) * (BLOCK_M * WORDS) + offs_row * WORDS
    col_bit = 1 << (offs_col % 32)
    word_of_col = offs_col // 32
    if TRANSPOSED:
        word = tl.load(base)[None, :]
        for w in tl.static_range(1, WORDS):
            word = tl.where((word_of_col == w)[:, None], tl.load(base + w)[None, :], word)
        keep = (word & col_bit[:, None]) != 0
    else:
        word = tl.load(base)[:, None]
        for w in tl.static_range(1, WORDS):
            word = tl.where((word_of_col == w)[None, :], tl.load(base + w)[:, None], word)
        keep = (word & col_bit[None, :]) != 0
    return keep


@triton.jit
def _forward_tile(acc, l_i, m_i, q, tile, kv_block, key_index, K, V, bits_ptr, stride_kn, stride_vn,
                  offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr,
                  MASKED: tl.constexpr, INPUT_PRECISION: tl.constexpr, PACKED: tl.constexpr):
    if PACKED:
        # A packed tile lists its keys (packed_tiles.py); -1 pads the last tile of a row. Padding
        # columns read row 0 without a load mask (their bits are 0, so they never count): a masked
        # gather costs a predicate per element, and this loop is bound by instruction issue.
        keys = tl.load(key_index + tile.to(tl.int64) * BLOCK_N + offs_n_local)
        rows_n = tl.maximum(keys, 0).to(tl.int64)
        n_valid = keys >= 0
        kv_mask = d_valid[None, :]
    else:
        offs_n = kv_block * BLOCK_N + offs_n_local
        n_valid = offs_n < num_kv
        rows_n = offs_n.to(tl.int64)
        kv_mask = n_valid[:, None] & d_valid[None, :]
    k = tl.load(K + rows_n[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)
    # Raw scores: the running max is taken on them and the scale enters the exponent through one
    # fused multiply-add per pair, exp2(s · c - m · c), as in FlashAttention (c > 0, see the kernel).
    scores = mma(q, tl.trans(k), None, INPUT_PRECISION)
    if MASKED:
        keep = edge_bits(bits_ptr, tile, offs_m_local, offs_n_local, BLOCK_M, BLOCK_N, WORDS, False)
    else:
        # A full boundary tile is full over its in-range pairs only: keys past num_kv stay out.
        keep = n_valid[None, :]
    scores = tl.where(keep, scores, float("-inf"))
    # m_i starts finite (-1e30), so a row whose scores are all -inf gets alpha = 1 and p = 0, no NaN.
    m_new = tl.maximum(m_i, tl.max(scores, 1))
    p = tl.math.exp2(scores * qk_scale - (m_new * qk_scale)[:, None])
    alpha = tl.math.exp2((m_i - m_new) * qk_scale)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(V + rows_n[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)
    acc = acc * alpha[:, None]
    acc = mma(p.to(v.dtype), v, acc, INPUT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def _forward_step(acc, l_i, m_i, q, tile, col_idx, tile_full, K, V, bits, stride_kn, stride_vn,
                  offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr,
                  FULL_TILE_BRANCH: tl.constexpr, INPUT_PRECISION: tl.constexpr, PACKED: tl.constexpr):
    """One tile of a block row: full tiles skip the bit test behind a run-time branch.

    Aligned tiles: ``col_idx`` holds each tile's key block. Packed tiles: ``col_idx`` is the
    [T, BLOCK_N] key list and every tile tests its bits.
    """
    if PACKED:
        acc, l_i, m_i = _forward_tile(acc, l_i, m_i, q, tile, 0, col_idx, K, V, bits, stride_kn, stride_vn,
                                      offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                                      BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, True)
    else:
        kv_block = tl.load(col_idx + tile)
        if FULL_TILE_BRANCH:
            if tl.load(tile_full + tile):
                acc, l_i, m_i = _forward_tile(acc, l_i, m_i, q, tile, kv_block, col_idx, K, V, bits, stride_kn,
                                              stride_vn, offs_m_local, offs_n_local, offs_d, d_valid, num_kv,
                                              qk_scale, BLOCK_M, BLOCK_N, WORDS, False, INPUT_PRECISION, False)
            else:
                acc, l_i, m_i = _forward_tile(acc, l_i, m_i, q, tile, kv_block, col_idx, K, V, bits, stride_kn,
                                              stride_vn, offs_m_local, offs_n_local, offs_d, d_valid, num_kv,
                                              qk_scale, BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, False)
        else:
            # Bits are kept for full tiles too, so testing them everywhere is also exact.
            acc, l_i, m_i = _forward_tile(acc, l_i, m_i, q, tile, kv_block, col_idx, K, V, bits, stride_kn,
                                          stride_vn, offs_m_local, offs_n_local, offs_d, d_valid, num_kv,
                                          qk_scale, BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, False)
    return acc, l_i, m_i


@triton.jit
def graph_attention_forward_kernel(
        Q, K, V, O, LSE, row_ptr, col_idx, tile_full, bits,
        stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_on, stride_oh,
        num_q, num_kv, num_heads, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        WORDS: tl.constexpr, FULL_TILE_BRANCH: tl.constexpr, INPUT_PRECISION: tl.constexpr,
        PACKED: tl.constexpr, Q_SIGN: tl.constexpr = 1):
    """out[i, h] = softmax over i's edges of (q_i · k_j) · v_j, for one query block and one head.

    The head is the fastest-varying program index, so the programs of one block (sharing its key
    tiles and bits) run close together in time and meet in L2. With PACKED the row's tiles are
    packed tiles (packed_tiles.py): ``col_idx`` is their key list and ``bits`` their bits.
    """
    pid = tl.program_id(0)
    head = pid % num_heads
    q_block = pid // num_heads
    offs_m_local = tl.arange(0, BLOCK_M)
    offs_n_local = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < HEAD_DIM
    offs_m = q_block * BLOCK_M + offs_m_local
    m_valid = offs_m < num_q
    rows_m = offs_m.to(tl.int64)

    q = tl.load(Q + head * stride_qh + rows_m[:, None] * stride_qn + offs_d[None, :],
                mask=m_valid[:, None] & d_valid[None, :], other=0.0)
    # The tiles take the running max on raw scores, which needs qk_scale > 0: the launcher passes
    # |qk_scale| (1 for a zero scale) and the sign as Q_SIGN, which negates q (exact) or zeroes it
    # (a zero scale means uniform weights over each node's edges). A compile-time switch: a
    # run-time branch here cost the loop 6 registers, one resident program per SM.
    if Q_SIGN < 0:
        q = -q
    elif Q_SIGN == 0:
        q = tl.zeros_like(q)
    K += head * stride_kh
    V += head * stride_vh
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)

    tile_start = tl.load(row_ptr + q_block)
    tile_end = tl.load(row_ptr + q_block + 1)
    if INTERPRETER:
        tile = tile_start
        while tile < tile_end:
            acc, l_i, m_i = _forward_step(acc, l_i, m_i, q, tile, col_idx, tile_full, K, V, bits, stride_kn,
                                          stride_vn, offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                                          BLOCK_M, BLOCK_N, WORDS, FULL_TILE_BRANCH, INPUT_PRECISION, PACKED)
            tile += 1
    else:
        for tile in range(tile_start, tile_end):
            acc, l_i, m_i = _forward_step(acc, l_i, m_i, q, tile, col_idx, tile_full, K, V, bits, stride_kn,
                                          stride_vn, offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                                          BLOCK_M, BLOCK_N, WORDS, FULL_TILE_BRANCH, INPUT_PRECISION, PACKED)

    has_edges = l_i > 0.0
    # One reciprocal per row and a multiply per element: a float32 division per element was a
    # third of the kernel's instructions outside the tile loop.
    out = acc * (1.0 / tl.where(has_edges, l_i, 1.0))[:, None]
    tl.store(O + head * stride_oh + rows_m[:, None] * stride_on + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=m_valid[:, None] & d_valid[None, :])
    # In base 2 (log2 of the sum of exp2(s · c)), the unit the backward's exp2 takes directly.
    lse = tl.where(has_edges, m_i * qk_scale + tl.math.log2(tl.where(has_edges, l_i, 1.0)), float("-inf"))
    tl.store(LSE + head.to(tl.int64) * num_q + offs_m, lse, mask=m_valid)
