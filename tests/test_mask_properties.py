"""Property tests: random graphs, block shapes and batches against brute-force definitions."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn import GraphBlockMask
from graphattn.ops import reference_attention

BLOCKS = st.sampled_from([16, 32, 64, (16, 32), (32, 16), (16, 128)])
FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")


@st.composite
def graphs(draw, max_nodes=150):
    num_q = draw(st.integers(0, max_nodes))
    num_kv = draw(st.one_of(st.just(num_q), st.integers(1, max_nodes)))
    if num_q == 0:
        return torch.empty(2, 0, dtype=torch.long), num_q, num_kv
    e = draw(st.integers(0, 4 * (num_q + num_kv)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    edges = torch.stack([torch.randint(0, num_kv, (e,), generator=g), torch.randint(0, num_q, (e,), generator=g)])
    if draw(st.booleans()):  # a dense block somewhere, so that full tiles appear
        q0, k0 = draw(st.integers(0, num_q - 1)), draw(st.integers(0, num_kv - 1))
        size = draw(st.integers(1, 40))
        i, j = torch.meshgrid(torch.arange(q0, min(q0 + size, num_q)), torch.arange(k0, min(k0 + size, num_kv)),
                              indexing="ij")
        edges = torch.cat([edges, torch.stack([j.reshape(-1), i.reshape(-1)])], dim=1)
    return edges, num_q, num_kv


def dense(edges, shape):
    out = torch.zeros(shape, dtype=torch.bool)
    out[edges[1], edges[0]] = True
    return out


@settings(max_examples=40, deadline=None)
@given(graphs(), BLOCKS)
def test_builders_agree_and_round_trip(graph, block):
    edges, num_q, num_kv = graph
    mask = GraphBlockMask.from_edge_index(edges, (num_q, num_kv), block_size=block)
    tensor = GraphBlockMask._from_edge_index_tensor(edges, (num_q, num_kv), mask.block_shape)
    for name in FIELDS:
        assert torch.equal(getattr(mask, name), getattr(tensor, name)), name
    assert mask.fingerprint == tensor.fingerprint
    expected = dense(edges, (num_q, num_kv))
    assert torch.equal(mask.to_dense(), expected)
    bm, bn = mask.block_shape
    tiles = {(int(i) // bm, int(j) // bn) for j, i in edges.t().tolist()}
    assert mask.num_tiles == len(tiles) and mask.num_edges == int(expected.sum())


@settings(max_examples=25, deadline=None)
@given(st.lists(graphs(max_nodes=70), min_size=1, max_size=4), BLOCKS)
def test_cat_matches_offset_edges(parts, block):
    pieces, q_off, kv_off = [], 0, 0
    for edges, num_q, num_kv in parts:
        pieces.append(edges + torch.tensor([[kv_off], [q_off]]))
        q_off, kv_off = q_off + num_q, kv_off + num_kv
    masks = [GraphBlockMask.from_edge_index(e, (nq, nkv), block_size=block) for e, nq, nkv in parts]
    expected = GraphBlockMask.from_edge_index(torch.cat(pieces, 1), (q_off, kv_off), block_size=block)
    got = GraphBlockMask.cat(masks)
    assert got.fingerprint == expected.fingerprint
    for name in FIELDS:
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


@settings(max_examples=25, deadline=None)
@given(graphs(max_nodes=60), st.integers(1, 3), st.integers(1, 8))
def test_reference_matches_dense_softmax(graph, heads, dim):
    edges, num_q, num_kv = graph
    g = torch.Generator().manual_seed(num_q * 7 + num_kv)
    q = torch.randn(num_q, heads, dim, generator=g, dtype=torch.float64)
    k = torch.randn(num_kv, heads, dim, generator=g, dtype=torch.float64)
    v = torch.randn(num_kv, heads, dim, generator=g, dtype=torch.float64)
    out = reference_attention(q, k, v, edges)
    allowed = dense(edges, (num_q, num_kv))
    scores = torch.einsum("ihd,jhd->hij", q, k) / dim ** 0.5
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
    torch.testing.assert_close(out, torch.einsum("hij,jhd->ihd", probs, v), rtol=1e-12, atol=1e-12)
    assert not torch.isnan(out).any()
