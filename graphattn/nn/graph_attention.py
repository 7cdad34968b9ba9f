"""GraphAttention: PyG's TransformerConv with graphattn's tile kernel underneath.

Same constructor, submodules, state_dict keys, initialisation, forward signature and outputs as
``torch_geometric.nn.TransformerConv``, so swapping the class keeps trained weights. The attention
runs where it is cheapest:

- plain attention (no edge features, no attention dropout in training, no attention weights asked
  for) on CUDA: :func:`graphattn.ops.graph_attention` over the graph's block mask, built once per
  edge_index object and shared by every layer (see :mod:`graphattn.nn.graph_cache`), or passed in;
- on the CPU, and whenever a per-edge quantity is needed: the edge-list path of
  :mod:`graphattn.nn.edge_attention` (same numbers as :func:`graphattn.ops.reference_attention`).

One difference from TransformerConv, on purpose (GUIDE §2): without edge features, an edge listed
twice counts once. Coalesced graphs give identical results.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear

from .._checks import _describe, check_block_shape
from .adjacency import parse_adjacency
from .edge_attention import edge_attention
from .graph_cache import GraphCache, default_cache

# MessagePassing keyword arguments TransformerConv accepts; only the values it uses are supported.
_SUPPORTED_MESSAGE_PASSING = {"aggr": "add", "flow": "source_to_target", "node_dim": 0}
_BACKENDS = ("auto", "triton", "reference")


class GraphAttention(torch.nn.Module):
    r"""Graph transformer attention (Shi et al., 2021), a drop-in for ``TransformerConv``.

    .. math::
        \mathbf{x}'_i = \mathbf{W}_1 \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} \alpha_{ij}
        (\mathbf{W}_2 \mathbf{x}_j + \mathbf{W}_6 \mathbf{e}_{ij}),\qquad
        \alpha_{ij} = \operatorname{softmax}_j\!\Big(\frac{(\mathbf{W}_3 \mathbf{x}_i)^\top
        (\mathbf{W}_4 \mathbf{x}_j + \mathbf{W}_6 \mathbf{e}_{ij})}{\sqrt{C}}\Big)

    Args:
        in_channels: input size, ``-1`` for lazy initialisation, or a pair (source, target) for
            bipartite graphs.
        out_channels: channels per head ``C``.
        heads: number of heads ``H``.
        concat: concatenate heads (output ``H·C``) or average them (output ``C``).
        beta: gate the skip connection with ``β_i = sigmoid(w_5ᵀ [x_r, m, x_r − m])``.
        dropout: dropout probability on the attention probabilities, in training.
        edge_dim: edge feature size; the projected edge features are added to keys and values.
        bias: learn additive biases in ``lin_key``, ``lin_query``, ``lin_value`` and ``lin_skip``.
        root_weight: add the transformed target features ``W_1 x_i`` (off also turns ``beta`` off).
        block_size: tile size B (or a pair) of the block masks the layer builds for itself.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``, passed to
            :func:`graphattn.ops.graph_attention`. With ``"auto"``, CPU inputs skip the mask and
            use the edge list directly.
        cache: the :class:`~graphattn.nn.graph_cache.GraphCache` that shares masks between layers;
            one process-wide cache by default.
        **kwargs: TransformerConv's MessagePassing options; ``aggr="add"``,
            ``flow="source_to_target"`` and ``node_dim=0`` are the only values it uses, others are
            refused.

    Submodules ``lin_key``, ``lin_query``, ``lin_value``, ``lin_edge``, ``lin_skip`` and ``lin_beta``
    match TransformerConv's, so ``load_state_dict(transformer_conv.state_dict())`` works, and with
    the same random seed both classes initialise to the same weights.
    """

    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        beta: bool = False,
        dropout: float = 0.0,
        edge_dim: Optional[int] = None,
        bias: bool = True,
        root_weight: bool = True,
        *,
        block_size=64,
        backend: str = "auto",
        cache: GraphCache | None = None,
        **kwargs,
    ):
        super().__init__()
        for key, value in kwargs.items():
            if key not in _SUPPORTED_MESSAGE_PASSING:
                raise TypeError(f"GraphAttention got an unexpected keyword argument {key!r}; it accepts "
                                f"TransformerConv's arguments plus block_size, backend and cache")
            if value != _SUPPORTED_MESSAGE_PASSING[key]:
                raise ValueError(f"{key}={value!r} is not supported; GraphAttention computes "
                                 f"{key}={_SUPPORTED_MESSAGE_PASSING[key]!r} as TransformerConv does by default")
        _check_channels(in_channels, out_channels, heads, edge_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.block_size = check_block_shape(block_size)
        self.backend = backend
        self.cache = default_cache if cache is None else cache

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.beta = beta and root_weight
        self.root_weight = root_weight
        self.concat = concat
        self.dropout = dropout
        self.edge_dim = edge_dim

        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)
        # Creation order follows TransformerConv so that one seed gives both the same weights.
        self.lin_key = Linear(in_channels[0], heads * out_channels, bias=bias)
        self.lin_query = Linear(in_channels[1], heads * out_channels, bias=bias)
        self.lin_value = Linear(in_channels[0], heads * out_channels, bias=bias)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, bias=False)
        else:
            self.register_parameter("lin_edge", None)
        skip_channels = heads * out_channels if concat else out_channels
        self.lin_skip = Linear(in_channels[1], skip_channels, bias=bias)
        if self.beta:
            self.lin_beta = Linear(3 * skip_channels, 1, bias=False)
        else:
            self.register_parameter("lin_beta", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialises every weight as TransformerConv does (same order, same schemes)."""
        self.lin_key.reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_value.reset_parameters()
        if self.edge_dim:
            self.lin_edge.reset_parameters()
        self.lin_skip.reset_parameters()
        if self.beta:
            self.lin_beta.reset_parameters()

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]], edge_index, edge_attr: Optional[Tensor] = None,
                return_attention_weights: Optional[bool] = None, *, block_mask=None):
        """Runs the layer.

        Args:
            x: node features ``[N, F]``, or a pair ``(x_src, x_dst)`` for a bipartite graph.
            edge_index: ``[2, E]`` (row 0 source j, row 1 target i), or a ``torch.sparse`` /
                ``torch_sparse.SparseTensor`` transposed adjacency ``[num_dst, num_src]``.
            edge_attr: edge features ``[E, edge_dim]`` in the order of ``edge_index`` (required
                exactly when the layer has ``edge_dim``).
            return_attention_weights: when a bool (either value, as in TransformerConv), also
                return ``(edge_index, alpha)`` with ``alpha`` ``[E, H]`` in the order of the edges.
            block_mask: a :class:`graphattn.GraphBlockMask` of this graph (shape
                ``(num_dst, num_src)``) to use instead of the cached one; required under
                ``torch.compile`` on CUDA. A list of per-graph masks (a ``Batch``'s
                ``block_mask``) is concatenated once per batch and shared by the layers.

        Returns:
            ``out`` ``[N_dst, H·C]`` (concat) or ``[N_dst, C]``; with attention weights
            ``(out, (edge_index, alpha))``.
        """
        heads, channels = self.heads, self.out_channels
        x_src, x_dst = _split_input(x)
        query = self.lin_query(x_dst).view(-1, heads, channels)
        key = self.lin_key(x_src).view(-1, heads, channels)
        value = self.lin_value(x_src).view(-1, heads, channels)
        num_src, num_dst = key.shape[0], query.shape[0]

        compiling = torch.compiler.is_compiling()
        adj = parse_adjacency(edge_index, num_src, num_dst)
        if edge_attr is None and self.lin_edge is not None and adj.values is not None and adj.values.dim() > 1:
            edge_attr = adj.values  # PyG's rule: multi-dimensional sparse values are edge features
        self._check_edge_attr(edge_attr, adj.src.numel())
        if not compiling:
            self.cache.check_indices(edge_index, adj)

        want_alpha = isinstance(return_attention_weights, bool)
        alpha = None
        if edge_attr is not None:
            if isinstance(self.lin_edge.weight, torch.nn.parameter.UninitializedParameter):
                self.lin_edge(edge_attr[:0])  # lazy edge_dim=-1: materialise as TransformerConv would
            # Each listed edge is a message of its own: duplicates carry their own features.
            out, alpha = edge_attention(query, key, value, adj.src, adj.dst, edge_attr=edge_attr,
                                        edge_weight=self.lin_edge.weight, dropout=self.dropout,
                                        training=self.training)
        elif want_alpha or (self.training and self.dropout > 0) or (not query.is_cuda and self.backend == "auto"):
            # On the CPU the tile path would only decode the mask back into these edges.
            if block_mask is not None and not isinstance(block_mask, (list, tuple)):
                self._check_given_mask(block_mask, edge_index, adj, query.device, compiling)
            out, alpha = self._edge_list_attention(query, key, value, edge_index, adj, compiling)
        else:
            out = self._tile_attention(query, key, value, edge_index, adj, block_mask, compiling)

        out = self._combine_heads_and_skip(out, x_dst)
        if want_alpha:
            return out, (edge_index, alpha)
        return out

    def _combine_heads_and_skip(self, out: torch.Tensor, x_dst: torch.Tensor) -> torch.Tensor:
        """TransformerConv's step after attention: heads concatenated or averaged, then the root
        skip, gated by beta when enabled. ``out`` is [N, heads, out_channels]."""
        out = out.reshape(-1, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if self.root_weight:
            x_r = self.lin_skip(x_dst)
            if self.lin_beta is not None:
                gate = self.lin_beta(torch.cat([out, x_r, out - x_r], dim=-1)).sigmoid()
                out = gate * x_r + (1 - gate) * out
            else:
                out = out + x_r
        return out

    # ------------------------------------------------------------------ paths
    def _edge_list_attention(self, query, key, value, edge_index, adj, compiling):
        """Edges counted once each; attention weights reported for every listed edge."""
        # Compiled models trust their input (no data-dependent checks): edges must be distinct.
        distinct = None if compiling else self.cache.distinct_edges(edge_index, adj)
        src, dst = (adj.src, adj.dst) if distinct is None else distinct[:2]
        out, alpha = edge_attention(query, key, value, src, dst, dropout=self.dropout, training=self.training)
        if distinct is not None:
            alpha = alpha.index_select(0, distinct[2])
        return out, alpha

    def _tile_attention(self, query, key, value, edge_index, adj, block_mask, compiling):
        if isinstance(block_mask, (list, tuple)):
            # What PyG's collate makes of per-graph masks (BlockSparseOrder(attach_mask=True)).
            if compiling:
                raise ValueError("block_mask must be one GraphBlockMask under torch.compile, got a "
                                 f"{type(block_mask).__name__}; concatenate it first with GraphBlockMask.cat")
            block_mask = self.cache.batch_mask(edge_index, adj, block_mask, self.block_size)
        if block_mask is None:
            if compiling:
                raise ValueError("block_mask is required under torch.compile (building a mask has "
                                 "data-dependent shapes): build it once with GraphBlockMask.from_edge_index "
                                 "and pass it to the compiled model")
            block_mask = self.cache.block_mask(edge_index, adj, self.block_size)
        else:
            self._check_given_mask(block_mask, edge_index, adj, query.device, compiling)
        from ..ops import graph_attention
        return graph_attention(query, key, value, block_mask, backend=self.backend)

    def _check_given_mask(self, block_mask, edge_index, adj, device, compiling) -> None:
        """Refuses a mask of another kind, size, device or edge set (the last once per pair, eagerly)."""
        from ..mask import GraphBlockMask

        if not isinstance(block_mask, GraphBlockMask):
            raise TypeError(f"block_mask must be a graphattn.GraphBlockMask, a list of them or None, "
                            f"got {type(block_mask).__name__}")
        block_mask.check_compatible(adj.num_dst, adj.num_src, name="block_mask")
        if block_mask.device != device:
            raise ValueError(f"block_mask is on {block_mask.device} but x is on {device}; "
                             f"move it with block_mask.to(device)")
        if not compiling:
            self.cache.verify_mask(edge_index, adj, block_mask)

    def _check_edge_attr(self, edge_attr, num_edges: int) -> None:
        if self.lin_edge is None:
            if edge_attr is not None:
                raise ValueError("edge_attr was given but the layer has no edge_dim; construct it with "
                                 "edge_dim=<number of edge features>")
            return
        if edge_attr is None:
            raise ValueError(f"edge_attr is required: the layer was built with edge_dim={self.edge_dim}")
        if not isinstance(edge_attr, Tensor) or not edge_attr.is_floating_point():
            raise TypeError(f"edge_attr must be a floating torch.Tensor [E, {self.edge_dim}], got "
                            f"{_describe(edge_attr) if isinstance(edge_attr, Tensor) else type(edge_attr).__name__}")
        if edge_attr.dim() != 2 or edge_attr.shape[0] != num_edges or (
                self.edge_dim > 0 and edge_attr.shape[1] != self.edge_dim):
            raise ValueError(f"edge_attr must have shape [E, edge_dim] = [{num_edges}, {self.edge_dim}], "
                             f"got {_describe(edge_attr)}")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"


def _split_input(x):
    if isinstance(x, Tensor):
        x_src = x_dst = x
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        x_src, x_dst = x
    else:
        raise TypeError(f"x must be a tensor [N, F] or a pair (x_src, x_dst), got {type(x).__name__}")
    for name, t in (("x" if x_src is x_dst else "x[0]", x_src), ("x" if x_src is x_dst else "x[1]", x_dst)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [N, F], got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {_describe(t)}")
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape [N, F], got {_describe(t)}")
    if x_src.device != x_dst.device:
        raise ValueError(f"x[0] is on {x_src.device} but x[1] is on {x_dst.device}")
    return x_src, x_dst


def _check_channels(in_channels, out_channels, heads, edge_dim) -> None:
    def positive(value, name, allow_lazy=False):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not (value > 0 or (allow_lazy and value == -1)):
            expected = "a positive int or -1 (lazy)" if allow_lazy else "a positive int"
            raise ValueError(f"{name} must be {expected}, got {value}")

    if isinstance(in_channels, (tuple, list)):
        if len(in_channels) != 2:
            raise ValueError(f"in_channels must be an int or a pair (source, target), got {in_channels!r}")
        positive(in_channels[0], "in_channels[0]", allow_lazy=True)
        positive(in_channels[1], "in_channels[1]", allow_lazy=True)
    else:
        positive(in_channels, "in_channels", allow_lazy=True)
    positive(out_channels, "out_channels")
    positive(heads, "heads")
    if edge_dim is not None:
        positive(edge_dim, "edge_dim", allow_lazy=True)


__all__ = ["GraphAttention"]
