"""Splitting a reordered graph into contiguous, block-aligned node ranges, one per rank.

Graph parallelism keeps each rank's nodes contiguous in the working order, so that a rank's queries
and its own keys form exactly the same tiles as on one device: every boundary is a multiple of the
block size (the last one is the node count). The ranges are balanced by the work the kernel does,
the non-empty tiles of each query-block row, rather than by node count alone: a block row of a dense
region costs more than one of a sparse region.
"""
from __future__ import annotations

import math

import torch

from .._checks import check_block_size, check_edge_index, check_num_nodes

BALANCE_MODES = ("tiles", "edges", "nodes")


def check_world_size(world_size, name: str = "world_size") -> int:
    """A positive int (the number of ranks)."""
    if isinstance(world_size, bool) or not isinstance(world_size, int):
        raise TypeError(f"{name} must be a positive int, got {type(world_size).__name__}")
    if world_size < 1:
        raise ValueError(f"{name} must be a positive int, got {world_size}")
    return world_size


def check_boundaries(boundaries, num_nodes: int, block_size: int, name: str = "boundaries") -> tuple[int, ...]:
    """Checks rank boundaries: ints ``0 = b_0 <= b_1 <= ... <= b_W = num_nodes``, inner ones multiples
    of ``block_size`` (so that no tile is split between two ranks)."""
    if isinstance(boundaries, torch.Tensor):
        boundaries = boundaries.tolist()
    if not isinstance(boundaries, (tuple, list)) or len(boundaries) < 2:
        raise TypeError(f"{name} must be a sequence of at least two ints (0, ..., num_nodes), got {boundaries!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) for b in boundaries):
        raise TypeError(f"{name} must hold ints, got {boundaries!r}")
    if boundaries[0] != 0 or boundaries[-1] != num_nodes:
        raise ValueError(f"{name} must start at 0 and end at num_nodes={num_nodes}, got {tuple(boundaries)}")
    if any(a > b for a, b in zip(boundaries, boundaries[1:])):
        raise ValueError(f"{name} must be non-decreasing, got {tuple(boundaries)}")
    for b in boundaries[1:-1]:
        if b % block_size and b != num_nodes:
            raise ValueError(f"{name} must be multiples of block_size={block_size} (or num_nodes), "
                             f"got {tuple(boundaries)}")
    return tuple(int(b) for b in boundaries)


def block_costs(edge_index: torch.Tensor, num_nodes: int, block_size: int, balance: str = "tiles") -> torch.Tensor:
    """Work per query-block row (float64 [ceil(N / B)]): its non-empty B×B tiles, its distinct
    incoming edges, or its node count (``edge_index`` may then be None)."""
    num_blocks = math.ceil(num_nodes / block_size)
    if balance == "nodes":
        sizes = torch.full((num_blocks,), float(block_size), dtype=torch.float64)
        if num_blocks:
            sizes[-1] = num_nodes - (num_blocks - 1) * block_size
        return sizes
    # On the edges' device: at 10^8 edges a GPU sort takes milliseconds, a CPU one seconds.
    src, dst = edge_index[0], edge_index[1]
    if balance == "edges":
        keys = torch.unique(dst * max(num_nodes, 1) + src)
        counts = torch.bincount(keys // max(num_nodes, 1) // block_size, minlength=num_blocks)
    else:
        tiles = torch.unique((dst // block_size) * max(num_blocks, 1) + src // block_size)
        counts = torch.bincount(tiles // max(num_blocks, 1), minlength=num_blocks)
    return counts.double().cpu()


def partition_nodes(edge_index: torch.Tensor, num_nodes, world_size, *, block_size=64,
                    balance: str = "tiles") -> tuple[int, ...]:
    """Boundaries ``(b_0 = 0, b_1, ..., b_W = num_nodes)`` of ``world_size`` contiguous node ranges.

    Rank ``r`` owns nodes ``b_r <= i < b_{r+1}`` of the (already reordered) graph. Inner boundaries
    are multiples of ``block_size``, so the ranges are whole query-block rows; they are chosen so
    that each range holds about ``1 / world_size`` of the total cost, where ``balance`` picks the cost
    of a block row: ``"tiles"`` (non-empty tiles, what the kernel visits; the default), ``"edges"``
    or ``"nodes"``. A graph without edges is balanced by nodes. When there are fewer block rows than
    ranks, some ranges are empty; every function of this package accepts empty ranges.

    Cutting a graph reordered for locality (``graphattn.order``) into contiguous ranges keeps the
    halo, the keys a rank needs from the others, small: neighbours sit at nearby positions.
    """
    num_nodes = check_num_nodes(num_nodes)
    world_size = check_world_size(world_size)
    block_size = check_block_size(block_size)
    if balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}, got {balance!r}")
    edge_index, _ = check_edge_index(edge_index, num_nodes)
    costs = block_costs(edge_index, num_nodes, block_size, balance)
    return boundaries_from_costs(costs, num_nodes, world_size, block_size)


def boundaries_from_costs(costs: torch.Tensor, num_nodes: int, world_size: int, block_size: int) -> tuple[int, ...]:
    """Block-aligned boundaries giving each of ``world_size`` ranges about an equal share of
    ``costs`` (float64, one per block row); by nodes when every cost is zero."""
    num_blocks = math.ceil(num_nodes / block_size)
    if num_blocks and float(costs.sum()) == 0.0:
        costs = block_costs(None, num_nodes, block_size, "nodes")
    prefix = torch.zeros(costs.numel() + 1, dtype=torch.float64)
    prefix[1:] = torch.cumsum(costs, 0)
    total = float(prefix[-1])
    cuts = [0]
    for r in range(1, world_size):
        target = total * r / world_size
        j = int(torch.searchsorted(prefix, torch.tensor([target], dtype=torch.float64))[0])
        j = min(j, costs.numel())
        # Take whichever of the two neighbouring block boundaries lands closer to the target.
        if j > 0 and target - float(prefix[j - 1]) < float(prefix[j]) - target:
            j -= 1
        cuts.append(max(j, cuts[-1]))
    bounds = [min(c * block_size, num_nodes) for c in cuts] + [num_nodes]
    return tuple(bounds)
