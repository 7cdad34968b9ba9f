"""``auto``: try the cheap orderings the inputs allow, count each one's tiles, keep the fewest.

Counting tiles is O(E), so measuring beats guessing: no single ordering wins everywhere (GUIDE §5).
Candidates, in order of preference on ties:

- positions and a graph: kd, hilbert, rcm, and morton, partition and bands while the graph is
  small enough for them to stay cheap (``SMALL_GRAPH_EDGES``), and multilevel (min-cut recursive
  bisection, C++) below ``MULTILEVEL_EDGES``;
- then, with a graph of at most ``POLISH_EDGES`` edges and the C++ core, ``polish``: the winner so
  far after one pass of the tile-count local search (``refine.polish_blocks``: a fixed amount of
  work, O(E), no time budget; ``refine=False`` still means no open-ended search). It never has
  more tiles than the winner and is kept only when it has fewer;
- a graph only: partition, multilevel (same limit), rcm, bands (same limit);
- positions only: kd, hilbert, morton, measured on a proxy k-NN graph (k = 8) of the points,
  since there is no graph to count tiles on.

With a graph, the given order (``identity``) is measured last: meshes written by structured
generators often come well ordered already (a swept torus mesh: 7.00 tiles per block row in file
order against 7.06-7.11 for the best reordering), and one more tile count is O(E).

min_degree is never a candidate: it reduces factorisation fill, it does not cluster neighbours.
"""
from __future__ import annotations

import numpy as np

from .methods import ORDERERS
from .problem import OrderingProblem
from .tiles import InEdges

# Above this many edges (with positions), auto skips partition, whose repeated breadth-first
# searches cost more than the rest of auto together (~11 s for a 1M-node k=16 graph on a 2-core
# CPU), morton, which beat hilbert on 1 of the 28 inputs of benchmarks/ordering.py (the 1M
# LiDAR scan, where rcm won by far) and costs ~0.5 s there with its tile count, and bands (four
# band orders and their tile counts, ~1.5 s at 1M). Call them by name on large graphs.
SMALL_GRAPH_EDGES = 4_000_000
# multilevel costs ~1 s per 1.6M edges on a 2-core CPU (~7 s at 1M nodes, k=16), and pays most on
# the small and mid-sized meshes of CAD parts (20-25% fewer tiles than kd on thin parts); above
# this auto leaves it out. It needs the C++ core: without it auto skips it.
MULTILEVEL_EDGES = 2_000_000
# polish (one targeted sweep of the tile-count local search on the winner, csrc/refine.cpp) costs
# ~0.07 s per million edges (setup included) and removes 5-17% of the tiles of k-NN graphs of
# surfaces and volumes (500k-point volume: 16.47 -> 13.98 tiles per row, auto 1.5 s in all). At
# 1M nodes (16M edges) the sweep takes 0.8-1.2 s on top of auto's 1.7-2.5 s, which would break
# the 3 s target: above this limit auto skips it (method="polish" still runs it).
POLISH_EDGES = 8_000_000
PROXY_K = 8


def _native_available() -> bool:
    try:
        from .graph_orders import native_module

        native_module()
    except ImportError:
        return False
    return True


def auto_candidates(problem: OrderingProblem) -> list[str]:
    """The methods ``auto`` measures for this problem, in tie-break order."""
    if not problem.has_graph:
        return ["kd", "hilbert", "morton"]
    multilevel = ["multilevel"] if problem.num_edges <= MULTILEVEL_EDGES and _native_available() else []
    small = problem.num_edges <= SMALL_GRAPH_EDGES
    if not problem.has_pos:
        return ["partition"] + multilevel + ["rcm"] + (["bands"] if small else []) + ["identity"]
    names = ["kd", "hilbert", "rcm"]
    if small:
        names += ["morton", "partition", "bands"]
    return names + multilevel + ["identity"]


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
    """Whether ``auto`` polishes its winner: a graph to count on, at most ``POLISH_EDGES`` edges, the C++ core."""
    return problem.has_graph and 0 < problem.num_edges <= POLISH_EDGES and _native_available()


def auto_order(problem: OrderingProblem, polish: bool = True) -> tuple[np.ndarray, str, dict, tuple | None]:
    """(best permutation, its method name, {candidate: tiles}, (runner-up permutation, name) or None).

    With ``polish`` (and ``polish_allowed``), the winner of the candidates gets one pass of the
    tile-count local search, measured as the last candidate, ``polish``; it wins only when it
    removed at least one tile, and the runner-up stays the second-best unpolished candidate (a
    different start for ``refine=True``).
    """
    if problem.num_nodes <= 1 or not (problem.has_pos or problem.has_graph):
        return np.arange(problem.num_nodes, dtype=np.int64), "identity", {}, None
    measured = problem if problem.has_graph else _with_proxy_graph(problem)
    ranked = []
    tiles = {}
    for name in auto_candidates(problem):
        perm = ORDERERS[name](measured)
        tiles[name] = measured.tiles(perm)
        ranked.append((tiles[name], len(ranked), name, perm))
        ranked = sorted(ranked, key=lambda item: item[:2])[:2]  # keep two permutations alive, not all
    runner_up = (ranked[1][3], ranked[1][2]) if len(ranked) > 1 else None
    best, best_name = ranked[0][3], ranked[0][2]
    if polish and polish_allowed(problem):
        from .refine import polish_blocks

        polished, counted = polish_blocks(problem.in_edges, best, problem.block_size, seed=problem.seed,
                                          offset=problem.offset)
        tiles["polish"] = counted if counted is not None else problem.tiles(polished)
        if tiles["polish"] < ranked[0][0]:
            best, best_name = polished, "polish"
    return best, best_name, tiles, runner_up


def polish_order(problem: OrderingProblem) -> np.ndarray:
    """The ``polish`` method: auto's best candidate after one pass of the local search (on a graph
    of any size: the limit ``POLISH_EDGES`` only keeps it out of ``auto``)."""
    best = auto_order(problem, polish=False)[0]
    if problem.num_edges == 0:
        return best
    from .refine import polish_blocks

    return polish_blocks(problem.in_edges, best, problem.block_size, seed=problem.seed, offset=problem.offset)[0]
