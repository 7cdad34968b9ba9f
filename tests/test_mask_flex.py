"""FlexAttention interop: to_flex against the reference, from_flex round trips."""
import math
import warnings

import pytest
import torch

from conftest import random_graph
from graphattn import GraphBlockMask, masks
from graphattn.ops import reference_attention

flex = pytest.importorskip("torch.nn.attention.flex_attention")

FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")


def graph_with_full_tiles(n, e, seed, block):
    edges = random_graph(n, e, seed=seed)
    corner = torch.arange(min(n - 1, block))  # never targets the last node
    i, j = torch.meshgrid(corner, corner, indexing="ij")
    dense_corner = torch.stack([j.reshape(-1), i.reshape(-1)])
    keep = edges[1] != n - 1          # the last node gets no in-edge: its output must be 0
    return torch.cat([edges[:, keep], dense_corner], dim=1)


def run_flex(q, k, v, block_mask):
    """Eager flex_attention ([N, H, D] in and out); on CPU it runs the unfused reference path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = flex.flex_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                  block_mask=block_mask)
    return out[0].transpose(0, 1)


@pytest.mark.parametrize("n,e,block", [(37, 200, 16), (100, 900, 32), (130, 1500, (32, 16)), (5, 8, 16)])
def test_to_flex_matches_reference(n, e, block):
    bm = block if isinstance(block, int) else block[0]
    edges = graph_with_full_tiles(n, e, n, bm)
    mask = GraphBlockMask.from_edge_index(edges, n, block_size=block)
    block_mask = mask.to_flex()
    assert tuple(block_mask.BLOCK_SIZE) == mask.block_shape
    assert tuple(block_mask.seq_lengths) == (n, n)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n, 2, 16, generator=g, dtype=torch.float64) for _ in range(3))
    expected = reference_attention(q, k, v, mask)
    got = run_flex(q, k, v, block_mask)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert torch.equal(got[n - 1], torch.zeros_like(got[n - 1]))


def test_to_flex_block_structure():
    n = 100
    mask = GraphBlockMask.from_edge_index(graph_with_full_tiles(n, 700, 3, 32), n, block_size=32)
    block_mask = mask.to_flex()
    rows = mask.tile_rows()
    partial = {(int(r), int(c)) for r, c, f in zip(rows, mask.col_idx, mask.tile_full) if not f}
    full = {(int(r), int(c)) for r, c, f in zip(rows, mask.col_idx, mask.tile_full) if f}
    assert full  # the dense corner

    def listed(num, idx):
        return {(m, int(idx[0, 0, m, s])) for m in range(num.shape[-1]) for s in range(int(num[0, 0, m]))}

    assert listed(block_mask.kv_num_blocks, block_mask.kv_indices) == partial
    assert listed(block_mask.full_kv_num_blocks, block_mask.full_kv_indices) == full


@pytest.mark.parametrize("n,block", [(37, 16), (100, 32), (130, (32, 16)), (1, 16)])
def test_from_flex_round_trip(n, block):
    bm = block if isinstance(block, int) else block[0]
    mask = GraphBlockMask.from_edge_index(graph_with_full_tiles(n, 6 * n, 1, bm), n, block_size=block)
    back = GraphBlockMask.from_flex(mask.to_flex(), n)
    assert back.fingerprint == mask.fingerprint
    for name in FIELDS:
        assert torch.equal(getattr(back, name), getattr(mask, name)), name


@pytest.mark.parametrize("n", [37, 200])
def test_from_flex_of_create_block_mask(n):
    block_mask = flex.create_block_mask(lambda b, h, q, kv: kv <= q, None, None, n, n, device="cpu",
                                        BLOCK_SIZE=32)
    got = GraphBlockMask.from_flex(block_mask, n)
    expected = masks.causal(n, block_size=32)
    assert got.fingerprint == expected.fingerprint
    for name in FIELDS:
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_from_flex_refusals():
    block_mask = flex.create_block_mask(lambda b, h, q, kv: kv <= q, None, None, 64, 64, device="cpu",
                                        BLOCK_SIZE=32)
    with pytest.raises(ValueError, match="query blocks"):
        GraphBlockMask.from_flex(block_mask, 200)
    with pytest.raises(TypeError, match="BlockMask"):
        GraphBlockMask.from_flex("mask", 64)
    odd = flex.create_block_mask(lambda b, h, q, kv: kv <= q, None, None, 48, 48, device="cpu", BLOCK_SIZE=24)
    with pytest.raises(ValueError, match="BLOCK_SIZE"):
        GraphBlockMask.from_flex(odd, 48)
