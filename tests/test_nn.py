"""GraphAttention against torch_geometric's TransformerConv with the same (loaded) weights."""
import itertools

import pytest
import torch
from torch_geometric.nn import TransformerConv
from torch_geometric.utils import coalesce

from conftest import random_graph
from graphattn import GraphBlockMask
from graphattn.nn import GraphAttention, GraphCache
from graphattn.ops import reference_attention

try:  # the tile path goes through graphattn.ops.graph_attention, landing separately
    import graphattn.ops.attention  # noqa: F401
    HAS_GRAPH_ATTENTION = True
except ImportError:
    HAS_GRAPH_ATTENTION = False
needs_graph_attention = pytest.mark.skipif(not HAS_GRAPH_ATTENTION, reason="graphattn.ops.graph_attention missing")


def graph_with_isolated_nodes(num_nodes=40, num_edges=160, seed=0):
    """Coalesced random edges; the last 5 nodes have no incoming edge (isolated as targets)."""
    edges = random_graph(num_nodes, num_edges, seed=seed)
    edges = edges[:, edges[1] < num_nodes - 5]
    return coalesce(edges, num_nodes=num_nodes)


def relative_error(actual, expected, scale=None):
    """Max abs difference over max abs expected value (or over ``scale`` for tensors that are ~0)."""
    actual, expected = actual.detach(), expected.detach()
    scale = float(expected.abs().max()) if scale is None else scale
    return float((actual - expected).abs().max()) / max(scale, 1e-300)


def pair(in_channels, out_channels, dtype, seed=0, **kwargs):
    """A TransformerConv with random weights and a GraphAttention that loaded them."""
    torch.manual_seed(seed)
    conv = TransformerConv(in_channels, out_channels, **kwargs).to(dtype)
    torch.manual_seed(seed + 100)  # different init: the weights must come from load_state_dict
    layer = GraphAttention(in_channels, out_channels, **kwargs).to(dtype)
    layer.load_state_dict(conv.state_dict())
    return conv, layer


OPTIONS = list(itertools.product([True, False], [False, True], [True, False], [None, 3, 9], [True, False]))


@pytest.mark.parametrize("concat,beta,root_weight,edge_dim,bias", OPTIONS)
def test_matches_transformer_conv_float64(concat, beta, root_weight, edge_dim, bias):
    num_nodes, channels = 40, 6   # edge_dim 3 < channels: low-rank edge form; 9 >= channels: direct
    edges = graph_with_isolated_nodes(num_nodes)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(num_nodes, 7, generator=g, dtype=torch.float64)
    edge_attr = None if edge_dim is None else torch.randn(edges.shape[1], edge_dim, generator=g, dtype=torch.float64)
    conv, layer = pair(7, channels, torch.float64, heads=3, concat=concat, beta=beta, root_weight=root_weight,
                       edge_dim=edge_dim, bias=bias)
    expected, (expected_edges, expected_alpha) = conv(x, edges, edge_attr, return_attention_weights=True)
    out, (out_edges, alpha) = layer(x, edges, edge_attr, return_attention_weights=True)
    assert out_edges is edges
    assert out.shape == expected.shape and alpha.shape == expected_alpha.shape == (edges.shape[1], 3)
    assert relative_error(out, expected) <= 1e-9
    assert relative_error(alpha, expected_alpha) <= 1e-9
    plain = layer(x, edges, edge_attr)                      # without attention weights: the fast path
    assert relative_error(plain, expected) <= 1e-9


@pytest.mark.parametrize("edge_dim", [None, 2])
def test_gradients_match_transformer_conv_float64(edge_dim):
    edges = graph_with_isolated_nodes(30, 120, seed=3)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    edge_attr = None if edge_dim is None else torch.randn(edges.shape[1], edge_dim, generator=g, dtype=torch.float64)
    conv, layer = pair(5, 4, torch.float64, heads=2, beta=True, edge_dim=edge_dim)
    weight = torch.randn(30, 8, generator=g, dtype=torch.float64)
    grads = []
    for module in (conv, layer):
        xx = x.clone().requires_grad_(True)
        ea = None if edge_attr is None else edge_attr.clone().requires_grad_(True)
        (module(xx, edges, ea) * weight).sum().backward()
        grads.append([xx.grad] + ([] if ea is None else [ea.grad]) + [p.grad for p in module.parameters()])
    # Some gradients are exactly 0 in theory (the key bias shifts every score of a row equally),
    # so each is compared on the scale of all gradients.
    scale = max(float(g.abs().max()) for g in grads[0])
    for expected, actual in zip(*grads):
        assert relative_error(actual, expected, scale) <= 1e-9


@pytest.mark.parametrize("concat,beta,edge_dim", [(True, False, None), (False, True, 4), (True, True, 2)])
def test_matches_transformer_conv_float32(concat, beta, edge_dim):
    edges = graph_with_isolated_nodes(60, 300, seed=5)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(60, 16, generator=g)
    edge_attr = None if edge_dim is None else torch.randn(edges.shape[1], edge_dim, generator=g)
    conv, layer = pair(16, 8, torch.float32, heads=4, concat=concat, beta=beta, edge_dim=edge_dim)
    expected, (_, expected_alpha) = conv(x, edges, edge_attr, return_attention_weights=True)
    out, (_, alpha) = layer(x, edges, edge_attr, return_attention_weights=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alpha, expected_alpha, rtol=1e-5, atol=1e-6)


def test_bipartite_input_matches_transformer_conv():
    num_src, num_dst = 23, 11
    g = torch.Generator().manual_seed(6)
    src = torch.randint(0, num_src, (70,), generator=g)
    dst = torch.randint(0, num_dst - 2, (70,), generator=g)  # the last 2 targets get no edge
    edges = coalesce(torch.stack([src, dst]))
    x_src = torch.randn(num_src, 5, generator=g, dtype=torch.float64)
    x_dst = torch.randn(num_dst, 3, generator=g, dtype=torch.float64)
    edge_attr = torch.randn(edges.shape[1], 2, generator=g, dtype=torch.float64)
    for edge_dim in (None, 2):
        conv, layer = pair((5, 3), 4, torch.float64, heads=2, beta=True, edge_dim=edge_dim)
        ea = edge_attr if edge_dim else None
        expected, (_, expected_alpha) = conv((x_src, x_dst), edges, ea, return_attention_weights=True)
        out, (_, alpha) = layer((x_src, x_dst), edges, ea, return_attention_weights=True)
        assert out.shape == (num_dst, 8)
        assert relative_error(out, expected) <= 1e-9
        assert relative_error(alpha, expected_alpha) <= 1e-9
        # The plain path with a mask of shape (num_dst, num_src), through graphattn.ops.
        if edge_dim is None and HAS_GRAPH_ATTENTION:
            mask = GraphBlockMask.from_edge_index(edges, (num_dst, num_src), block_size=16)
            assert relative_error(layer((x_src, x_dst), edges, block_mask=mask), expected) <= 1e-9


def test_isolated_nodes_get_the_skip_term_only_and_finite_gradients():
    edges = graph_with_isolated_nodes(40)
    x = torch.randn(40, 7, dtype=torch.float64, requires_grad=True)
    layer = GraphAttention(7, 6, heads=3).double()
    out = layer(x, edges)
    torch.testing.assert_close(out[-5:], layer.lin_skip(x)[-5:], rtol=0, atol=0)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr, torch.sparse_csc])
def test_torch_sparse_adjacency_matches_transformer_conv(layout):
    edges = graph_with_isolated_nodes(25, 100, seed=7)
    x = torch.randn(25, 6, dtype=torch.float64)
    adj_t = torch.sparse_coo_tensor(edges.flip(0), torch.ones(edges.shape[1], dtype=torch.float64),
                                    (25, 25)).coalesce()
    adj_t = {torch.sparse_coo: adj_t, torch.sparse_csr: adj_t.to_sparse_csr(),
             torch.sparse_csc: adj_t.to_sparse_csc()}[layout]
    conv, layer = pair(6, 4, torch.float64, heads=2)
    expected = conv(x, edges)
    out = layer(x, adj_t)
    assert relative_error(out, expected) <= 1e-9
    if layout != torch.sparse_csc:  # PyG reads CSC values in another order than its own indices
        expected, (_, expected_alpha) = conv(x, adj_t, return_attention_weights=True)
        out, (returned, alpha) = layer(x, adj_t, return_attention_weights=True)
        assert returned is adj_t
        assert relative_error(alpha, expected_alpha) <= 1e-9


def test_duplicate_edges_count_once():
    edges = graph_with_isolated_nodes(30, 100, seed=8)
    doubled = torch.cat([edges, edges[:, :17]], dim=1)[:, torch.randperm(edges.shape[1] + 17)]
    x = torch.randn(30, 5, dtype=torch.float64)
    layer = GraphAttention(5, 4, heads=2).double()
    expected, (_, alpha_set) = layer(x, edges, return_attention_weights=True)
    out, (_, alpha) = layer(x, doubled, return_attention_weights=True)
    assert relative_error(out, expected) <= 1e-12
    assert relative_error(layer(x, doubled), expected) <= 1e-12
    # Each listed copy reports the probability of its (single) distinct edge.
    position = torch.searchsorted(edges[0] * 30 + edges[1], doubled[0] * 30 + doubled[1])  # PyG's order
    assert relative_error(alpha, alpha_set[position]) <= 1e-12
    # and the plain attention equals the reference oracle
    q = layer.lin_query(x).view(-1, 2, 4)
    k = layer.lin_key(x).view(-1, 2, 4)
    v = layer.lin_value(x).view(-1, 2, 4)
    oracle = reference_attention(q, k, v, doubled).reshape(30, 8) + layer.lin_skip(x)
    assert relative_error(out, oracle) <= 1e-12


def test_same_seed_same_weights_and_state_dict_keys():
    for kwargs in (dict(heads=2, beta=True, edge_dim=3), dict(heads=3, concat=False, beta=True),
                   dict(root_weight=False, bias=False)):
        torch.manual_seed(11)
        conv = TransformerConv((6, 5), 4, **kwargs)
        torch.manual_seed(11)
        layer = GraphAttention((6, 5), 4, **kwargs)
        assert list(conv.state_dict()) == list(layer.state_dict())
        for name, value in conv.state_dict().items():
            assert torch.equal(layer.state_dict()[name], value), name
        assert repr(layer) == repr(conv).replace("TransformerConv", "GraphAttention")
        layer.reset_parameters()
        assert not torch.equal(layer.lin_key.weight, conv.lin_key.weight)


def test_lazy_in_channels_match_transformer_conv():
    edges = graph_with_isolated_nodes(20, 60, seed=9)
    x = torch.randn(20, 7)
    edge_attr = torch.randn(edges.shape[1], 3)
    torch.manual_seed(3)
    conv = TransformerConv(-1, 4, heads=2, edge_dim=-1)
    expected = conv(x, edges, edge_attr)
    torch.manual_seed(3)
    layer = GraphAttention(-1, 4, heads=2, edge_dim=-1)
    out = layer(x, edges, edge_attr)
    assert layer.lin_key.weight.shape == (8, 7) and layer.lin_edge.weight.shape == (8, 3)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("edge_dim", [None, 3])
def test_attention_dropout_in_training_matches_transformer_conv(edge_dim):
    edges = graph_with_isolated_nodes(30, 150, seed=10)
    x = torch.randn(30, 6, dtype=torch.float64)
    edge_attr = None if edge_dim is None else torch.randn(edges.shape[1], edge_dim, dtype=torch.float64)
    conv, layer = pair(6, 4, torch.float64, heads=2, dropout=0.5, edge_dim=edge_dim)
    conv.train()
    layer.train()
    torch.manual_seed(99)   # both draw one [E, H] dropout mask, in the same order
    expected = conv(x, edges, edge_attr)
    torch.manual_seed(99)
    out = layer(x, edges, edge_attr)
    assert relative_error(out, expected) <= 1e-9
    conv.eval()
    layer.eval()
    no_dropout = conv(x, edges, edge_attr)
    assert not torch.allclose(no_dropout, expected)
    assert relative_error(layer(x, edges, edge_attr), no_dropout) <= 1e-9


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cpu(dtype):
    edges = graph_with_isolated_nodes(50, 250, seed=12)
    x = torch.randn(50, 16)
    conv, layer = pair(16, 8, torch.float64, heads=2)
    expected = conv(x.double(), edges)
    out = layer.to(dtype)(x.to(dtype), edges)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=5e-2, atol=5e-2)


@needs_graph_attention
def test_mask_is_built_once_per_graph_not_per_layer():
    cache = GraphCache()
    layers = torch.nn.ModuleList(GraphAttention(8, 4, heads=2, backend="reference", block_size=16, cache=cache)
                                 for _ in range(3))
    edges = graph_with_isolated_nodes(50, 200, seed=13)
    x = torch.randn(50, 8)

    def model(x, edges):
        for layer in layers:
            x = layer(x, edges).relu()
        return x

    first = model(x, edges)
    assert cache.mask_builds == 1
    second = model(x, edges)
    assert cache.mask_builds == 1 and torch.equal(first, second)
    model(x, edges.clone())              # another edge_index object: one more build
    assert cache.mask_builds == 2
    edges[0, 0] = (edges[0, 0] + 1) % 50  # edited in place: its version changed, so rebuild
    model(x, edges)
    assert cache.mask_builds == 3


@needs_graph_attention
def test_mask_path_matches_edge_path():
    edges = graph_with_isolated_nodes(70, 400, seed=14)
    x = torch.randn(70, 8, dtype=torch.float64)
    layer = GraphAttention(8, 4, heads=2, beta=True).double()
    expected = layer(x, edges)
    mask = GraphBlockMask.from_edge_index(edges, 70, block_size=32)
    assert relative_error(layer(x, edges, block_mask=mask), expected) <= 1e-12
    layer.backend = "reference"   # builds its own mask
    assert relative_error(layer(x, edges), expected) <= 1e-12


def test_bad_inputs_raise_clear_errors():
    edges = graph_with_isolated_nodes(20, 60, seed=15)
    x = torch.randn(20, 6)
    layer = GraphAttention(6, 4, heads=2)
    with pytest.raises(ValueError, match="source index 20, out of range"):
        layer(x, torch.tensor([[20], [0]]))
    with pytest.raises(ValueError, match="target index 25"):
        layer(x, torch.tensor([[0], [25]]))
    with pytest.raises(ValueError, match="negative"):
        layer(x, torch.tensor([[-1], [0]]))
    with pytest.raises(TypeError, match="edge_index must hold integers"):
        layer(x, edges.float())
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\]"):
        layer(x, edges[:1])
    with pytest.raises(TypeError, match="x must be floating point"):
        layer(x.long(), edges)
    with pytest.raises(ValueError, match="edge_attr was given but the layer has no edge_dim"):
        layer(x, edges, torch.randn(edges.shape[1], 3))
    with_edges = GraphAttention(6, 4, heads=2, edge_dim=3)
    with pytest.raises(ValueError, match="edge_attr is required"):
        with_edges(x, edges)
    with pytest.raises(ValueError, match=r"edge_attr must have shape \[E, edge_dim\]"):
        with_edges(x, edges, torch.randn(edges.shape[1] - 1, 3))
    with pytest.raises(ValueError, match="block_mask was built for a graph of shape"):
        layer(x, edges, block_mask=GraphBlockMask.from_edge_index(edges, 21, block_size=16))
    other = GraphBlockMask.from_edge_index(graph_with_isolated_nodes(20, 60, seed=16), 20, block_size=16)
    with pytest.raises(ValueError, match="block_mask was not built from this edge_index"):
        layer(x, edges, block_mask=other)
    with pytest.raises(TypeError, match="block_mask must be a graphattn.GraphBlockMask, a list"):
        layer(x, edges, block_mask="mask")
    adj_t = torch.sparse_coo_tensor(edges.flip(0), torch.ones(edges.shape[1]), (20, 21))
    with pytest.raises(ValueError, match=r"expected \[num_dst, num_src\] = \[20, 20\]"):
        layer(x, adj_t)
    with pytest.raises(ValueError, match="aggr='mean' is not supported"):
        GraphAttention(6, 4, aggr="mean")
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        GraphAttention(6, 4, foo=1)
    with pytest.raises(ValueError, match="dropout must be a probability"):
        GraphAttention(6, 4, dropout=1.5)
    with pytest.raises(ValueError, match="heads must be a positive int, got 0"):
        GraphAttention(6, 4, heads=0)
    with pytest.raises(ValueError, match="backend must be one of"):
        GraphAttention(6, 4, backend="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("concat,beta", [(True, False), (False, True)])
def test_triton_path_matches_transformer_conv_on_cuda(dtype, concat, beta):
    """The CUDA tile path against TransformerConv's float64 output and input gradient, same weights.

    fp32 runs the kernels' exact (ieee) products; bf16 runs under autocast, where one layer's
    output error is dominated by the bf16 attention (bound 1e-2, issue 4).
    """
    num_nodes = 5000
    pos = torch.rand(num_nodes, 3, generator=torch.Generator().manual_seed(4))
    edges = graphattn_order_knn(pos)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(num_nodes, 32, generator=g, dtype=torch.float64)
    conv, layer = pair(32, 16, torch.float64, heads=4, concat=concat, beta=beta)
    x64 = x.clone().requires_grad_(True)
    expected = conv(x64, edges)
    expected.pow(2).sum().backward()

    layer = layer.float().cuda()
    xx = x.float().cuda().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = layer(xx, edges.cuda())
    out.float().pow(2).sum().backward()
    bound = 1e-2 if dtype == torch.bfloat16 else 1e-4
    assert relative_error(out.float().cpu().double(), expected) <= bound
    if dtype == torch.float32:
        assert relative_error(xx.grad.cpu().double(), x64.grad) <= bound


def graphattn_order_knn(pos):
    """A k=16 k-NN graph in Morton order, coalesced: the workload the tile kernel is built for."""
    import graphattn
    from graphattn.graphs import knn_graph

    edges = knn_graph(pos, k=16)
    ordering = graphattn.order(edges, pos, method="morton")
    return coalesce(ordering.apply_to_edge_index(edges), num_nodes=pos.shape[0])
