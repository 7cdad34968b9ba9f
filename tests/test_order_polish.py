"""polish: auto's best candidate after one bounded pass of the tile-count local search."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import brute_force_tiles, random_multigraph, batched_knn_clouds
from graphattn.graphs import knn_graph
from graphattn.ordering import count_tiles, order

pytest.importorskip("graphattn._ordering_native", reason="the C++ core is not built")


def test_polish_removes_tiles_and_is_the_candidate_auto_measures():
    pos = torch.rand(3000, 3, generator=torch.Generator().manual_seed(5))
    ei = knn_graph(pos, k=16)
    auto = order(ei, pos, method="auto")
    polished = order(ei, pos, method="polish")
    unpolished = min(tiles for name, tiles in auto.candidates.items() if name != "polish")
    # one pass on a small k-NN volume removes a few percent of the tiles (measured 2.6% here,
    # 8-10% on 100k-node volumes)
    assert polished.tiles < 0.99 * unpolished
    assert polished.method == "polish" and polished.tiles == auto.candidates["polish"]
    assert auto.method == "polish" and auto.tiles == polished.tiles
    assert polished.tiles == count_tiles(ei, 3000, perm=polished.perm)
    # a fixed amount of work and no clock: the same permutation every time
    assert torch.equal(order(ei, pos, method="polish").perm, polished.perm)


def test_polish_never_adds_tiles_even_when_it_cannot_help():
    # A path in file order already has the fewest tiles: polish must keep that count and auto
    # must keep an unpolished candidate's name (polish wins only when it removes a tile).
    n = 640
    src = torch.arange(n - 1)
    path = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], 1)
    pos = torch.rand(n, 3, generator=torch.Generator().manual_seed(0))
    o = order(path, pos, method="auto")
    assert o.candidates["polish"] == o.candidates["identity"] == o.tiles and o.method != "polish"


@pytest.mark.parametrize("scan_order", [False, True])
def test_large_graph_path_measures_in_kd_numbering_and_answers_in_input_ids(monkeypatch, scan_order):
    # Above KD_NUMBERING_EDGES auto renames the nodes in kd order before measuring (memory
    # locality at 1M nodes) and leaves out the small-graph candidates; lowered here so that a
    # small cloud takes that path. Every count it reports must hold for the permutation it
    # returns in the caller's ids, and polish still runs.
    from graphattn.ordering import auto

    monkeypatch.setattr(auto, "KD_NUMBERING_EDGES", 0)
    monkeypatch.setattr(auto, "SMALL_GRAPH_EDGES", 0)
    monkeypatch.setattr(auto, "MULTILEVEL_EDGES", 0)
    g = torch.Generator().manual_seed(11)
    n = 2500
    pos = torch.rand(n, 3, generator=g)
    if scan_order:  # an input already in a local order, where the given order is a good candidate
        pos = pos[torch.from_numpy(np.lexsort(pos.T.numpy()))]
    else:
        pos = pos[torch.randperm(n, generator=g)]
    ei = knn_graph(pos, k=10)
    o = order(ei, pos, method="auto", block_size=32)
    assert set(o.candidates) == {"kd", "rcm", "identity", "polish"}
    assert torch.equal(torch.sort(o.perm).values, torch.arange(n))
    assert o.tiles == min(o.candidates.values()) == brute_force_tiles(ei, o.perm, 32)
    assert o.candidates["kd"] == order(ei, pos, method="kd", block_size=32).tiles
    assert o.candidates["identity"] == count_tiles(ei, n, 32)
    assert o.candidates["polish"] < o.candidates["kd"] and o.method == "polish"
    # refine starts from the returned permutation (and on small graphs from the runner-up too,
    # mapped back to input ids the same way)
    refined = order(ei, pos, method="auto", block_size=32, refine=True)
    assert refined.tiles <= o.tiles and refined.tiles == brute_force_tiles(ei, refined.perm, 32)


def test_polish_needs_a_graph():
    with pytest.raises(ValueError, match="needs edge_index"):
        order(pos=torch.rand(10, 3), method="polish")
    # positions only: auto has no graph to polish on
    assert "polish" not in order(pos=torch.rand(100, 3), method="auto").candidates
    assert order(torch.empty(2, 0, dtype=torch.long), num_nodes=50, method="polish").tiles == 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 300), density=st.floats(0, 5), block_size=st.sampled_from([16, 32]),
       seed=st.integers(0, 5), loops=st.booleans())
def test_property_polish_is_a_permutation_never_worse_than_auto(n, density, block_size, seed, loops):
    ei = random_multigraph(n, density, seed, loops)
    o = order(ei, num_nodes=n, method="polish", block_size=block_size, seed=seed)
    assert torch.equal(torch.sort(o.perm).values, torch.arange(n))
    assert o.tiles == brute_force_tiles(ei, o.perm, block_size)
    auto = order(ei, num_nodes=n, method="auto", block_size=block_size, seed=seed)
    assert o.tiles <= auto.tiles or not auto.candidates  # one node: auto measures nothing


@pytest.mark.parametrize("offset", [0, 5, 64, 101])
def test_native_search_follows_the_global_block_grid(offset):
    # A graph of a batch starting at `offset`: the local search must count and keep blocks on the
    # global grid, where the first block of the graph holds only B - offset % B of its nodes.
    from graphattn.ordering.refine import polish_blocks, refine_blocks
    from graphattn.ordering.tiles import InEdges, tiles_of_perm

    g = torch.Generator().manual_seed(offset)
    n, block_size = 300, 16
    pos = torch.rand(n, 3, generator=g)
    ei = knn_graph(pos, k=6)
    in_edges = InEdges(ei[0].numpy(), ei[1].numpy(), n)
    start = torch.randperm(n, generator=g).numpy()
    before = tiles_of_perm(in_edges, start, block_size, offset)
    # from a random order the one targeted sweep removes 10-30% of the tiles here (it only moves
    # nodes whose departure empties a tile), the search run to its end ~55%
    polished, counted = polish_blocks(in_edges, start.copy(), block_size, offset=offset)
    refined = refine_blocks(in_edges, start.copy(), block_size, offset=offset, time_budget=5.0)
    for result, most in ((polished, 0.95), (refined, 0.6)):
        assert np.array_equal(np.sort(result), np.arange(n))
        after = tiles_of_perm(in_edges, result, block_size, offset)
        assert after == brute_force_tiles(ei, torch.from_numpy(result), block_size, offset)
        assert after < most * before
    assert counted == tiles_of_perm(in_edges, polished, block_size, offset)  # the search's own count


def test_polish_in_a_batch_keeps_graphs_in_their_ranges():
    pos, ei, batch = batched_knn_clouds()
    for method in ("polish", "auto"):
        o = order(ei, pos, batch=batch, block_size=16, method=method)
        assert torch.equal(batch[o.perm], batch)
        assert o.tiles == count_tiles(ei, 845, 16, perm=o.perm)
