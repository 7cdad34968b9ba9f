"""One graph's ordering inputs, with the derived structures built once and shared by all methods."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .adjacency import Adjacency
from .tiles import InEdges, packed_tiles_of_perm, tiles_of_perm


class OrderingProblem:
    """Nodes 0..n-1 of one graph that will occupy global positions ``offset .. offset + n - 1``.

    ``pos`` is float64 [n, 2|3] or None; ``in_edges`` the graph's edges grouped by target (local
    ids), or None.
    """

    def __init__(self, num_nodes: int, block_size: int, *, offset: int = 0, pos=None,
                 in_edges: InEdges | None = None, seed: int = 0):
        self.num_nodes = num_nodes
        self.block_size = block_size
        self.offset = offset
        self.pos = pos
        self.in_edges = in_edges
        self.seed = seed

    @property
    def has_graph(self) -> bool:
        return self.in_edges is not None

    @property
    def has_pos(self) -> bool:
        return self.pos is not None

    @property
    def num_edges(self) -> int:
        return self.in_edges.num_edges if self.in_edges is not None else 0

    @cached_property
    def adjacency(self) -> Adjacency:
        return Adjacency(self.in_edges)

    def tiles(self, perm: np.ndarray) -> int:
        """Non-empty tiles among this graph's edges under ``perm`` (on the global block grid)."""
        return tiles_of_perm(self.in_edges, perm, self.block_size, self.offset)

    @cached_property
    def out_edges(self) -> InEdges:
        """The edges grouped by source, built once (the packed count's dK/dV side needs them)."""
        return self.in_edges.transposed()

    def packed_tiles(self, perm: np.ndarray) -> int:
        """The GPU kernel's packed tiles of this graph under ``perm`` (``objective="packed"``)."""
        return packed_tiles_of_perm(self.in_edges, self.out_edges, perm, self.block_size, self.offset)

    def count(self, perm: np.ndarray, objective: str) -> int:
        """What ``objective`` ("tiles" or "packed") counts for ``perm``."""
        return self.tiles(perm) if objective == "tiles" else self.packed_tiles(perm)
