"""Shared helpers of the recursive orderings (kd, partition): aligned cut positions.

Both split a contiguous segment [lo, hi) of the order in two. A cut only ever falls on a block
boundary of the *global* order (``offset + cut`` a multiple of B), so every leaf fills exactly one
block: parts of about B that are not aligned lose most of the gain (GUIDE §5). ``offset`` is where
this graph starts inside a batch.
"""
from __future__ import annotations

from ._numba import njit


@njit(cache=True, nogil=True)
def aligned_cut(lo, hi, offset, block_size):
    """The block boundary strictly inside (lo, hi) nearest to its middle, or -1 if there is none."""
    first = lo + (block_size - (offset + lo) % block_size) % block_size
    if first == lo:
        first += block_size
    if first >= hi:
        return -1
    last = first + ((hi - 1 - first) // block_size) * block_size
    middle = (lo + hi) // 2
    steps = (middle - first + block_size // 2) // block_size
    cut = first + max(steps, 0) * block_size
    return min(cut, last)
