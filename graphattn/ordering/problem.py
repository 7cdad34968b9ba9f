"""One graph's ordering inputs, with the derived structures built once and shared by all methods."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .adjacency import Adjacency
from .tiles import InEdges, inverse_of, tiles_per_block_row


class OrderingProblem:
    """Nodes 0..n-1 of one graph that will occupy global positions ``offset .. offset + n - 1``.

    ``pos`` is float64 [n, 2|3] or None; ``src``/``dst`` are int64 edge arrays (local ids) or None.
    """

    def __init__(self, num_nodes: int, block_size: int, *, offset: int = 0, pos=None, src=None,
                 dst=None, seed: int = 0):
        self.num_nodes = num_nodes
        self.block_size = block_size
        self.offset = offset
        self.pos = pos
        self.src = src
        self.dst = dst
        self.seed = seed

    @property
    def has_graph(self) -> bool:
        return self.src is not None

    @property
    def has_pos(self) -> bool:
        return self.pos is not None

    @cached_property
    def adjacency(self) -> Adjacency:
        return Adjacency(self.src, self.dst, self.num_nodes)

    @cached_property
    def in_edges(self) -> InEdges:
        return InEdges(self.src, self.dst, self.num_nodes)

    def node_blocks(self, perm: np.ndarray) -> np.ndarray:
        """Block id of each node under ``perm``, counted from this graph's first (maybe shared) block."""
        inverse = inverse_of(perm)
        return (inverse + self.offset) // self.block_size - self.offset // self.block_size

    def tiles(self, perm: np.ndarray) -> int:
        """Non-empty tiles among this graph's edges under ``perm`` (on the global block grid)."""
        if self.num_nodes == 0 or self.src is None or self.src.shape[0] == 0:
            return 0
        blocks = self.node_blocks(perm)
        return int(tiles_per_block_row(self.in_edges, blocks, int(blocks.max()) + 1).sum())
