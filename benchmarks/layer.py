"""GraphAttention against PyG's TransformerConv, one layer, forward + backward, in the same run.

Workload (issue 5): a k=16 k-NN graph (no self-loops, as TransformerConv adds none) of N points on a
closed bumpy surface, reordered once (Morton by default), in_channels 128, heads 4, out_channels 32,
concat, bf16 autocast. Both layers hold the same weights. For each it reports the median time of
``layer(x, edge_index)`` forward + backward (of ``out.float().square().mean()``, gradients for x and
every weight), the peak memory of one forward + backward above what was allocated before it (inputs,
weights, graph and — for GraphAttention — its cached block mask), and the relative error of the two
outputs. The mask is built once per graph and cached (as in training); its build time is reported
apart. ``--largest`` then doubles N until each layer runs out of GPU memory.

    PYTHONPATH=$PWD python3 benchmarks/layer.py                          # H100/H200, N = 262,144
    PYTHONPATH=$PWD python3 benchmarks/layer.py --largest --max-nodes 16777216
    PYTHONPATH=$PWD python3 benchmarks/layer.py --device cpu --nodes 5000  # smoke check on the CPU
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from attention import point_cloud  # noqa: E402  (benchmarks/attention.py: the same surface cloud)


def build_graph(num_nodes: int, k: int, method: str, block_size: int):
    """Ordered k-NN edges of the surface cloud, and the seconds spent building and ordering them."""
    from graphattn import order
    from graphattn.graphs import knn_graph

    pos = point_cloud("surface", num_nodes)
    start = time.perf_counter()
    edges = knn_graph(pos, k=k)
    built = time.perf_counter()
    ordering = order(edges, pos, method=method, block_size=block_size)
    return ordering.apply_to_edge_index(edges), built - start, time.perf_counter() - built, ordering


def make_layers(args, device):
    from torch_geometric.nn import TransformerConv

    from graphattn.nn import GraphAttention

    torch.manual_seed(0)
    conv = TransformerConv(args.in_channels, args.out_channels, heads=args.heads, edge_dim=args.edge_dim).to(device)
    ours = GraphAttention(args.in_channels, args.out_channels, heads=args.heads, edge_dim=args.edge_dim,
                          block_size=args.block_size).to(device)
    ours.load_state_dict(conv.state_dict())
    return conv, ours


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(layer, x, edges, dtype, device, edge_attr=None):
    """One forward + backward under autocast; returns the output (detached, float32)."""
    x.grad = None
    layer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = layer(x, edges, edge_attr)
    out.float().square().mean().backward()
    return out.detach().float()


def measure(layer, x, edges, dtype, device, repeats: int, edge_attr=None):
    """(median ms of forward + backward, peak extra MiB of one, output)."""
    out = step(layer, x, edges, dtype, device, edge_attr)          # warm-up: kernels compiled, mask built
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(layer, x, edges, dtype, device, edge_attr)
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    peak = float("nan")
    if device.type == "cuda":
        x.grad = None
        layer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(layer, x, edges, dtype, device, edge_attr)
        sync(device)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), peak, out


def compare(args, device, dtype, num_nodes):
    from graphattn import GraphBlockMask

    edges, knn_s, order_s, ordering = build_graph(num_nodes, args.k, args.method, args.block_size)
    edges = edges.to(device)
    print(f"# N={num_nodes}, E={edges.shape[1]}: k-NN {knn_s:.1f} s, order {ordering.method} {order_s:.1f} s, "
          f"{ordering.tiles_per_block_row:.2f} tiles per {args.block_size}-row block", flush=True)
    sync(device)
    start = time.perf_counter()
    GraphBlockMask.from_edge_index(edges, num_nodes, block_size=args.block_size)
    sync(device)
    mask_ms = (time.perf_counter() - start) * 1e3
    conv, ours = make_layers(args, device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(num_nodes, args.in_channels, generator=g).to(device).requires_grad_(True)
    edge_attr = None if args.edge_dim is None else torch.randn(edges.shape[1], args.edge_dim, generator=g).to(device)
    row = dict(nodes=num_nodes, edges=int(edges.shape[1]), mask_build_ms=mask_ms)
    outputs = {}
    for name, layer in (("TransformerConv", conv), ("GraphAttention", ours)):
        ms, peak, out = measure(layer, x, edges, dtype, device, args.repeats, edge_attr)
        row[f"{name}_ms"], row[f"{name}_peak_mib"] = ms, peak
        outputs[name] = out
        del layer
    expected = outputs["TransformerConv"]
    row["relative_error"] = float((outputs["GraphAttention"] - expected).abs().max() / expected.abs().max())
    row["speedup"] = row["TransformerConv_ms"] / row["GraphAttention_ms"]
    row["memory_ratio"] = row["TransformerConv_peak_mib"] / row["GraphAttention_peak_mib"]
    return row


def fits(layer_name, args, device, dtype, num_nodes, edges) -> bool:
    """Whether one forward + backward of the layer fits on the GPU for this graph."""
    conv, ours = make_layers(args, device)
    layer = conv if layer_name == "TransformerConv" else ours
    del conv, ours
    x = edge_attr = None
    try:
        x = torch.randn(num_nodes, args.in_channels, device=device).requires_grad_(True)
        if args.edge_dim is not None:
            edge_attr = torch.randn(edges.shape[1], args.edge_dim, device=device)
        step(layer, x, edges, dtype, device, edge_attr)
        sync(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        x = edge_attr = layer = None
        gc.collect()
        torch.cuda.empty_cache()


def largest(args, device, dtype):
    """Doubles N from --nodes until each layer fails (or --max-nodes); returns the largest that ran."""
    best = {"TransformerConv": None, "GraphAttention": None}
    alive = set(best)
    num_nodes = args.nodes
    while alive and num_nodes <= args.max_nodes:
        edges, knn_s, order_s, _ = build_graph(num_nodes, args.k, args.method, args.block_size)
        edges = edges.to(device)
        for name in sorted(alive):
            ok = fits(name, args, device, dtype, num_nodes, edges)
            print(f"# largest: {name} N={num_nodes}: {'fits' if ok else 'out of memory'} "
                  f"(graph built in {knn_s + order_s:.0f} s)", flush=True)
            if ok:
                best[name] = num_nodes
            else:
                alive.discard(name)
        del edges
        gc.collect()
        torch.cuda.empty_cache()
        num_nodes *= 2
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--nodes", type=int, default=262144)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--in-channels", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--out-channels", type=int, default=32)
    parser.add_argument("--edge-dim", type=int, default=None, help="give both layers edge features of this size")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--method", default="morton", help="ordering method (graphattn.order)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"], help="autocast dtype")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--largest", action="store_true", help="also find the largest N each layer fits")
    parser.add_argument("--max-nodes", type=int, default=1 << 24)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available; use --device cpu for a smoke check")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]

    import torch_geometric
    try:
        import triton
    except ImportError:
        triton = None

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# {device_name}; torch {torch.__version__}, triton {getattr(triton, '__version__', 'absent')}, "
          f"PyG {torch_geometric.__version__}; {args.dtype} autocast; in {args.in_channels}, heads {args.heads}, "
          f"out {args.out_channels}, concat, edge_dim {args.edge_dim}; k={args.k}, {args.method} order, B={args.block_size}", flush=True)
    row = compare(args, device, dtype, args.nodes)
    print("| layer | fwd+bwd ms | peak extra MiB |\n|---|---|---|")
    for name in ("TransformerConv", "GraphAttention"):
        print(f"| {name} | {row[f'{name}_ms']:.2f} | {row[f'{name}_peak_mib']:.0f} |")
    print(f"speed-up {row['speedup']:.2f}x, memory ratio {row['memory_ratio']:.2f}x, relative error "
          f"{row['relative_error']:.2e}, mask build {row['mask_build_ms']:.1f} ms (once per graph)")
    result = dict(device=device_name, torch=torch.__version__, dtype=args.dtype, layer=row, args=vars(args))
    if args.largest:
        if device.type != "cuda":
            parser.error("--largest needs --device cuda")
        result["largest"] = largest(args, device, dtype)
        print(f"largest N with one forward + backward: {result['largest']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
