"""Beyond one device, over torch.distributed (NCCL on GPUs, gloo on CPUs).

- Graph parallel, for one graph too large for a device: :func:`partition_nodes` cuts the reordered
  graph into contiguous, block-aligned node ranges balanced by tiles; a :class:`GraphParallelPlan`
  per rank says which halo keys it needs and which rows it sends; :func:`graph_parallel_attention`
  exchanges only those keys and values (and their gradients in the backward) and gives the same
  result as one device. For graphs no rank can hold whole, :func:`partition_edge_shards` and
  :func:`redistribute_edges` start from per-rank edge shards. :func:`graph_parallel` makes the
  GraphAttention layers of a model accept a plan in place of ``edge_index``, so
  ``model(x_local, plan)`` runs graph-parallel.
- Data parallel, for many graphs: PyTorch's DistributedDataParallel and DistributedSampler do the
  work; :func:`rank_zero_first` makes the precompute (orderings, masks) happen once, on rank 0,
  with the other ranks reading its cached results.

See docs/distributed.md for how to launch both modes.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "partition_nodes": "graphattn.distributed.partition",
    "partition_edge_shards": "graphattn.distributed.sharded",
    "redistribute_edges": "graphattn.distributed.sharded",
    "GraphParallelPlan": "graphattn.distributed.plan",
    "exchange_halo": "graphattn.distributed.halo",
    "gather_nodes": "graphattn.distributed.halo",
    "graph_parallel_attention": "graphattn.distributed.attention",
    "rank_zero_first": "graphattn.distributed.data_parallel",
    "graph_parallel": "graphattn.distributed.module",
    "GraphParallelAttention": "graphattn.distributed.module",
    "all_reduce_gradients": "graphattn.distributed.module",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphattn.distributed' has no attribute {name!r}")


def __dir__():
    return __all__
