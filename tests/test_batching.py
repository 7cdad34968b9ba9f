"""A Batch of reordered graphs of different sizes through GraphAttention equals each graph alone."""
import pytest
import torch

pytest.importorskip("graphattn.ordering", reason="graphattn.ordering (the orderings) is not present")

from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.loader import DataLoader  # noqa: E402

from graphattn.graphs import knn_graph  # noqa: E402
from graphattn.nn import GraphAttention, GraphCache  # noqa: E402
from graphattn.transforms import BlockSparseOrder  # noqa: E402

SIZES = (37, 150, 90, 1)  # not multiples of the block: graphs share boundary blocks in the batch

try:
    import graphattn.ops.attention  # noqa: F401
    HAS_GRAPH_ATTENTION = True
except ImportError:
    HAS_GRAPH_ATTENTION = False


def graphs(attach_mask=False):
    out = []
    for n in SIZES:
        g = torch.Generator().manual_seed(n)
        pos = torch.rand(n, 3, generator=g)
        edge_index = knn_graph(pos, 6) if n > 1 else torch.empty(2, 0, dtype=torch.long)
        data = Data(x=torch.randn(n, 6, generator=g, dtype=torch.float64), pos=pos, edge_index=edge_index,
                    edge_attr=torch.randn(edge_index.shape[1], 2, generator=g, dtype=torch.float64))
        out.append(BlockSparseOrder(block_size=16, attach_mask=attach_mask)(data))
    return out


class TwoLayers(torch.nn.Module):
    def __init__(self, edge_dim=None, cache=None, **kwargs):
        super().__init__()
        self.first = GraphAttention(6, 4, heads=2, edge_dim=edge_dim, beta=True, block_size=16, cache=cache, **kwargs)
        self.second = GraphAttention(8, 3, heads=2, edge_dim=edge_dim, concat=False, block_size=16, cache=cache,
                                     **kwargs)

    def forward(self, x, edge_index, edge_attr=None, block_mask=None):
        x = self.first(x, edge_index, edge_attr, block_mask=block_mask).relu()
        return self.second(x, edge_index, edge_attr, block_mask=block_mask)


def check_batch_equals_each_graph(model, data_list, use_edge_attr=False, **batch_kwargs):
    batch = Batch.from_data_list(data_list)
    x = batch.x.clone().requires_grad_(True)
    out = model(x, batch.edge_index, batch.edge_attr if use_edge_attr else None, **batch_kwargs)
    out.pow(2).sum().backward()
    for g, data in enumerate(data_list):
        rows = slice(int(batch.ptr[g]), int(batch.ptr[g + 1]))
        xg = data.x.clone().requires_grad_(True)
        alone = model(xg, data.edge_index, data.edge_attr if use_edge_attr else None)
        alone.pow(2).sum().backward()
        torch.testing.assert_close(out[rows], alone, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(x.grad[rows], xg.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("edge_dim", [None, 2])
def test_batch_equals_graphs_alone_edge_path(edge_dim):
    torch.manual_seed(0)
    model = TwoLayers(edge_dim=edge_dim).double()
    check_batch_equals_each_graph(model, graphs(), use_edge_attr=edge_dim is not None)


@pytest.mark.skipif(not HAS_GRAPH_ATTENTION, reason="graphattn.ops.graph_attention missing")
def test_batch_equals_graphs_alone_mask_path_with_one_mask_build_per_batch():
    cache = GraphCache()
    torch.manual_seed(1)
    model = TwoLayers(cache=cache, backend="reference").double()
    data_list = graphs()
    batch = Batch.from_data_list(data_list)
    model(batch.x, batch.edge_index)
    assert cache.mask_builds == 1  # two layers, one mask: built from the batch's edges, no loop per graph
    check_batch_equals_each_graph(model, data_list)


@pytest.mark.skipif(not HAS_GRAPH_ATTENTION, reason="graphattn.ops.graph_attention missing")
def test_batch_of_attached_masks_through_a_data_loader():
    data_list = graphs(attach_mask=True)
    torch.manual_seed(2)
    model = TwoLayers(backend="reference").double()
    batch = next(iter(DataLoader(data_list, batch_size=len(data_list))))
    assert isinstance(batch.block_mask, list) and len(batch.block_mask) == len(data_list)
    check_batch_equals_each_graph(model, data_list, block_mask=batch.block_mask)


def test_attention_weights_of_a_batch_match_each_graph():
    torch.manual_seed(3)
    layer = GraphAttention(6, 4, heads=2).double()
    data_list = graphs()
    batch = Batch.from_data_list(data_list)
    _, (edges, alpha) = layer(batch.x, batch.edge_index, return_attention_weights=True)
    assert edges is batch.edge_index
    start = 0
    for data in data_list:
        _, (_, alone) = layer(data.x, data.edge_index, return_attention_weights=True)
        torch.testing.assert_close(alpha[start:start + alone.shape[0]], alone, rtol=1e-12, atol=1e-12)
        start += alone.shape[0]
