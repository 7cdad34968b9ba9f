"""The C++ core of the ordering engine: tile-count refinement and approximate minimum degree."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_multigraph, batched_knn_clouds
from graphattn.graphs import knn_graph, mesh_edges
from graphattn.ordering import count_tiles, order

pytest.importorskip("graphattn._ordering_native", reason="the C++ core is not built")


def assert_permutation(o, n):
    assert torch.equal(torch.sort(o.perm).values, torch.arange(n))
    assert torch.equal(o.inverse[o.perm], torch.arange(n))


def elimination_fill(edge_index, num_nodes, perm):
    """Fill edges created by eliminating nodes in the order perm (the elimination game)."""
    adj = [set() for _ in range(num_nodes)]
    for s, d in edge_index.t().tolist():
        if s != d:
            adj[s].add(d)
            adj[d].add(s)
    fill = 0
    for v in perm.tolist():
        nbrs = list(adj[v])
        for i, a in enumerate(nbrs):
            for b in nbrs[i + 1:]:
                if b not in adj[a]:
                    adj[a].add(b)
                    adj[b].add(a)
                    fill += 1
        for a in nbrs:
            adj[a].discard(v)
        adj[v].clear()
    return fill


def grid_graph(side):
    ids = torch.arange(side * side).view(side, side)
    quads = torch.stack([ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]], -1).reshape(-1, 4)
    return mesh_edges(quads, side * side)


def test_min_degree_is_a_permutation_with_little_fill():
    ei = grid_graph(20)
    o = order(ei, method="min_degree", block_size=16)
    assert_permutation(o, 400) and o.method == "min_degree"
    fill = elimination_fill(ei, 400, o.perm)
    # natural (row by row) order of a 20 x 20 grid fills ~ side^3 / 2; minimum degree far less
    assert fill < 0.5 * elimination_fill(ei, 400, torch.arange(400))
    assert fill < 0.2 * elimination_fill(ei, 400, torch.randperm(400, generator=torch.Generator().manual_seed(0)))


def test_min_degree_on_trees_and_stars_makes_no_fill():
    # a path and a star: eliminating leaves first creates no fill at all
    path = torch.stack([torch.arange(99), torch.arange(1, 100)])
    star = torch.stack([torch.zeros(50, dtype=torch.long), torch.arange(1, 51)])
    for ei, n in ((path, 100), (star, 51)):
        o = order(ei, num_nodes=n, method="min_degree", block_size=16)
        assert_permutation(o, n)
        assert elimination_fill(ei, n, o.perm) == 0
    # the hub goes last (or second to last, when the final two form the dense tail)
    assert 0 in order(star, num_nodes=51, method="min_degree", block_size=16).perm[-2:].tolist()


def test_min_degree_does_not_depend_on_labels_and_handles_components():
    # min_degree relabels the graph internally (breadth first) for locality: shuffled labels, two
    # components and isolated nodes must still give a permutation with the same low fill
    g = torch.Generator().manual_seed(3)
    ei = knn_graph(torch.rand(500, 2, generator=g), k=8)
    shuffle = torch.randperm(500, generator=g)
    two = torch.cat([shuffle[ei], shuffle[ei] + 500], 1)  # nodes 1000..1004 have no edges
    o = order(two, num_nodes=1005, method="min_degree", block_size=16)
    assert_permutation(o, 1005)
    single = elimination_fill(ei, 500, order(ei, num_nodes=500, method="min_degree", block_size=16).perm)
    assert elimination_fill(two, 1005, o.perm) <= 1.1 * 2 * single


@pytest.mark.parametrize("start", ["hilbert", "kd", "rcm", "random", "partition", "auto"])
def test_refine_never_adds_tiles_and_usually_removes_some(start):
    pos = torch.rand(4000, 3, generator=torch.Generator().manual_seed(2))
    ei = knn_graph(pos, k=16)
    base = order(ei, pos, method=start)
    refined = order(ei, pos, method=start, refine=True)
    assert_permutation(refined, 4000)
    assert refined.refined
    # auto refines its winner and its runner-up and names the start it kept
    assert refined.method == base.method if start != "auto" else refined.method in base.candidates
    assert refined.tiles == count_tiles(ei, 4000, perm=refined.perm)
    assert refined.tiles < base.tiles, (start, base.tiles, refined.tiles)


def test_refine_with_a_time_budget_and_seed():
    pos = torch.rand(3000, 2, generator=torch.Generator().manual_seed(4))
    ei = knn_graph(pos, k=10)
    base = order(ei, pos, method="hilbert", block_size=32)
    for seed in (0, 1):
        r = order(ei, pos, method="hilbert", block_size=32, refine=0.5, seed=seed)
        assert r.tiles <= base.tiles


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 300), density=st.floats(0, 5), block_size=st.sampled_from([16, 32]),
       seed=st.integers(0, 5), loops=st.booleans(), method=st.sampled_from(["identity", "random", "rcm", "min_degree"]))
def test_property_refine_never_adds_tiles(n, density, block_size, seed, loops, method):
    ei = random_multigraph(n, density, seed, loops)
    base = order(ei, num_nodes=n, method=method, block_size=block_size, seed=seed)
    refined = order(ei, num_nodes=n, method=method, block_size=block_size, seed=seed, refine=True)
    assert_permutation(base, n) and assert_permutation(refined, n)
    assert refined.tiles <= base.tiles
    assert refined.tiles == count_tiles(ei, n, block_size, perm=refined.perm)


def test_refine_keeps_batched_graphs_in_their_ranges():
    pos, ei, batch = batched_knn_clouds()
    base = order(ei, pos, batch=batch, block_size=16)
    o = order(ei, pos, batch=batch, block_size=16, refine=True)
    assert torch.equal(batch[o.perm], batch)
    assert o.tiles <= base.tiles and o.tiles == count_tiles(ei, 845, 16, perm=o.perm)
