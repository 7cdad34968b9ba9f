"""The CPU path: ``reference_attention`` forward and forward+backward on a k-NN graph of a surface cloud.

    .venv/bin/python benchmarks/reference_cpu.py --nodes 40962 --repeats 3

Points uniform on the unit sphere, k = 16 nearest neighbours (no self-loops), kd order, H=4, D=32,
float32, the edges given as an ``edge_index`` and as a ``GraphBlockMask`` (decoded back to edges).
Mean of ``--repeats`` calls after one warm-up call, on all of torch's CPU threads.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

import graphattn
from graphattn.graphs import knn_graph
from graphattn.ops.reference import reference_attention


def mean_ms(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=40962)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    pos = torch.randn(args.nodes, 3)
    pos = pos / pos.norm(dim=1, keepdim=True)
    edges = knn_graph(pos, 16)
    edges = graphattn.order(edges, pos, method="kd").apply_to_edge_index(edges)
    mask = graphattn.GraphBlockMask.from_edge_index(edges, args.nodes)
    q, k, v = (torch.randn(args.nodes, 4, 32, requires_grad=True) for _ in range(3))
    print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"N={args.nodes}, E={edges.shape[1]}, H=4, D=32, float32")
    print("| input | fwd ms | fwd+bwd ms |\n|---|---|---|")
    for name, graph in (("edge_index", edges), ("GraphBlockMask", mask)):
        with torch.no_grad():
            fwd = mean_ms(lambda: reference_attention(q, k, v, graph), args.repeats)
        both = mean_ms(lambda: reference_attention(q, k, v, graph).sum().backward(), args.repeats)
        print(f"| {name} | {fwd:.0f} | {both:.0f} |")


if __name__ == "__main__":
    main()
