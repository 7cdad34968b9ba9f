"""Graph-parallel attention: each rank attends its own queries over its own and its halo keys."""
from __future__ import annotations

import torch

from .halo import exchange_halo
from .plan import GraphParallelPlan


def _local_attention(q, k, v, mask, scale, backend, precision):
    """graphattn's attention op on one rank's bipartite mask."""
    if backend == "reference":
        from ..ops.reference import reference_attention
        return reference_attention(q, k, v, mask, scale)
    try:
        from ..ops.attention import graph_attention
    except ImportError:
        # The kernel entry point is not in this build: its CPU path is the reference anyway.
        if backend == "auto" and not q.is_cuda:
            from ..ops.reference import reference_attention
            return reference_attention(q, k, v, mask, scale)
        raise
    return graph_attention(q, k, v, mask, scale=scale, backend=backend, precision=precision)


def graph_parallel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: GraphParallelPlan, *,
                             scale: float | None = None, backend: str = "auto", precision: str = "ieee",
                             group=None) -> torch.Tensor:
    """Graph attention over a graph split across ranks; equals one device's result for this rank's rows.

    Args:
        q, k, v: this rank's rows, ``[plan.num_local, H, D]`` (``v`` ``[plan.num_local, H, Dv]``):
            rows ``plan.start : plan.end`` of the whole graph's queries, keys and values.
        plan: this rank's :class:`GraphParallelPlan` (on the device of ``q``; see ``plan.to``).
        scale: multiplies the scores; ``1/sqrt(D)`` when None.
        backend, precision: passed to :func:`graphattn.ops.graph_attention` (``backend="reference"``
            forces the pure-PyTorch reference).
        group: the torch.distributed process group (default: the world).

    Returns:
        ``[plan.num_local, H, Dv]``, rows ``plan.start : plan.end`` of the single-device output.

    Keys and values of the halo nodes are fetched from their owners in one ``all_to_all_single``
    (k and v together) and their gradients returned in the backward. A collective: every rank of
    ``group`` must call it, and call ``backward`` on what depends on it.
    """
    if not isinstance(plan, GraphParallelPlan):
        raise TypeError(f"plan must be a GraphParallelPlan, got {type(plan).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape [num_local, H, D], got {type(t).__name__}")
        if t.dim() != 3 or t.shape[0] != plan.num_local:
            raise ValueError(f"{name} must have shape [plan.num_local={plan.num_local}, H, D] (this rank's rows "
                             f"{plan.start}:{plan.end}), got shape {tuple(t.shape)}")
    if k.shape[:2] != v.shape[:2] or k.dtype != v.dtype or k.device != v.device:
        raise ValueError(f"k and v must share rows, heads, dtype and device, got k {tuple(k.shape)} {k.dtype} "
                         f"{k.device} and v {tuple(v.shape)} {v.dtype} {v.device}")
    if plan.mask.device != q.device:
        raise ValueError(f"plan is on {plan.mask.device} but q is on {q.device}; move it with plan.to(q.device)")
    # Keys and values travel together: one collective each way instead of two.
    k_halo, v_halo = exchange_halo((k, v), plan, group)
    k_all = torch.cat([k, k_halo])
    v_all = torch.cat([v, v_halo])
    return _local_attention(q, k_all, v_all, plan.mask, scale, backend, precision)
