"""Tile-count refinement: the C++ local search (csrc/refine.cpp) driven from Python.

It exchanges nodes between blocks while the exact number of non-empty tiles drops (or stays equal
while fewer edges cross blocks), so it never adds tiles and every block keeps exactly its size.
With a ``group`` (the graph id of each node in a batch) it only exchanges nodes of the same graph,
so each graph keeps its contiguous range.
"""
from __future__ import annotations

import numpy as np

from .graph_orders import native_module
from .tiles import InEdges

# A pass that removes less than this fraction of the tiles ends the search (refine=True).
MIN_PASS_GAIN = 0.002


def default_time_budget(num_nodes: int) -> float:
    """refine=True's time cap: 1 s + 11 s per million nodes.

    With auto's ~2-3 s, about 15 s at 1M nodes, leaving room under the 20 s target on a loaded
    machine; the last 3 s per million nodes of a longer cap removed only 0.2% of the tiles (1M
    volume: 13.90 tiles per row at a 9 s budget, 13.86 at 13 s, 13.84 at 15 s).
    """
    return 1.0 + 11.0 * num_nodes / 1e6


def refine_blocks(in_edges: InEdges, perm: np.ndarray, block_size: int, *, group: np.ndarray | None = None,
                  seed: int = 0, time_budget: float | None = None, max_passes: int = 100) -> np.ndarray:
    """A permutation with no more tiles than ``perm`` (x_new = x[perm]) after local search."""
    n = perm.shape[0]
    if n <= block_size or in_edges.num_edges == 0:
        return perm
    native = native_module()
    dst = in_edges.targets()
    budget = default_time_budget(n) if time_budget is None else float(time_budget)
    min_gain = MIN_PASS_GAIN if time_budget is None else 0.0
    refined, _before, _after, _passes, _seconds = native.refine_blocks(
        in_edges.src, dst, perm, block_size, None if group is None else np.ascontiguousarray(group, np.int64),
        seed, budget, max_passes, min_gain)
    return refined
