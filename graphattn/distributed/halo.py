"""The halo exchange: rows a rank's tiles need from other ranks, forward and backward.

Forward, each rank sends the rows other ranks need (``plan.send_index``) and receives its halo in
one ``all_to_all_single``. Backward, the gradients of the received rows travel back the same way in
reverse and are summed into the rows they came from (a row sent to two ranks gets both gradients).
A custom autograd.Function ties the two together so that autograd drives the backward exchange.

Every rank must take part in every exchange, forward and backward, in the same order (they are
collectives): run the same layers and call ``backward`` on every rank, even one with no halo.
"""
from __future__ import annotations

import torch

from .plan import GraphParallelPlan, _comm_device, check_group


def _all_to_all(rows: torch.Tensor, out_counts, in_counts, group) -> torch.Tensor:
    """``all_to_all_single`` along dim 0 with uneven splits, staged through the collective's device
    (the CPU for gloo) when the rows live elsewhere."""
    import torch.distributed as dist

    device = _comm_device(rows.device, group)
    send = rows.to(device).contiguous()
    recv = send.new_empty((sum(out_counts),) + tuple(rows.shape[1:]))
    dist.all_to_all_single(recv, send, list(out_counts), list(in_counts), group=group)
    return recv.to(rows.device)


class _HaloExchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local_rows: torch.Tensor, send_index: torch.Tensor, send_counts, recv_counts, group):
        ctx.save_for_backward(send_index)
        ctx.num_local = local_rows.shape[0]
        ctx.counts = (send_counts, recv_counts)
        ctx.group = group
        return _all_to_all(local_rows.index_select(0, send_index), recv_counts, send_counts, group)

    @staticmethod
    def backward(ctx, grad_halo: torch.Tensor):
        (send_index,) = ctx.saved_tensors
        send_counts, recv_counts = ctx.counts
        grad_sent = _all_to_all(grad_halo, send_counts, recv_counts, ctx.group)
        grad_local = grad_halo.new_zeros((ctx.num_local,) + tuple(grad_halo.shape[1:]))
        grad_local.index_add_(0, send_index, grad_sent)
        return grad_local, None, None, None, None


def exchange_halo(local_rows: torch.Tensor, plan: GraphParallelPlan, group=None) -> torch.Tensor:
    """The halo rows ``[plan.num_halo, ...]`` of a tensor whose rows are this rank's nodes.

    ``local_rows`` has ``plan.num_local`` rows (dim 0) and any trailing shape (the same on every
    rank). The result's row ``h`` is global node ``plan.halo_nodes[h]``'s row, fetched from its
    owner. Differentiable: gradients of the result flow back to the owners' rows. A collective:
    every rank of ``group`` must call it.
    """
    if not isinstance(local_rows, torch.Tensor):
        raise TypeError(f"local_rows must be a torch.Tensor, got {type(local_rows).__name__}")
    if not isinstance(plan, GraphParallelPlan):
        raise TypeError(f"plan must be a GraphParallelPlan, got {type(plan).__name__}")
    if local_rows.dim() == 0 or local_rows.shape[0] != plan.num_local:
        raise ValueError(f"local_rows must have plan.num_local={plan.num_local} rows (dim 0), "
                         f"got shape {tuple(local_rows.shape)}")
    check_group(group, plan.rank, plan.world_size)
    send_index = plan.send_index.to(local_rows.device)
    return _HaloExchange.apply(local_rows, send_index, plan.send_counts, plan.recv_counts, group)


def gather_nodes(local_rows: torch.Tensor, plan: GraphParallelPlan, group=None) -> torch.Tensor:
    """All nodes' rows ``[plan.num_nodes, ...]`` on every rank, from each rank's ``local_rows``.

    For evaluation and tests (it moves the whole tensor; training never needs it). Not
    differentiable. Ranges may differ in size, so rows are padded to the largest range for
    ``all_gather`` and the padding dropped.
    """
    import torch.distributed as dist

    if not isinstance(local_rows, torch.Tensor):
        raise TypeError(f"local_rows must be a torch.Tensor, got {type(local_rows).__name__}")
    if local_rows.dim() == 0 or local_rows.shape[0] != plan.num_local:
        raise ValueError(f"local_rows must have plan.num_local={plan.num_local} rows (dim 0), "
                         f"got shape {tuple(local_rows.shape)}")
    check_group(group, plan.rank, plan.world_size)
    sizes = [b - a for a, b in zip(plan.boundaries, plan.boundaries[1:])]
    longest = max(sizes)
    device = _comm_device(local_rows.device, group)
    padded = local_rows.detach().to(device).new_zeros((longest,) + tuple(local_rows.shape[1:]))
    padded[:plan.num_local] = local_rows.detach().to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(local_rows.device)
