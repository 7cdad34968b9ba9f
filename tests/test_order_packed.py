"""objective="packed": counting and minimising the packed tiles that the GPU kernel walks."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import batched_knn_clouds, random_multigraph
from graphattn import GraphBlockMask
from graphattn.graphs import knn_graph
from graphattn.ops.packed_tiles import packed_tiles_of
from graphattn.ordering import count_packed_tiles, order


def brute_force_packed(edge_index: torch.Tensor, perm: torch.Tensor, block_size: int) -> int:
    """Per block, its distinct keys (sources) and its distinct queries (targets), in packs of W."""
    n = perm.shape[0]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    width = min(block_size, 32)
    keys, queries = {}, {}
    for j, i in edge_index.t().tolist():
        keys.setdefault(int(inverse[i]) // block_size, set()).add(j)
        queries.setdefault(int(inverse[j]) // block_size, set()).add(i)
    return sum(-(-len(s) // width) for side in (keys, queries) for s in side.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300), density=st.floats(0, 5), block_size=st.sampled_from([16, 32, 64]),
       seed=st.integers(0, 5), loops=st.booleans())
def test_property_count_matches_brute_force_and_the_kernels_layout(n, density, block_size, seed, loops):
    ei = random_multigraph(n, density, seed, loops)  # duplicates, self-loops, isolated nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    counted = count_packed_tiles(ei, n, block_size, perm=perm)
    assert counted == brute_force_packed(ei, perm, block_size)
    if ei.shape[1]:
        # what graph_attention(tiles="packed") walks: row-side plus column-side tiles of the mask
        reordered = torch.empty_like(perm)
        reordered[perm] = torch.arange(n)
        packed = packed_tiles_of(GraphBlockMask.from_edge_index(reordered[ei], n, block_size=block_size))
        assert counted == packed.num_row_tiles + packed.num_col_tiles


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 250), density=st.floats(0, 4), block_size=st.sampled_from([16, 32]),
       seed=st.integers(0, 4), loops=st.booleans())
def test_property_auto_packed_is_a_permutation_with_its_exact_count(n, density, block_size, seed, loops):
    ei = random_multigraph(n, density, seed, loops)
    o = order(ei, num_nodes=n, method="auto", objective="packed", block_size=block_size, seed=seed)
    assert torch.equal(torch.sort(o.perm).values, torch.arange(n))
    assert o.packed_tiles == brute_force_packed(ei, o.perm, block_size)
    assert not o.candidates or o.packed_tiles == min(o.candidates.values())


def test_pack_width_is_the_kernels():
    from graphattn.ops.tile_config import PACKED_WIDTH
    from graphattn.ordering.tiles import PACK_WIDTH

    assert PACK_WIDTH == PACKED_WIDTH


@pytest.fixture(scope="module")
def cloud():
    pos = torch.rand(3000, 3, generator=torch.Generator().manual_seed(0))
    return pos, knn_graph(pos, k=12)


def test_auto_keeps_the_fewest_packed_tiles(cloud):
    pos, ei = cloud
    o = order(ei, pos, method="auto", objective="packed")
    assert o.objective == "packed" and o.packed_tiles == min(o.candidates.values())
    assert o.packed_tiles == count_packed_tiles(ei, 3000, perm=o.perm)
    assert o.tiles == order(ei, pos, method=o.method).tiles  # the aligned count is still reported
    assert "polish" not in o.candidates  # the sweep minimises aligned tiles
    for name, packed in o.candidates.items():
        assert count_packed_tiles(ei, 3000, perm=order(ei, pos, method=name).perm) == packed
    # the aligned objective's choice (bands, polished) walks more packed tiles here (measured: 767 vs 445)
    aligned = order(ei, pos, method="auto")
    assert aligned.packed_tiles is None and aligned.objective == "tiles"
    assert o.packed_tiles <= count_packed_tiles(ei, 3000, perm=aligned.perm)


def test_packed_objective_with_a_batch_and_for_a_named_method():
    pos, ei, batch = batched_knn_clouds()
    n = pos.shape[0]
    o = order(ei, pos, batch=batch, method="auto", objective="packed", block_size=32)
    assert torch.equal(batch[o.perm], batch)
    assert o.packed_tiles == count_packed_tiles(ei, n, 32, perm=o.perm)
    kd = order(ei, pos, method="kd", objective="packed")
    assert kd.packed_tiles == count_packed_tiles(ei, n, perm=kd.perm) and kd.candidates == {}
    assert order(pos=pos, method="auto", objective="packed").packed_tiles is None  # no graph to count


def test_large_graph_path_counts_packed_tiles_in_input_ids(monkeypatch):
    from graphattn.ordering import auto

    monkeypatch.setattr(auto, "KD_NUMBERING_EDGES", 0)
    monkeypatch.setattr(auto, "SMALL_GRAPH_EDGES", 0)
    g = torch.Generator().manual_seed(4)
    pos = torch.rand(2000, 3, generator=g)
    ei = knn_graph(pos, k=10)
    o = order(ei, pos, method="auto", objective="packed")
    assert set(o.candidates) <= {"kd", "rcm", "multilevel", "identity"} and "kd" in o.candidates
    assert o.packed_tiles == min(o.candidates.values()) == count_packed_tiles(ei, 2000, perm=o.perm)
    assert o.candidates["identity"] == count_packed_tiles(ei, 2000)


def test_bad_objective_and_refine_with_packed():
    ei = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="objective must be one of 'tiles', 'packed'"):
        order(ei, method="auto", objective="fast")
    with pytest.raises(ValueError, match="refine minimises aligned tiles"):
        order(ei, method="auto", objective="packed", refine=True)


def test_count_packed_tiles_edge_cases():
    assert count_packed_tiles(torch.empty(2, 0, dtype=torch.long), 10) == 0
    assert count_packed_tiles(torch.empty(2, 0, dtype=torch.long), 0) == 0
    # one hub attending to 100 keys in one 64-block: ceil(100/32) row tiles, and each key block
    # (two of them) holds one query: 1 column tile each
    hub = torch.stack([torch.arange(1, 101), torch.zeros(100, dtype=torch.long)])
    assert count_packed_tiles(hub, 101) == 4 + 2
    with pytest.raises(ValueError, match="perm must be a permutation"):
        count_packed_tiles(hub, 101, perm=torch.zeros(101, dtype=torch.long))
    assert count_packed_tiles(hub, 101, block_size=16) == 7 + 7  # 7 row tiles of 16 keys; 7 key blocks
