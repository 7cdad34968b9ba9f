"""graphattn.order / Ordering / count_tiles: permutations, tile counts, auto, batch, bad input."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphattn
from conftest import brute_force_tiles
from graphattn.graphs import knn_graph, mesh_edges
from graphattn.ordering import METHODS, Ordering, count_tiles, order

# min_degree and multilevel need the C++ core: test_ordering_native.py
PYTHON_METHODS = [m for m in METHODS if m not in ("min_degree", "multilevel", "polish")]
try:
    import graphattn._ordering_native  # noqa: F401

    NATIVE = {"multilevel", "polish"}  # auto's candidates that need the C++ core
except ImportError:  # pragma: no cover - depends on the installation
    NATIVE = set()


def assert_permutation(o: Ordering, n: int):
    assert o.perm.dtype == torch.int64 and o.inverse.dtype == torch.int64
    assert torch.equal(torch.sort(o.perm).values, torch.arange(n))
    assert torch.equal(o.inverse[o.perm], torch.arange(n))


@pytest.fixture(scope="module")
def cloud():
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(1500, 3, generator=g)
    return pos, knn_graph(pos, k=12)


def test_public_names_are_exported():
    assert graphattn.order is order and graphattn.Ordering is Ordering and graphattn.count_tiles is count_tiles


@pytest.mark.parametrize("method", PYTHON_METHODS)
def test_every_method_is_a_permutation_and_counts_its_tiles(cloud, method):
    pos, ei = cloud
    o = order(ei, pos, method=method, block_size=32)
    assert_permutation(o, 1500)
    assert o.block_size == 32 and o.method != "auto"
    assert o.tiles == brute_force_tiles(ei, o.perm, 32) == count_tiles(ei, 1500, 32, perm=o.perm)


def test_orderings_beat_random_and_kd_beats_morton_on_uniform_volume(cloud):
    pos, ei = cloud
    tiles = {m: order(ei, pos, method=m).tiles for m in ("random", "morton", "hilbert", "kd", "rcm", "partition")}
    for m in ("morton", "hilbert", "kd", "rcm", "partition"):
        assert tiles[m] < 0.5 * tiles["random"], tiles
    assert tiles["kd"] < tiles["morton"], tiles


def test_auto_is_never_worse_than_each_candidate(cloud):
    pos, ei = cloud
    o = order(ei, pos, method="auto")
    assert set(o.candidates) == {"kd", "hilbert", "morton", "rcm", "bands", "partition", "identity"} | NATIVE
    assert o.tiles == min(o.candidates.values())
    for name, tiles in o.candidates.items():
        assert order(ei, pos, method=name).tiles == tiles
    assert o.method in o.candidates and o.candidates[o.method] == o.tiles


def test_auto_graph_only_and_positions_only(cloud):
    pos, ei = cloud
    graph_only = order(ei, method="auto")
    assert set(graph_only.candidates) == {"partition", "rcm", "bands", "identity"} | NATIVE
    assert graph_only.tiles == min(graph_only.candidates.values())
    pos_only = order(pos=pos, method="auto")
    assert pos_only.tiles is None and pos_only.method in ("kd", "hilbert", "morton")
    assert_permutation(pos_only, 1500)


def test_auto_measures_the_given_order():
    # A path graph in file order touches at most 3 tiles per block row, the floor: auto measures
    # that order too and ends no worse than it, whatever the (random) positions suggest.
    n = 640
    src = torch.arange(n - 1)
    path = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], 1)
    pos = torch.rand(n, 3, generator=torch.Generator().manual_seed(0))
    o = order(path, pos, method="auto", block_size=64)
    assert o.candidates["identity"] == count_tiles(path, n, 64) == o.tiles
    assert o.tiles <= min(o.candidates.values())


def test_count_tiles_brute_force_with_duplicates_and_self_loops():
    g = torch.Generator().manual_seed(3)
    ei = torch.randint(0, 300, (2, 2000), generator=g)
    ei = torch.cat([ei, ei[:, :100], torch.arange(50).repeat(2, 1)], 1)  # duplicates, self-loops
    perm = torch.randperm(300, generator=g)
    for b in (16, 64, 256):
        assert count_tiles(ei, 300, b, perm=perm) == brute_force_tiles(ei, perm, b)
        assert count_tiles(ei, 300, b) == brute_force_tiles(ei, torch.arange(300), b)


def test_count_tiles_counts_direction():
    # (0 -> 100) is tile (block 1, block 0); (100 -> 0) is the transposed tile: directed pairs.
    assert count_tiles(torch.tensor([[0], [100]]), 128, 64) == 1
    assert count_tiles(torch.tensor([[0, 100], [100, 0]]), 128, 64) == 2
    assert count_tiles(torch.empty(2, 0, dtype=torch.long), 0) == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 200), density=st.floats(0, 4), dims=st.sampled_from([2, 3]),
       block_size=st.sampled_from([16, 32]), method=st.sampled_from(PYTHON_METHODS), seed=st.integers(0, 3),
       repeated=st.booleans())
def test_property_random_graphs(n, density, dims, block_size, method, seed, repeated):
    g = torch.Generator().manual_seed(seed)
    m = int(n * density)
    ei = torch.randint(0, max(n, 1), (2, m), generator=g) if n else torch.empty(2, 0, dtype=torch.long)
    pos = torch.rand(n, dims, generator=g, dtype=torch.float64)
    if repeated and n:
        pos = torch.round(pos * 2) / 2  # many points on the same coordinates
    o = order(ei, pos, num_nodes=n, method=method, block_size=block_size, seed=seed)
    assert_permutation(o, n)
    assert o.tiles == brute_force_tiles(ei, o.perm, block_size)
    if method == "auto" and o.candidates:
        assert o.tiles == min(o.candidates.values())


@pytest.mark.parametrize("method", PYTHON_METHODS)
def test_edge_cases_just_work(method):
    empty = torch.empty(2, 0, dtype=torch.long)
    # N = 0 and N = 1
    assert order(empty, torch.zeros(0, 3), method=method).perm.numel() == 0
    assert order(empty, torch.zeros(1, 3), method=method).perm.tolist() == [0]
    # no edges, isolated nodes, N not a multiple of the block size
    o = order(empty, torch.rand(70, 3), num_nodes=70, method=method)
    assert_permutation(o, 70) and o.tiles == 0
    # disconnected components + isolated nodes + self-loops + duplicate edges, repeated coordinates
    ei = torch.tensor([[0, 1, 2, 1, 5, 5, 40, 41, 41], [1, 2, 0, 0, 5, 6, 41, 40, 40]])
    pos = torch.zeros(100, 2)
    o = order(ei, pos, method=method, block_size=16)
    assert_permutation(o, 100)
    assert o.tiles == brute_force_tiles(ei, o.perm, 16)


def test_num_nodes_only_and_identity():
    o = order(num_nodes=5, method="random", seed=1)
    assert_permutation(o, 5) and o.tiles is None
    assert order(num_nodes=5).perm.tolist() == list(range(5))


def test_ordering_moves_data_and_edges_consistently(cloud):
    pos, ei = cloud
    o = order(ei, pos, method="hilbert")
    x = torch.randn(1500, 4)
    x_new = o.permute(x)
    assert torch.equal(x_new, x[o.perm]) and torch.equal(o.unpermute(x_new), x)
    assert torch.equal(o.permute(x.t(), dim=1), x_new.t())
    new_ei = o.apply_to_edge_index(ei)
    # the same edge set, renamed: (j, i) -> (inverse[j], inverse[i])
    assert torch.equal(o.perm[new_ei], ei)
    assert count_tiles(new_ei, 1500) == o.tiles
    assert "hilbert" in repr(o) and "tiles=" in repr(o)
    with pytest.raises(ValueError, match="1500 entries"):
        o.permute(torch.randn(10, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        o.permute([1, 2])


def test_batch_orders_inside_each_graph_and_keeps_them_in_order():
    g = torch.Generator().manual_seed(5)
    sizes = [100, 1, 0, 257, 64]
    parts, edges, offset = [], [], 0
    for size in sizes:
        p = torch.rand(size, 3, generator=g)
        parts.append(p)
        if size > 1:
            edges.append(knn_graph(p, k=6) + offset)
        offset += size
    pos = torch.cat(parts)
    ei = torch.cat(edges, 1)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    for method in ("auto", "kd", "hilbert", "partition", "rcm", "random", "multilevel", "bands"):
        o = order(ei, pos, batch=batch, method=method, block_size=16)
        assert_permutation(o, pos.shape[0])
        assert torch.equal(batch[o.perm], batch), method  # every graph keeps its contiguous range
        assert o.tiles == brute_force_tiles(ei, o.perm, 16)
    # graph 3 starts at 101 (phase 5 of 16): its kd cuts fall on the global block grid, which
    # beats ordering it alone and shifting the result onto the misaligned range.
    ei3 = edges[1]
    aligned = order(ei, pos, batch=batch, method="kd", block_size=16).perm
    shifted = aligned.clone()
    shifted[101:358] = order(ei3 - 101, parts[3], method="kd", block_size=16).perm + 101
    assert count_tiles(ei3, pos.shape[0], 16, perm=aligned) < count_tiles(ei3, pos.shape[0], 16, perm=shifted)


def test_batch_rejects_edges_between_graphs_and_bad_batches():
    ei = torch.tensor([[0], [3]])
    with pytest.raises(ValueError, match="different graphs"):
        order(ei, num_nodes=4, batch=torch.tensor([0, 0, 1, 1]), method="rcm")
    with pytest.raises(ValueError, match="non-decreasing"):
        order(num_nodes=3, batch=torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="shape \\[3\\]"):
        order(num_nodes=3, batch=torch.tensor([0, 0]))
    with pytest.raises(TypeError, match="batch must hold integer"):
        order(num_nodes=2, batch=torch.tensor([0.0, 0.0]))


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(edge_index=torch.zeros(3, 4, dtype=torch.long)), ValueError, "edge_index must have shape \\[2, E\\]"),
    (dict(edge_index=torch.zeros(2, 4)), TypeError, "edge_index must hold integers"),
    (dict(edge_index=[[0], [1]]), TypeError, "edge_index must be a torch.Tensor"),
    (dict(edge_index=torch.tensor([[0], [-1]])), ValueError, "negative"),
    (dict(edge_index=torch.tensor([[0], [9]]), num_nodes=5), ValueError, "out of range for 5 nodes"),
    (dict(edge_index=torch.tensor([[0], [9]]), pos=torch.rand(5, 3)), ValueError, "out of range for 5 nodes"),
    (dict(pos=torch.rand(5, 4)), ValueError, "pos must have shape \\[N, 2\\] or \\[N, 3\\]"),
    (dict(pos=torch.ones(5, 3, dtype=torch.int64)), TypeError, "pos must be floating"),
    (dict(pos=torch.tensor([[0.0, float("nan"), 0.0]])), ValueError, "NaN or inf"),
    (dict(pos=torch.tensor([[0.0, float("inf")]])), ValueError, "NaN or inf"),
    (dict(pos=torch.rand(5, 3), num_nodes=6), ValueError, "5 rows but the graph has 6 nodes"),
    (dict(pos=torch.rand(5, 3), method="nested"), ValueError, "method must be one of auto, identity"),
    (dict(pos=torch.rand(5, 3), method=3), TypeError, "method must be a str"),
    (dict(pos=torch.rand(5, 3), block_size=48), ValueError, "block_size must be a power of two in \\[16, 256\\]"),
    (dict(pos=torch.rand(5, 3), block_size=512), ValueError, "block_size must be a power of two"),
    (dict(pos=torch.rand(5, 3), block_size=64.0), TypeError, "block_size must be an int"),
    (dict(pos=torch.rand(5, 3), method="rcm"), ValueError, "method='rcm' orders by the graph and needs edge_index"),
    (dict(pos=torch.rand(5, 3), method="partition"), ValueError, "needs edge_index"),
    (dict(pos=torch.rand(5, 3), method="min_degree"), ValueError, "needs edge_index"),
    (dict(edge_index=torch.tensor([[0], [1]]), method="hilbert"), ValueError, "method='hilbert' orders by coordinates and needs pos"),
    (dict(edge_index=torch.tensor([[0], [1]]), method="kd"), ValueError, "needs pos"),
    (dict(pos=torch.rand(5, 3), refine=True), ValueError, "refine needs edge_index"),
    (dict(edge_index=torch.tensor([[0], [1]]), refine=-1.0), ValueError, "refine must be a bool or a positive"),
    (dict(edge_index=torch.tensor([[0], [1]]), refine="yes"), TypeError, "refine must be a bool"),
    (dict(pos=torch.rand(5, 3), seed=1.5), TypeError, "seed must be an int"),
    (dict(), ValueError, "order needs edge_index, pos or num_nodes"),
])
def test_bad_input_raises_a_named_error(kwargs, error, text):
    with pytest.raises(error, match=text):
        order(**kwargs)


def test_count_tiles_bad_input():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="perm must be a permutation"):
        count_tiles(ei, 3, perm=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="perm must have shape \\[3\\]"):
        count_tiles(ei, 3, perm=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="out of range for 2 nodes"):
        count_tiles(ei, 2)
    with pytest.raises(ValueError, match="block_size"):
        count_tiles(ei, 3, block_size=100)


def test_mesh_edge_graph_of_a_grid_is_ordered_well():
    # A 64 x 64 quad grid with B = 64: RCM's level sets are grid rows-ish diagonals, so each block
    # touches only itself and its two neighbours (3 tiles per row, the optimum for this width);
    # kd finds 8 x 8 patches (at most 5 tiles: itself and 4 sides). auto must find the best.
    side = 64
    ids = torch.arange(side * side).view(side, side)
    quads = torch.stack([ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]], -1).reshape(-1, 4)
    ei = mesh_edges(quads, side * side)
    xy = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2).double()
    tiles = {m: order(ei, xy, method=m).tiles / 64 for m in ("kd", "partition", "rcm", "bands", "hilbert", "auto")}
    assert tiles["rcm"] <= 3.0 and tiles["bands"] <= 3.0 and tiles["kd"] <= 5.0 and tiles["partition"] < 8.0, tiles
    assert tiles["auto"] == min(tiles.values()), tiles


@pytest.mark.parametrize("dims, side", [(2, 16), (3, 8)])
def test_hilbert_visits_grid_cells_as_a_continuous_path(dims, side):
    # On a full 2^k grid the Hilbert curve steps to an adjacent cell every time; Morton jumps.
    axes = torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * dims, indexing="ij")
    pos = torch.stack(axes, -1).reshape(-1, dims)
    for method, continuous in (("hilbert", True), ("morton", False)):
        ordered = pos[order(pos=pos, method=method).perm]
        steps = (ordered[1:] - ordered[:-1]).abs().sum(1)
        assert bool((steps == 1).all()) is continuous, method


def test_morton_interleaves_bits_x_major():
    cube = torch.tensor([[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)])
    shuffled = cube[torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])]
    ordered = shuffled[order(pos=shuffled, method="morton").perm]
    assert torch.equal(ordered, cube)  # code = x bit, y bit, z bit from the top


def test_native_core_missing_gives_a_build_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "graphattn._ordering_native", None)
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ImportError, match="pip install -e"):
        order(ei, method="min_degree")
    with pytest.raises(ImportError, match="pip install -e"):
        order(ei, num_nodes=200, method="rcm", refine=True)
    with pytest.raises(ImportError, match="pip install -e"):
        order(ei, method="multilevel")
    # everything else works without it; auto leaves multilevel out
    o = order(ei, torch.rand(3, 3), method="auto")
    assert o.tiles >= 1 and "multilevel" not in o.candidates


def test_rcm_is_scipys_reverse_cuthill_mckee():
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    from graphattn.ordering.adjacency import Adjacency
    from graphattn.ordering.graph_orders import rcm_order
    from graphattn.ordering.tiles import InEdges

    g = torch.Generator().manual_seed(11)
    pos = torch.rand(700, 2, generator=g)
    ei = torch.cat([knn_graph(pos[:500], k=5), knn_graph(pos[500:650], k=3) + 500], 1)  # + isolated nodes
    adjacency = Adjacency(InEdges(ei[0].numpy(), ei[1].numpy(), 700))
    expected = reverse_cuthill_mckee(adjacency.to_scipy(), symmetric_mode=True)
    assert np.array_equal(rcm_order(adjacency), expected)


def test_bands_start_at_the_end_of_a_long_strip():
    # A 400 x 10 quad strip with a pendant node hung on its middle: RCM starts at the pendant (the
    # lowest degree), so its levels grow both ways and every level is two pieces far apart in the
    # order; bands start at an end of the strip, where the levels are single cross-sections.
    length, width = 400, 10
    ids = torch.arange(length * width).view(length, width)
    quads = torch.stack([ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]], -1).reshape(-1, 4)
    n = length * width + 1
    pendant = torch.tensor([[n - 1, ids[length // 2, 0]], [ids[length // 2, 0], n - 1]])
    ei = torch.cat([mesh_edges(quads, n), pendant], 1)
    rcm, bands = order(ei, method="rcm", block_size=16), order(ei, method="bands", block_size=16)
    assert bands.tiles < 0.9 * rcm.tiles, (bands.tiles, rcm.tiles)
    assert bands.tiles <= 3 * -(-n // 16)  # one cross-section band per block: itself and two neighbours


def test_symmetrised_pattern_matches_scipy():
    # Adjacency (parallel transpose + merge) is the pattern of A + A^T without the diagonal, with
    # duplicates and self-loops dropped, rows in first-seen order (in-neighbours, then out).
    import scipy.sparse as sp

    from graphattn.ordering.adjacency import Adjacency
    from graphattn.ordering.tiles import InEdges

    g = torch.Generator().manual_seed(12)
    n = 500
    ei = torch.randint(0, n, (2, 3000), generator=g)
    ei = torch.cat([ei, ei[:, :300], torch.arange(0, n, 7).repeat(2, 1)], 1)
    adjacency = Adjacency(InEdges(ei[0].numpy(), ei[1].numpy(), n))
    a = sp.csr_matrix((np.ones(ei.shape[1]), (ei[1].numpy(), ei[0].numpy())), shape=(n, n))
    expected = ((a + a.T) != 0).astype(np.int8).tolil()
    expected.setdiag(0)
    expected = expected.tocsr()
    expected.eliminate_zeros()
    got = adjacency.to_scipy()
    assert (got != expected).nnz == 0 and got.nnz == expected.nnz
    for v in (0, 7, 123, 499):  # first-seen order: in-neighbours in edge order, then out-neighbours
        row = adjacency.nbrs[adjacency.ptr[v]:adjacency.ptr[v + 1]].tolist()
        seen = []
        for u in ei[0][ei[1] == v].tolist() + sorted(ei[1][ei[0] == v].tolist()):
            if u != v and u not in seen:
                seen.append(u)
        assert row == seen


@pytest.mark.parametrize("offset", [0, 5, 64, 101])
def test_tiles_of_a_permutation_at_an_offset(offset):
    # What auto counts for one graph of a batch: its local order placed at global position offset.
    from graphattn.ordering.tiles import InEdges, tiles_of_perm

    g = torch.Generator().manual_seed(offset)
    n = 300
    ei = torch.randint(0, n, (2, 1500), generator=g)
    perm = torch.randperm(n, generator=g)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    expected = len({((int(inverse[d]) + offset) // 16, (int(inverse[s]) + offset) // 16) for s, d in ei.t().tolist()})
    assert tiles_of_perm(InEdges(ei[0].numpy(), ei[1].numpy(), n), perm.numpy(), 16, offset) == expected
