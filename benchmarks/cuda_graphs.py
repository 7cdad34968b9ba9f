"""Host overhead: eager forward+backward against the same work replayed from a CUDA graph.

On small graphs the host side of one attention forward+backward (Python, autograd, argument
handling, three Triton launches; 0.5-0.9 ms on the H200 machine's CPU) is as long as the kernels or
longer, so the GPU idles. Capturing the step once in a ``torch.cuda.CUDAGraph`` and replaying it
removes that. For k = 16 k-NN graphs of surface clouds (Morton order, self-loops), H=4, bf16, this
times back-to-back iterations (wall clock over ``--iters`` iterations, one synchronisation at the
end, so host time counts wherever it is not hidden behind the GPU) of:

- attention: ``graph_attention`` forward + ``torch.autograd.grad`` for q, k, v;
- layer step: two ``GraphAttention`` layers (128 -> 4x32 concat -> 4x32 mean), a loss, backward and
  an SGD step — a whole training step in one graph.

    PYTHONPATH=$PWD python3 benchmarks/cuda_graphs.py --sizes 16384 65536 262144

Needs CUDA.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from attention import ordered_knn_graph  # noqa: E402


def per_iteration_ms(fn, iters: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e3


def captured(step):
    """A CUDA graph of ``step`` after a warm-up on a side stream, and its replay function."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def attention_case(mask, n: int, heads: int, head_dim: int, iters: int) -> tuple[float, float]:
    from graphattn import graph_attention

    q, k, v, dout = (torch.randn(n, heads, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))

    def step():
        out = graph_attention(q, k, v, mask)
        return torch.autograd.grad(out, (q, k, v), dout)

    eager = per_iteration_ms(step, iters)
    return eager, per_iteration_ms(captured(step), iters)


def layer_case(edges, mask, n: int, iters: int) -> tuple[float, float]:
    from graphattn.nn import GraphAttention

    model = torch.nn.ModuleList([GraphAttention(128, 32, heads=4), GraphAttention(128, 32, heads=4, concat=False)])
    model = model.cuda()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(n, 128, device="cuda")

    def step():
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            h = model[0](x, edges, block_mask=mask).relu()
            loss = model[1](h, edges, block_mask=mask).float().pow(2).mean()
        loss.backward()
        opt.step()

    eager = per_iteration_ms(step, iters)
    return eager, per_iteration_ms(captured(step), iters)


def main(argv=None):
    from graphattn import GraphBlockMask

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[16384, 65536, 262144])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("benchmarks/cuda_graphs.py needs CUDA")
    import triton
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}; "
          f"surface k=16 k-NN, Morton, H={args.heads}, D={args.dim}, bf16; {args.iters} iterations each")
    rows = []
    for n in args.sizes:
        edges = ordered_knn_graph("surface", n, "morton").cuda()
        mask = GraphBlockMask.from_edge_index(edges, n, block_size=64)
        for name, (eager, replay) in (("attention fwd+bwd", attention_case(mask, n, args.heads, args.dim, args.iters)),
                                      ("2-layer training step", layer_case(edges, mask, n, args.iters))):
            rows.append((name, n, eager, replay))
            print(f"# {name} N={n}: eager {eager:.3f} ms, CUDA graph {replay:.3f} ms", flush=True)
    print("\n| case | N | eager ms | CUDA graph replay ms | eager / replay |")
    print("|---|---|---|---|---|")
    for name, n, eager, replay in rows:
        print(f"| {name} | {n:,} | {eager:.3f} | {replay:.3f} | {eager / replay:.2f}x |")


if __name__ == "__main__":
    main()
