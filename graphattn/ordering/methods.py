"""The registry of ordering methods: name → function(problem) → local permutation (int64 [n])."""
from __future__ import annotations

import numpy as np

from .curves import hilbert_order, morton_order
from .graph_orders import band_orders, min_degree_order, rcm_order
from .kd import kd_order
from .partition import multilevel_order, partition_order
from .problem import OrderingProblem


def _identity(problem: OrderingProblem) -> np.ndarray:
    return np.arange(problem.num_nodes, dtype=np.int64)


def _random(problem: OrderingProblem) -> np.ndarray:
    # Graphs of a batch differ by offset so that equal-sized graphs are not shuffled alike.
    return np.random.default_rng([problem.seed, problem.offset]).permutation(problem.num_nodes).astype(np.int64)


def _bands(problem: OrderingProblem) -> np.ndarray:
    best, best_tiles = None, None
    for perm in band_orders(problem.adjacency):
        tiles = problem.tiles(perm)
        if best is None or tiles < best_tiles:
            best, best_tiles = perm, tiles
    return best


ORDERERS = {
    "identity": _identity,
    "random": _random,
    "morton": lambda p: morton_order(p.pos),
    "hilbert": lambda p: hilbert_order(p.pos),
    "rcm": lambda p: rcm_order(p.adjacency),
    "bands": _bands,
    "min_degree": lambda p: min_degree_order(p.adjacency),
    "kd": lambda p: kd_order(p.pos, p.block_size, p.offset, p.seed),
    "partition": lambda p: partition_order(p.adjacency, p.block_size, p.offset),
    "multilevel": lambda p: multilevel_order(p.adjacency, p.block_size, p.offset, p.seed),
}
NEEDS_POS = frozenset({"morton", "hilbert", "kd"})
NEEDS_GRAPH = frozenset({"rcm", "bands", "min_degree", "partition", "multilevel", "polish"})
