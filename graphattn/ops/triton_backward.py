"""Triton backward kernels of graph attention, FlashAttention-2 style and without atomics.

Two launches:
1. ``dq_kernel``: one program per (query block, head) walks the row CSR like the forward pass. It
   first computes its rows' delta[h, i] = rowsum(dO[i, h] · O[i, h]) in float32 (the softmax
   backward's correction term) and stores it for the second launch: a query block's delta needs
   only its own rows, so a separate delta pass would only read dO once more.
2. ``dkdv_kernel``: one program per (key block, head) walks the mask's transposed CSR
   (``col_ptr`` / ``row_idx`` / ``t_tile``), recomputes P^T from the saved log-sum-exp and the
   delta of the first launch, and reads the tile's bits transposed; it owns its dK and dV rows.

Every output row is written by exactly one program with a fixed summation order, so the gradients
are bitwise identical run to run.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_forward import INTERPRETER, edge_bits, mma


@triton.jit
def _dkdv_tile(dk, dv, k, v, q_block, tile, query_index, Q, DO, LSE, DELTA, bits_ptr, stride_qn, stride_don,
               offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr,
               MASKED: tl.constexpr, INPUT_PRECISION: tl.constexpr, PACKED: tl.constexpr):
    if PACKED:
        # A column-side packed tile lists its queries; -1 pads the last tile of a column. Padding
        # reads row 0 without load masks: its bits are 0, so the bit test zeroes its p_t and dS_t
        # (this loop is bound by instruction issue, and masks cost a predicate per element). Rows
        # without edges (lse = -inf) never have a bit set either.
        queries = tl.load(query_index + tile.to(tl.int64) * BLOCK_M + offs_m_local)
        rows_m = tl.maximum(queries, 0).to(tl.int64)
        both = d_valid[None, :]
        q = tl.load(Q + rows_m[:, None] * stride_qn + offs_d[None, :], mask=both, other=0.0)
        do = tl.load(DO + rows_m[:, None] * stride_don + offs_d[None, :], mask=both, other=0.0)
        lse = tl.load(LSE + rows_m)
        delta = tl.load(DELTA + rows_m)
    else:
        offs_m = q_block * BLOCK_M + offs_m_local
        m_valid = offs_m < num_q
        rows_m = offs_m.to(tl.int64)
        both = m_valid[:, None] & d_valid[None, :]
        q = tl.load(Q + rows_m[:, None] * stride_qn + offs_d[None, :], mask=both, other=0.0)
        do = tl.load(DO + rows_m[:, None] * stride_don + offs_d[None, :], mask=both, other=0.0)
        # Rows past num_q get lse = +inf, so their probabilities are exactly 0 without a test. Rows
        # without edges carry lse = -inf; they never have a bit set, and the bit test zeroes them.
        lse = tl.load(LSE + rows_m, mask=m_valid, other=float("inf"))
        lse = tl.where(lse == float("-inf"), float("inf"), lse)
        delta = tl.load(DELTA + rows_m, mask=m_valid, other=0.0)
    scores_t = mma(k, tl.trans(q), None, INPUT_PRECISION)            # [BN, BM]
    p_t = tl.math.exp2(scores_t * qk_scale - lse[None, :])
    if PACKED:
        # Column-side bits are stored key-major ([S, BN, ceil(BM/32)]): no transpose needed.
        keep = edge_bits(bits_ptr, tile, offs_n_local, offs_m_local, BLOCK_N, BLOCK_M, WORDS, False)
        p_t = tl.where(keep, p_t, 0.0)
    elif MASKED:
        keep = edge_bits(bits_ptr, tile, offs_m_local, offs_n_local, BLOCK_M, BLOCK_N, WORDS, True)
        p_t = tl.where(keep, p_t, 0.0)
    dv = mma(p_t.to(do.dtype), do, dv, INPUT_PRECISION)
    dp_t = mma(v, tl.trans(do), None, INPUT_PRECISION)               # [BN, BM]
    ds_t = p_t * (dp_t - delta[None, :])
    dk = mma(ds_t.to(q.dtype), q, dk, INPUT_PRECISION)
    return dk, dv


@triton.jit
def _dkdv_step(dk, dv, k, v, entry, row_idx, t_tile, tile_full, Q, DO, LSE, DELTA, bits, stride_qn, stride_don,
               offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr,
               FULL_TILE_BRANCH: tl.constexpr, INPUT_PRECISION: tl.constexpr, PACKED: tl.constexpr):
    """Aligned: entry of the transposed CSR (row_idx, t_tile). Packed: the column-side tile itself,
    ``row_idx`` being its [S, BLOCK_M] query list."""
    if PACKED:
        dk, dv = _dkdv_tile(dk, dv, k, v, 0, entry, row_idx, Q, DO, LSE, DELTA, bits, stride_qn, stride_don,
                            offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
                            BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, True)
    else:
        q_block = tl.load(row_idx + entry)
        tile = tl.load(t_tile + entry)
        if FULL_TILE_BRANCH:
            if tl.load(tile_full + tile):
                dk, dv = _dkdv_tile(dk, dv, k, v, q_block, tile, row_idx, Q, DO, LSE, DELTA, bits, stride_qn,
                                    stride_don, offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
                                    BLOCK_M, BLOCK_N, WORDS, False, INPUT_PRECISION, False)
            else:
                dk, dv = _dkdv_tile(dk, dv, k, v, q_block, tile, row_idx, Q, DO, LSE, DELTA, bits, stride_qn,
                                    stride_don, offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
                                    BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, False)
        else:
            dk, dv = _dkdv_tile(dk, dv, k, v, q_block, tile, row_idx, Q, DO, LSE, DELTA, bits, stride_qn,
                                stride_don, offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
                                BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, False)
    return dk, dv


@triton.jit
def dkdv_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, col_ptr, row_idx, t_tile, tile_full, bits,
        stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_don, stride_doh,
        stride_dkn, stride_dkh, stride_dvn, stride_dvh,
        num_q, num_kv, num_heads, qk_scale, scale,
        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        WORDS: tl.constexpr, FULL_TILE_BRANCH: tl.constexpr, INPUT_PRECISION: tl.constexpr,
        PACKED: tl.constexpr):
    """dV = P^T dO and dK = scale · dS^T Q for one key block and one head, over its column's tiles."""
    pid = tl.program_id(0)
    head = pid % num_heads
    kv_block = pid // num_heads
    offs_m_local = tl.arange(0, BLOCK_M)
    offs_n_local = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < HEAD_DIM
    offs_n = kv_block * BLOCK_N + offs_n_local
    n_valid = offs_n < num_kv
    rows_n = offs_n.to(tl.int64)
    both = n_valid[:, None] & d_valid[None, :]
    k = tl.load(K + head * stride_kh + rows_n[:, None] * stride_kn + offs_d[None, :], mask=both, other=0.0)
    v = tl.load(V + head * stride_vh + rows_n[:, None] * stride_vn + offs_d[None, :], mask=both, other=0.0)
    Q += head * stride_qh
    DO += head * stride_doh
    LSE += head.to(tl.int64) * num_q
    DELTA += head.to(tl.int64) * num_q
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    start = tl.load(col_ptr + kv_block)
    end = tl.load(col_ptr + kv_block + 1)
    # Keys past num_kv (zero k and v) only feed their own dK/dV rows, which are never stored.
    if INTERPRETER:
        entry = start
        while entry < end:
            dk, dv = _dkdv_step(dk, dv, k, v, entry, row_idx, t_tile, tile_full, Q, DO, LSE, DELTA, bits, stride_qn,
                                stride_don, offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
                                BLOCK_M, BLOCK_N, WORDS, FULL_TILE_BRANCH, INPUT_PRECISION, PACKED)
            entry += 1
    else:
        for entry in range(start, end):
            dk, dv = _dkdv_step(dk, dv, k, v, entry, row_idx, t_tile, tile_full, Q, DO, LSE, DELTA, bits, stride_qn,
                                stride_don, offs_m_local, offs_n_local, offs_d, d_valid, num_q, qk_scale,
                                BLOCK_M, BLOCK_N, WORDS, FULL_TILE_BRANCH, INPUT_PRECISION, PACKED)

    tl.store(DK + head * stride_dkh + rows_n[:, None] * stride_dkn + offs_d[None, :],
             (dk * scale).to(DK.dtype.element_ty), mask=both)
    tl.store(DV + head * stride_dvh + rows_n[:, None] * stride_dvn + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=both)


@triton.jit
def _dq_tile(dq, q, do, lse, delta, tile, kv_block, key_index, K, V, bits_ptr, stride_kn, stride_vn,
             offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr,
             MASKED: tl.constexpr, INPUT_PRECISION: tl.constexpr, PACKED: tl.constexpr):
    if PACKED:
        # Padding keys (-1) read row 0 unmasked; their bits are 0 (see _dkdv_tile).
        keys = tl.load(key_index + tile.to(tl.int64) * BLOCK_N + offs_n_local)
        n_valid = keys >= 0
        rows_n = tl.maximum(keys, 0).to(tl.int64)
        both = d_valid[None, :]
    else:
        offs_n = kv_block * BLOCK_N + offs_n_local
        n_valid = offs_n < num_kv
        rows_n = offs_n.to(tl.int64)
        both = n_valid[:, None] & d_valid[None, :]
    k = tl.load(K + rows_n[:, None] * stride_kn + offs_d[None, :], mask=both, other=0.0)
    v = tl.load(V + rows_n[:, None] * stride_vn + offs_d[None, :], mask=both, other=0.0)
    scores = mma(q, tl.trans(k), None, INPUT_PRECISION)               # [BM, BN]
    p = tl.math.exp2(scores * qk_scale - lse[:, None])
    if MASKED:
        keep = edge_bits(bits_ptr, tile, offs_m_local, offs_n_local, BLOCK_M, BLOCK_N, WORDS, False)
    else:
        # Keys past num_kv: exp2(-lse) can overflow for very negative lse, and inf · 0 is NaN.
        keep = n_valid[None, :]
    p = tl.where(keep, p, 0.0)
    dp = mma(do, tl.trans(v), None, INPUT_PRECISION)
    ds = p * (dp - delta[:, None])
    dq = mma(ds.to(k.dtype), k, dq, INPUT_PRECISION)
    return dq


@triton.jit
def _dq_step(dq, q, do, lse, delta, tile, col_idx, tile_full, K, V, bits, stride_kn, stride_vn,
             offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WORDS: tl.constexpr,
             FULL_TILE_BRANCH: tl.constexpr, INPUT_PRECISION: tl.constexpr, PACKED: tl.constexpr):
    if PACKED:
        dq = _dq_tile(dq, q, do, lse, delta, tile, 0, col_idx, K, V, bits, stride_kn, stride_vn,
                      offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                      BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, True)
    else:
        kv_block = tl.load(col_idx + tile)
        if FULL_TILE_BRANCH:
            if tl.load(tile_full + tile):
                dq = _dq_tile(dq, q, do, lse, delta, tile, kv_block, col_idx, K, V, bits, stride_kn, stride_vn,
                              offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                              BLOCK_M, BLOCK_N, WORDS, False, INPUT_PRECISION, False)
            else:
                dq = _dq_tile(dq, q, do, lse, delta, tile, kv_block, col_idx, K, V, bits, stride_kn, stride_vn,
                              offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                              BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, False)
        else:
            dq = _dq_tile(dq, q, do, lse, delta, tile, kv_block, col_idx, K, V, bits, stride_kn, stride_vn,
                          offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                          BLOCK_M, BLOCK_N, WORDS, True, INPUT_PRECISION, False)
    return dq


@triton.jit
def dq_kernel(
        Q, K, V, O, DO, LSE, DELTA, DQ, row_ptr, col_idx, tile_full, bits,
        stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_on, stride_oh,
        stride_don, stride_doh, stride_dqn, stride_dqh,
        num_q, num_kv, num_heads, qk_scale, scale,
        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        WORDS: tl.constexpr, FULL_TILE_BRANCH: tl.constexpr, INPUT_PRECISION: tl.constexpr,
        PACKED: tl.constexpr):
    """dQ = scale · dS K for one query block and one head, over its row's tiles; also stores delta."""
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
    both = m_valid[:, None] & d_valid[None, :]
    q = tl.load(Q + head * stride_qh + rows_m[:, None] * stride_qn + offs_d[None, :], mask=both, other=0.0)
    do = tl.load(DO + head * stride_doh + rows_m[:, None] * stride_don + offs_d[None, :], mask=both, other=0.0)
    o = tl.load(O + head * stride_oh + rows_m[:, None] * stride_on + offs_d[None, :], mask=both, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + head.to(tl.int64) * num_q + offs_m, delta, mask=m_valid)
    lse = tl.load(LSE + head.to(tl.int64) * num_q + offs_m, mask=m_valid, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse)
    K += head * stride_kh
    V += head * stride_vh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    start = tl.load(row_ptr + q_block)
    end = tl.load(row_ptr + q_block + 1)
    if INTERPRETER:
        tile = start
        while tile < end:
            dq = _dq_step(dq, q, do, lse, delta, tile, col_idx, tile_full, K, V, bits, stride_kn, stride_vn,
                          offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                          BLOCK_M, BLOCK_N, WORDS, FULL_TILE_BRANCH, INPUT_PRECISION, PACKED)
            tile += 1
    else:
        for tile in range(start, end):
            dq = _dq_step(dq, q, do, lse, delta, tile, col_idx, tile_full, K, V, bits, stride_kn, stride_vn,
                          offs_m_local, offs_n_local, offs_d, d_valid, num_kv, qk_scale,
                          BLOCK_M, BLOCK_N, WORDS, FULL_TILE_BRANCH, INPUT_PRECISION, PACKED)

    tl.store(DQ + head * stride_dqh + rows_m[:, None] * stride_dqn + offs_d[None, :],
             (dq * scale).to(DQ.dtype.element_ty), mask=both)
