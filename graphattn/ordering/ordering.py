"""``Ordering``: a node permutation and the helpers that move data and edges into and out of it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import check_edge_index


@dataclass(frozen=True, eq=False)
class Ordering:
    """A reordering of a graph's nodes.

    Convention (GUIDE §2): ``x_new = x[perm]`` and ``x = x_new[inverse]``; an edge ``(j, i)``
    becomes ``(inverse[j], inverse[i])``.

    Attributes:
        perm: int64 [N], the node placed at each new position.
        inverse: int64 [N], the new position of each node.
        method: the concrete method that produced it (``auto`` resolves to the winning candidate;
            with a ``batch`` whose graphs chose differently, the distinct choices joined by ``+``).
        block_size: the tile size B the order was built for.
        tiles: non-empty B×B tiles of the reordered adjacency when an ``edge_index`` was given.
        refined: whether the tile-count local search ran on it.
        candidates: for ``auto``, what its objective counts (tiles or packed tiles) for every
            candidate it measured.
        objective: what ``auto`` minimised, ``"tiles"`` or ``"packed"``.
        packed_tiles: with ``objective="packed"`` and a graph, the GPU kernel's packed tiles of
            the reordered graph (``count_packed_tiles``); None otherwise.
    """

    perm: torch.Tensor
    inverse: torch.Tensor
    method: str
    block_size: int
    tiles: int | None = None
    refined: bool = False
    candidates: dict = field(default_factory=dict)
    objective: str = "tiles"
    packed_tiles: int | None = None

    @property
    def num_nodes(self) -> int:
        """Number of nodes N."""
        return int(self.perm.shape[0])

    @property
    def num_blocks(self) -> int:
        """Number of B-row blocks, ceil(N / B)."""
        return -(-self.num_nodes // self.block_size)

    @property
    def tiles_per_block_row(self) -> float | None:
        """Average non-empty tiles per block row (tiles / ceil(N / B)); None without a graph."""
        if self.tiles is None:
            return None
        return self.tiles / self.num_blocks if self.num_blocks else 0.0

    def _check_rows(self, x: torch.Tensor, dim: int, name: str) -> int:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError(f"{name} must have at least one dimension with {self.num_nodes} entries")
        dim = dim % x.dim() if -x.dim() <= dim < x.dim() else dim
        if not 0 <= dim < x.dim() or x.shape[dim] != self.num_nodes:
            raise ValueError(f"{name} must have {self.num_nodes} entries along dim {dim}, "
                             f"got shape {tuple(x.shape)}")
        return dim

    def permute(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Node data in the new order: ``x.index_select(dim, perm)``."""
        dim = self._check_rows(x, dim, "x")
        return x.index_select(dim, self.perm.to(x.device))

    def unpermute(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Node data back in the original order: ``x.index_select(dim, inverse)``."""
        dim = self._check_rows(x, dim, "x")
        return x.index_select(dim, self.inverse.to(x.device))

    def apply_to_edge_index(self, edge_index: torch.Tensor) -> torch.Tensor:
        """The edges renumbered into the new order: ``inverse[edge_index]`` (same edge order)."""
        edge_index, _ = check_edge_index(edge_index, self.num_nodes)
        return self.inverse.to(edge_index.device)[edge_index]

    def __repr__(self) -> str:
        parts = [f"method={self.method!r}", f"num_nodes={self.num_nodes}", f"block_size={self.block_size}"]
        if self.tiles is not None:
            parts.append(f"tiles={self.tiles} ({self.tiles_per_block_row:.2f} per block row)")
        if self.packed_tiles is not None:
            parts.append(f"packed_tiles={self.packed_tiles}")
        if self.refined:
            parts.append("refined=True")
        return f"Ordering({', '.join(parts)})"
