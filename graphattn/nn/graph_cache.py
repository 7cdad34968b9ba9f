"""Per-graph facts that every layer of a model shares: checked indices, distinct edges, block masks.

A model applies several GraphAttention layers to one ``edge_index``. Checking its indices, finding
its duplicate edges and building its block mask are O(E) to O(E log E) each; done per layer they
would cost more than the attention itself. This cache keys them by the *identity* of the edge_index
object (and its in-place version counter), so the first layer of a forward pays and the others
reuse. An entry lives exactly as long as its edge_index object: a new graph, or the same graph moved
to another device (a new tensor), starts a new entry. The cache holds no strong reference to the
edges.

Under ``torch.compile`` nothing here runs (it is Python bookkeeping with data-dependent results):
compiled models take a prebuilt ``block_mask``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch

from .._checks import check_block_shape
from .adjacency import Adjacency


@dataclass
class _Entry:
    version: int
    checked: set = field(default_factory=set)        # (num_src, num_dst) whose ranges were checked
    distinct: dict = field(default_factory=dict)     # (num_src, num_dst) -> None or (src, dst, inverse)
    masks: dict = field(default_factory=dict)        # (num_dst, num_src, block_shape) -> GraphBlockMask
    verified: dict = field(default_factory=dict)     # id(mask) -> (weakref to mask, fingerprint)


class GraphCache:
    """Facts about edge_index objects, each computed once per object and version."""

    def __init__(self):
        self._entries: dict[int, tuple[weakref.ref, _Entry]] = {}
        self.mask_builds = 0  # how many masks this cache built (tests count layers sharing one)

    def _entry(self, edge_index) -> _Entry:
        key = id(edge_index)
        version = getattr(edge_index, "_version", 0)
        found = self._entries.get(key)
        if found is not None and found[0]() is edge_index and found[1].version == version:
            return found[1]
        entry = _Entry(version=version)
        ref = weakref.ref(edge_index, lambda _ref, key=key: self._drop(key, _ref))
        self._entries[key] = (ref, entry)
        return entry

    def _drop(self, key: int, ref) -> None:
        found = self._entries.get(key)
        if found is not None and found[0] is ref:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forgets every entry (masks included)."""
        self._entries.clear()

    # ------------------------------------------------------------------ facts
    def check_indices(self, edge_index, adj: Adjacency, name: str = "edge_index") -> None:
        """Raises ValueError unless every source is in [0, num_src) and every target in [0, num_dst)."""
        entry = self._entry(edge_index)
        sizes = (adj.num_src, adj.num_dst)
        if sizes in entry.checked:
            return
        if adj.src.numel():
            lo = int(torch.minimum(adj.src.min(), adj.dst.min()))
            if lo < 0:
                raise ValueError(f"{name} holds a negative node index ({lo}); indices must be non-negative")
            src_hi, dst_hi = int(adj.src.max()), int(adj.dst.max())
            if src_hi >= adj.num_src:
                raise ValueError(f"{name} holds source index {src_hi}, out of range for {adj.num_src} "
                                 f"source nodes (x or x[0] has {adj.num_src} rows)")
            if dst_hi >= adj.num_dst:
                raise ValueError(f"{name} holds target index {dst_hi}, out of range for {adj.num_dst} "
                                 f"target nodes (x or x[1] has {adj.num_dst} rows)")
        entry.checked.add(sizes)

    def distinct_edges(self, edge_index, adj: Adjacency):
        """None when the listed edges are already distinct, else ``(src, dst, inverse)``: the
        distinct edges and, for every listed edge, the position of its distinct copy."""
        entry = self._entry(edge_index)
        sizes = (adj.num_src, adj.num_dst)
        if sizes not in entry.distinct:
            entry.distinct[sizes] = _distinct(adj)
        return entry.distinct[sizes]

    def block_mask(self, edge_index, adj: Adjacency, block_size):
        """The GraphBlockMask of these edges (built on their device the first time)."""
        from ..mask import GraphBlockMask

        entry = self._entry(edge_index)
        key = (adj.num_dst, adj.num_src, check_block_shape(block_size))
        mask = entry.masks.get(key)
        if mask is None:
            mask = GraphBlockMask.from_edge_index(torch.stack([adj.src, adj.dst]), (adj.num_dst, adj.num_src),
                                                  block_size=block_size)
            self.mask_builds += 1
            entry.masks[key] = mask
            entry.verified[id(mask)] = (weakref.ref(mask), mask.fingerprint)
        return mask

    def batch_mask(self, edge_index, adj: Adjacency, masks, block_size):
        """The mask of a batch whose graphs' masks are ``masks`` (built once per batch).

        Concatenated block-diagonally with ``GraphBlockMask.cat`` where it is available, else built
        from the batch's edges on their device (O(E) tensor work either way, no loop over graphs'
        edges). The result is checked against the batch's edges once.
        """
        import importlib.util

        from ..mask import GraphBlockMask

        if not masks or not all(isinstance(m, GraphBlockMask) for m in masks):
            raise TypeError("block_mask as a list must hold one GraphBlockMask per graph of the batch")
        entry = self._entry(edge_index)
        key = ("batch",) + tuple(id(m) for m in masks)
        mask = entry.masks.get(key)
        if mask is None:
            if importlib.util.find_spec("graphattn.mask.batch") is not None:
                mask = GraphBlockMask.cat(list(masks)).to(adj.src.device)
                mask.check_compatible(adj.num_dst, adj.num_src, name="the concatenated block_mask")
                self.verify_mask(edge_index, adj, mask)
            else:
                mask = self.block_mask(edge_index, adj, masks[0].block_shape)
            entry.masks[key] = mask
        return mask

    def verify_mask(self, edge_index, adj: Adjacency, mask, name: str = "block_mask") -> None:
        """Raises ValueError unless ``mask`` holds exactly the edges of ``edge_index`` (once per pair)."""
        entry = self._entry(edge_index)
        known = entry.verified.get(id(mask))
        if known is not None and known[0]() is mask and known[1] == mask.fingerprint:
            return
        from ..mask import GraphBlockMask

        # Fingerprints hash the edge set, so rebuilding at the mask's block shape compares sets.
        rebuilt = GraphBlockMask.from_edge_index(torch.stack([adj.src, adj.dst]).to(mask.device), mask.shape,
                                                 block_size=mask.block_shape)
        if rebuilt.fingerprint != mask.fingerprint:
            raise ValueError(f"{name} was not built from this edge_index (their edge sets differ: the mask's "
                             f"fingerprint does not match); rebuild it with GraphBlockMask.from_edge_index "
                             f"on the edges in their current order")
        entry.verified[id(mask)] = (weakref.ref(mask), mask.fingerprint)


def _distinct(adj: Adjacency):
    num_edges = adj.src.numel()
    if num_edges < 2:
        return None
    by_target = adj.dst * max(adj.num_src, 1) + adj.src
    if bool((by_target[1:] > by_target[:-1]).all()):       # graphattn's coalesced order
        return None
    by_source = adj.src * max(adj.num_dst, 1) + adj.dst
    if bool((by_source[1:] > by_source[:-1]).all()):       # PyG's coalesced order
        return None
    keys, inverse = torch.unique(by_target, return_inverse=True)
    if keys.numel() == num_edges:
        return None
    dst = keys // max(adj.num_src, 1)
    return keys - dst * max(adj.num_src, 1), dst, inverse


# The cache every GraphAttention layer shares by default.
default_cache = GraphCache()
