"""BlockSparseOrder: every attribute permuted in step, the inverse restores the input, batching."""
import pytest
import torch

pytest.importorskip("graphattn.ordering", reason="graphattn.ordering (the orderings) is not present")
pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch, Data  # noqa: E402

from graphattn import GraphBlockMask  # noqa: E402
from graphattn.graphs import knn_graph  # noqa: E402
from graphattn.nn import GraphAttention  # noqa: E402
from graphattn.ordering import count_tiles  # noqa: E402
from graphattn.transforms import INVERSE_KEY, PERM_KEY, BlockSparseOrder, original_order  # noqa: E402


def sample_graph(num_nodes=300, k=6, seed=0):
    """A shuffled point cloud graph with node, edge, face and graph-level attributes."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(num_nodes, 3, generator=g)
    edge_index = knn_graph(pos, k)
    num_edges = edge_index.shape[1]
    return Data(x=torch.randn(num_nodes, 5, generator=g), pos=pos, y=torch.randn(num_nodes, generator=g),
                node_label=torch.randint(0, 4, (num_nodes,), generator=g),
                edge_index=edge_index, edge_attr=torch.randn(num_edges, 3, generator=g),
                edge_weight=torch.rand(num_edges, generator=g),
                face=torch.randint(0, num_nodes, (3, 50), generator=g),
                graph_feature=torch.randn(1, 7, generator=g), name="sample")


def test_every_attribute_is_permuted_in_step_and_the_inverse_restores_it():
    data = sample_graph()
    out = BlockSparseOrder(block_size=16)(data)
    perm, inverse = out[PERM_KEY], out[INVERSE_KEY]
    assert torch.equal(torch.sort(perm).values, torch.arange(300))
    assert torch.equal(perm[inverse], torch.arange(300))
    for key in ("x", "pos", "y", "node_label"):
        assert torch.equal(out[key], data[key][perm]), key
        assert torch.equal(out[key][inverse], data[key]), key
    # Node indices renumbered, edges in their original order, edge attributes untouched.
    assert torch.equal(out.edge_index, inverse[data.edge_index])
    assert torch.equal(perm[out.edge_index], data.edge_index)
    assert torch.equal(out.face, inverse[data.face]) and torch.equal(perm[out.face], data.face)
    for key in ("edge_attr", "edge_weight", "graph_feature"):
        assert torch.equal(out[key], data[key]), key
    assert out.name == "sample"
    # Each edge still joins the same two points.
    assert torch.equal(out.pos[out.edge_index[0]], data.pos[data.edge_index[0]])
    assert torch.equal(out.pos[out.edge_index[1]], data.pos[data.edge_index[1]])
    assert torch.equal(original_order(out, "x"), data.x)
    assert PERM_KEY not in data  # the input is left unchanged


def test_reordering_reduces_tiles_of_a_shuffled_graph():
    data = sample_graph(num_nodes=2000, k=8, seed=1)
    out = BlockSparseOrder(block_size=16)(data)
    before = count_tiles(data.edge_index, 2000, block_size=16)
    after = count_tiles(out.edge_index, 2000, block_size=16)
    assert after < 0.5 * before


def test_layers_on_the_reordered_graph_give_the_permuted_output():
    data = sample_graph(seed=2)
    out = BlockSparseOrder(block_size=16)(data)
    layer = GraphAttention(5, 4, heads=2, edge_dim=3, beta=True).double()
    expected = layer(data.x.double(), data.edge_index, data.edge_attr.double())
    result = layer(out.x.double(), out.edge_index, out.edge_attr.double())
    torch.testing.assert_close(result, expected[out[PERM_KEY]], rtol=1e-12, atol=1e-12)


def test_applying_twice_composes_with_the_first_order():
    data = sample_graph(seed=3)
    once = BlockSparseOrder(method="rcm", block_size=16)(data)
    twice = BlockSparseOrder(method="hilbert", block_size=32)(once)
    assert torch.equal(twice.x, data.x[twice[PERM_KEY]])
    assert torch.equal(twice.x[twice[INVERSE_KEY]], data.x)
    assert torch.equal(twice[PERM_KEY][twice.edge_index], data.edge_index)


def test_batch_of_reordered_graphs_keeps_a_valid_batch_permutation():
    graphs = [sample_graph(num_nodes=n, seed=n) for n in (97, 300, 41)]
    reordered = [BlockSparseOrder(block_size=16)(g) for g in graphs]
    batch = Batch.from_data_list(reordered)
    original = Batch.from_data_list(graphs)
    perm, inverse = batch[PERM_KEY], batch[INVERSE_KEY]
    assert torch.equal(batch.x, original.x[perm])
    assert torch.equal(batch.x[inverse], original.x)
    assert torch.equal(original_order(batch, "pos"), original.pos)
    assert torch.equal(perm[batch.edge_index], original.edge_index)
    assert torch.equal(perm[batch.face], original.face)
    assert torch.equal(batch.batch, original.batch)  # graphs keep their contiguous node ranges


def test_attached_mask_describes_the_reordered_graph():
    data = sample_graph(seed=4)
    out = BlockSparseOrder(block_size=32, attach_mask=True)(data)
    assert isinstance(out.block_mask, GraphBlockMask)
    assert out.block_mask.shape == (300, 300) and out.block_mask.block_shape == (32, 32)
    rebuilt = GraphBlockMask.from_edge_index(out.edge_index, 300, block_size=32)
    assert rebuilt.fingerprint == out.block_mask.fingerprint
    assert torch.equal(out.block_mask.edge_index(), rebuilt.edge_index())
    again = BlockSparseOrder(block_size=32)(out)   # a stale mask is dropped
    assert "block_mask" not in again


def test_cache_dir_gives_the_same_order_and_stores_it(tmp_path):
    pytest.importorskip("graphattn.cache", reason="graphattn.cache is not present")
    data = sample_graph(seed=5)
    direct = BlockSparseOrder(block_size=16)(data)
    cached = BlockSparseOrder(block_size=16, cache_dir=tmp_path)(data)
    assert torch.equal(cached[PERM_KEY], direct[PERM_KEY])
    assert any(p.is_file() for p in tmp_path.rglob("*"))
    again = BlockSparseOrder(block_size=16, cache_dir=tmp_path, attach_mask=True)(data)
    assert torch.equal(again[PERM_KEY], direct[PERM_KEY])
    assert again.block_mask.fingerprint == GraphBlockMask.from_edge_index(direct.edge_index, 300,
                                                                          block_size=16).fingerprint


def test_repr_names_every_parameter_that_changes_the_output():
    base = BlockSparseOrder()
    assert repr(base) == ("BlockSparseOrder(method='auto', block_size=64, refine=False, seed=0, attach_mask=False, "
                          "objective='packed')")
    variants = [BlockSparseOrder(method="kd"), BlockSparseOrder(block_size=32),
                BlockSparseOrder(refine=True, objective="tiles"), BlockSparseOrder(seed=1),
                BlockSparseOrder(attach_mask=True), BlockSparseOrder(objective="tiles")]
    assert len({repr(v) for v in variants} | {repr(base)}) == 7
    assert repr(BlockSparseOrder(cache_dir="/tmp/somewhere")) == repr(base)


def test_packed_objective_reaches_order_and_the_cache(tmp_path):
    from graphattn.ordering import count_packed_tiles, order

    data = sample_graph(seed=8)
    transform = BlockSparseOrder(cache_dir=tmp_path)  # objective="packed" is the transform's default
    out = transform(data)
    direct = order(data.edge_index, data.pos, method="auto", objective="packed")
    assert torch.equal(out[PERM_KEY], direct.perm)
    cached = transform._cache.get_or_compute(data.pos, data.edge_index, objective="packed")
    assert cached.from_cache and cached.ordering.objective == "packed"
    assert cached.ordering.packed_tiles == count_packed_tiles(data.edge_index, data.num_nodes, perm=direct.perm)
    # the aligned objective's entry is a different one
    assert not transform._cache.get_or_compute(data.pos, data.edge_index).from_cache
    with pytest.raises(ValueError, match="objective must be one of"):
        BlockSparseOrder(objective="speed")
    with pytest.raises(ValueError, match="refine minimises aligned tiles: pass objective='tiles'"):
        BlockSparseOrder(refine=True)


def test_points_without_edges_are_ordered_by_position():
    data = sample_graph(seed=6)
    del data.edge_index, data.edge_attr, data.edge_weight
    out = BlockSparseOrder(method="hilbert", block_size=16)(data)
    assert torch.equal(out.pos, data.pos[out[PERM_KEY]])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        BlockSparseOrder(method="spiral")
    with pytest.raises(ValueError, match="block_size must be a power of two"):
        BlockSparseOrder(block_size=48)
    with pytest.raises(ValueError, match="refine must be"):
        BlockSparseOrder(refine=-1)
    with pytest.raises(TypeError, match="transforms a torch_geometric.data.Data"):
        BlockSparseOrder()({"x": torch.zeros(3)})
    with pytest.raises(ValueError, match="needs an edge_index or pos"):
        BlockSparseOrder()(Data(x=torch.zeros(4, 2)))
