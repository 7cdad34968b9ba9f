"""The pure-PyTorch definition of graph attention (GUIDE §2): gather, segment softmax, scatter.

It defines the numbers every other path must reproduce, runs on any device PyTorch runs on, in any
floating dtype, with autograd, and is the CPU path for users without a GPU. It favours clarity over
speed: it materialises one score per (edge, head), O(E·H·D) memory.
"""
from __future__ import annotations

import math
from numbers import Real

import torch

from .._checks import _describe, check_edge_index

# Half types are computed in float32 (their exp and sums lose too much otherwise); every other
# floating dtype, float64 included, is computed in itself.
_UPCAST = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _check_qkv(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape [N, H, D], got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {_describe(t)}")
        if t.dim() != 3:
            raise ValueError(f"{name} must have shape [N, H, D] (nodes, heads, head dim), got {_describe(t)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}")
    if k.shape[0] != v.shape[0]:
        raise ValueError(f"k and v must have the same number of nodes, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    if not (q.shape[1] == k.shape[1] == v.shape[1]):
        raise ValueError(f"q, k and v must have the same number of heads (dim 1), got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"q and k must have the same head dim (dim 2), got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if q.shape[2] == 0:
        raise ValueError(f"q and k must have a head dim of at least 1, got q {tuple(q.shape)}")


def _check_scale(scale, head_dim: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(scale, bool) or not isinstance(scale, Real):
        raise TypeError(f"scale must be a real number or None, got {type(scale).__name__}")
    if not math.isfinite(float(scale)):
        raise ValueError(f"scale must be finite, got {scale}")
    return float(scale)


def _edges_of(edge_index_or_mask, num_q: int, num_kv: int, device: torch.device) -> torch.Tensor:
    """Distinct (source, target) edges as int64 [2, E] on ``device``, checked against the node counts."""
    from ..mask.block_mask import GraphBlockMask

    if isinstance(edge_index_or_mask, GraphBlockMask):
        mask = edge_index_or_mask
        mask.check_compatible(num_q, num_kv, name="edge_index_or_mask")
        if mask.device != device:
            raise ValueError(f"edge_index_or_mask is on {mask.device} but q is on {device}; move it with .to()")
        return mask.edge_index()  # already distinct
    edge_index, _ = check_edge_index(edge_index_or_mask, num_q, name="edge_index_or_mask",
                                     num_src_nodes=num_kv)
    if edge_index.device != device:
        raise ValueError(f"edge_index_or_mask is on {edge_index.device} but q is on {device}")
    if edge_index.shape[1] == 0:
        return edge_index
    # The mask is a set: duplicate edges count once.
    keys = torch.unique(edge_index[1] * max(num_kv, 1) + edge_index[0])
    dst = keys // max(num_kv, 1)
    return torch.stack([keys - dst * max(num_kv, 1), dst])


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, edge_index_or_mask,
                        scale: float | None = None, *, return_lse: bool = False):
    """Graph attention by its definition: ``out[i] = sum_j softmax_j(scale * q_i·k_j) v_j``.

    Args:
        q: queries ``[Nq, H, D]``, one per target node.
        k: keys ``[Nkv, H, D]``, one per source node.
        v: values ``[Nkv, H, Dv]``.
        edge_index_or_mask: a PyG ``edge_index`` ``[2, E]`` (row 0 the source j, a key; row 1 the
            target i, a query) or a :class:`graphattn.GraphBlockMask` of shape ``(Nq, Nkv)``.
            Duplicate edges count once; no self-loops are added.
        scale: multiplies the scores; ``1/sqrt(D)`` when None.
        return_lse: also return the log-sum-exp of the scaled scores per (node, head).

    Returns:
        ``out`` ``[Nq, H, Dv]`` in the dtype of ``q``; with ``return_lse`` the pair ``(out, lse)``,
        ``lse`` ``[Nq, H]`` in the compute dtype (float32 for float16/bfloat16 inputs, else the
        input dtype), ``-inf`` for nodes without incoming edges.

    Softmax subtracts each row's maximum (the maximum is detached: softmax does not depend on it,
    so its gradient is exactly zero). A node with no incoming edge outputs exactly 0 and receives
    zero gradients, never NaN. Half-precision inputs are computed in float32 and rounded once at the
    end; float32 and float64 are computed in themselves. Autograd flows to q, k and v.
    """
    _check_qkv(q, k, v)
    num_q, heads, head_dim = q.shape
    num_kv = k.shape[0]
    scale = _check_scale(scale, head_dim)
    src, dst = _edges_of(edge_index_or_mask, num_q, num_kv, q.device)

    compute = _UPCAST.get(q.dtype, q.dtype)
    qc, kc, vc = q.to(compute), k.to(compute), v.to(compute)

    # One dot product per (edge, head); einsum runs them as a batched matmul, several times faster
    # on the CPU than an elementwise product and a sum over the same gathered rows.
    scores = torch.einsum("ehd,ehd->eh", qc.index_select(0, dst), kc.index_select(0, src)) * scale  # [E, H]
    row_max = torch.full((num_q, heads), -math.inf, dtype=compute, device=q.device)
    row_max = row_max.scatter_reduce(0, dst[:, None].expand(-1, heads), scores.detach(),
                                     reduce="amax", include_self=True)
    weights = torch.exp(scores - row_max.index_select(0, dst))                     # in (0, 1]
    denom = torch.zeros(num_q, heads, dtype=compute, device=q.device).index_add(0, dst, weights)
    # Every edge's row has denom >= 1 (its maximum contributes exp(0)), so this never divides by 0;
    # rows without edges never appear here and stay exactly 0 below.
    probs = weights / denom.index_select(0, dst)
    out = torch.zeros(num_q, heads, v.shape[2], dtype=compute, device=q.device)
    out = out.index_add(0, dst, probs[..., None] * vc.index_select(0, src)).to(q.dtype)
    if not return_lse:
        return out
    has_edges = denom > 0
    lse = torch.where(has_edges, row_max + torch.log(torch.where(has_edges, denom, torch.ones_like(denom))),
                      torch.full_like(denom, -math.inf))
    return out, lse
