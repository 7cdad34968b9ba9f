"""Edge-list attention with the per-edge extras the tile kernel does not compute.

:class:`~graphattn.nn.GraphAttention` sends the plain case (no edge features, no attention dropout,
no attention weights asked for) to :func:`graphattn.ops.graph_attention`, which visits tiles. Three
TransformerConv features need a quantity per edge, and take this path instead:

- edge features (``edge_dim``): a per-edge term in the keys and the values;
- dropout on the attention probabilities in training (one random draw per edge and head);
- ``return_attention_weights`` (the probability of every edge).

Edge features use a low-rank form so that nothing of size ``E × H × C`` is built from them.
TransformerConv adds ``e_ij = W_e a_ij`` (``W_e`` the ``lin_edge`` weight ``[H·C, F]``, ``a_ij`` the
raw ``F`` edge features) to the key and the value of edge ``j → i``. Per head ``h``:

- score: ``q_ih · (k_jh + W_eh a_ij) = q_ih · k_jh + (W_ehᵀ q_ih) · a_ij``, so the queries are
  projected once per node to ``F`` channels and each edge pays ``F`` multiply-adds, not ``C``;
- value: ``Σ_j α_ijh (v_jh + W_eh a_ij) = Σ_j α_ijh v_jh + W_eh (Σ_j α_ijh a_ij)``, so the raw edge
  features are aggregated (``F`` channels per edge and head) and projected once per node.

Both identities are exact. The form is used when ``F < C``; otherwise the edge term is projected
per edge as TransformerConv does (it is then no larger than the keys themselves).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Half types are computed in float32, as in graphattn.ops.reference.
_UPCAST = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def segment_softmax(scores: torch.Tensor, dst: torch.Tensor, num_dst: int) -> torch.Tensor:
    """Softmax of ``scores`` [E, H] over the edges that share a target ``dst`` [E].

    The row maximum is detached (softmax does not depend on it). Targets without edges never
    appear, so nothing divides by zero.
    """
    heads = scores.shape[1]
    row_max = torch.full((num_dst, heads), -math.inf, dtype=scores.dtype, device=scores.device)
    row_max = row_max.scatter_reduce(0, dst[:, None].expand(-1, heads), scores.detach(),
                                     reduce="amax", include_self=True)
    weights = torch.exp(scores - row_max[dst])
    denom = torch.zeros(num_dst, heads, dtype=scores.dtype, device=scores.device).index_add(0, dst, weights)
    return weights / denom[dst]


def edge_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                   *, edge_attr: torch.Tensor | None = None, edge_weight: torch.Tensor | None = None,
                   scale: float | None = None, dropout: float = 0.0, training: bool = False):
    """Attention over the listed edges, with optional edge features and attention dropout.

    Args:
        q: queries ``[Nq, H, C]``; k, v: keys and values ``[Nkv, H, C]``.
        src, dst: int64 ``[E]`` source (key) and target (query) of every edge. Every listed edge is
            one message: callers remove duplicates first where the set semantics apply.
        edge_attr: raw edge features ``[E, F]``, used with ``edge_weight``.
        edge_weight: the ``lin_edge`` weight ``[H·C, F]`` (no bias, as in TransformerConv).
        scale: score scale, ``1/sqrt(C)`` when None.
        dropout, training: dropout on the attention probabilities, applied when ``training``.

    Returns:
        ``(out, alpha)``: ``out`` ``[Nq, H, C]`` in the dtype of ``q`` (half types computed in
        float32), ``alpha`` ``[E, H]`` the attention probabilities before dropout.
    """
    num_q, heads, channels = q.shape
    scale = 1.0 / math.sqrt(channels) if scale is None else scale
    compute = _UPCAST.get(q.dtype, q.dtype)
    qc, kc, vc = q.to(compute), k.to(compute), v.to(compute)
    q_dst = qc.index_select(0, dst)                                                   # [E, H, C]

    edge_value = None     # per-edge value term [E, H, C] (direct form)
    edge_low_rank = None  # (edge_attr [E, F], W_e per head [H, C, F]) (low-rank form)
    if edge_attr is not None:
        attr = edge_attr.to(compute)
        weight = edge_weight.to(compute)
        num_features = attr.shape[1]
        if num_features < channels:
            w_heads = weight.view(heads, channels, num_features)
            q_proj = torch.einsum("nhc,hcf->nhf", qc, w_heads).index_select(0, dst)   # [E, H, F]
            scores = (q_dst * kc.index_select(0, src)).sum(-1) + (q_proj * attr[:, None, :]).sum(-1)
            edge_low_rank = (attr, w_heads)
        else:
            edge_value = (attr @ weight.t()).view(-1, heads, channels)
            scores = (q_dst * (kc.index_select(0, src) + edge_value)).sum(-1)
    else:
        scores = (q_dst * kc.index_select(0, src)).sum(-1)
    del q_dst

    alpha = segment_softmax(scores * scale, dst, num_q)                               # [E, H]
    weights = F.dropout(alpha, p=dropout, training=training)

    values = vc.index_select(0, src)
    if edge_value is not None:
        values = values + edge_value
    out = torch.zeros(num_q, heads, channels, dtype=compute, device=q.device)
    out = out.index_add(0, dst, values * weights[..., None])
    if edge_low_rank is not None:
        attr, w_heads = edge_low_rank
        aggregated = torch.zeros(num_q, heads, attr.shape[1], dtype=compute, device=q.device)
        aggregated = aggregated.index_add(0, dst, weights[..., None] * attr[:, None, :])  # [Nq, H, F]
        out = out + torch.einsum("nhf,hcf->nhc", aggregated, w_heads)
    return out.to(q.dtype), alpha.to(q.dtype)
