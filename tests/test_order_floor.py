"""The tile floor: a lower bound on the tiles of every ordering (graphattn/ordering/floor.py)."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphattn.graphs import knn_graph
from graphattn.ordering import count_tiles, order, tile_floor
from graphattn.ordering.floor import floor_of
from graphattn.ordering.tiles import InEdges, tiles_of_inverse

METHODS = ["random", "morton", "hilbert", "rcm", "kd", "partition", "auto"]


def path_graph(n, loops=False):
    s = torch.arange(n - 1)
    ei = torch.cat([torch.stack([s, s + 1]), torch.stack([s + 1, s])], 1)
    return torch.cat([ei, torch.arange(n).repeat(2, 1)], 1) if loops else ei


def optimum_by_enumeration(ei: torch.Tensor, n: int, block_size: int) -> int:
    in_edges = InEdges(ei[0].numpy(), ei[1].numpy(), n)
    return min(tiles_of_inverse(in_edges, np.array(p, dtype=np.int64), block_size)
               for p in itertools.permutations(range(n)))


def small_graphs():
    """Connected and disconnected graphs of up to 7 nodes, with and without isolated nodes,
    triangles, one-way edges and self-loops: the cases each part of the bound is about."""
    rng = np.random.default_rng(7)
    graphs = []
    for trial in range(36):
        n = int(rng.integers(3, 8))
        m = int(rng.integers(0, 3 * n))
        ei = torch.from_numpy(rng.integers(0, n, (2, m)))
        if trial % 3 == 0:  # no isolated nodes: the diagonal argument applies
            ring = torch.arange(n)
            ei = torch.cat([ei, torch.stack([ring, (ring + 1) % n]), torch.stack([(ring + 1) % n, ring])], 1)
        if trial % 4 == 1:  # a triangle-rich graph (the square of a path), one way only in part
            s = torch.arange(n - 2)
            ei = torch.cat([ei, torch.stack([s, s + 1]), torch.stack([s + 2, s]), torch.stack([s + 1, s + 2])], 1)
        graphs.append((ei, n, int(rng.integers(2, 4))))
    return graphs


@pytest.mark.parametrize("ei, n, block_size", small_graphs())
def test_floor_never_exceeds_the_optimum_over_all_orderings(ei, n, block_size):
    floor = floor_of(InEdges(ei[0].numpy(), ei[1].numpy(), n), block_size)
    assert 0 <= floor.tiles <= optimum_by_enumeration(ei, n, block_size)


def test_path_floor_is_tight_by_odd_and_even_blocks():
    # Contiguous runs of a path give 3 nb - 2 tiles; blocks of its even and of its odd nodes are
    # independent sets that touch only the two blocks beside them: 2 (nb - 1), the floor.
    n, b = 640, 64
    ei = path_graph(n)
    floor = tile_floor(ei, n, b)
    nb = n // b
    assert floor.tiles == 2 * (nb - 1)
    odd_even = torch.cat([torch.cat([torch.arange(s, s + 2 * b, 2), torch.arange(s + 1, s + 2 * b, 2)])
                          for s in range(0, n, 2 * b)])
    assert count_tiles(ei, n, b, perm=odd_even) == floor.tiles
    assert count_tiles(ei, n, b) == 3 * nb - 2


def test_path_with_self_loops_floor_is_three_per_block():
    # Self-loops put a diagonal tile in every block: nb + 2 (nb - 1), which the given order meets.
    n, b = 640, 64
    ei = path_graph(n, loops=True)
    floor = tile_floor(ei, n, b)
    assert floor.tiles == 3 * (n // b) - 2 == count_tiles(ei, n, b)


def test_knn_graph_floor_uses_the_diagonal_argument():
    # k-NN neighbourhoods are nearly cliques, so a block without an internal edge would touch at
    # least 3 others: the floor rises above the 2 per row of connectivity alone.
    pos = torch.rand(6400, 3, generator=torch.Generator().manual_seed(0))
    ei = knn_graph(pos, k=16)
    floor = tile_floor(ei, 6400, 64)
    assert floor.min_neighbour_blocks >= 3
    assert floor.connectivity == 2 * (100 - 1)  # U and its mutual part are each connected: 99 + 99
    assert floor.tiles_per_block_row > 2.3
    for method in ("hilbert", "kd", "rcm", "auto"):
        assert floor.tiles <= order(ei, pos, method=method).tiles


def test_isolated_nodes_keep_only_connectivity_and_self_loops():
    # Two 20-node paths, one with self-loops, plus isolated nodes that could pad any block.
    p = path_graph(20)
    ei = torch.cat([p, p + 20, torch.arange(20, 40).repeat(2, 1)], 1)
    floor = tile_floor(ei, 100, 16)
    assert floor.min_neighbour_blocks == 0
    # components of 20 nodes need 2 blocks each: 1 spanning edge in U and in M each, 2 loop blocks
    assert floor.tiles == 2 * 2 + 2
    assert floor.tiles <= min(order(ei, num_nodes=100, method=m, block_size=16).tiles
                              for m in ("rcm", "partition", "identity"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 300), density=st.floats(0, 6), block_size=st.sampled_from([16, 32]),
       seed=st.integers(0, 5), connect=st.booleans(), loops=st.booleans())
def test_property_floor_is_below_every_ordering(n, density, block_size, seed, connect, loops):
    g = torch.Generator().manual_seed(seed)
    m = int(n * density)
    ei = torch.randint(0, max(n, 1), (2, m), generator=g) if n else torch.empty(2, 0, dtype=torch.long)
    if connect and n > 1:
        ei = torch.cat([ei, path_graph(n)], 1)
    if loops and n:
        ei = torch.cat([ei, torch.arange(0, n, 3).repeat(2, 1)], 1)
    pos = torch.rand(n, 3, generator=g)
    floor = tile_floor(ei, n, block_size)
    assert floor.tiles >= 0 and floor.num_blocks == -(-n // block_size)
    for method in METHODS:
        assert floor.tiles <= order(ei, pos, num_nodes=n, method=method, block_size=block_size, seed=seed).tiles


@pytest.mark.parametrize("args, kwargs, error, text", [
    ((torch.zeros(3, 4, dtype=torch.long),), {}, ValueError, "edge_index must have shape"),
    ((torch.zeros(2, 4),), {}, TypeError, "edge_index must hold integers"),
    ((torch.tensor([[0], [9]]), 5), {}, ValueError, "out of range for 5 nodes"),
    ((torch.tensor([[0], [1]]), 2), {"block_size": 48}, ValueError, "block_size must be a power of two"),
    ((torch.tensor([[0], [1]]), -1), {}, ValueError, "num_nodes"),
])
def test_floor_bad_input(args, kwargs, error, text):
    with pytest.raises(error, match=text):
        tile_floor(*args, **kwargs)


def test_floor_of_a_star_and_of_a_hub_heavy_graph_stays_cheap():
    # A hub of degree 5000 takes the trivial alpha <= degree instead of a 5000 x 5000 table.
    n = 5001
    star = torch.stack([torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n)])
    ei = torch.cat([star, star.flip(0)], 1)
    floor = tile_floor(ei, n, 64)
    assert 0 < floor.tiles <= order(ei, num_nodes=n, method="rcm").tiles
