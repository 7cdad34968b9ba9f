"""Graphs that no rank holds whole: partition from edge shards, then move each edge to its owner.

At 10^8 nodes the edge list is tens of GB, more than one device should hold. Each rank then loads
an arbitrary shard of the (reordered) edges, and

1. :func:`partition_edge_shards` computes the same block-aligned, cost-balanced boundaries that
   :func:`partition_nodes` computes from the whole graph, exchanging only per-tile keys and one
   cost per block row;
2. :func:`redistribute_edges` sends every edge to the rank owning its target;
3. :meth:`GraphParallelPlan.from_local_edges` builds each rank's plan from its own edges.
"""
from __future__ import annotations

import math

import torch

from .._checks import check_block_size, check_edge_index, check_num_nodes
from .partition import BALANCE_MODES, block_costs, boundaries_from_costs, check_boundaries
from .plan import _comm_device, _owner


def _group_info(group) -> tuple[int, int]:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("this function needs torch.distributed: call torch.distributed.init_process_group() "
                           "first (torchrun sets up the environment)")
    return dist.get_rank(group), dist.get_world_size(group)


def _exchange_rows(rows: torch.Tensor, destination: torch.Tensor, world_size: int, group) -> torch.Tensor:
    """Sends each row of ``rows`` to rank ``destination[row]``; returns the rows this rank received
    (in source-rank order). Two ``all_to_all_single`` calls: the counts, then the rows."""
    import torch.distributed as dist

    device = _comm_device(rows.device, group)
    order = torch.argsort(destination, stable=True)
    send = rows[order].to(device).contiguous()
    send_counts = torch.bincount(destination, minlength=world_size).to(device)
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts, group=group)
    recv = send.new_empty((int(recv_counts.sum()),) + tuple(rows.shape[1:]))
    dist.all_to_all_single(recv, send, recv_counts.tolist(), send_counts.tolist(), group=group)
    return recv.to(rows.device)


def partition_edge_shards(edge_shard: torch.Tensor, num_nodes, *, block_size=64, balance: str = "tiles",
                          group=None) -> tuple[int, ...]:
    """The boundaries :func:`partition_nodes` would give for the union of every rank's shard.

    A collective. ``edge_shard`` is this rank's part of the reordered graph's edges (global ids,
    ``[2, E_rank]``); shards may overlap (an edge held twice counts once) and be of any size,
    empty included. Tile keys (or edge keys, for ``balance="edges"``) are sent to the rank in
    charge of their block row, counted there once each, and the per-row costs summed over the ranks,
    so every rank computes the same boundaries with no rank ever holding the whole graph.
    """
    import torch.distributed as dist

    rank, world_size = _group_info(group)
    num_nodes = check_num_nodes(num_nodes)
    block_size = check_block_size(block_size)
    if balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}, got {balance!r}")
    edge_shard, _ = check_edge_index(edge_shard, num_nodes, name="edge_shard")
    num_blocks = math.ceil(num_nodes / block_size)
    if balance == "nodes":
        costs = block_costs(None, num_nodes, block_size, "nodes")
        return boundaries_from_costs(costs, num_nodes, world_size, block_size)
    src, dst = edge_shard[0], edge_shard[1]
    if balance == "tiles":
        keys = torch.unique((dst // block_size) * max(num_blocks, 1) + src // block_size)
        rows = keys // max(num_blocks, 1)
    else:
        keys = torch.unique(dst * max(num_nodes, 1) + src)
        rows = keys // max(num_nodes, 1) // block_size
    # The rank in charge of a block row: contiguous runs of rows, so that the keys of one row meet.
    in_charge = torch.clamp(rows * world_size // max(num_blocks, 1), max=world_size - 1)
    received = torch.unique(_exchange_rows(keys, in_charge, world_size, group))
    received_rows = received // max(num_blocks, 1) if balance == "tiles" else received // max(num_nodes, 1) // block_size
    device = _comm_device(edge_shard.device, group)
    costs = torch.bincount(received_rows, minlength=num_blocks).to(device=device, dtype=torch.float64)
    dist.all_reduce(costs, group=group)
    return boundaries_from_costs(costs.cpu(), num_nodes, world_size, block_size)


def redistribute_edges(edge_shard: torch.Tensor, num_nodes, boundaries, *, block_size=64,
                       group=None) -> torch.Tensor:
    """This rank's incoming edges ``[2, E_local]`` (global ids, targets in its range), gathered from
    every rank's ``edge_shard``. A collective. Duplicates are kept (plans count an edge once)."""
    rank, world_size = _group_info(group)
    num_nodes = check_num_nodes(num_nodes)
    block_size = check_block_size(block_size)
    boundaries = check_boundaries(boundaries, num_nodes, block_size)
    if len(boundaries) != world_size + 1:
        raise ValueError(f"boundaries must hold world_size + 1 = {world_size + 1} values, got {len(boundaries)}")
    edge_shard, _ = check_edge_index(edge_shard, num_nodes, name="edge_shard")
    received = _exchange_rows(edge_shard.t(), _owner(edge_shard[1], boundaries), world_size, group)
    return received.t().contiguous()
