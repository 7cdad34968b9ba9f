"""GraphBlockMask.cat against building from the concatenated edges."""
import pytest
import torch

from conftest import random_graph
from graphattn import GraphBlockMask

FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")


def offset_edges(graphs):
    """Concatenated edges of (edges, num_q, num_kv) graphs, each shifted by the previous sizes."""
    pieces, q_off, kv_off = [], 0, 0
    for edges, nq, nkv in graphs:
        pieces.append(edges + torch.tensor([[kv_off], [q_off]]))
        q_off, kv_off = q_off + nq, kv_off + nkv
    return torch.cat(pieces, dim=1), (q_off, kv_off)


@pytest.mark.parametrize("block", [16, 32, 64, (16, 32), (32, 16), (16, 128)])
@pytest.mark.parametrize("sizes", [[37], [37, 5, 0, 70], [16, 32, 48], [1, 1, 1], [100, 3, 129]])
def test_cat_equals_concatenated_edges(block, sizes):
    graphs = []
    for g, n in enumerate(sizes):
        edges = random_graph(n, 6 * n, seed=g + n)
        if n > 8:   # a dense corner so that full tiles are shifted too
            i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
            edges = torch.cat([edges, torch.stack([j.reshape(-1), i.reshape(-1)])], dim=1)
        graphs.append((edges, n, n))
    masks = [GraphBlockMask.from_edge_index(e, n, block_size=block) for e, n, _ in graphs]
    edges, shape = offset_edges(graphs)
    expected = GraphBlockMask.from_edge_index(edges, shape, block_size=block)
    got = GraphBlockMask.cat(masks)
    assert got.shape == expected.shape and got.fingerprint == expected.fingerprint
    for name in FIELDS:
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_cat_bipartite():
    graphs = [(torch.tensor([[0, 99, 5], [0, 3, 3]]), 4, 100), (torch.tensor([[2, 0], [6, 1]]), 7, 3)]
    masks = [GraphBlockMask.from_edge_index(e, (nq, nkv), block_size=(16, 32)) for e, nq, nkv in graphs]
    edges, shape = offset_edges(graphs)
    expected = GraphBlockMask.from_edge_index(edges, shape, block_size=(16, 32))
    got = GraphBlockMask.cat(masks)
    assert got.shape == (11, 103) and got.fingerprint == expected.fingerprint
    assert torch.equal(got.bits, expected.bits) and torch.equal(got.col_idx, expected.col_idx)


def test_cat_refusals():
    a = GraphBlockMask.from_edge_index(torch.tensor([[0], [1]]), 4, block_size=16)
    b = GraphBlockMask.from_edge_index(torch.tensor([[0], [1]]), 4, block_size=32)
    with pytest.raises(ValueError, match="block shape"):
        GraphBlockMask.cat([a, b])
    with pytest.raises(ValueError, match="non-empty"):
        GraphBlockMask.cat([])
    with pytest.raises(TypeError, match=r"masks\[1\]"):
        GraphBlockMask.cat([a, "b"])
