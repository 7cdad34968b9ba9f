"""PyG transforms: :class:`BlockSparseOrder` reorders a graph once so attention visits few tiles.

Use it as a ``pre_transform`` (reordered once, saved with the dataset) or a ``transform``. Layers
then work in the new order with no per-layer permutation (GUIDE §2); the permutation is kept on the
``Data`` so results can be mapped back to the input order, also after batching.
"""
from __future__ import annotations

import copy

import torch

from ._checks import check_block_size

#: Attribute names of the stored permutation. Their names contain "index", so PyG concatenates them
#: along their last dimension and adds each graph's node offset when batching: in a ``Batch`` they
#: are the permutation and inverse of the whole batch.
PERM_KEY = "order_perm_index"        # original index of the node now at each position: x_new = x[perm]
INVERSE_KEY = "order_inverse_index"  # new position of each original node: x = x_new[inverse]
MASK_KEY = "block_mask"


def _base_transform():
    from torch_geometric.transforms import BaseTransform
    return BaseTransform


class BlockSparseOrder(_base_transform()):
    """Reorders a PyG ``Data`` so each node's neighbours fall into few ``block_size``² tiles.

    Every node-level attribute (``x``, ``pos``, ``y``, ``batch``-like vectors: whatever
    ``data.is_node_attr`` reports) is permuted; every attribute holding node indices (``edge_index``,
    ``face`` and any other key PyG offsets by the node count when batching, i.e. whose name contains
    "index") is renumbered; edges keep their order, so edge-level attributes (``edge_attr``, ...)
    stay in step untouched. The permutation is stored as ``data.order_perm_index`` (``x_new =
    x[perm]``) and ``data.order_inverse_index`` (``x = x_new[inverse]``); applying the transform
    again composes with them, so they always lead back to the very first order.

    Args:
        method: ordering method of :func:`graphattn.order` (``"auto"`` tries several and keeps the
            one that minimises ``objective``; ``morton``/``hilbert``/``kd`` need ``data.pos``).
        block_size: tile size B the order is built for (match the layers' ``block_size``).
        refine: run the tile-count local search (True, or a time budget in seconds); it minimises
            aligned tiles, so it needs ``objective="tiles"``.
        cache_dir: a :mod:`graphattn.cache` directory: orderings (and masks) are stored there by
            graph content and parameters and read back on the next run. Does not change results.
        seed: seed of the randomised parts of the ordering methods.
        objective: what ``method="auto"`` minimises. ``"packed"`` (the default here): the packed
            tiles that ``graph_attention`` walks on the GPU, so the kernels' time (0.70x on a thin
            262k-point channel, 0.93x on a 1M-point volume against ``"tiles"``; ordering above 2M
            edges costs more, multilevel's ~1 s per 1.6M edges). ``"tiles"``: aligned B×B tiles,
            :func:`graphattn.order`'s default (docs/orderings.md, "Two objectives").
        attach_mask: also store the reordered graph's :class:`graphattn.GraphBlockMask` as
            ``data.block_mask``. Meant for single graphs passed straight to a model; PyG's collate
            turns it into a list in a ``Batch`` (layers build the batch's mask from its edges), and
            it is not a tensor, so datasets that save ``pre_transform`` output should leave it off.

    ``repr`` names every parameter that changes the output, so PyG notices a changed
    ``pre_transform`` (``cache_dir`` is left out: it never changes the output).
    """

    def __init__(self, method: str = "auto", block_size: int = 64, refine=False, cache_dir=None, *,
                 seed: int = 0, attach_mask: bool = False, objective: str = "packed"):
        from .ordering import METHODS
        from .ordering.dispatch import check_objective

        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        self.method = method
        self.block_size = check_block_size(block_size)
        if isinstance(refine, bool):
            self.refine = refine
        elif isinstance(refine, (int, float)) and refine > 0:
            self.refine = float(refine)
        else:
            raise ValueError(f"refine must be a bool or a positive time budget in seconds, got {refine!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        check_objective(objective, self.refine)
        self.objective = objective
        if not isinstance(attach_mask, bool):
            raise TypeError(f"attach_mask must be a bool, got {type(attach_mask).__name__}")
        self.attach_mask = attach_mask
        self.cache_dir = cache_dir
        self._cache = None

    # ------------------------------------------------------------------ transform
    def forward(self, data):
        """Returns a reordered shallow copy of ``data`` (the input is left unchanged)."""
        from torch_geometric.data import Data

        if not isinstance(data, Data):
            raise TypeError(f"BlockSparseOrder transforms a torch_geometric.data.Data, got {type(data).__name__}")
        num_nodes = data.num_nodes
        if num_nodes is None:
            raise ValueError("data has no node count: set data.num_nodes or give it x, pos or edge_index")
        edge_index = data.edge_index if "edge_index" in data else None
        if edge_index is not None and (not isinstance(edge_index, torch.Tensor) or edge_index.layout != torch.strided):
            raise TypeError(f"data.edge_index must be a dense [2, E] tensor, got {type(edge_index).__name__} "
                            f"with layout {getattr(edge_index, 'layout', None)}")
        pos = data.pos if "pos" in data and isinstance(data.pos, torch.Tensor) else None
        if pos is not None and (pos.dim() != 2 or pos.shape[1] not in (2, 3)):
            pos = None  # not coordinates the orderings understand: order by the graph only
        if edge_index is None and pos is None:
            raise ValueError("data needs an edge_index or pos ([N, 2|3]) to be reordered")
        if self.attach_mask and edge_index is None:
            raise ValueError("attach_mask=True needs data.edge_index to build the mask from")

        ordering, mask = self._order(edge_index, pos, num_nodes)
        perm, inverse = ordering.perm.to(torch.long), ordering.inverse.to(torch.long)

        out = copy.copy(data)
        for key, value in data.items():
            if key in (PERM_KEY, INVERSE_KEY, MASK_KEY):
                continue
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                continue
            if _holds_node_indices(data, key, value):
                out[key] = inverse.to(value.device)[value.long()].to(value.dtype)
            elif data.is_node_attr(key):
                dim = data.__cat_dim__(key, value) % value.dim()
                out[key] = value.index_select(dim, perm.to(value.device))

        # Compose with an earlier reordering so the stored maps always lead to the first order.
        if PERM_KEY in data:
            first_perm = data[PERM_KEY].long()
            perm = first_perm[perm.to(first_perm.device)]
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        out[PERM_KEY] = perm
        out[INVERSE_KEY] = inverse
        if self.attach_mask:
            if mask is None:
                from .mask import GraphBlockMask
                mask = GraphBlockMask.from_edge_index(out.edge_index, num_nodes, block_size=self.block_size)
            out[MASK_KEY] = mask.to(edge_index.device)
        elif MASK_KEY in out:
            del out[MASK_KEY]  # an old mask describes the old order
        return out

    def _order(self, edge_index, pos, num_nodes):
        """(Ordering, mask or None), from the cache directory when one is set."""
        if self.cache_dir is not None:
            if self._cache is None:
                from .cache import Cache
                self._cache = Cache(self.cache_dir)
            entry = self._cache.get_or_compute(pos, edge_index, num_nodes=num_nodes, method=self.method,
                                               block_size=self.block_size, refine=self.refine, seed=self.seed,
                                               objective=self.objective)
            return entry.ordering, entry.mask
        from .ordering import order
        ordering = order(edge_index, pos, num_nodes=num_nodes, method=self.method, block_size=self.block_size,
                         refine=self.refine, seed=self.seed, objective=self.objective)
        return ordering, None

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(method={self.method!r}, block_size={self.block_size}, "
                f"refine={self.refine!r}, seed={self.seed}, attach_mask={self.attach_mask}, "
                f"objective={self.objective!r})")


def _holds_node_indices(data, key: str, value: torch.Tensor) -> bool:
    """Whether PyG treats ``key`` as node indices (it adds the node count to it when batching)."""
    if value.is_floating_point() or value.dtype == torch.bool or value.layout != torch.strided:
        return False
    return "batch" not in key and ("index" in key or key == "face")


def original_order(data, key: str = "x") -> torch.Tensor:
    """``data[key]`` (a node-level attribute of a reordered graph or batch) in the input order."""
    if INVERSE_KEY not in data:
        raise ValueError(f"data has no {INVERSE_KEY!r}: it was not reordered by BlockSparseOrder")
    value = data[key]
    return value.index_select(0, data[INVERSE_KEY].to(value.device))


__all__ = ["BlockSparseOrder", "PERM_KEY", "INVERSE_KEY", "MASK_KEY", "original_order"]
