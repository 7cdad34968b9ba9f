"""reference_attention against dense softmax attention with -inf masking, in float64."""
import math

import pytest
import torch

from conftest import random_graph
from graphattn import GraphBlockMask
from graphattn.ops import reference_attention


def dense_attention(q, k, v, edge_index, scale=None):
    """Dense float64 softmax over all pairs, with -inf where there is no edge; empty rows give 0."""
    nq, h, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    allowed = torch.zeros(nq, k.shape[0], dtype=torch.bool)
    allowed[edge_index[1], edge_index[0]] = True
    scores = torch.einsum("ihd,jhd->hij", q.double(), k.double()) * scale
    scores = scores.masked_fill(~allowed, -math.inf)
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # all -inf rows -> NaN -> 0
    lse = torch.logsumexp(scores, dim=-1).t()
    return torch.einsum("hij,jhd->ihd", probs, v.double()), lse


def qkv(nq, nkv, h, d, dtype=torch.float64, seed=0, dv=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(nq, h, d, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(nkv, h, d, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(nkv, h, dv or d, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v


@pytest.mark.parametrize("n,e,h,d", [(1, 1, 1, 4), (37, 90, 2, 8), (100, 700, 3, 16), (65, 20, 1, 5)])
def test_matches_dense_softmax(n, e, h, d):
    edges = random_graph(n, e, seed=n + e)
    q, k, v = qkv(n, n, h, d, seed=n)
    out, lse = reference_attention(q, k, v, edges, return_lse=True)
    expected, expected_lse = dense_attention(q, k, v, edges)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, expected_lse, rtol=1e-12, atol=1e-12)


def test_rows_without_edges_are_exactly_zero_with_zero_grads():
    n = 20
    edges = torch.tensor([[0, 1, 2, 3, 3], [5, 5, 6, 7, 7]])  # only targets 5, 6, 7 have edges
    q, k, v = qkv(n, n, 2, 4)
    for t in (q, k, v):
        t.requires_grad_(True)
    out, lse = reference_attention(q, k, v, edges, return_lse=True)
    (out * torch.randn_like(out)).sum().backward()
    empty = torch.ones(n, dtype=torch.bool)
    empty[[5, 6, 7]] = False
    assert torch.equal(out[empty], torch.zeros_like(out[empty]))
    assert torch.isinf(lse[empty]).all() and (lse[empty] < 0).all()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[empty], torch.zeros_like(q.grad[empty]))
    unused_keys = torch.ones(n, dtype=torch.bool)
    unused_keys[[0, 1, 2, 3]] = False
    assert torch.equal(k.grad[unused_keys], torch.zeros_like(k.grad[unused_keys]))
    assert torch.equal(v.grad[unused_keys], torch.zeros_like(v.grad[unused_keys]))


def test_no_edges_at_all():
    q, k, v = qkv(5, 5, 1, 3)
    out = reference_attention(q, k, v, torch.empty(2, 0, dtype=torch.long))
    assert torch.equal(out, torch.zeros(5, 1, 3, dtype=torch.float64))


def test_gradcheck_float64():
    edges = torch.tensor([[0, 1, 2, 2, 4, 0], [1, 1, 1, 3, 3, 4]])  # node 0 and 2 have no in-edges
    q, k, v = qkv(5, 5, 2, 3)
    inputs = tuple(t.clone().requires_grad_(True) for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: reference_attention(a, b, c, edges, scale=0.7), inputs)
    assert torch.autograd.gradgradcheck(lambda a, b, c: reference_attention(a, b, c, edges), inputs)


def test_duplicates_count_once_and_mask_input_matches():
    n = 70
    edges = random_graph(n, 400, seed=3)
    doubled = torch.cat([edges, edges[:, :150]], dim=1)
    q, k, v = qkv(n, n, 2, 8)
    base = reference_attention(q, k, v, edges)
    torch.testing.assert_close(reference_attention(q, k, v, doubled), base, rtol=0, atol=1e-14)
    mask = GraphBlockMask.from_edge_index(edges, n, block_size=16)
    torch.testing.assert_close(reference_attention(q, k, v, mask), base, rtol=0, atol=1e-14)


def test_bipartite_and_value_dim():
    edges = torch.tensor([[0, 9, 5, 5], [0, 3, 3, 1]])  # 10 sources, 4 targets
    q, _, _ = qkv(4, 4, 2, 6)
    _, k, v = qkv(10, 10, 2, 6, dv=3, seed=1)
    out = reference_attention(q, k, v, edges, scale=0.3)
    assert out.shape == (4, 2, 3)
    torch.testing.assert_close(out, dense_attention(q, k, v, edges, scale=0.3)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_low_precision_dtypes(dtype, atol):
    n = 50
    edges = random_graph(n, 300, seed=1)
    q, k, v = qkv(n, n, 2, 16, dtype=dtype)
    out = reference_attention(q, k, v, edges)
    assert out.dtype == dtype
    expected, _ = dense_attention(q, k, v, edges)
    torch.testing.assert_close(out.double(), expected, rtol=atol, atol=atol)


def test_large_scores_do_not_overflow():
    edges = torch.tensor([[0, 1], [0, 0]])
    q = torch.full((2, 1, 2), 100.0)
    k = torch.full((2, 1, 2), 100.0)
    v = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])
    out = reference_attention(q, k, v, edges, scale=1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("change,exc,match", [
    (dict(q=torch.zeros(4, 2)), ValueError, r"q must have shape \[N, H, D\]"),
    (dict(k=torch.zeros(4, 2, 8, dtype=torch.long)), TypeError, "k must be floating"),
    (dict(v=torch.zeros(4, 2, 8, dtype=torch.float32)), TypeError, "one dtype"),
    (dict(v=torch.zeros(5, 2, 8, dtype=torch.float64)), ValueError, "same number of nodes"),
    (dict(k=torch.zeros(4, 3, 8, dtype=torch.float64)), ValueError, "heads"),
    (dict(k=torch.zeros(4, 2, 7, dtype=torch.float64)), ValueError, "head dim"),
    (dict(edges=torch.tensor([[0, 4], [1, 1]])), ValueError, "out of range"),
    (dict(edges=torch.tensor([[0.0], [1.0]])), TypeError, "integers"),
    (dict(edges=GraphBlockMask.from_edge_index(torch.tensor([[0], [1]]), 5, block_size=16)), ValueError,
     "built for a graph"),
    (dict(scale="1"), TypeError, "scale"),
    (dict(scale=math.nan), ValueError, "scale"),
])
def test_bad_inputs(change, exc, match):
    q, k, v = qkv(4, 4, 2, 8)
    args = dict(q=q, k=k, v=v, edges=torch.tensor([[0, 1], [1, 2]]), scale=None)
    args.update(change)
    with pytest.raises(exc, match=match):
        reference_attention(args["q"], args["k"], args["v"], args["edges"], scale=args["scale"])
