"""Runners for the peers graphattn is compared with (../shared/PEERS.md says how each is run).

Each ``make_*`` function takes the ordered graph (``edge_index`` [2, E] on the GPU, row 0 source,
row 1 target) and returns ``(name, fn)`` with ``fn(q, k, v) -> out`` on ``[N, H, D]`` tensors, or
raises ``PeerUnavailable`` with the reason (package missing, build failed) so the benchmark can
skip it with a message. Peers are optional: nothing here is a dependency of graphattn.
"""
from __future__ import annotations

import math

import torch


class PeerUnavailable(RuntimeError):
    """The peer cannot run here (not installed, or it failed to set up)."""


def make_edge_list(edge_index: torch.Tensor, num_nodes: int, scale: float):
    """Edge-list attention as PyG's TransformerConv computes it: gather, segment softmax, scatter."""
    try:
        from torch_geometric.utils import scatter, softmax
    except ImportError as error:  # pragma: no cover - depends on the machine
        raise PeerUnavailable(f"torch_geometric is not importable: {error}") from error
    src, dst = edge_index[0], edge_index[1]

    def run(q, k, v):
        alpha = (q[dst] * k[src]).sum(-1) * scale
        alpha = softmax(alpha, dst, num_nodes=num_nodes)
        return scatter(v[src] * alpha[..., None], dst, 0, dim_size=num_nodes, reduce="sum")

    return "edge-list (PyG TransformerConv math)", run


def make_flex(edge_index: torch.Tensor, num_nodes: int, scale: float, block_size: int):
    """FlexAttention with the expert mask: listed kv blocks plus a per-tile boolean store."""
    try:
        from torch.nn.attention.flex_attention import BlockMask, flex_attention
    except ImportError as error:  # pragma: no cover
        raise PeerUnavailable(f"FlexAttention is not available: {error}") from error
    device = edge_index.device
    b = block_size
    src, dst = edge_index[0].long(), edge_index[1].long()
    q_blocks = math.ceil(num_nodes / b)
    tile_keys, tile_of_edge = torch.unique(dst // b * q_blocks + src // b, return_inverse=True)
    tile_row, tile_col = tile_keys // q_blocks, tile_keys % q_blocks
    counts = torch.bincount(tile_row, minlength=q_blocks)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(tile_keys.numel(), device=device) - starts[tile_row]
    # FlexAttention infers the number of kv blocks from kv_indices' last dim: it must be the full
    # block count (the dense [QB, KB] table GUIDE §4 mentions), with the listed blocks first.
    kv_indices = torch.zeros(1, 1, q_blocks, q_blocks, dtype=torch.int32, device=device)
    kv_indices[0, 0, tile_row, rank] = tile_col.to(torch.int32)
    kv_num_blocks = counts.to(torch.int32).view(1, 1, q_blocks)
    store = torch.zeros(tile_keys.numel(), b, b, dtype=torch.bool, device=device)
    store[tile_of_edge, dst % b, src % b] = True
    tile_id = torch.zeros(q_blocks, q_blocks, dtype=torch.int32, device=device)
    tile_id[tile_row, tile_col] = torch.arange(tile_keys.numel(), dtype=torch.int32, device=device)

    def mask_mod(batch, head, q_idx, kv_idx):
        return store[tile_id[q_idx // b, kv_idx // b], q_idx % b, kv_idx % b]

    block_mask = BlockMask.from_kv_blocks(kv_num_blocks, kv_indices, BLOCK_SIZE=b, mask_mod=mask_mod,
                                          seq_lengths=(num_nodes, num_nodes))
    # A fresh dynamo cache per mask: each case recompiles flex_attention, and past dynamo's
    # recompile limit it silently fell back to the unfused path (which asked for 1 TiB).
    torch._dynamo.reset()
    compiled = torch.compile(flex_attention)
    # Compiled flex may pick 128-wide kernel blocks, which 64-blocks masks cannot use (torch 2.11
    # refused D=64 with "Q and KV block size must be divisible by BLOCK_M and BLOCK_N"). The
    # backward's blocks must divide them too (M1 and N2 the Q block, N1 and M2 the KV block).
    options = None
    if b < 128:
        options = {"BLOCK_M": b, "BLOCK_N": b, "BLOCK_M1": b // 2, "BLOCK_N1": b, "BLOCK_M2": b, "BLOCK_N2": b // 2}

    def run(q, k, v):
        # [N, H, D] -> [1, H, N, D]: a view, as a layer would pass it.
        out = compiled(q.permute(1, 0, 2)[None], k.permute(1, 0, 2)[None], v.permute(1, 0, 2)[None],
                       block_mask=block_mask, scale=scale, kernel_options=options)
        return out[0].permute(1, 0, 2)

    return f"FlexAttention B={b} (expert mask)", run


def make_turbo_gnn(edge_index: torch.Tensor, num_nodes: int, scale: float):
    """turbo-gnn's fused CSR kernel; its roles are swapped (softmax over Q[src]·K[dst])."""
    try:
        from turbo_gnn import AdjacencyForwardBackwardWithNodeBuckets, graph_transformer_aggr
    except Exception as error:  # pragma: no cover - import of a compiled extension
        raise PeerUnavailable(f"turbo-gnn is not importable ({type(error).__name__}: {error})") from error
    graph = AdjacencyForwardBackwardWithNodeBuckets.from_edge_list(edge_index.cpu(), num_nodes=num_nodes).to("cuda")

    def run(q, k, v):
        return graph_transformer_aggr(graph, k, Q=k, K=q, V=v, scale=scale)

    return "turbo-gnn 0.1.0rc4", run


def dense_sdpa(q, k, v, scale):
    """All N² pairs through scaled_dot_product_attention, forced onto FlashAttention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out = torch.nn.functional.scaled_dot_product_attention(
            q.permute(1, 0, 2)[None], k.permute(1, 0, 2)[None], v.permute(1, 0, 2)[None], scale=scale)
    return out[0].permute(1, 0, 2)
