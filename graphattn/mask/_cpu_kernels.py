"""Numba kernels for the CPU: building a mask from edges, its fingerprint, and its edges back.

On the CPU the tensor formulation in block_mask.py needs a global sort of the edges and about ten
passes over E-long temporaries (4-10 s for 17.8M edges on the shared two-core machine); these
kernels bucket the edges by query-block row (a counting sort, skipped when the edges already come
grouped by target, as PyG's coalesced edges do) and then build each row's tiles independently in
parallel, touching each edge twice. They produce exactly the arrays of the tensor path (tests compare them bit for bit).
Compiled on first use and cached on disk by numba.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange


def threads() -> int:
    """Numba's thread count, passed in as an argument (reading it inside a kernel defeats caching)."""
    return numba.get_num_threads()


@njit(cache=True)
def _splitmix64(x):
    x = x + np.uint64(0x1E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _log2(power_of_two):
    shift = 0
    while (1 << shift) < power_of_two:
        shift += 1
    return shift


@njit(cache=True)
def _row_starts(src, dst, log_bm, q_blocks):
    """Groups edges by query-block row: returns (row_start [QB+1], src, dst) with the edges of
    row m at row_start[m]:row_start[m+1]. Edges already sorted by target are used in place."""
    num_edges = dst.shape[0]
    counts = np.zeros(q_blocks + 1, np.int64)
    grouped = True
    previous = -1
    for e in range(num_edges):
        m = dst[e] >> log_bm
        counts[m + 1] += 1
        if m < previous:
            grouped = False
        previous = m
    for m in range(q_blocks):
        counts[m + 1] += counts[m]
    if grouped:
        return counts, src, dst
    cursor = counts[:-1].copy()
    src_out = np.empty_like(src)
    dst_out = np.empty_like(dst)
    for e in range(num_edges):
        m = dst[e] >> log_bm
        src_out[cursor[m]] = src[e]
        dst_out[cursor[m]] = dst[e]
        cursor[m] += 1
    return counts, src_out, dst_out


@njit(cache=True)
def _row_tile_columns(src, begin, end, log_bn, seen, touched):
    """Distinct ascending key-block columns of edges begin:end; `seen` is left all False."""
    count = 0
    for e in range(begin, end):
        kb = src[e] >> log_bn
        if not seen[kb]:
            seen[kb] = True
            touched[count] = kb
            count += 1
    columns = np.sort(touched[:count])
    for i in range(count):
        seen[columns[i]] = False
    return columns


@njit(parallel=True, cache=True)
def build_tiles(src, dst, num_q, num_kv, bm, bn, threads):
    """The mask arrays of edges (src, dst) (int64, any order, duplicates allowed).

    Returns (row_ptr, col_idx, bits, edges_per_tile, col_ptr, row_idx, t_tile), all int64 except
    bits (int32 [T, BM, W]).
    """
    log_bm = _log2(bm)
    log_bn = _log2(bn)
    q_blocks = (num_q + bm - 1) // bm
    kv_blocks = (num_kv + bn - 1) // bn
    words = (bn + 31) // 32
    row_start, src, dst = _row_starts(src, dst, log_bm, q_blocks)

    chunks = min(q_blocks, 8 * threads)
    tiles_in_row = np.zeros(q_blocks + 1, np.int64)
    for chunk in prange(chunks):
        seen = np.zeros(kv_blocks, np.bool_)
        touched = np.empty(kv_blocks, np.int64)
        for m in range(chunk * q_blocks // chunks, (chunk + 1) * q_blocks // chunks):
            columns = _row_tile_columns(src, row_start[m], row_start[m + 1], log_bn, seen, touched)
            tiles_in_row[m + 1] = columns.shape[0]
    row_ptr = np.cumsum(tiles_in_row)
    num_tiles = row_ptr[-1]

    col_idx = np.empty(num_tiles, np.int64)
    bits = np.zeros((num_tiles, bm, words), np.uint32)
    edges_per_tile = np.zeros(num_tiles, np.int64)
    for chunk in prange(chunks):
        seen = np.zeros(kv_blocks, np.bool_)
        touched = np.empty(kv_blocks, np.int64)
        tile_of_column = np.empty(kv_blocks, np.int64)
        for m in range(chunk * q_blocks // chunks, (chunk + 1) * q_blocks // chunks):
            columns = _row_tile_columns(src, row_start[m], row_start[m + 1], log_bn, seen, touched)
            first = row_ptr[m]
            for i in range(columns.shape[0]):
                col_idx[first + i] = columns[i]
                tile_of_column[columns[i]] = first + i
            for e in range(row_start[m], row_start[m + 1]):
                t = tile_of_column[src[e] >> log_bn]
                r = dst[e] & (bm - 1)
                c = src[e] & (bn - 1)
                bit = np.uint32(1) << np.uint32(c & 31)
                word = bits[t, r, c >> 5]
                if word & bit == 0:          # duplicates count once
                    bits[t, r, c >> 5] = word | bit
                    edges_per_tile[t] += 1

    # Transpose: a counting sort of the tiles by column keeps rows ascending inside each column.
    col_ptr = np.zeros(kv_blocks + 1, np.int64)
    for t in range(num_tiles):
        col_ptr[col_idx[t] + 1] += 1
    for k in range(kv_blocks):
        col_ptr[k + 1] += col_ptr[k]
    cursor = col_ptr[:-1].copy()
    row_idx = np.empty(num_tiles, np.int64)
    t_tile = np.empty(num_tiles, np.int64)
    for m in range(q_blocks):
        for t in range(row_ptr[m], row_ptr[m + 1]):
            slot = cursor[col_idx[t]]
            row_idx[slot] = m
            t_tile[slot] = t
            cursor[col_idx[t]] += 1
    return row_ptr, col_idx, bits.view(np.int32), edges_per_tile, col_ptr, row_idx, t_tile


@njit(parallel=True, cache=True)
def fingerprint_sum(tile_row, tile_col, bits, bm, bn, num_kv, threads):
    """The sum part of mask_fingerprint (see block_mask.py), mod 2**64, as uint64."""
    num_tiles = bits.shape[0]
    words = bits.shape[2]
    halves = 1 if bn == 16 else 2
    units_per_row = np.uint64((num_kv + 15) // 16)
    ubits = bits.view(np.uint32)
    chunks = max(min(num_tiles, 8 * threads), 1)
    partial = np.zeros(chunks, np.uint64)
    for chunk in prange(chunks):
        total = np.uint64(0)
        for t in range(chunk * num_tiles // chunks, (chunk + 1) * num_tiles // chunks):
            for r in range(bm):
                dst = np.uint64(tile_row[t] * bm + r)
                for w in range(words):
                    word = np.uint64(ubits[t, r, w])
                    if word == 0:
                        continue
                    for h in range(halves):
                        pattern = (word >> np.uint64(16 * h)) & np.uint64(0xFFFF)
                        if pattern != 0:
                            unit = np.uint64((tile_col[t] * bn + w * 32 + h * 16) >> 4)
                            total += _splitmix64(((dst * units_per_row + unit) << np.uint64(16)) | pattern)
        partial[chunk] = total
    total = np.uint64(0)
    for chunk in range(chunks):
        total += partial[chunk]
    return total


@njit(parallel=True, cache=True)
def edges_of_tiles(row_ptr, col_idx, bits, bm, bn, num_q):
    """(src, dst) of every set bit, sorted by (target, source), written in order without a sort."""
    q_blocks = row_ptr.shape[0] - 1
    words = bits.shape[2]
    ubits = bits.view(np.uint32)
    per_row = np.zeros(num_q + 1, np.int64)
    for m in prange(q_blocks):
        for t in range(row_ptr[m], row_ptr[m + 1]):
            for r in range(bm):
                count = 0
                for w in range(words):
                    word = ubits[t, r, w]
                    while word:
                        word &= word - np.uint32(1)
                        count += 1
                if count:
                    per_row[m * bm + r + 1] += count
    offsets = np.cumsum(per_row)
    src = np.empty(offsets[-1], np.int64)
    dst = np.empty(offsets[-1], np.int64)
    for m in prange(q_blocks):
        for r in range(min(bm, num_q - m * bm)):
            i = m * bm + r
            out = offsets[i]
            for t in range(row_ptr[m], row_ptr[m + 1]):
                for w in range(words):
                    word = ubits[t, r, w]
                    base = col_idx[t] * bn + w * 32
                    for c in range(32):
                        if (word >> np.uint32(c)) & np.uint32(1):
                            src[out] = base + c
                            dst[out] = i
                            out += 1
    return src, dst


@njit(parallel=True, cache=True)
def pattern_words(tile_row, tile_col, bm, bn, num_q, num_kv, left, right, col_bitmap, global_row, tile_all):
    """Bits of the interval-plus-globals patterns of graphattn.masks, for the given tiles.

    Query i attends to key j when ``i - left <= j <= i + right``, or bit j of ``col_bitmap`` (32-bit
    words in int64) is set, or ``global_row[i]``, or ``tile_all`` of the tile is set. Returns
    (bits int32 [T, BM, W], set bits per tile int64 [T]); pairs past the graph are never set.
    """
    num_tiles = tile_row.shape[0]
    words = (bn + 31) // 32
    width = min(bn, 32)
    out = np.zeros((num_tiles, bm, words), np.uint32)
    counts = np.zeros(num_tiles, np.int64)
    one = np.int64(1)
    for t in prange(num_tiles):
        count = 0
        for r in range(bm):
            i = tile_row[t] * bm + r
            if i >= num_q:
                break
            for w in range(words):
                start = tile_col[t] * bn + w * 32
                valid = min(max(num_kv - start, 0), width)
                if valid == 0:
                    continue
                in_graph = (one << valid) - 1
                if tile_all[t] or global_row[i]:
                    word = in_graph
                else:
                    first = min(max(i - left - start, 0), 32)
                    last = min(max(i + right - start + 1, 0), 32)
                    word = (one << last) - (one << first) if last > first else np.int64(0)
                    shift = start & 31
                    index = start >> 5
                    word |= (col_bitmap[index] >> shift) | (col_bitmap[index + 1] << (32 - shift))
                    word &= in_graph
                out[t, r, w] = np.uint32(word)
                while word:
                    word &= word - 1
                    count += 1
        counts[t] = count
    return out.view(np.int32), counts


@njit(parallel=True, cache=True)
def pack_tiles(dense_tiles):
    """bool [T, BM, BN] -> (int32 bits [T, BM, ceil(BN/32)], set bits per tile int64 [T])."""
    num_tiles, bm, bn = dense_tiles.shape
    words = (bn + 31) // 32
    out = np.zeros((num_tiles, bm, words), np.uint32)
    counts = np.zeros(num_tiles, np.int64)
    for t in prange(num_tiles):
        count = 0
        for r in range(bm):
            for c in range(bn):
                if dense_tiles[t, r, c]:
                    out[t, r, c >> 5] |= np.uint32(1) << np.uint32(c & 31)
                    count += 1
        counts[t] = count
    return out.view(np.int32), counts
