"""GraphParallelPlan: what one rank owns, which halo keys it receives and which rows it sends.

Computed once per graph and rank, reused by every layer and every step. A rank owns the contiguous
node range ``[start, end)`` of the reordered graph. Its attention is bipartite: its local queries
against the key columns ``[local nodes | halo nodes]``, where the halo nodes are the sources of its
incoming edges that other ranks own, in ascending global order. Ascending global order is also
owner order (ranges are contiguous and in rank order), which is exactly the order in which
``all_to_all_single`` concatenates what it receives, so the received rows need no permutation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_block_size, check_edge_index, check_num_nodes
from ..mask.block_mask import GraphBlockMask
from .partition import check_boundaries, check_world_size, partition_nodes


def _check_rank(rank, world_size: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"rank must be an int, got {type(rank).__name__}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return rank


def _owner(nodes: torch.Tensor, boundaries: tuple[int, ...]) -> torch.Tensor:
    """The rank owning each node: ``r`` with ``boundaries[r] <= node < boundaries[r + 1]``."""
    inner = torch.tensor(boundaries[1:-1], dtype=torch.int64, device=nodes.device)
    return torch.bucketize(nodes, inner, right=True)


@dataclass(eq=False)
class GraphParallelPlan:
    """One rank's share of a graph-parallel attention (see the module docstring).

    Attributes:
        rank, world_size: this rank and the number of ranks.
        num_nodes: node count of the whole graph.
        boundaries: ``(0, b_1, ..., num_nodes)``; this rank owns ``[boundaries[rank], boundaries[rank+1])``.
        halo_nodes: int64 ``[num_halo]`` global ids of the keys received from other ranks, ascending.
        recv_counts: halo rows received from each rank (``recv_counts[rank] == 0``).
        send_index: int64 ``[sum(send_counts)]`` local row indices sent to the other ranks, grouped by
            destination rank in rank order, ascending global order within a group.
        send_counts: rows sent to each rank.
        mask: the local :class:`GraphBlockMask` of shape ``(num_local, num_local + num_halo)``;
            columns ``[0, num_local)`` are this rank's nodes, the rest the halo in ``halo_nodes`` order.
    """

    rank: int
    world_size: int
    num_nodes: int
    boundaries: tuple[int, ...]
    halo_nodes: torch.Tensor
    recv_counts: tuple[int, ...]
    send_index: torch.Tensor
    send_counts: tuple[int, ...]
    mask: GraphBlockMask

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edge_index(cls, edge_index: torch.Tensor, num_nodes, *, rank: int, world_size: int,
                        block_size=64, boundaries=None, balance: str = "tiles") -> "GraphParallelPlan":
        """The plan of ``rank`` from the whole (reordered) graph, with no communication.

        Every rank calls it with the same ``edge_index`` and gets its own share; the ranks agree on
        what is sent and received because they compute it from the same edges. ``boundaries``
        defaults to :func:`partition_nodes` with ``balance``. Use :meth:`from_local_edges` when no
        rank can hold the whole graph.
        """
        num_nodes = check_num_nodes(num_nodes)
        world_size = check_world_size(world_size)
        rank = _check_rank(rank, world_size)
        block_size = check_block_size(block_size)
        edge_index, _ = check_edge_index(edge_index, num_nodes)
        if boundaries is None:
            boundaries = partition_nodes(edge_index, num_nodes, world_size, block_size=block_size, balance=balance)
        boundaries = check_boundaries(boundaries, num_nodes, block_size)
        if len(boundaries) != world_size + 1:
            raise ValueError(f"boundaries must hold world_size + 1 = {world_size + 1} values, got {len(boundaries)}")
        # The mask is a set: duplicate edges count once (also for what is sent).
        keys = torch.unique(edge_index[1] * max(num_nodes, 1) + edge_index[0])
        dst = keys // max(num_nodes, 1)
        src = keys - dst * max(num_nodes, 1)
        start, end = boundaries[rank], boundaries[rank + 1]
        src_owner, dst_owner = _owner(src, boundaries), _owner(dst, boundaries)

        into_rank = dst_owner == rank
        plan_edges = torch.stack([src[into_rank], dst[into_rank]])

        # What this rank sends: each of its sources once per other rank that has an edge from it.
        outgoing = (src_owner == rank) & (dst_owner != rank)
        send_keys = torch.unique(dst_owner[outgoing] * max(num_nodes, 1) + src[outgoing])
        send_to = send_keys // max(num_nodes, 1)
        send_index = send_keys - send_to * max(num_nodes, 1) - start
        send_counts = tuple(int(c) for c in torch.bincount(send_to, minlength=world_size).tolist())
        return cls._from_incoming(plan_edges, num_nodes, rank, world_size, boundaries, block_size,
                                  send_index, send_counts)

    @classmethod
    def from_local_edges(cls, local_edge_index: torch.Tensor, num_nodes, boundaries, *, rank: int,
                         world_size: int, block_size=64, group=None) -> "GraphParallelPlan":
        """The plan of ``rank`` from only the edges into its own nodes (global ids), for graphs too
        large for one rank to hold.

        A collective: every rank of ``group`` must call it. Each rank finds its halo from its own
        incoming edges, then the ranks tell each other which rows they need (two
        ``all_to_all_single`` calls: the counts, then the ids). ``boundaries`` must be the same on
        every rank (from :func:`partition_nodes` on one rank, broadcast, or computed from a
        partition known in advance).
        """
        import torch.distributed as dist

        num_nodes = check_num_nodes(num_nodes)
        world_size = check_world_size(world_size)
        rank = _check_rank(rank, world_size)
        block_size = check_block_size(block_size)
        boundaries = check_boundaries(boundaries, num_nodes, block_size)
        if len(boundaries) != world_size + 1:
            raise ValueError(f"boundaries must hold world_size + 1 = {world_size + 1} values, got {len(boundaries)}")
        local_edge_index, _ = check_edge_index(local_edge_index, num_nodes, name="local_edge_index")
        start, end = boundaries[rank], boundaries[rank + 1]
        dst = local_edge_index[1]
        if dst.numel() and (int(dst.min()) < start or int(dst.max()) >= end):
            raise ValueError(f"local_edge_index must only hold edges into this rank's nodes [{start}, {end}), "
                             f"got targets in [{int(dst.min())}, {int(dst.max())}]")
        check_group(group, rank, world_size)
        device = _comm_device(local_edge_index.device, group)
        # Plans built from different boundaries would exchange the wrong rows without any error:
        # compare them across ranks first (every rank sees the same minimum and maximum, so every
        # rank raises together).
        agreed = torch.tensor((num_nodes, *boundaries), dtype=torch.int64, device=device)
        lowest, highest = agreed.clone(), agreed.clone()
        dist.all_reduce(lowest, op=dist.ReduceOp.MIN, group=group)
        dist.all_reduce(highest, op=dist.ReduceOp.MAX, group=group)
        if not torch.equal(lowest, highest):
            raise ValueError(f"num_nodes and boundaries must be the same on every rank; this rank has "
                             f"num_nodes={num_nodes}, boundaries={boundaries}, and they differ across ranks")
        plan = cls._from_incoming(local_edge_index, num_nodes, rank, world_size, boundaries, block_size,
                                  torch.empty(0, dtype=torch.int64), (0,) * world_size)
        recv_counts = torch.tensor(plan.recv_counts, dtype=torch.int64, device=device)
        send_counts = torch.empty_like(recv_counts)
        dist.all_to_all_single(send_counts, recv_counts, group=group)
        send_counts = tuple(int(c) for c in send_counts.tolist())
        requested = torch.empty(sum(send_counts), dtype=torch.int64, device=device)
        dist.all_to_all_single(requested, plan.halo_nodes.to(device), list(send_counts), list(plan.recv_counts),
                               group=group)
        plan.send_index = (requested - start).to(local_edge_index.device)
        plan.send_counts = send_counts
        return plan

    @classmethod
    def _from_incoming(cls, edges: torch.Tensor, num_nodes: int, rank: int, world_size: int,
                       boundaries: tuple[int, ...], block_size: int, send_index: torch.Tensor,
                       send_counts: tuple[int, ...]) -> "GraphParallelPlan":
        """Halo and local mask from the edges into this rank's nodes (global ids)."""
        start, end = boundaries[rank], boundaries[rank + 1]
        num_local = end - start
        src, dst = edges[0], edges[1]
        is_local = (src >= start) & (src < end)
        halo_nodes = torch.unique(src[~is_local])                    # ascending = owner order
        recv_counts = tuple(int(c) for c in torch.bincount(
            _owner(halo_nodes, boundaries), minlength=world_size).tolist())
        column = torch.where(is_local, src - start, num_local + torch.searchsorted(halo_nodes, src))
        local_edges = torch.stack([column, dst - start])
        mask = GraphBlockMask.from_edge_index(local_edges, (num_local, num_local + halo_nodes.numel()),
                                              block_size=block_size)
        return cls(rank=rank, world_size=world_size, num_nodes=num_nodes, boundaries=boundaries,
                   halo_nodes=halo_nodes, recv_counts=recv_counts, send_index=send_index.to(edges.device),
                   send_counts=tuple(send_counts), mask=mask)

    # ------------------------------------------------------------------ properties
    @property
    def start(self) -> int:
        """First global node id owned by this rank."""
        return self.boundaries[self.rank]

    @property
    def end(self) -> int:
        """One past the last global node id owned by this rank."""
        return self.boundaries[self.rank + 1]

    @property
    def num_local(self) -> int:
        """Nodes owned by this rank (its queries and its own keys)."""
        return self.end - self.start

    @property
    def num_halo(self) -> int:
        """Key/value rows this rank receives from the others per exchange."""
        return self.halo_nodes.numel()

    @property
    def num_send(self) -> int:
        """Key/value rows this rank sends to the others per exchange."""
        return self.send_index.numel()

    @property
    def halo_fraction(self) -> float:
        """Received halo rows over owned rows: the exchange's share of this rank's keys and values."""
        return self.num_halo / self.num_local if self.num_local else 0.0

    @property
    def device(self) -> torch.device:
        """Where the plan's index tensors and mask live (must be q's device)."""
        return self.mask.device

    def halo_bytes(self, row_bytes: int) -> int:
        """Bytes this rank receives per exchange (forward) when one row of keys and values takes
        ``row_bytes`` bytes; the backward sends the same amount of gradients back."""
        return self.num_halo * int(row_bytes)

    def local_slice(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a tensor over all nodes (dim 0), e.g. features of the whole graph."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor with one row per node, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[0] != self.num_nodes:
            raise ValueError(f"x must have num_nodes={self.num_nodes} rows (dim 0), got shape {tuple(x.shape)}")
        return x[self.start:self.end]

    def to(self, device) -> "GraphParallelPlan":
        """The plan with its index tensors and mask on ``device`` (the device of q, k and v)."""
        device = torch.device(device)
        return GraphParallelPlan(rank=self.rank, world_size=self.world_size, num_nodes=self.num_nodes,
                                 boundaries=self.boundaries, halo_nodes=self.halo_nodes.to(device),
                                 recv_counts=self.recv_counts, send_index=self.send_index.to(device),
                                 send_counts=self.send_counts, mask=self.mask.to(device))

    def __repr__(self) -> str:
        return (f"GraphParallelPlan(rank={self.rank}/{self.world_size}, nodes=[{self.start}, {self.end}) of "
                f"{self.num_nodes}, halo={self.num_halo} ({self.halo_fraction:.2%} of local), "
                f"send={self.num_send}, local_tiles={self.mask.num_tiles}, device={self.device})")


def check_group(group, rank: int, world_size: int) -> None:
    """Raises unless torch.distributed is initialised and ``group`` matches the plan's rank and size."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("graph-parallel attention needs torch.distributed: call "
                           "torch.distributed.init_process_group() first (torchrun sets up the environment)")
    group_size, group_rank = dist.get_world_size(group), dist.get_rank(group)
    if (group_rank, group_size) != (rank, world_size):
        raise ValueError(f"plan is for rank {rank} of {world_size}, but this process is rank {group_rank} "
                         f"of a group of {group_size}; build the plan with this process's rank and world size")


def _comm_device(tensor_device: torch.device, group) -> torch.device:
    """Where collective buffers must live: the current CUDA device for NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if tensor_device.type == "cuda" else tensor_device
