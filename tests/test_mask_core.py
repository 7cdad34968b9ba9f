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


FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")


@pytest.mark.parametrize("n,e,block", [(0, 0, 16), (1, 1, 16), (37, 90, 16), (100, 700, 32), (70, 3000, (16, 32)),
                                       (300, 5000, (32, 16)), (1000, 20000, (256, 128)), (513, 9000, (128, 64))])
def test_numba_and_tensor_builders_agree(n, e, block):
    """The CPU (numba) builder and the tensor builder used on GPUs give identical arrays."""
    from graphattn.mask.block_mask import mask_fingerprint
    edges = random_graph(n, e, seed=n + 1)
    fast = GraphBlockMask.from_edge_index(edges, n, block_size=block)
    tensor = GraphBlockMask._from_edge_index_tensor(edges, (n, n), fast.block_shape)
    for name in FIELDS:
        a, b = getattr(fast, name), getattr(tensor, name)
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), name
    torch_fp = mask_fingerprint(fast.shape, fast.block_shape, fast.tile_rows(), fast.col_idx, fast.bits,
                                _force_tensor_path=True)
    assert fast.fingerprint == tensor.fingerprint == torch_fp
    assert torch.equal(fast.edge_index(), fast._edge_index_tensor())


def test_fingerprint_ignores_block_shape_and_order():
    edges = random_graph(200, 1500, seed=5)
    prints = {GraphBlockMask.from_edge_index(edges[:, torch.randperm(1500)], 200, block_size=b).fingerprint
              for b in (16, 32, 64, (16, 128), (256, 16))}
    assert len(prints) == 1
    other = GraphBlockMask.from_edge_index(edges[:, 1:], 200, block_size=16)
    bigger = GraphBlockMask.from_edge_index(edges, 201, block_size=16)
    assert other.fingerprint not in prints and bigger.fingerprint not in prints


def test_edges_in_target_order_are_used_in_place():
    """Edges grouped by target skip the bucketing pass; the result must not change."""
    edges = random_graph(150, 2000, seed=9)
    order = torch.argsort(edges[1], stable=True)
    a = GraphBlockMask.from_edge_index(edges, 150, block_size=32)
    b = GraphBlockMask.from_edge_index(edges[:, order], 150, block_size=32)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_check_compatible_matches_and_to_dense():
    edges = random_graph(50, 300, seed=2)
    mask = GraphBlockMask.from_edge_index(edges, 50, block_size=16)
    mask.check_compatible(50)
    mask.check_compatible(50, 50)
    with pytest.raises(ValueError, match=r"built for a graph of shape.*\(50, 50\).*\(51, 51\)"):
        mask.check_compatible(51, name="mask")
    with pytest.raises(ValueError, match="layer_mask"):
        mask.check_compatible(50, 49, name="layer_mask")
    assert mask.matches(edges) and mask.matches(torch.cat([edges, edges], 1))
    assert not mask.matches(edges[:, 1:])
    assert torch.equal(mask.to_dense(), dense_from_edges(edges, (50, 50)))
    with pytest.raises(ValueError, match="to_dense"):
        mask.to_dense(limit=100)


def test_stats_and_repr():
    n = 40
    dense = torch.zeros(n, n, dtype=torch.bool)
    dense[0:16, 0:16] = True      # one full tile: 256 edges
    dense[20, 3] = True           # one partial tile
    dst, src = dense.nonzero(as_tuple=True)
    mask = GraphBlockMask.from_edge_index(torch.stack([src, dst]), n, block_size=16)
    assert mask.num_tiles == 2 and mask.num_full_tiles == 1 and mask.num_edges == 257
    assert mask.tiles_per_row == (pytest.approx(2 / 3), 1)
    assert mask.fill == pytest.approx(257 / (2 * 256))
    assert mask.nbytes == (4 * 4) + 2 * 4 + 2 + 2 * 16 * 1 * 4 + 4 * 4 + 2 * 4 + 2 * 4
    text = repr(mask)
    for piece in ("tiles=2", "full_tiles=1", "fill=0.5020", f"nbytes={mask.nbytes}", "shape=(40, 40)"):
        assert piece in text
    moved = mask.to("cpu")
    assert moved.fingerprint == mask.fingerprint and torch.equal(moved.bits, mask.bits)


def test_cpu_masks_leave_the_packed_layout_to_first_use():
    """Only CUDA masks get the kernels' packed tiles at construction; a CPU mask stays light."""
    from graphattn.ops.packed_tiles import has_packed_tiles

    mask = GraphBlockMask.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3, block_size=16)
    assert not has_packed_tiles(mask)
    assert not has_packed_tiles(GraphBlockMask.cat([mask, mask]))
