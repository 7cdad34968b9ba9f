"""GraphAttention layers that also run graph-parallel: pass a GraphParallelPlan where the edges go.

:func:`graph_parallel` converts every :class:`graphattn.nn.GraphAttention` of a model into a
:class:`GraphParallelAttention`, in place, keeping its parameters (the same objects, so optimisers
and state_dict keys are unchanged). The converted layer still accepts an ``edge_index`` exactly as
before; given a plan instead, it takes this rank's node features ``x[plan.start:plan.end]`` and
returns this rank's rows of the single-device output. So a model written as
``conv(x, edge_index)`` runs graph-parallel as ``model(x_local, plan)`` with no change to its code.

Everything in the layer except attention is per node (the projections, heads' concat or mean, the
skip connection and its beta gate) and runs on local rows; attention goes through
:func:`graph_parallel_attention`, which fetches the halo keys and values.
"""
from __future__ import annotations

import copy

import torch

from .attention import graph_parallel_attention
from .plan import GraphParallelPlan


def _graph_attention_class():
    from ..nn.graph_attention import GraphAttention
    return GraphAttention


def _make_class():
    GraphAttention = _graph_attention_class()

    class GraphParallelAttention(GraphAttention):
        """A :class:`graphattn.nn.GraphAttention` whose ``forward`` also takes a
        :class:`GraphParallelPlan` in place of ``edge_index`` (see the module docstring).

        Graph-parallel calls support what the tile kernel computes: one feature matrix (not a
        bipartite pair), no edge features, no attention dropout while training, no attention
        weights returned. The plan's mask (its block size) is used, not the layer's ``block_size``.
        """

        group = None  # the torch.distributed process group of graph-parallel calls (None: the world)

        @classmethod
        def from_layer(cls, layer, *, group=None) -> "GraphParallelAttention":
            """The same layer (shared parameters and buffers) with graph-parallel support."""
            if not isinstance(layer, GraphAttention):
                raise TypeError(f"layer must be a graphattn.nn.GraphAttention, got {type(layer).__name__}")
            converted = cls.__new__(cls)
            # Shallow copies of the registries (_parameters, _modules, hooks...): the new layer holds
            # the same Parameter objects without aliasing the old layer's dictionaries.
            converted.__dict__.update({name: copy.copy(value) if isinstance(value, dict) else value
                                       for name, value in layer.__dict__.items()})
            converted.group = group
            return converted

        def forward(self, x, edge_index, edge_attr=None, return_attention_weights=None, *, block_mask=None):
            """``edge_index`` a :class:`GraphParallelPlan`: this rank's rows (see the class docstring);
            anything else: exactly :meth:`GraphAttention.forward`."""
            if not isinstance(edge_index, GraphParallelPlan):
                return super().forward(x, edge_index, edge_attr, return_attention_weights, block_mask=block_mask)
            plan = edge_index
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"x must be this rank's node features, a tensor [plan.num_local={plan.num_local}, F], "
                                f"got {type(x).__name__} (bipartite inputs are not supported graph-parallel)")
            if x.dim() != 2 or x.shape[0] != plan.num_local:
                raise ValueError(f"x must have shape [plan.num_local={plan.num_local}, F] (rows {plan.start}:{plan.end} "
                                 f"of the graph), got shape {tuple(x.shape)}")
            if edge_attr is not None or self.lin_edge is not None:
                raise ValueError("edge features are not supported graph-parallel; use a layer without edge_dim")
            if return_attention_weights is not None:
                raise ValueError("return_attention_weights is not supported graph-parallel")
            if block_mask is not None:
                raise ValueError("block_mask must be None graph-parallel: the plan carries each rank's mask")
            if self.training and self.dropout > 0:
                raise ValueError(f"attention dropout ({self.dropout}) in training is not supported graph-parallel; "
                                 f"construct the layer with dropout=0")
            heads, channels = self.heads, self.out_channels
            query = self.lin_query(x).view(-1, heads, channels)
            key = self.lin_key(x).view(-1, heads, channels)
            value = self.lin_value(x).view(-1, heads, channels)
            out = graph_parallel_attention(query, key, value, plan, backend=self.backend, group=self.group)
            return self._combine_heads_and_skip(out, x)

    GraphParallelAttention.__module__ = __name__
    GraphParallelAttention.__qualname__ = "GraphParallelAttention"
    return GraphParallelAttention


_CLASS = None


def __getattr__(name):
    # The class subclasses GraphAttention, which imports torch_geometric: build it on first use so
    # that importing graphattn.distributed stays light.
    global _CLASS
    if name == "GraphParallelAttention":
        if _CLASS is None:
            _CLASS = _make_class()
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def graph_parallel(model: torch.nn.Module, *, group=None) -> torch.nn.Module:
    """Converts every GraphAttention in ``model`` (the model itself included) into a
    :class:`GraphParallelAttention`, in place, and returns the model.

    Parameters are shared, not copied: an optimiser built before the call keeps working, and
    ``state_dict`` keys do not change. ``group`` is the process group of graph-parallel calls.
    Layers already converted are left alone (their group is updated).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    GraphAttention = _graph_attention_class()
    parallel_class = __getattr__("GraphParallelAttention")
    if isinstance(model, parallel_class):
        model.group = group
        return model
    if isinstance(model, GraphAttention):
        return parallel_class.from_layer(model, group=group)
    for name, child in list(model.named_children()):
        converted = graph_parallel(child, group=group)
        if converted is not child:
            setattr(model, name, converted)
    return model


def all_reduce_gradients(model: torch.nn.Module, group=None) -> None:
    """Sums every parameter gradient of ``model`` over the ranks of ``group``, in place.

    Graph parallel, each rank's gradient of a parameter is its own nodes' share; the gradient of the
    whole graph's loss is their sum. Call it after ``backward`` and before the optimiser step (a
    collective: every rank calls it). One flat buffer, one ``all_reduce``. Parameters without a
    gradient on every rank are skipped; the set must be the same on every rank.

    DistributedDataParallel would *average* instead, and would issue its all-reduces from the
    backward while the halo exchanges are running; with graph parallelism this explicit sum is the
    simpler, exactly right choice.
    """
    import torch.distributed as dist

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    by_dtype: dict = {}
    for grad in grads:
        by_dtype.setdefault((grad.dtype, grad.device), []).append(grad)
    for group_grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group_grads])
        dist.all_reduce(flat, group=group)
        offset = 0
        for grad in group_grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
