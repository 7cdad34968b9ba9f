"""Tile-count refinement: the C++ local search (csrc/refine.cpp) driven from Python.

It exchanges nodes between blocks while the exact number of non-empty tiles drops (or stays equal
while fewer edges cross blocks), so it never adds tiles and every block keeps exactly its size.
With a ``group`` (the graph id of each node in a batch) it only exchanges nodes of the same graph,
so each graph keeps its contiguous range.

Two ways to run it:

- ``refine_blocks``: passes until one gains too little or a time budget runs out (``refine=True``
  or a budget in seconds);
- ``polish_blocks``: exactly one targeted sweep (every node, in order, tried once), a fixed amount
  of work, O(E) with no time budget, so its result does not depend on the machine. That is the
  bounded improvement ``auto`` may use with ``refine=False`` (the ``polish`` candidate): on the 25
  benchmark inputs up to 100k nodes one sweep removes nearly all that the search removes when run
  to its end from the same start (geometric mean ratio 0.830 against 0.828), for 5-10% of auto's
  time. The wish-matching sweep of a full pass adds nothing there and costs ~40% more.
"""
from __future__ import annotations

import math

import numpy as np

from .graph_orders import native_module
from .tiles import InEdges

# A pass that removes less than this fraction of the tiles ends the search (refine=True).
MIN_PASS_GAIN = 0.002


def default_time_budget(num_nodes: int) -> float:
    """refine=True's time cap: 1 s + 11 s per million nodes.

    A cap, not the usual end: the search stops first when a pass gains less than
    ``MIN_PASS_GAIN``, after 4-6 s from kd at 1M nodes on a 2-core CPU (volume: 13.79 tiles per
    row at a 4 s budget, 13.75 at 8 s). With auto's ~2-3 s the cap keeps the total under the 20 s
    target even on a loaded machine.
    """
    return 1.0 + 11.0 * num_nodes / 1e6


def _search(in_edges: InEdges, perm: np.ndarray, block_size: int, *, offset: int, group, seed: int,
            time_budget: float, max_passes: int, min_gain: float,
            matching: bool = True) -> tuple[np.ndarray, int | None]:
    """(the improved permutation, its tile count on the grid at ``offset``; None when nothing ran)."""
    n = perm.shape[0]
    if n <= 1 or in_edges.num_edges == 0:
        return perm, None
    native = native_module()
    refined, _before, after, _passes, _seconds = native.refine_blocks(
        in_edges.ptr, in_edges.src, perm, block_size,
        None if group is None else np.ascontiguousarray(group, np.int64),
        seed, time_budget, max_passes, min_gain, offset, matching)
    return refined, int(after)


def refine_blocks(in_edges: InEdges, perm: np.ndarray, block_size: int, *, group: np.ndarray | None = None,
                  seed: int = 0, time_budget: float | None = None, max_passes: int = 100,
                  offset: int = 0) -> np.ndarray:
    """A permutation with no more tiles than ``perm`` (x_new = x[perm]) after local search.

    ``offset``: where position 0 of ``perm`` sits on the global block grid (a graph of a batch)."""
    budget = default_time_budget(perm.shape[0]) if time_budget is None else float(time_budget)
    min_gain = MIN_PASS_GAIN if time_budget is None else 0.0
    return _search(in_edges, perm, block_size, offset=offset, group=group, seed=seed, time_budget=budget,
                   max_passes=max_passes, min_gain=min_gain)[0]


def polish_blocks(in_edges: InEdges, perm: np.ndarray, block_size: int, *, seed: int = 0,
                  offset: int = 0) -> tuple[np.ndarray, int | None]:
    """One targeted sweep of the local search on ``perm``: never more tiles, a fixed amount of work.

    Returns (the permutation, its exact tile count on the grid at ``offset``, or None when the
    graph has no edge or a single node and nothing ran): the search keeps the count exact, so
    ``auto`` need not count again (~0.2 s at 16M edges)."""
    return _search(in_edges, perm, block_size, offset=offset, group=None, seed=seed, time_budget=math.inf,
                   max_passes=1, min_gain=0.0, matching=False)
