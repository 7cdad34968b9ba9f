"""The halo exchange: rows a rank's tiles need from other ranks, forward and backward.

Forward, each rank sends the rows other ranks need (``plan.send_index``) and receives its halo in
one ``all_to_all_single``. Backward, the gradients of the received rows travel back the same way in
reverse and are summed into the rows they came from (a row sent to two ranks gets both gradients).
A custom autograd.Function ties the two together so that autograd drives the backward exchange.

Every rank must take part in every exchange, forward and backward, in the same order (they are
collectives): run the same layers and call ``backward`` on every rank, even one with no halo.
"""
from __future__ import annotations

import math

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
    """Halo rows of one or more tensors (same rows, same dtype) in one all_to_all each way.

    Only the rows being sent are gathered and packed side by side; the local tensors themselves are
    never copied, which matters when they hold millions of rows and the halo a few percent.
    """

    @staticmethod
    def forward(ctx, send_index: torch.Tensor, send_counts, recv_counts, group, *local_tensors):
        ctx.save_for_backward(send_index)
        ctx.num_local = local_tensors[0].shape[0]
        ctx.row_shapes = [tuple(t.shape[1:]) for t in local_tensors]
        ctx.counts = (send_counts, recv_counts)
        ctx.group = group
        num_send = send_index.numel()
        packed = torch.cat([t.index_select(0, send_index).reshape(num_send, math.prod(shape))
                            for t, shape in zip(local_tensors, ctx.row_shapes)], dim=1)
        received = _all_to_all(packed, recv_counts, send_counts, group)
        return tuple(part.reshape((received.shape[0],) + shape).contiguous()
                     for part, shape in zip(_split_columns(received, ctx.row_shapes), ctx.row_shapes))

    @staticmethod
    def backward(ctx, *grad_halos):
        (send_index,) = ctx.saved_tensors
        send_counts, recv_counts = ctx.counts
        num_halo = grad_halos[0].shape[0]
        packed = torch.cat([g.reshape(num_halo, math.prod(shape)) for g, shape in zip(grad_halos, ctx.row_shapes)],
                           dim=1)
        grad_sent = _all_to_all(packed, send_counts, recv_counts, ctx.group)
        grads_local = []
        for part, shape in zip(_split_columns(grad_sent, ctx.row_shapes), ctx.row_shapes):
            grad = part.new_zeros((ctx.num_local,) + shape)
            # A row sent to several ranks gets the sum of their gradients.
            grad.index_add_(0, send_index, part.reshape((part.shape[0],) + shape))
            grads_local.append(grad)
        return (None, None, None, None, *grads_local)


def _split_columns(packed: torch.Tensor, row_shapes) -> list[torch.Tensor]:
    widths = [math.prod(shape) for shape in row_shapes]
    return list(torch.split(packed, widths, dim=1))


def exchange_halo(local_rows, plan: GraphParallelPlan, group=None):
    """The halo rows ``[plan.num_halo, ...]`` of a tensor whose rows are this rank's nodes.

    ``local_rows`` is a tensor with ``plan.num_local`` rows (dim 0) and any trailing shape (the same
    on every rank), or a tuple or list of such tensors of one dtype and device (e.g. keys and
    values), which then travel together in one collective; the result has the same structure. Row
    ``h`` of a result is global node ``plan.halo_nodes[h]``'s row, fetched from its owner.
    Differentiable: gradients of the results flow back to the owners' rows. A collective: every rank
    of ``group`` must call it.
    """
    if not isinstance(plan, GraphParallelPlan):
        raise TypeError(f"plan must be a GraphParallelPlan, got {type(plan).__name__}")
    single = isinstance(local_rows, torch.Tensor)
    tensors = (local_rows,) if single else local_rows
    if not isinstance(tensors, (tuple, list)) or not tensors:
        raise TypeError(f"local_rows must be a torch.Tensor or a non-empty tuple/list of tensors, "
                        f"got {type(local_rows).__name__}")
    for i, t in enumerate(tensors):
        name = "local_rows" if single else f"local_rows[{i}]"
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0 or t.shape[0] != plan.num_local:
            raise ValueError(f"{name} must have plan.num_local={plan.num_local} rows (dim 0), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype != tensors[0].dtype or t.device != tensors[0].device:
            raise ValueError(f"{name} must share dtype and device with local_rows[0], got {t.dtype} on "
                             f"{t.device} and {tensors[0].dtype} on {tensors[0].device}")
    check_group(group, plan.rank, plan.world_size)
    send_index = plan.send_index.to(tensors[0].device)
    halos = _HaloExchange.apply(send_index, plan.send_counts, plan.recv_counts, group, *tensors)
    return halos[0] if single else type(local_rows)(halos) if isinstance(local_rows, list) else tuple(halos)


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
