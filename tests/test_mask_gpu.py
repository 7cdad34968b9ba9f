"""The GPU paths (tensor builder, edges back, reference, FlexAttention) against the CPU ones.

Skipped without CUDA; run them on a GPU machine with `pytest -q tests/test_mask_gpu.py`.
"""
import warnings

import pytest
import torch

from conftest import random_graph
from graphattn import GraphBlockMask, masks
from graphattn.ops import reference_attention

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")


@pytest.mark.parametrize("n,e,block", [(1, 1, 16), (37, 90, 16), (1000, 20000, 64), (5000, 80000, (128, 64)),
                                       (300, 5000, (32, 16))])
def test_cuda_build_equals_cpu(n, e, block):
    edges = random_graph(n, e, seed=n)
    cpu = GraphBlockMask.from_edge_index(edges, n, block_size=block)
    gpu = GraphBlockMask.from_edge_index(edges.cuda(), n, block_size=block)
    assert gpu.device.type == "cuda" and gpu.fingerprint == cpu.fingerprint
    for name in FIELDS:
        assert torch.equal(getattr(gpu, name).cpu(), getattr(cpu, name)), name
    assert torch.equal(gpu.edge_index().cpu(), cpu.edge_index())
    moved = cpu.to("cuda")
    assert moved.fingerprint == cpu.fingerprint and torch.equal(moved.bits.cpu(), cpu.bits)


def test_cuda_masks_come_with_their_packed_tiles():
    """from_edge_index and cat on CUDA build the kernels' packed layout, so that a compiled model's
    first call (which cannot build it) walks the same packed tiles as eager calls."""
    from graphattn.ops.packed_tiles import has_packed_tiles, packed_tiles_of

    graphs = [random_graph(n, 8 * n, seed=n) for n in (300, 77)]
    cuda_masks = [GraphBlockMask.from_edge_index(e.cuda(), n, block_size=64) for e, n in zip(graphs, (300, 77))]
    assert all(has_packed_tiles(m) for m in cuda_masks)
    batch = GraphBlockMask.cat(cuda_masks)
    assert has_packed_tiles(batch)
    # The eagerly built layout is the one a first use would build.
    rebuilt = GraphBlockMask.from_edge_index(graphs[0], 300, block_size=64).to("cuda")
    assert not has_packed_tiles(rebuilt)
    for name in ("row_ptr", "key_index", "row_bits", "col_ptr", "query_index", "col_bits"):
        assert torch.equal(getattr(packed_tiles_of(rebuilt), name), getattr(packed_tiles_of(cuda_masks[0]), name)), name


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_reference_on_cuda(dtype, atol):
    n = 500
    edges = random_graph(n, 4000, seed=1)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n, 4, 32, generator=g, dtype=torch.float64) for _ in range(3))
    expected = reference_attention(q, k, v, edges)
    qc, kc, vc = (t.to("cuda", dtype).requires_grad_(True) for t in (q, k, v))
    mask = GraphBlockMask.from_edge_index(edges.cuda(), n, block_size=64)
    out = reference_attention(qc, kc, vc, mask)
    out.float().sum().backward()
    torch.testing.assert_close(out.double().cpu(), expected, rtol=atol, atol=atol)
    assert all(torch.isfinite(t.grad).all() for t in (qc, kc, vc))


@pytest.mark.parametrize("block", [64, 128])
def test_to_flex_compiled_on_cuda(block):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    n = 3000
    edges = random_graph(n, 40000, seed=2)
    edges = edges[:, edges[1] != 7]  # a node without in-edges
    dense = torch.arange(min(block, n))
    i, j = torch.meshgrid(dense[8:], dense[8:], indexing="ij")
    edges = torch.cat([edges, torch.stack([j.reshape(-1), i.reshape(-1)])], dim=1).cuda()  # full tiles too
    mask = GraphBlockMask.from_edge_index(edges, n, block_size=block)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n, 2, 64, generator=g).cuda() for _ in range(3))
    expected = reference_attention(q.double(), k.double(), v.double(), mask)
    compiled = torch.compile(flex.flex_attention)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Compiled flex picks 128-wide kernel blocks unless told: our 64-blocks need matching ones.
        options = {"BLOCK_M": block, "BLOCK_N": block} if block < 128 else None
        out = compiled(*(t.transpose(0, 1)[None] for t in (q, k, v)), block_mask=mask.to_flex(),
                       kernel_options=options)[0].transpose(0, 1)
    torch.testing.assert_close(out.double(), expected, rtol=2e-3, atol=2e-3)
    assert torch.equal(out[7], torch.zeros_like(out[7]))
    back = GraphBlockMask.from_flex(mask.to_flex(), n)
    assert back.fingerprint == mask.fingerprint


def test_families_move_to_cuda():
    band = masks.sliding_window(1000, 10, block_size=64).to("cuda")
    edges = band.edge_index()
    assert edges.device.type == "cuda"
    assert bool(((edges[0] - edges[1]).abs() <= 10).all()) and edges.shape[1] == band.num_edges
