"""The mask families and generic sources against their dense definitions."""
import math

import pytest
import torch

from graphattn import GraphBlockMask, masks

SIZES = [1, 37, 130]  # below one block, not a multiple of any block, over two blocks
BLOCKS = [16, (16, 32), (32, 16), 64]


def dense_of(mask):
    return mask.to_dense()


def brute_full_tiles(dense, block_shape):
    """{(m, n)} of tiles whose every in-range pair is set."""
    bm, bn = block_shape
    full = set()
    for m in range(math.ceil(dense.shape[0] / bm)):
        for k in range(math.ceil(dense.shape[1] / bn)):
            tile = dense[m * bm:(m + 1) * bm, k * bn:(k + 1) * bn]
            if tile.numel() and bool(tile.all()):
                full.add((m, k))
    return full


def check_against(mask, expected):
    assert mask.shape == tuple(expected.shape)
    assert torch.equal(dense_of(mask), expected)
    rows = mask.tile_rows()
    full = {(int(rows[t]), int(mask.col_idx[t])) for t in range(mask.num_tiles) if mask.tile_full[t]}
    assert full == brute_full_tiles(expected, mask.block_shape)
    # Built from the same pairs as edges, the mask is identical (fingerprint included).
    dst, src = expected.nonzero(as_tuple=True)
    again = GraphBlockMask.from_edge_index(torch.stack([src, dst]), tuple(expected.shape), block_size=mask.block_shape)
    assert again.fingerprint == mask.fingerprint and torch.equal(again.bits, mask.bits)
    assert torch.equal(again.row_ptr, mask.row_ptr) and torch.equal(again.col_idx, mask.col_idx)


def index_grid(n):
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    return i, j


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("window", [0, 3, 40])
def test_sliding_window(n, block, window):
    i, j = index_grid(n)
    check_against(masks.sliding_window(n, window, block_size=block), (i - j).abs() <= window)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", BLOCKS)
def test_causal(n, block):
    i, j = index_grid(n)
    check_against(masks.causal(n, block_size=block), j <= i)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("window,global_tokens", [(2, 1), (0, [4, 0, 4, 36]), (5, torch.tensor([3]))])
def test_longformer(n, block, window, global_tokens):
    i, j = index_grid(n)
    g = torch.zeros(n, dtype=torch.bool)
    idx = torch.as_tensor(global_tokens) if not isinstance(global_tokens, int) else torch.arange(min(global_tokens, n))
    idx = idx[idx < n]
    if isinstance(global_tokens, int) and global_tokens > n:
        global_tokens = n
    if not isinstance(global_tokens, int):
        global_tokens = idx
    g[idx] = True
    expected = ((i - j).abs() <= window) | g[:, None] | g[None, :]
    check_against(masks.longformer(n, window, global_tokens, block_size=block), expected)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("random_blocks,seed", [(0, 0), (2, 7), (50, 1)])
def test_bigbird(n, block, random_blocks, seed):
    mask = masks.bigbird(n, 2, 2 if n > 2 else 0, random_blocks, seed, block_size=block)
    bm, bn = mask.block_shape
    chosen = masks.bigbird_random_blocks(n, random_blocks, seed, block_size=block)
    kv_blocks = math.ceil(n / bn)
    assert chosen.shape == (math.ceil(n / bm), min(random_blocks, kv_blocks))
    i, j = index_grid(n)
    g = torch.zeros(n, dtype=torch.bool)
    g[:2] = n > 2
    random_tile = torch.zeros(math.ceil(n / bm), kv_blocks, dtype=torch.bool)
    random_tile.scatter_(1, chosen, True)
    expected = ((i - j).abs() <= 2) | g[:, None] | g[None, :] | random_tile[i // bm, j // bn]
    check_against(mask, expected)


def test_bigbird_random_blocks_properties():
    a = masks.bigbird_random_blocks(1000, 3, seed=1, block_size=16)
    assert torch.equal(a, masks.bigbird_random_blocks(1000, 3, seed=1, block_size=16))
    assert not torch.equal(a, masks.bigbird_random_blocks(1000, 3, seed=2, block_size=16))
    # Many blocks (the draw-and-redraw path): rows distinct, in range, and not all the same.
    big = masks.bigbird_random_blocks(70_000, 4, seed=3, block_size=16)
    assert big.shape == (4375, 4)
    s = big.sort(1).values
    assert bool((s[:, 1:] != s[:, :-1]).all()) and int(big.min()) >= 0 and int(big.max()) < 4375
    assert torch.unique(big).numel() > 1000
    assert masks.bigbird_random_blocks(100, 10, block_size=64).shape == (2, 2)  # capped at KB


@pytest.mark.parametrize("shape", [(1, 1), (37, 20), (100, 130)])
@pytest.mark.parametrize("block", [16, (32, 16), 64])
def test_from_dense(shape, block):
    g = torch.Generator().manual_seed(shape[0])
    dense = torch.rand(shape, generator=g) < 0.2
    dense[: shape[0] // 2, : shape[1] // 3] = True  # some full tiles
    mask = masks.from_dense(dense, block_size=block)
    check_against(mask, dense)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", [16, (16, 32), 64])
def test_from_mask_mod_flex_and_plain(n, block):
    doc = torch.arange(n) // 7  # document masking reads a per-token tensor: indices must stay in range

    def flex_mod(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (kv_idx <= q_idx)

    i, j = index_grid(n)
    expected = (doc[:, None] == doc[None, :]) & (j <= i)
    check_against(masks.from_mask_mod(flex_mod, n, block_size=block), expected)
    check_against(masks.from_mask_mod(lambda q, k: (q - k).abs() <= 3, n, block_size=block),
                  (i - j).abs() <= 3)


def test_from_mask_mod_candidates_and_bipartite():
    n = 300
    band = masks.sliding_window(n, 20, block_size=32)
    hinted = masks.from_mask_mod(lambda q, k: (q - k).abs() <= 20, n, 32, candidate_tiles=band)
    assert torch.equal(hinted.bits, band.bits) and hinted.fingerprint == band.fingerprint
    pairs = torch.stack([band.tile_rows(), band.col_idx.long()]).flip(1)  # any order
    by_pairs = masks.from_mask_mod(lambda q, k: (q - k).abs() <= 20, n, 32, candidate_tiles=pairs)
    assert by_pairs.fingerprint == band.fingerprint
    bip = masks.from_mask_mod(lambda q, k: k == 2 * q, (20, 45), 16)
    expected = torch.zeros(20, 45, dtype=torch.bool)
    expected[torch.arange(20), 2 * torch.arange(20)] = True
    check_against(bip, expected)


def test_from_mask_mod_refusals():
    with pytest.raises(ValueError, match="candidate_tiles"):
        masks.from_mask_mod(lambda q, k: q == k, 100_000, 16)
    with pytest.raises(TypeError, match="bool"):
        masks.from_mask_mod(lambda q, k: q - k, 40, 16)
    with pytest.raises(TypeError, match="callable"):
        masks.from_mask_mod("q == k", 40, 16)
    with pytest.raises(ValueError, match="candidate_tiles holds blocks"):
        masks.from_mask_mod(lambda q, k: q == k, 40, 16, candidate_tiles=torch.tensor([[0], [3]]))
    with pytest.raises(ValueError, match="block shape"):
        masks.from_mask_mod(lambda q, k: q == k, 40, 16, candidate_tiles=masks.causal(40, block_size=32))


def test_family_argument_errors():
    with pytest.raises(ValueError, match="window"):
        masks.sliding_window(10, -1)
    with pytest.raises(ValueError, match="global_tokens"):
        masks.longformer(10, 1, 11)
    with pytest.raises(ValueError, match="global_tokens"):
        masks.longformer(10, 1, [3, 10])
    with pytest.raises(TypeError, match="global_tokens"):
        masks.longformer(10, 1, [0.5])
    with pytest.raises(ValueError, match="random_blocks"):
        masks.bigbird(10, 1, 1, -2)
    with pytest.raises(TypeError, match="n must be"):
        masks.causal(10.0)
    with pytest.raises(TypeError, match="dense"):
        masks.from_dense(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="block_size"):
        masks.causal(10, block_size=24)


def test_pack_bool_tiles_matches_definition():
    g = torch.Generator().manual_seed(0)
    for bn in (16, 32, 64, 256):
        tiles = torch.rand(3, 16, bn, generator=g) < 0.5
        packed = masks.pack_bool_tiles(tiles)
        for c in range(bn):
            bit = (packed[:, :, c // 32].long() >> (c % 32)) & 1
            assert torch.equal(bit.bool(), tiles[:, :, c])
        # The tensor formulation used off the CPU gives the same words.
        assert torch.equal(masks._pack_bool_tiles_tensor(tiles), packed)
