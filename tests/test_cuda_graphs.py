"""CUDA graphs: a forward+backward of graphattn captured once and replayed gives eager's bits.

Small graphs are host-bound (Python, autograd and three kernel launches per forward+backward take
longer than the kernels), and CUDA graphs are how PyTorch users remove that. Capture works when
nothing in the captured region synchronises with the host: the kernels read only device tensors,
the mask's packed tiles were built with the CUDA mask (else the warm-up run builds them), and the
layers' checks run once per edge_index object, in the warm-up.
The backward is deterministic, so a replay must equal an eager run on the same inputs bit for bit.
"""
import pytest
import torch

from graphattn import GraphBlockMask, graph_attention
from graphattn.graphs import knn_graph
from graphattn.nn import GraphAttention

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _graph(num_nodes=3000, k=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(num_nodes, 3, generator=g)
    edge_index = knn_graph(pos, k).cuda()
    return edge_index, GraphBlockMask.from_edge_index(edge_index, num_nodes, block_size=64)


def _warm_up(fn, iterations=3):
    """Run fn on a side stream first, as torch.cuda.graphs asks (allocator pools, lazy state)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(iterations):
            fn()
    torch.cuda.current_stream().wait_stream(side)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tiles", ["packed", "aligned"])
def test_attention_forward_backward_replays_eager_bits(dtype, tiles):
    num_nodes, heads, head_dim = 3000, 2, 32
    _, mask = _graph(num_nodes)
    g = torch.Generator(device="cuda").manual_seed(1)

    def fresh():
        return [torch.randn(num_nodes, heads, head_dim, device="cuda", dtype=dtype, generator=g) for _ in range(4)]

    static_q, static_k, static_v, static_dout = (t.requires_grad_(i < 3) for i, t in enumerate(fresh()))

    def step():
        out = graph_attention(static_q, static_k, static_v, mask, tiles=tiles)
        return (out,) + torch.autograd.grad(out, (static_q, static_k, static_v), static_dout)

    _warm_up(step)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_results = step()

    for _ in range(2):  # new inputs each time, copied into the captured tensors
        q, k, v, dout = fresh()
        with torch.no_grad():
            for static, new in zip((static_q, static_k, static_v, static_dout), (q, k, v, dout)):
                static.copy_(new)
        graph.replay()
        q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
        out = graph_attention(q, k, v, mask, tiles=tiles)
        expected = (out,) + torch.autograd.grad(out, (q, k, v), dout)
        for name, got, want in zip(("out", "dq", "dk", "dv"), static_results, expected):
            assert torch.equal(got, want), f"{name} of the replay differs from eager"


def test_layer_training_step_replays_eager_bits():
    """A whole training step (two GraphAttention layers, loss, backward, SGD) as one CUDA graph."""
    num_nodes = 3000
    edge_index, mask = _graph(num_nodes, seed=2)

    def make():
        torch.manual_seed(3)
        return torch.nn.ModuleList([GraphAttention(16, 8, heads=4), GraphAttention(32, 8, heads=4, concat=False)]).cuda()

    def loss_of(model, x):
        h = model[0](x, edge_index, block_mask=mask).relu()
        return model[1](h, edge_index, block_mask=mask).pow(2).mean()

    captured, eager = make(), make()
    opt_captured = torch.optim.SGD(captured.parameters(), lr=0.1)
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.1)
    static_x = torch.randn(num_nodes, 16, device="cuda")

    def step():
        opt_captured.zero_grad(set_to_none=False)
        loss = loss_of(captured, static_x)
        loss.backward()
        opt_captured.step()
        return loss

    # Warm-up steps change the weights: replay them eagerly on the twin to stay in step.
    def step_both():
        step()
        opt_eager.zero_grad(set_to_none=False)
        loss_of(eager, static_x).backward()
        opt_eager.step()

    _warm_up(step_both, iterations=3)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()

    g = torch.Generator(device="cuda").manual_seed(4)
    for _ in range(3):
        x = torch.randn(num_nodes, 16, device="cuda", generator=g)
        static_x.copy_(x)
        graph.replay()
        opt_eager.zero_grad(set_to_none=False)
        loss = loss_of(eager, x)
        loss.backward()
        opt_eager.step()
        assert torch.equal(static_loss, loss)
        for (name, p_captured), p_eager in zip(captured.named_parameters(), eager.parameters()):
            assert torch.equal(p_captured, p_eager), f"{name} differs after the replayed step"


@pytest.mark.parametrize("tiles", ["auto", "packed", "aligned"])
def test_compile_reduce_overhead_replays_eager_bits(tiles):
    """torch.compile's CUDA-graph mode records, then replays, the attention ops with eager's bits."""
    from graphattn.ops.packed_tiles import has_packed_tiles

    torch._dynamo.reset()
    num_nodes, heads, head_dim = 3000, 2, 32
    _, mask = _graph(num_nodes, seed=5)
    # The packed layout cannot be built while tracing (data-dependent sizes); a mask built on CUDA
    # has it already, so tiles="auto" compiles the same packed walk as eager calls take.
    assert has_packed_tiles(mask)

    def attend(q, k, v):
        return graph_attention(q, k, v, mask, tiles=tiles)

    compiled = torch.compile(attend, mode="reduce-overhead", fullgraph=True)
    g = torch.Generator(device="cuda").manual_seed(6)
    for _ in range(4):  # the first calls warm up and record, later ones replay
        q, k, v, dout = (torch.randn(num_nodes, heads, head_dim, device="cuda", dtype=torch.bfloat16, generator=g)
                         for _ in range(4))
        q, k, v = (t.requires_grad_(True) for t in (q, k, v))
        out = compiled(q, k, v)
        results = (out.clone(),) + torch.autograd.grad(out, (q, k, v), dout)
        out = attend(q, k, v)
        expected = (out,) + torch.autograd.grad(out, (q, k, v), dout)
        for name, got, want in zip(("out", "dq", "dk", "dv"), results, expected):
            assert torch.equal(got, want), f"{name} of the compiled run differs from eager"
