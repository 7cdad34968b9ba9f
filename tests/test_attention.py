"""graph_attention: the real Triton kernels against float64 oracles.

Without CUDA the kernels run on the CPU through Triton's interpreter; TRITON_INTERPRET must be set
before the kernels are first imported (triton.jit reads it at decoration time), hence at the top of
this module. With CUDA the same tests run compiled on the GPU, and the GPU-only tests at the end run
larger graphs and torch.compile.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from graphattn import GraphBlockMask  # noqa: E402
from graphattn.ops import graph_attention, reference_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# Relative error bounds (‖out − ref‖ / ‖ref‖) against float64, per input dtype: fp32 with exact
# ("ieee") products, and bf16/fp16 inputs whose probabilities are rounded to the input type before
# the P·V and dS·K products, as in FlashAttention.
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 1e-2}


def dense_oracle(q, k, v, adjacency, scale=None):
    """float64 dense softmax over the adjacency [Nq, Nkv] (bool); rows without edges give 0."""
    q, k, v = q.double(), k.double(), v.double()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.einsum("nhd,mhd->hnm", q, k) * scale
    edge = adjacency[None]
    # -1e300 instead of -inf: rows without edges then stay finite (uniform), and the mask zeroes them.
    probs = torch.softmax(torch.where(edge, scores, torch.full_like(scores, -1e300)), -1) * edge
    return torch.einsum("hnm,mhd->nhd", probs, v)


def adjacency_of(edge_index, num_q, num_kv):
    dense = torch.zeros(num_q, num_kv, dtype=torch.bool)
    dense[edge_index[1], edge_index[0]] = True
    return dense


def relative_error(got, want):
    """‖got − want‖ / ‖want‖; where want is exactly zero (e.g. dq of a lone self-loop), ‖got‖."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    scale = want.norm()
    return float((got - want).norm() / (scale if scale > 0 else 1.0))


@pytest.fixture(params=["aligned", "packed"])
def tiles(request):
    """Both tile walks: the mask's aligned tiles and the packed (compacted) tiles."""
    return request.param


def check_against_oracle(edge_index, num_q, num_kv, heads, head_dim, block, dtype=torch.float32, seed=0,
                         scale=None, tiles="aligned"):
    """Runs forward + backward on the kernels and compares out, dq, dk, dv with the float64 oracle."""
    g = torch.Generator().manual_seed(seed)
    q64 = torch.randn(num_q, heads, head_dim, generator=g, dtype=torch.float64)
    k64 = torch.randn(num_kv, heads, head_dim, generator=g, dtype=torch.float64)
    v64 = torch.randn(num_kv, heads, head_dim, generator=g, dtype=torch.float64)
    grad = torch.randn(num_q, heads, head_dim, generator=g, dtype=torch.float64)
    mask = GraphBlockMask.from_edge_index(edge_index, (num_q, num_kv), block_size=block).to(DEVICE)
    # Round the inputs to the kernel dtype first, so the oracle sees exactly what the kernel sees.
    q, k, v = (t.to(dtype).to(DEVICE).requires_grad_() for t in (q64, k64, v64))
    out = graph_attention(q, k, v, mask, scale=scale, backend="triton", tiles=tiles)
    out.backward(grad.to(dtype).to(DEVICE))

    leaves = [t.detach().cpu().double().requires_grad_() for t in (q, k, v)]
    want = dense_oracle(*leaves, adjacency_of(edge_index, num_q, num_kv), scale)
    want.backward(grad.to(dtype).double())
    tol = TOLERANCE[dtype]
    assert out.dtype == dtype and out.shape == (num_q, heads, head_dim)
    assert torch.isfinite(out).all()
    assert relative_error(out.cpu(), want.detach()) <= tol
    for name, leaf, ref in zip("qkv", (q, k, v), leaves):
        assert leaf.grad.dtype == dtype
        err = relative_error(leaf.grad.cpu(), ref.grad)
        assert err <= tol, f"d{name} relative error {err:.2e} > {tol:.0e}"
    return out, mask, (q, k, v)


def random_edges(num_q, num_kv, num_edges, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, num_kv, (num_edges,), generator=g),
                        torch.randint(0, num_q, (num_edges,), generator=g)])


def local_edges(num_nodes, radius, seed=0, drop=0.3):
    """Banded graph with random drop-outs: each node attends to some of its index neighbours."""
    g = torch.Generator().manual_seed(seed)
    dst = torch.arange(num_nodes).repeat_interleave(2 * radius + 1)
    src = dst + torch.arange(-radius, radius + 1).repeat(num_nodes)
    keep = (src >= 0) & (src < num_nodes) & (torch.rand(src.shape, generator=g) > drop)
    return torch.stack([src[keep], dst[keep]])


# ---------------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("num_nodes,heads,head_dim,block", [
    (77, 3, 16, 16),            # odd N, boundary tiles in both directions
    (130, 2, 32, (64, 64)),     # two bit words per row
    (101, 1, 64, (32, 64)),     # rectangular tiles
    (45, 2, 24, (16, 32)),      # head dim padded to 32 in registers
])
def test_matches_oracle_fp32(num_nodes, heads, head_dim, block, tiles):
    edges = torch.cat([random_edges(num_nodes, num_nodes, 4 * num_nodes, seed=num_nodes),
                       local_edges(num_nodes, 3, seed=num_nodes)], 1)
    check_against_oracle(edges, num_nodes, num_nodes, heads, head_dim, block, tiles=tiles)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matches_oracle_half(dtype, tiles):
    edges = local_edges(90, 5, seed=1)
    check_against_oracle(edges, 90, 90, 2, 32, 32, dtype=dtype, seed=3, tiles=tiles)


def test_bipartite_and_custom_scale(tiles):
    edges = random_edges(40, 70, 300, seed=5)
    check_against_oracle(edges, 40, 70, 2, 16, (16, 32), scale=0.3, tiles=tiles)


@pytest.mark.parametrize("scale", [-0.45, 0.0])
def test_negative_and_zero_scale(scale, tiles):
    # The kernels take the running max on raw scores and need scale > 0 inside: a negative scale
    # negates q there, and scale 0 (uniform weights over each node's edges) zeroes it.
    edges = torch.cat([random_edges(70, 70, 250, seed=11), local_edges(70, 2, seed=11)], 1)
    check_against_oracle(edges, 70, 70, 2, 16, 32, scale=scale, tiles=tiles)


def test_rows_without_edges_give_exact_zeros_and_zero_grads(tiles):
    num_nodes = 50
    edges = local_edges(num_nodes, 2, seed=2, drop=0.0)
    empty = torch.tensor([0, 7, 8, 31, 49])
    edges = edges[:, ~torch.isin(edges[1], empty)]       # these rows have no incoming edge
    edges = edges[:, edges[1] != edges[0] + 100]
    out, _, (q, _, _) = check_against_oracle(edges, num_nodes, num_nodes, 2, 16, 16, tiles=tiles)
    assert torch.equal(out[empty.to(DEVICE)], torch.zeros_like(out[empty.to(DEVICE)]))
    assert torch.equal(q.grad[empty.to(DEVICE)], torch.zeros_like(q.grad[empty.to(DEVICE)]))


def test_graph_without_any_edge(tiles):
    edges = torch.empty(2, 0, dtype=torch.int64)
    mask = GraphBlockMask.from_edge_index(edges, 20, block_size=16).to(DEVICE)
    q = torch.randn(20, 2, 16, device=DEVICE, requires_grad=True)
    out = graph_attention(q, q, q, mask, backend="triton", tiles=tiles)
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(q.grad, torch.zeros_like(q.grad))


def test_single_node_with_self_loop():
    check_against_oracle(torch.tensor([[0], [0]]), 1, 1, 2, 16, 16)


def test_single_node_without_edges():
    mask = GraphBlockMask.from_edge_index(torch.empty(2, 0, dtype=torch.int64), 1, block_size=16).to(DEVICE)
    q = torch.randn(1, 2, 16, device=DEVICE)
    assert torch.equal(graph_attention(q, q, q, mask, backend="triton"), torch.zeros_like(q))


def test_hub_row_with_thousands_of_edges(tiles):
    num_nodes = 2100
    hub = 1000
    edges = torch.cat([local_edges(num_nodes, 1, seed=4, drop=0.0),
                       torch.stack([torch.arange(num_nodes), torch.full((num_nodes,), hub)])], 1)
    check_against_oracle(edges, num_nodes, num_nodes, 1, 16, (64, 64), seed=4, tiles=tiles)


@pytest.mark.parametrize("width", [16, 64])
def test_packed_widths_other_than_the_default(width):
    """Packed tiles of 16 keys/queries, and of 64 (two bit words per tile row), stay exact."""
    from graphattn.ops import tile_config
    from graphattn.ops.packed_tiles import packed_tiles_of

    num_nodes = 300
    edges = local_edges(num_nodes, 9, seed=8)
    tile_config.OVERRIDES.update(packed_width=width)
    try:
        _, mask, _ = check_against_oracle(edges, num_nodes, num_nodes, 2, 16, (64, 64), seed=8, tiles="packed")
        packed = packed_tiles_of(mask)
    finally:
        tile_config.OVERRIDES.clear()
    assert packed.row_shape == (64, width) and packed.col_shape == (64, width)


@pytest.mark.parametrize("branch", [False, True])
def test_full_tiles_dense_block(branch):
    num_nodes = 56                                        # blocks of 16: the last block has 8 nodes
    dense = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    dense[0:32, 0:32] = True                              # four full interior tiles
    dense[48:56, 32:56] = True                            # full boundary tiles (8 valid rows)
    dense[33, 5] = dense[40, 50] = True                   # partial tiles
    dst, src = dense.nonzero(as_tuple=True)
    edges = torch.stack([src, dst])
    # Both ways of handling full tiles (skip the bit test, or test bits everywhere), both passes.
    from graphattn.ops import tile_config
    tile_config.OVERRIDES.update(full_tile_branch_forward=branch, full_tile_branch_backward=branch)
    try:
        _, mask, _ = check_against_oracle(edges, num_nodes, num_nodes, 2, 16, 16)
    finally:
        tile_config.OVERRIDES.clear()
    assert mask.num_full_tiles >= 6 and mask.num_full_tiles < mask.num_tiles


def _longformer_edges(num_nodes, window, global_nodes):
    i = torch.arange(num_nodes)
    dense = (i[:, None] - i[None, :]).abs() <= window
    dense[global_nodes, :] = True
    dense[:, global_nodes] = True
    dst, src = dense.nonzero(as_tuple=True)
    return torch.stack([src, dst])


def test_longformer_mask(tiles):
    check_against_oracle(_longformer_edges(96, 8, torch.tensor([0, 50])), 96, 96, 2, 16, 16, seed=6, tiles=tiles)


def test_bigbird_mask(tiles):
    num_nodes = 96
    g = torch.Generator().manual_seed(7)
    edges = _longformer_edges(num_nodes, 4, torch.tensor([3]))
    random_part = torch.stack([torch.randint(0, num_nodes, (num_nodes * 3,), generator=g),
                               torch.arange(num_nodes).repeat(3)])
    check_against_oracle(torch.cat([edges, random_part], 1), num_nodes, num_nodes, 2, 16, (32, 16), seed=7, tiles=tiles)


def test_duplicate_edges_count_once():
    edges = local_edges(40, 2, seed=8)
    doubled = torch.cat([edges, edges[:, ::3]], 1)
    check_against_oracle(doubled, 40, 40, 1, 16, 16)


def test_matches_reference_backend_and_non_contiguous_inputs():
    num_nodes, heads, head_dim = 60, 2, 16
    edges = local_edges(num_nodes, 4, seed=9)
    mask = GraphBlockMask.from_edge_index(edges, num_nodes, block_size=16).to(DEVICE)
    base = torch.randn(num_nodes, 3, heads, head_dim, device=DEVICE)
    q, k, v = base.unbind(1)                              # strided views, not contiguous
    assert not q.is_contiguous()
    got = graph_attention(q, k, v, mask, backend="triton")
    want = graph_attention(q.double(), k.double(), v.double(), mask, backend="reference")
    assert relative_error(got, want) <= 1e-5
    want_edges = reference_attention(q.double(), k.double(), v.double(), edges.to(DEVICE))
    assert relative_error(got, want_edges) <= 1e-5


def test_backward_is_bitwise_deterministic(tiles):
    num_nodes = 70
    edges = torch.cat([random_edges(num_nodes, num_nodes, 500, seed=10), local_edges(num_nodes, 2)], 1)
    mask = GraphBlockMask.from_edge_index(edges, num_nodes, block_size=16).to(DEVICE)
    g = torch.Generator().manual_seed(10)
    inputs = [torch.randn(num_nodes, 2, 32, generator=g).to(DEVICE) for _ in range(4)]
    grads = []
    for _ in range(2):
        q, k, v = (t.clone().requires_grad_() for t in inputs[:3])
        graph_attention(q, k, v, mask, backend="triton", tiles=tiles).backward(inputs[3])
        grads.append([t.grad for t in (q, k, v)])
    for first, second in zip(*grads):
        assert torch.equal(first, second)


def test_auto_backend_on_cpu_uses_reference():
    edges = local_edges(30, 2)
    mask = GraphBlockMask.from_edge_index(edges, 30, block_size=16)
    q = torch.randn(30, 1, 8, dtype=torch.float64)        # float64: only the reference takes it
    out = graph_attention(q, q, q, mask)
    assert torch.allclose(out, reference_attention(q, q, q, edges))


# ---------------------------------------------------------------------------------- bad input
def _small():
    edges = local_edges(20, 2)
    mask = GraphBlockMask.from_edge_index(edges, 20, block_size=16).to(DEVICE)
    x = torch.randn(20, 2, 16, device=DEVICE)
    return mask, x


def test_rejects_mask_for_another_node_count():
    mask, _ = _small()
    x = torch.randn(21, 2, 16, device=DEVICE)
    with pytest.raises(ValueError, match="mask"):
        graph_attention(x, x, x, mask, backend="triton")


def test_rejects_bad_shapes_and_types():
    mask, x = _small()
    with pytest.raises(ValueError, match=r"q must have shape \[N, H, D\]"):
        graph_attention(x[:, 0], x, x, mask)
    with pytest.raises(TypeError, match="mask must be a graphattn.GraphBlockMask"):
        graph_attention(x, x, x, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="q, k and v must share one dtype"):
        graph_attention(x, x.half(), x, mask)
    with pytest.raises(ValueError, match="head dim"):
        graph_attention(x, x, x[..., :8], mask, backend="triton")
    with pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        graph_attention(x.double(), x.double(), x.double(), mask, backend="triton")
    with pytest.raises(ValueError, match="head dims up to 128"):
        big = torch.randn(20, 1, 160, device=DEVICE)
        graph_attention(big, big, big, mask, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        graph_attention(x, x, x, mask, backend="cuda")
    with pytest.raises(ValueError, match="tiles must be one of"):
        graph_attention(x, x, x, mask, tiles="compact")
    with pytest.raises(ValueError, match="precision must be one of"):
        graph_attention(x, x, x, mask, precision="fp32")
    with pytest.raises(TypeError, match="scale"):
        graph_attention(x, x, x, mask, scale="big")


@needs_cuda
def test_rejects_mask_on_another_device():
    mask, x = _small()
    with pytest.raises(ValueError, match="mask is on"):
        graph_attention(x, x, x, mask.to("cpu"), backend="triton")


# ---------------------------------------------------------------------------------- GPU only
def _knn_mask(num_points, seed=0, block=64):
    from graphattn.graphs import knn_graph

    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(num_points, 3, generator=g)
    # Sort along a coarse grid so neighbours share tiles, as an ordering would.
    cell = (pos * 16).long()
    order = torch.argsort((cell[:, 0] * 16 + cell[:, 1]) * 16 + cell[:, 2])
    edges = knn_graph(pos[order], k=16, loop=True)
    return edges, GraphBlockMask.from_edge_index(edges, num_points, block_size=block).to("cuda")


@needs_cuda
@pytest.mark.parametrize("dtype,precision,tol", [
    # tf32 keeps 10 mantissa bits of q, k, v and P: measured 1.02e-3 on an H200, hence 2e-3 for
    # this opt-in mode; the default float32 path is exact products (1e-5).
    (torch.float32, "ieee", 1e-5), (torch.float32, "tf32", 2e-3),
    (torch.float16, "ieee", 5e-3), (torch.bfloat16, "ieee", 1e-2)])
@pytest.mark.parametrize("head_dim", [16, 32, 64, 128])
def test_gpu_knn_graph_all_dtypes(dtype, precision, tol, head_dim, tiles):
    edges, mask = _knn_mask(20_011)
    heads = 4
    q, k, v, grad = (torch.randn(20_011, heads, head_dim, device="cuda") for _ in range(4))
    leaves = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    out = graph_attention(*leaves, mask, precision=precision, tiles=tiles)
    out.backward(grad.to(dtype))
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    want = reference_attention(*ref_leaves, edges.cuda())
    want.backward(grad.to(dtype).double())
    assert relative_error(out, want.detach()) <= tol
    for leaf, ref in zip(leaves, ref_leaves):
        assert relative_error(leaf.grad, ref.grad) <= tol


@needs_cuda
def test_gpu_torch_compile_without_graph_breaks(tiles):
    edges, mask = _knn_mask(5000)
    q, k, v = (torch.randn(5000, 4, 32, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))

    def layer(q, k, v):
        return graph_attention(q, k, v, mask, tiles=tiles).float().square().sum()

    # The packed layout is built (with NumPy/numba) on first use, outside what dynamo can trace.
    from graphattn.ops.packed_tiles import packed_tiles_of
    packed_tiles_of(mask)
    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(q, k, v)
    loss.backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    layer(q, k, v).backward()
    for got, want in zip(grads, (q.grad, k.grad, v.grad)):
        assert torch.equal(got, want)


def test_auto_tiles_under_torch_compile_without_graph_breaks():
    """auto walks aligned tiles while compiling until the packed layout exists, then packed tiles."""
    from graphattn.ops.packed_tiles import has_packed_tiles
    from graphattn.ops.tile_config import choose_tiles

    edges = local_edges(40, 3, seed=11)
    mask = GraphBlockMask.from_edge_index(edges, 40, block_size=16).to(DEVICE)
    q = torch.randn(40, 2, 16, device=DEVICE, requires_grad=True)
    assert choose_tiles(mask) == "packed" and not has_packed_tiles(mask)
    backend = "inductor" if DEVICE == "cuda" else "eager"
    compiled = torch.compile(lambda x: graph_attention(x, x, x, mask, backend="triton").sum(),
                             backend=backend, fullgraph=True)
    compiled(q).backward()
    assert not has_packed_tiles(mask)          # cold cache: the compiled graph kept aligned tiles
    eager_grad = q.grad.clone()
    q.grad = None
    graph_attention(q, q, q, mask, backend="triton").sum().backward()   # eager: builds packed tiles
    assert has_packed_tiles(mask)
    assert relative_error(q.grad, eager_grad.double()) <= 1e-5
