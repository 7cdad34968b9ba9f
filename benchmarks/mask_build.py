"""Build time and size of GraphBlockMask for a 1M-node, ~17.8M-edge graph, and of the mask families.

The graph: a 1024 × 1024 grid numbered in Morton order (a stand-in for a Morton-ordered surface
k-NN graph: ~9 tiles per 64-row block at ~3% fill), each node receiving 17 in-edges (itself and its
16 nearest grid neighbours; fewer at the border). It is generated on the chosen device in tensor ops,
so the GPU run needs no data files.

    python benchmarks/mask_build.py --device cpu --threads 2
    python benchmarks/mask_build.py --device cuda
    python benchmarks/mask_build.py --device cpu --families      # also sliding_window / from_mask_mod at n=1e6

Prints one table (Markdown) with the device, versions and the median build time. FlexAttention's
BlockMask size for the same tiles is computed from its format (dense int32 [QB, KB] index tables
for partial blocks and their transpose, and again for full blocks when there are any); ``--flex``
also constructs it with ``to_flex()`` and reports its measured tensor bytes (slow and large at 1M).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time

import torch


def morton_grid_graph(side: int, device) -> tuple[torch.Tensor, int]:
    """Edges (row 0 source, row 1 target) of a side × side grid in Morton order, 17 in-edges per node."""
    def spread(v):
        v = v & 0xFFFF
        v = (v | (v << 8)) & 0x00FF00FF
        v = (v | (v << 4)) & 0x0F0F0F0F
        v = (v | (v << 2)) & 0x33333333
        return (v | (v << 1)) & 0x55555555

    ids = torch.arange(side * side, device=device)
    x, y = ids % side, ids // side
    offsets = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (2, 0), (-2, 0),
               (0, 2), (0, -2), (1, 2), (-1, -2), (2, -1), (-2, 1)]
    src, dst = [], []
    for dx, dy in offsets:
        xs, ys = x + dx, y + dy
        ok = (xs >= 0) & (xs < side) & (ys >= 0) & (ys < side)
        src.append(spread(xs[ok]) | (spread(ys[ok]) << 1))
        dst.append(spread(x[ok]) | (spread(y[ok]) << 1))
    return torch.stack([torch.cat(src), torch.cat(dst)]), side * side


def timed(fn, device, repeats):
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up (numba compile, CUDA init)."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def flex_table_bytes(mask) -> int:
    """Bytes of FlexAttention's BlockMask tensors for the same tiles (batch = heads = 1)."""
    qb, kb = mask.num_q_blocks, mask.num_kv_blocks
    pairs = 2 if mask.num_full_tiles else 1                 # partial blocks, plus full blocks if any
    per_pair = 4 * (qb + qb * kb) + 4 * (kb + kb * qb)       # kv_num_blocks, kv_indices and q-side transpose
    return pairs * per_pair


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--side", type=int, default=1024, help="grid side: nodes = side^2 (default 1024 -> 1,048,576)")
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and numba")
    parser.add_argument("--flex", action="store_true", help="construct the FlexAttention BlockMask and measure it")
    parser.add_argument("--families", action="store_true", help="also time mask families at n = 1e6 (CPU)")
    args = parser.parse_args(argv)

    from graphattn import GraphBlockMask

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
        import numba
        numba.set_num_threads(args.threads)
    edges, n = morton_grid_graph(args.side, device)
    keys = edges[1] * n + edges[0]
    coalesced = edges[:, torch.argsort(keys)]
    shuffled = edges[:, torch.randperm(edges.shape[1], device=device, generator=None)]
    del keys

    rows = []
    for label, graph in (("coalesced (sorted by target)", coalesced), ("shuffled", shuffled)):
        median, best, mask = timed(lambda: GraphBlockMask.from_edge_index(graph, n, block_size=args.block),
                                   device, args.repeats)
        rows.append((f"from_edge_index, {label}", median, best))
    back_median, back_best, back = timed(mask.edge_index, device, max(args.repeats // 2, 1))
    assert back.shape[1] == mask.num_edges
    rows.append(("edge_index() (edges back)", back_median, back_best))

    bm, bn = mask.block_shape
    bits_bytes = mask.num_tiles * bm * bn // 8
    rows_bytes = 4 * (mask.num_q_blocks + mask.num_kv_blocks + 2)
    flex_bytes = flex_table_bytes(mask)
    lines = []
    cpu_name = platform.processor() or platform.machine()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu_name})"
    threads = torch.get_num_threads()
    lines.append(f"device: {device_name}, torch {torch.__version__}, python {platform.python_version()}, "
                 f"torch/numba threads {threads}, date {datetime.date.today().isoformat()}")
    lines.append(f"command: python {' '.join(sys.argv)}")
    lines.append(f"graph: {n:,} nodes, {edges.shape[1]:,} edges (Morton grid, 17 in-edges), block {bm}x{bn}")
    lines.append(f"mask: {mask!r}")
    lines.append("")
    lines.append("| step | median | best |")
    lines.append("|---|---|---|")
    for label, median, best in rows:
        lines.append(f"| {label} | {median * 1e3:.1f} ms | {best * 1e3:.1f} ms |")
    lines.append("")
    lines.append("| size | bytes | ratio |")
    lines.append("|---|---|---|")
    lines.append(f"| GraphBlockMask.nbytes | {mask.nbytes:,} | 1 |")
    lines.append(f"| tiles x bits per tile + 4 (QB + KB + 2) | {bits_bytes + rows_bytes:,} | "
                 f"{mask.nbytes / (bits_bytes + rows_bytes):.3f} (nbytes / bound) |")
    lines.append(f"| FlexAttention BlockMask index tables (from its format) | {flex_bytes:,} | "
                 f"{flex_bytes / mask.nbytes:.1f}x ours |")
    if args.flex:
        block_mask = mask.to_flex()
        measured = sum(t.numel() * t.element_size() for t in block_mask.as_tuple() if isinstance(t, torch.Tensor))
        lines.append(f"| FlexAttention BlockMask built by to_flex() (measured tensors) | {measured:,} | "
                     f"{measured / mask.nbytes:.1f}x ours |")

    if args.families:
        from graphattn import masks

        family_n, window = 1_000_000, 128
        lines.append("")
        lines.append(f"families at n = {family_n:,}, window {window}, block {args.block} (built on the CPU):")
        lines.append("")
        lines.append("| builder | median | best | tiles |")
        lines.append("|---|---|---|---|")
        cpu = torch.device("cpu")
        median, best, band = timed(lambda: masks.sliding_window(family_n, window, block_size=args.block), cpu,
                                   args.repeats)
        lines.append(f"| sliding_window | {median * 1e3:.0f} ms | {best * 1e3:.0f} ms | {band.num_tiles:,} |")
        median, best, lf = timed(lambda: masks.longformer(family_n, window, 16, block_size=args.block), cpu,
                                 args.repeats)
        lines.append(f"| longformer (16 global) | {median * 1e3:.0f} ms | {best * 1e3:.0f} ms | {lf.num_tiles:,} |")
        median, best, bb = timed(lambda: masks.bigbird(family_n, window, 16, 3, block_size=args.block), cpu,
                                 args.repeats)
        lines.append(f"| bigbird (16 global, 3 random) | {median * 1e3:.0f} ms | {best * 1e3:.0f} ms | {bb.num_tiles:,} |")

        def window_mod(b, h, q_idx, kv_idx):
            return (q_idx - kv_idx).abs() <= window

        median, best, got = timed(lambda: masks.from_mask_mod(window_mod, family_n, args.block, candidate_tiles=band),
                                  cpu, max(args.repeats // 2, 1))
        assert got.fingerprint == band.fingerprint
        lines.append(f"| from_mask_mod(window mask_mod, candidate_tiles=band) | {median * 1e3:.0f} ms | "
                     f"{best * 1e3:.0f} ms | {got.num_tiles:,} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
