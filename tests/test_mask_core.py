import pytest
import torch

from graphattn import GraphBlockMask
from conftest import random_graph


def dense_from_edges(edge_index, shape):
    dense = torch.zeros(shape, dtype=torch.bool)
    dense[edge_index[1], edge_index[0]] = True
    return dense


def dense_from_mask(mask):
    """Rebuilds the dense [num_q, num_kv] adjacency from the mask's tiles and bits, brute force."""
    (nq, nkv), (bm, bn) = mask.shape, mask.block_shape
    dense = torch.zeros(nq, nkv, dtype=torch.bool)
    for m in range(mask.num_q_blocks):
        for t in range(int(mask.row_ptr[m]), int(mask.row_ptr[m + 1])):
            n = int(mask.col_idx[t])
            for r in range(bm):
                for c in range(bn):
                    word = int(mask.bits[t, r, c // 32]) & 0xFFFFFFFF
                    if (word >> (c % 32)) & 1:
                        assert m * bm + r < nq and n * bn + c < nkv
                        dense[m * bm + r, n * bn + c] = True
    return dense


@pytest.mark.parametrize("n,e,block", [(0, 0, 16), (1, 1, 16), (37, 90, 16), (100, 700, 32),
                                       (70, 3000, (16, 32)), (129, 400, 64)])
def test_round_trip_and_tiles(n, e, block):
    edges = random_graph(n, e, seed=n)
    mask = GraphBlockMask.from_edge_index(edges, n, block_size=block)
    expected = dense_from_edges(edges, (n, n))
    assert torch.equal(dense_from_mask(mask), expected)
    bm, bn = mask.block_shape
    brute_tiles = {(int(i) // bm, int(j) // bn) for j, i in edges.t().tolist()} if e else set()
    assert mask.num_tiles == len(brute_tiles)
    assert mask.num_edges == int(expected.sum())
    back = mask.edge_index()
    assert torch.equal(dense_from_edges(back, (n, n)), expected)
    assert back.shape[1] == int(expected.sum())
    # Transposed CSR lists the same tiles, sorted by (column, row).
    rows = torch.repeat_interleave(torch.arange(mask.num_q_blocks), (mask.row_ptr[1:] - mask.row_ptr[:-1]).long())
    cols = torch.repeat_interleave(torch.arange(mask.num_kv_blocks), (mask.col_ptr[1:] - mask.col_ptr[:-1]).long())
    assert torch.equal(mask.col_idx[mask.t_tile.long()].long(), cols)
    assert torch.equal(rows[mask.t_tile.long()], mask.row_idx.long())


def test_full_tiles_include_boundary():
    n = 40  # blocks of 16: the last block has 8 valid rows and columns
    dense = torch.zeros(n, n, dtype=torch.bool)
    dense[32:40, 32:40] = True   # boundary tile, full over its valid part
    dense[0:16, 16:32] = True    # interior tile, full
    dense[0, 0] = True           # partial tile
    dst, src = dense.nonzero(as_tuple=True)
    mask = GraphBlockMask.from_edge_index(torch.stack([src, dst]), n, block_size=16)
    assert mask.num_tiles == 3 and mask.num_full_tiles == 2
    full = {(int(mask.row_idx[i]), int(mask.col_idx[mask.t_tile[i]])) for i in range(3)
            if mask.tile_full[mask.t_tile[i]]}
    assert full == {(2, 2), (0, 1)}


def test_duplicates_count_once_and_fingerprint():
    edges = torch.tensor([[0, 1, 1, 2], [1, 2, 2, 0]])
    a = GraphBlockMask.from_edge_index(edges, 3, block_size=16)
    b = GraphBlockMask.from_edge_index(edges[:, [3, 1, 0]], 3, block_size=16)
    c = GraphBlockMask.from_edge_index(edges[:, :2], 3, block_size=16)
    assert a.num_edges == 3
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_bipartite_shape():
    edges = torch.tensor([[0, 99, 5], [0, 3, 3]])  # sources < 100, targets < 4
    mask = GraphBlockMask.from_edge_index(edges, (4, 100), block_size=(16, 32))
    assert mask.num_q_blocks == 1 and mask.num_kv_blocks == 4
    assert torch.equal(dense_from_mask(mask), dense_from_edges(edges, (4, 100)))


@pytest.mark.parametrize("bad,exc,match", [
    (torch.zeros(3, 4, dtype=torch.long), ValueError, r"\[2, E\]"),
    (torch.zeros(2, 4), TypeError, "integers"),
    (torch.tensor([[0, 5], [1, 1]]), ValueError, "out of range"),
    (torch.tensor([[0, -1], [1, 1]]), ValueError, "negative"),
])
def test_bad_edges(bad, exc, match):
    with pytest.raises(exc, match=match):
        GraphBlockMask.from_edge_index(bad, 4, block_size=16)


@pytest.mark.parametrize("block", [8, 48, 512, (16, 24), "64"])
def test_bad_block_size(block):
    with pytest.raises((ValueError, TypeError), match="block_size"):
        GraphBlockMask.from_edge_index(torch.tensor([[0], [1]]), 4, block_size=block)
