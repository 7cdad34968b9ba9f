"""``order()``: input checks, per-graph dispatch over a PyG batch, the optional refinement."""
from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_block_size, check_edge_index, check_node_vector, check_num_nodes, check_pos
from .auto import SMALL_GRAPH_EDGES, auto_order, polish_order
from .methods import NEEDS_GRAPH, NEEDS_POS, ORDERERS
from .ordering import Ordering
from .problem import OrderingProblem
from .tiles import InEdges, inverse_of, packed_tiles_of_perm, tiles_of_perm

METHODS = ("auto", "identity", "random", "morton", "hilbert", "rcm", "bands", "min_degree", "kd", "partition",
           "multilevel", "polish")


def _check_method(method) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, one of {', '.join(METHODS)}; got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def _check_refine(refine) -> float | bool:
    """False, True (search until it stops improving, with a default time cap) or a budget in seconds."""
    if isinstance(refine, bool):
        return refine
    if isinstance(refine, (int, float)) and not isinstance(refine, bool):
        if math.isfinite(refine) and refine > 0:
            return float(refine)
        raise ValueError(f"refine must be a bool or a positive, finite time budget in seconds; got {refine!r}")
    raise TypeError(f"refine must be a bool or a time budget in seconds (float); got {type(refine).__name__}")


OBJECTIVES = ("tiles", "packed")


def check_objective(objective, refine=False) -> str:
    """One of ``OBJECTIVES``; ``refine`` (which minimises aligned tiles) only with "tiles".
    Shared by ``order``, the cache and ``BlockSparseOrder``, which check their arguments early."""
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(map(repr, OBJECTIVES))}; got {objective!r}")
    if refine and objective == "packed":
        raise ValueError("refine minimises aligned tiles: pass objective='tiles' with it")
    return objective


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return seed


def _check_batch(batch, num_nodes: int) -> np.ndarray:
    """A PyG batch vector: int [N], non-decreasing graph ids. Returns the graph start offsets."""
    ids = check_node_vector(batch, num_nodes, "batch", holds="integer graph ids", per_node="one graph id per node")
    if num_nodes and (ids[0] < 0 or (np.diff(ids) < 0).any()):
        raise ValueError("batch must hold non-negative, non-decreasing graph ids (each graph's nodes "
                         "contiguous, as PyG's Batch stores them)")
    if num_nodes == 0:
        return np.zeros(1, np.int64)
    starts = np.flatnonzero(np.diff(ids)) + 1
    return np.concatenate([[0], starts, [num_nodes]]).astype(np.int64)


def order(edge_index: torch.Tensor | None = None, pos: torch.Tensor | None = None, *,
          num_nodes: int | None = None, batch: torch.Tensor | None = None, method: str = "auto",
          block_size: int = 64, refine: bool | float = False, seed: int = 0,
          objective: str = "tiles") -> Ordering:
    """Reorders nodes so that each node's neighbours fall into few ``block_size``² tiles.

    Args:
        edge_index: [2, E] integer edges (row 0 source, row 1 target), or None.
        pos: [N, 3] or [N, 2] floating coordinates, or None.
        num_nodes: N; inferred from ``pos`` or from the largest index in ``edge_index`` if omitted.
        batch: PyG batch vector [N] (non-decreasing graph ids). Each graph is ordered on its own
            and keeps its contiguous range, in order. Graphs are not padded: a block that
            straddles two graphs stays shared, and the cuts inside each graph fall on the global
            block grid, so only those boundary blocks mix graphs.
        method: one of ``METHODS``. ``morton``, ``hilbert`` and ``kd`` need ``pos``; ``rcm``,
            ``bands``, ``min_degree``, ``partition`` and ``multilevel`` need ``edge_index`` (``min_degree`` and
            ``multilevel`` also the C++ core); ``auto`` measures the candidates
            the inputs allow and keeps the one with the fewest tiles (see ``auto.py``); ``polish``
            (graph and C++ core) is auto's best candidate after one bounded pass of the
            tile-count local search, the last candidate ``auto`` itself measures whenever it has
            a graph and the C++ core.
        block_size: tile size B, a power of two in [16, 256].
        refine: True runs the tile-count local search (moves as swaps between blocks, exact change
            in tile count, never adds tiles) until it stops improving or hits its default time
            cap; a number is a time budget in seconds. Needs ``edge_index`` and the C++ core.
        seed: seeds ``random``, kd's pivot choice, multilevel's matchings and the refinement's
            visiting order.
        objective: what ``auto`` minimises. ``"tiles"``: non-empty B×B tiles (``count_tiles``).
            ``"packed"``: the packed tiles the GPU kernel walks (``count_packed_tiles``: each
            block's distinct neighbours in packs of 32), which is what ``graph_attention``'s time
            follows; auto then also measures ``multilevel`` at every size (~1 s per 1.6M edges
            on a 2-core CPU) and skips ``polish``. ``o.packed_tiles`` reports that count.
            ``refine`` minimises aligned tiles and is refused with ``"packed"``.

    Returns:
        An ``Ordering`` (``perm``, ``inverse``, ``method``, ``tiles`` when a graph was given, and
        ``packed_tiles`` with ``objective="packed"``).
    """
    method = _check_method(method)
    block_size = check_block_size(block_size)
    refine = _check_refine(refine)
    seed = _check_seed(seed)
    objective = check_objective(objective, refine)
    if edge_index is None and pos is None and num_nodes is None:
        raise ValueError("order needs edge_index, pos or num_nodes; all three were None")
    n = check_num_nodes(num_nodes) if num_nodes is not None else None
    if pos is not None:
        pos = check_pos(pos, n)
        n = pos.shape[0]
    if edge_index is not None:
        edge_index, n = check_edge_index(edge_index, n)
    if method in NEEDS_POS and pos is None:
        raise ValueError(f"method={method!r} orders by coordinates and needs pos ([N, 2|3] floating); got pos=None")
    if method in NEEDS_GRAPH and edge_index is None:
        raise ValueError(f"method={method!r} orders by the graph and needs edge_index ([2, E] integer); got edge_index=None")
    if refine and edge_index is None:
        raise ValueError("refine needs edge_index: the local search counts tiles of the graph's edges")
    starts = _check_batch(batch, n) if batch is not None else np.array([0, n], np.int64)

    pos_np = pos.detach().cpu().double().numpy() if pos is not None else None
    in_edges = None
    if edge_index is not None:
        ei = edge_index.cpu().numpy()
        in_edges = InEdges(ei[0], ei[1], n)
        if batch is not None and in_edges.num_edges:
            graph_of = np.repeat(np.arange(starts.shape[0] - 1), np.diff(starts))
            if (graph_of[ei[0]] != graph_of[ei[1]]).any():
                raise ValueError("edge_index joins nodes of different graphs of batch; "
                                 "each edge must stay inside one graph")

    perm = np.empty(n, np.int64)
    chosen: dict[str, int] = {}
    runner_up = None
    candidates: dict[str, int] = {}
    for s, e in zip(starts[:-1].tolist(), starts[1:].tolist()):
        local_edges = None
        if in_edges is not None:
            if batch is None:
                local_edges = in_edges
            else:
                lo, hi = in_edges.ptr[s], in_edges.ptr[e]
                local_edges = InEdges.from_csr(in_edges.ptr[s:e + 1] - lo, in_edges.src[lo:hi] - s, e - s)
        problem = OrderingProblem(e - s, block_size, offset=s, seed=seed, in_edges=local_edges,
                                  pos=pos_np[s:e] if pos_np is not None else None)
        if method == "auto":
            local, name, measured, runner_up = auto_order(problem, objective=objective)
            for key, value in measured.items():
                candidates[key] = candidates.get(key, 0) + value
        elif method == "polish":
            local, name = polish_order(problem), method
        else:
            local, name = ORDERERS[method](problem), method
        chosen[name] = chosen.get(name, 0) + 1
        perm[s:e] = local + s

    method_name = "+".join(sorted(chosen)) if chosen else ("identity" if method == "auto" else method)
    refined = False
    if refine:
        from .refine import refine_blocks

        graph_of = np.repeat(np.arange(starts.shape[0] - 1), np.diff(starts)) if batch is not None else None
        budget = None if refine is True else refine
        perm = refine_blocks(in_edges, perm, block_size, group=graph_of, seed=seed, time_budget=budget)
        if (refine is True and batch is None and runner_up is not None
                and in_edges.num_edges <= SMALL_GRAPH_EDGES):
            # On small graphs a second start is cheap, and the local search sometimes ends lower
            # from auto's runner-up than from its winner (up to ~6% on the benchmark meshes).
            second = refine_blocks(in_edges, runner_up[0], block_size, seed=seed)
            if tiles_of_perm(in_edges, second, block_size) < tiles_of_perm(in_edges, perm, block_size):
                perm, method_name = second, runner_up[1]
        refined = True
    counted = batch is None and method == "auto" and not refined and bool(candidates)  # while choosing
    tiles = packed = None
    if in_edges is not None:
        tiles = candidates[method_name] if counted and objective == "tiles" else tiles_of_perm(in_edges, perm, block_size)
        if objective == "packed":
            packed = (candidates[method_name] if counted
                      else packed_tiles_of_perm(in_edges, in_edges.transposed(), perm, block_size))
    perm_t = torch.from_numpy(perm)
    return Ordering(perm=perm_t, inverse=torch.from_numpy(inverse_of(perm)), method=method_name,
                    block_size=block_size, tiles=tiles, refined=refined, candidates=candidates,
                    objective=objective, packed_tiles=packed)
