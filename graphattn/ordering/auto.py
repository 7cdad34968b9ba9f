"""``auto``: try the cheap orderings the inputs allow, count each one's tiles, keep the fewest.

Counting tiles is O(E), so measuring beats guessing: no single ordering wins everywhere (GUIDE §5).
Candidates, in order of preference on ties:

- positions and a graph: kd and rcm, plus hilbert, morton, partition and bands while the graph is
  small enough for them to stay cheap (``SMALL_GRAPH_EDGES``), and multilevel (min-cut recursive
  bisection, C++) below ``MULTILEVEL_EDGES``; above ``KD_NUMBERING_EDGES`` they are measured
  with the nodes renamed in kd order, for memory locality;
- then, with a graph and the C++ core, ``polish``: the winner so far after one pass of the
  tile-count local search (``refine.polish_blocks``: a fixed amount of work, O(E), no time
  budget; ``refine=False`` still means no open-ended search). It never has more tiles than the
  winner and is kept only when it has fewer;
- a graph only: partition, multilevel (same limit), rcm, bands (same limit);
- positions only: kd, hilbert, morton, measured on a proxy k-NN graph (k = 8) of the points,
  since there is no graph to count tiles on.

With a graph, the given order (``identity``) is measured last: meshes written by structured
generators often come well ordered already (a swept torus mesh: 7.00 tiles per block row in file
order against 7.06-7.11 for the best reordering), and one more tile count is O(E).

min_degree is never a candidate: it reduces factorisation fill, it does not cluster neighbours.
"""
from __future__ import annotations

import math

import numpy as np

from .methods import NEEDS_POS, ORDERERS
from .problem import OrderingProblem
from .tiles import InEdges, inverse_of

# Above this many edges (with positions), auto skips partition, whose repeated breadth-first
# searches cost more than the rest of auto together (~11 s for a 1M-node k=16 graph on a 2-core
# CPU), morton and hilbert, which were never auto's best candidate on the 28 inputs of
# benchmarks/ordering.py (kd or rcm always had fewer tiles; at 1M hilbert costs ~0.3 s with its
# tile count, morton as much), and bands (four band orders and their tile counts, ~1.5 s at 1M).
# Call them by name on large graphs.
SMALL_GRAPH_EDGES = 4_000_000
# multilevel costs ~1 s per 1.6M edges on a 2-core CPU (~7 s at 1M nodes, k=16), and pays most on
# the small and mid-sized meshes of CAD parts (20-25% fewer tiles than kd on thin parts); above
# this auto leaves it out. It needs the C++ core: without it auto skips it.
MULTILEVEL_EDGES = 2_000_000
# Above this many edges (with positions) auto measures its candidates with the nodes renamed in
# kd order (``_in_kd_numbering``): ~0.25 s to rename 16M edges, ~0.9 s saved at 1M nodes. Below it
# the gain is small (100k nodes: auto 1.2-1.5 -> 1.0-1.3 s), and there auto's candidates stay
# exactly the methods called by name (renamed, rcm and the graph splits break ties differently).
KD_NUMBERING_EDGES = 4_000_000
PROXY_K = 8


def _native_available() -> bool:
    try:
        from .graph_orders import native_module

        native_module()
    except ImportError:
        return False
    return True


def auto_candidates(problem: OrderingProblem, objective: str = "tiles") -> list[str]:
    """The methods ``auto`` measures for this problem, in tie-break order.

    With ``objective="packed"`` multilevel is measured at every size: its compact min-cut blocks
    have the fewest distinct neighbours, which is what the GPU kernel's packed tiles cost (fewest
    packed tiles on 25 of the 28 inputs of benchmarks/ordering_packed.py, up to 1.9x fewer than the
    aligned objective's choice),
    and that objective is meant for orders computed once and cached (~1 s per 1.6M edges)."""
    if not problem.has_graph:
        return ["kd", "hilbert", "morton"]
    multilevel_limit = MULTILEVEL_EDGES if objective == "tiles" else math.inf
    multilevel = ["multilevel"] if problem.num_edges <= multilevel_limit and _native_available() else []
    small = problem.num_edges <= SMALL_GRAPH_EDGES
    if not problem.has_pos:
        return ["partition"] + multilevel + ["rcm"] + (["bands"] if small else []) + ["identity"]
    if not small:
        return ["kd", "rcm"] + multilevel + ["identity"]
    return ["kd", "hilbert", "rcm", "morton", "partition", "bands"] + multilevel + ["identity"]


def _with_proxy_graph(problem: OrderingProblem) -> OrderingProblem:
    from scipy.spatial import cKDTree

    n = problem.num_nodes
    k = min(PROXY_K + 1, n)
    _, nbr = cKDTree(problem.pos).query(problem.pos, k=k, workers=-1)
    nbr = np.asarray(nbr, dtype=np.int64).reshape(n, k)
    in_edges = InEdges.from_csr(np.arange(0, n * k + 1, k, dtype=np.int64), nbr.reshape(-1), n)
    return OrderingProblem(n, problem.block_size, offset=problem.offset, pos=problem.pos,
                           in_edges=in_edges, seed=problem.seed)


def polish_allowed(problem: OrderingProblem) -> bool:
    """Whether ``auto`` polishes its winner: a graph with edges to count on, and the C++ core."""
    return problem.has_graph and problem.num_edges > 0 and _native_available()


def _in_kd_numbering(problem: OrderingProblem) -> tuple[OrderingProblem, np.ndarray]:
    """(the problem with node ``kd[i]`` renamed ``i``, kd's permutation).

    In that numbering a node's neighbours have nearby ids, so the candidates' searches and tile
    counts make nearby memory accesses instead of random ones (1M nodes: rcm 1.1 -> 0.55 s,
    the polish sweep 1.0 -> 0.8 s, a tile count ~0.2 -> 0.1 s), and kd itself is the identity.
    """
    kd = ORDERERS["kd"](problem)
    # No positions: the coordinate orders run on the input problem (gathering 1M points would cost
    # ~0.1 s of page faults), and only their permutations are renamed.
    renamed = OrderingProblem(problem.num_nodes, problem.block_size, offset=problem.offset,
                              in_edges=problem.in_edges.relabelled(kd), seed=problem.seed)
    return renamed, kd


def auto_order(problem: OrderingProblem, objective: str = "tiles") -> tuple[np.ndarray, str, dict, tuple | None]:
    """(best permutation, its method name, {candidate: count}, (runner-up permutation, name) or None).

    ``objective``: what is counted and minimised, "tiles" (aligned B×B tiles, ``count_tiles``) or
    "packed" (the GPU kernel's packed tiles, ``count_packed_tiles``; no polish then: the sweep
    removes aligned tiles, which can add packed ones).

    With ``polish_allowed`` (and the "tiles" objective), the winner of the candidates gets one pass
    of the tile-count local search, measured as the last candidate, ``polish``; it wins only when it
    removed at least one tile, and the runner-up stays the second-best unpolished candidate (a
    different start for ``refine=True``).

    Large graphs with positions (``KD_NUMBERING_EDGES``) are measured in kd's numbering: the
    candidates are the same algorithms, but ties (rcm's among nodes of equal degree) fall in kd's
    order rather than the input's, so auto's rcm may differ from ``method="rcm"``.
    """
    if problem.num_nodes <= 1 or not (problem.has_pos or problem.has_graph):
        return np.arange(problem.num_nodes, dtype=np.int64), "identity", {}, None
    measured = problem if problem.has_graph else _with_proxy_graph(problem)
    to_input = None  # measured node i is input node to_input[i] (None: the same numbering)
    known = {}
    if problem.has_graph and problem.has_pos and problem.num_edges > KD_NUMBERING_EDGES:
        measured, to_input = _in_kd_numbering(problem)
        from_input = inverse_of(to_input)
        known = {"kd": np.arange(problem.num_nodes, dtype=np.int64), "identity": from_input}
    ranked = []
    counts = {}
    for name in auto_candidates(problem, objective):
        if name in known:
            perm = known[name]
        elif to_input is not None and name in NEEDS_POS:
            perm = from_input[ORDERERS[name](problem)]
        else:
            perm = ORDERERS[name](measured)
        if name == "identity" and to_input is not None:
            # counted in the input's numbering, where its blocks are runs of ids: 1M volume 0.04 s
            # instead of 0.22 (aligned), 0.24 instead of 0.45 (packed, its transpose included)
            counts[name] = problem.count(np.arange(problem.num_nodes, dtype=np.int64), objective)
        else:
            counts[name] = measured.count(perm, objective)
        ranked.append((counts[name], len(ranked), name, perm))
        ranked = sorted(ranked, key=lambda item: item[:2])[:2]  # keep two permutations alive, not all
    runner_up = (ranked[1][3], ranked[1][2]) if len(ranked) > 1 else None
    best, best_name = ranked[0][3], ranked[0][2]
    if objective == "tiles" and polish_allowed(problem):
        from .refine import polish_blocks

        polished, counted = polish_blocks(measured.in_edges, best, problem.block_size, seed=problem.seed,
                                          offset=problem.offset)
        counts["polish"] = counted if counted is not None else measured.tiles(polished)
        if counts["polish"] < ranked[0][0]:
            best, best_name = polished, "polish"
    if to_input is not None:
        best = to_input[best]
        runner_up = None if runner_up is None else (to_input[runner_up[0]], runner_up[1])
    return best, best_name, counts, runner_up


def polish_order(problem: OrderingProblem) -> np.ndarray:
    """The ``polish`` method: auto's best candidate after one pass of the local search, which is what
    ``auto`` returns whenever it has a graph and the C++ core; by name the core is required."""
    from .graph_orders import native_module

    native_module()  # raises the ImportError that says how to build the core
    return auto_order(problem)[0]
