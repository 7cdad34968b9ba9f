"""Graph attention on k-NN graphs of point clouds: graphattn against every peer, in one run.

For each cloud (surface: points on a closed bumpy surface; volume: uniform in a cube; channel: a
long thin flat strip about 60 points across), size N and
head dim D it builds the k=16 k-NN graph with self-loops (17 in-edges per node), orders it (Morton
by default), and times with ``triton.testing.do_bench`` (median) the forward and the
forward+backward (``out.backward(dout)`` with a fixed random ``dout``) of graphattn for each mask block shape and of each peer
(benchmarks/peers.py; a missing peer is skipped with a message). It also reports each method's
peak extra memory in a forward+backward, graphattn's relative error against the float64 reference,
and the time graphattn's processed tiles would take at dense FlashAttention's rate measured in the
same run (dense SDPA time at a smaller N, scaled by processed pairs / N²; for fwd+bwd the pairs
of the row-side tiles (forward, dQ: 5 tile products) and of the column-side tiles (dK/dV: 4)
weighted by their products).

    PYTHONPATH=$PWD python3 benchmarks/attention.py --sizes 262144 --dims 32 64 --json out.json

Packed-tile rows ("64x64p": the mask's 64×64 blocks, packed tiles of the default width;
"64x64p64": 64 wide) count the row-side packed tiles (what the forward walks) and report the
one-off cost of building the packed layout from the mask.

Needs CUDA. ``--sweep`` also times kernel launch variants (warps, stages, the full-tile branch);
``--profile`` adds graphattn's per-kernel device times of one forward+backward.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from peers import PeerUnavailable, dense_sdpa, make_edge_list, make_flex, make_turbo_gnn  # noqa: E402


def point_cloud(kind: str, num_points: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "volume":
        return torch.rand(num_points, 3, generator=g)
    if kind == "channel":
        # a long thin flat strip, ~60 points across (a 2D CFD channel or a thin part): band orders
        # give few aligned tiles there, compact blocks few packed ones
        length = max(num_points / 3600.0, 1.0)
        pos = torch.rand(num_points, 3, generator=g)
        return pos * torch.tensor([length, 1.0, 0.0])
    direction = torch.randn(num_points, 3, generator=g, dtype=torch.float64)
    direction /= direction.norm(dim=1, keepdim=True)
    x, y, z = direction.unbind(1)
    radius = 1.0 + 0.15 * torch.sin(6 * x) * torch.sin(5 * y) * torch.sin(4 * z)
    return (direction * radius[:, None]).float()


def ordered_knn_graph(kind: str, num_points: int, method: str, objective: str = "tiles"):
    from graphattn import order
    from graphattn.graphs import knn_graph

    pos = point_cloud(kind, num_points)
    t0 = time.perf_counter()
    edges = knn_graph(pos, k=16, loop=True)
    t1 = time.perf_counter()
    # Curves need only the positions (and then skip the tile count, which the masks report).
    by_position = method in ("morton", "hilbert", "kd")
    ordering = order(None if by_position else edges, pos, method=method, block_size=64, objective=objective)
    t2 = time.perf_counter()
    print(f"# {kind} N={num_points}: knn {t1 - t0:.1f} s, order {method} (objective {objective})->{ordering.method} "
          f"{t2 - t1:.1f} s, 64-tiles {ordering.tiles if ordering.tiles is not None else 'see masks'}", flush=True)
    return ordering.apply_to_edge_index(edges)


def bench(fn, q, k, v):
    """(fwd ms, fwd+bwd ms, peak extra MB of one fwd+bwd).

    The backward is driven by a fixed upstream gradient (``out.backward(dout)``, as FlashAttention's
    own benchmarks do), so only the method's forward and backward are timed: the earlier harness,
    ``out.float().sum().backward()``, added a float copy of ``out``, a reduction and a broadcast
    gradient, 0.31 ms at N=262,144, H=4, D=32 on an H200, to every method alike.
    """
    from triton.testing import do_bench

    with torch.no_grad():
        dout = torch.randn_like(fn(q, k, v))

    def fwd():
        with torch.no_grad():
            fn(q, k, v)

    def fwd_bwd():
        fn(q, k, v).backward(dout)

    fwd_bwd()  # compile / autotune outside the timing
    # Then half a second of steady work before any timing: the first method timed after the
    # CPU-bound graph build measured up to 1.6x slower than the same call in a standalone script
    # (surface 262,144, D=32 on an H200: 0.340 vs 0.209 ms forward), and do_bench's own 50 ms
    # warm-up did not cover it (cause not isolated; clock ramp-up is the suspect).
    torch.cuda.synchronize()
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:
        fwd_bwd()
        torch.cuda.synchronize()
    for t in (q, k, v):
        t.grad = None
    fwd_ms = do_bench(fwd, warmup=50, rep=200, return_mode="median")
    fb_ms = do_bench(fwd_bwd, warmup=50, rep=200, grad_to_none=[q, k, v], return_mode="median")
    for t in (q, k, v):
        t.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fwd_bwd()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    for t in (q, k, v):
        t.grad = None
    del dout
    return fwd_ms, fb_ms, peak


def kernel_times(fn, q, k, v, iters: int = 10) -> dict:
    """Per-kernel device ms of one fwd+bwd (torch.profiler, mean of ``iters``): where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        dout = torch.randn_like(fn(q, k, v))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn(q, k, v).backward(dout)
            for t in (q, k, v):
                t.grad = None    # no gradient accumulation kernels in the profile
        torch.cuda.synchronize()
    for t in (q, k, v):
        t.grad = None
    times = {}
    for event in prof.key_averages():
        total = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        if total > 0 and "kernel" in event.key:
            times[event.key[:60]] = round(total / iters / 1e3, 4)
    return dict(sorted(times.items(), key=lambda item: -item[1]))


def dense_rate_ms(heads: int, head_dim: int, num_dense: int):
    """Dense FlashAttention's (fwd, fwd+bwd) ms per N² pairs · 1e12 at this H, D (bf16)."""
    q, k, v = (torch.randn(num_dense, heads, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    fwd, fb, _ = bench(lambda a, b, c: dense_sdpa(a, b, c, head_dim ** -0.5), q, k, v)
    pairs = float(num_dense) ** 2
    flops = 4.0 * pairs * heads * head_dim
    print(f"# dense SDPA N={num_dense} H={heads} D={head_dim}: fwd {fwd:.3f} ms ({flops / fwd / 1e9:.0f} TFLOP/s), "
          f"fwd+bwd {fb:.3f} ms ({3.5 * flops / fb / 1e9:.0f} TFLOP/s)", flush=True)
    return fwd / pairs, fb / pairs


def relative_error(edges, mask, q, k, v, tiles):
    from graphattn.ops import graph_attention, reference_attention

    with torch.no_grad():
        got = graph_attention(q, k, v, mask, tiles=tiles).double()
        want = reference_attention(q.float(), k.float(), v.float(), edges).double()
    return float((got - want).norm() / want.norm())


def parse_block(text: str):
    """'64x64' -> ((64, 64), 'aligned', {}); 'p' selects packed tiles of the default pack width
    ('64x64p'), 'pW' packed tiles W wide ('64x64p64' -> {'packed_width': 64})."""
    text = text.lower()
    shape, _, width = text.partition("p")
    bm, bn = (int(x) for x in shape.split("x"))
    if "p" not in text:
        return (bm, bn), "aligned", {}
    return (bm, bn), "packed", ({"packed_width": int(width)} if width else {})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["surface", "volume"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[262144, 1048576])
    parser.add_argument("--dims", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--order", default="morton")
    parser.add_argument("--objective", default="tiles", choices=("tiles", "packed"),
                        help="what --order auto minimises (graphattn.order's objective)")
    parser.add_argument("--blocks", nargs="+", default=["64x64", "64x64p", "128x64p"],
                        help="mask block shapes BMxBN; a trailing p walks packed tiles")
    parser.add_argument("--peers", nargs="*", default=["flex64", "flex128", "turbo", "edgelist"])
    parser.add_argument("--dense-n", type=int, default=65536)
    parser.add_argument("--sweep", action="store_true", help="also time kernel launch variants")
    parser.add_argument("--profile", action="store_true",
                        help="also report graphattn's per-kernel times in one fwd+bwd (torch.profiler)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from graphattn import GraphBlockMask
    from graphattn.ops import graph_attention, tile_config
    from graphattn.ops.packed_tiles import packed_tiles_of

    import triton
    print(f"# device {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}",
          flush=True)
    rows = []
    dense = {d: dense_rate_ms(args.heads, d, args.dense_n) for d in args.dims}
    for kind in args.kinds:
        for n in args.sizes:
            edges = ordered_knn_graph(kind, n, args.order, args.objective).cuda()
            for d in args.dims:
                scale = d ** -0.5
                g = torch.Generator(device="cuda").manual_seed(d)
                q, k, v = (torch.randn(n, args.heads, d, device="cuda", generator=g).to(torch.bfloat16)
                           .requires_grad_() for _ in range(3))
                case = dict(kind=kind, n=n, d=d, heads=args.heads, order=args.order)
                for block in args.blocks:
                    block_shape, tiles, base = parse_block(block)
                    tile_config.OVERRIDES.clear()
                    tile_config.OVERRIDES.update(base)
                    mask = GraphBlockMask.from_edge_index(edges, n, block_size=block_shape)
                    num_tiles, build_ms = mask.num_tiles, 0.0
                    # Pairs processed: the forward (2 tile products) and dQ (3) walk the row side,
                    # dK/dV (4) the column side; fwd+bwd weighs them by their products.
                    pairs = pairs_fb = num_tiles * block_shape[0] * block_shape[1]
                    if tiles == "packed":
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        packed = packed_tiles_of(mask)
                        torch.cuda.synchronize()
                        build_ms = (time.perf_counter() - t0) * 1e3
                        num_tiles = packed.num_row_tiles
                        pairs = num_tiles * packed.row_shape[0] * packed.row_shape[1]
                        col_pairs = packed.num_col_tiles * packed.col_shape[0] * packed.col_shape[1]
                        pairs_fb = (5 * pairs + 4 * col_pairs) / 9
                        print(f"# packed {block}: {packed.num_row_tiles} row tiles {packed.row_shape}, "
                              f"{packed.num_col_tiles} column tiles {packed.col_shape} (aligned {mask.num_tiles}), "
                              f"built in {build_ms:.1f} ms", flush=True)
                    variants = [{}]
                    if args.sweep:
                        variants += [{"num_warps": 8}, {"num_stages": 1}, {"num_stages": 3}]
                        variants += [{f"num_{knob}_{kernel}": value} for kernel in tile_config.KERNELS
                                     for knob, value in (("stages", 1), ("stages", 3), ("warps", 8))]
                        if tiles == "aligned":
                            variants += [{"full_tile_branch_forward": True}, {"full_tile_branch_backward": False}]
                    for variant in variants:
                        tile_config.OVERRIDES.clear()
                        tile_config.OVERRIDES.update(base, **variant)
                        fwd, fb, peak = bench(lambda a, b, c: graph_attention(a, b, c, mask, tiles=tiles), q, k, v)
                        err = relative_error(edges, mask, q, k, v, tiles) if not variant else float("nan")
                        name = f"graphattn {block}" + ("" if not variant else f" {variant}")
                        rows.append(dict(case, method=name, fwd_ms=fwd, fwd_bwd_ms=fb, peak_mb=peak, rel_err=err,
                                         tiles=num_tiles, tiles_per_row=num_tiles / mask.num_q_blocks,
                                         packing_build_ms=build_ms,
                                         at_dense_rate_fwd_ms=dense[d][0] * pairs,
                                         at_dense_rate_fwd_bwd_ms=dense[d][1] * pairs_fb))
                        if args.profile and not variant:
                            tile_config.OVERRIDES.update(base)
                            rows[-1]["kernel_ms"] = kernel_times(
                                lambda a, b, c: graph_attention(a, b, c, mask, tiles=tiles), q, k, v)
                        print(json.dumps(rows[-1]), flush=True)
                    tile_config.OVERRIDES.clear()
                    del mask
                for peer in args.peers:
                    try:
                        if peer.startswith("flex"):
                            name, fn = make_flex(edges, n, scale, int(peer[4:]))
                        elif peer == "turbo":
                            name, fn = make_turbo_gnn(edges, n, scale)
                        elif peer == "edgelist":
                            name, fn = make_edge_list(edges, n, scale)
                        else:
                            raise PeerUnavailable(f"unknown peer {peer!r}")
                        fwd, fb, peak = bench(fn, q, k, v)
                    except PeerUnavailable as error:
                        print(f"# skipped {peer}: {error}", flush=True)
                        continue
                    except Exception as error:  # a peer failing must not stop the comparison
                        print(f"# skipped {peer}: failed with {type(error).__name__}: {str(error)[:300]}", flush=True)
                        continue
                    rows.append(dict(case, method=name, fwd_ms=fwd, fwd_bwd_ms=fb, peak_mb=peak))
                    print(json.dumps(rows[-1]), flush=True)
                    del fn
                    torch.cuda.empty_cache()
    if args.profile:
        try:
            print_compiled_kernels()
        except Exception as error:  # Triton's cache layout is internal and may change
            print(f"# compiled kernels not listed: {type(error).__name__}: {error}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    print_table(rows)


def print_compiled_kernels():
    """Registers, spills and shared memory of every compiled graphattn kernel: occupancy evidence."""
    from graphattn.ops import triton_backward, triton_forward

    for fn in (triton_forward.graph_attention_forward_kernel, triton_backward.dq_kernel,
               triton_backward.dkdv_kernel):
        for cache in getattr(fn, "device_caches", {}).values():
            for compiled in cache[0].values():
                meta = compiled.metadata
                consts = {k: v for k, v in getattr(compiled, "constants", {}).items()
                          if isinstance(v, (int, bool, str))}
                print(f"# compiled {fn.__name__}: regs {compiled.n_regs}, spills {compiled.n_spills}, "
                      f"shared {meta.shared} B, warps {meta.num_warps}, stages {meta.num_stages}, {consts}",
                      flush=True)


def print_table(rows):
    """Markdown table: per case, each method with ratios of graphattn's best block to it."""
    cases = {}
    for row in rows:
        cases.setdefault((row["kind"], row["n"], row["d"]), []).append(row)
    print("| graph | N | D | method | fwd ms | fwd+bwd ms | peak MB | graphattn/method fwd | graphattn/method fwd+bwd | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (kind, n, d), group in cases.items():
        ours = [r for r in group if r["method"].startswith("graphattn") and "{" not in r["method"]]
        best = min(ours, key=lambda r: r["fwd_bwd_ms"]) if ours else None
        for r in group:
            notes = ""
            if r["method"].startswith("graphattn"):
                if "at_dense_rate_fwd_ms" in r:
                    notes = (f"{r['tiles']} tiles ({r['tiles_per_row']:.1f}/row); at dense rate "
                             f"{r['at_dense_rate_fwd_ms']:.3f}/{r['at_dense_rate_fwd_bwd_ms']:.3f} ms "
                             f"(x{r['fwd_ms'] / r['at_dense_rate_fwd_ms']:.2f}/x{r['fwd_bwd_ms'] / r['at_dense_rate_fwd_bwd_ms']:.2f})")
                if not math.isnan(r.get("rel_err", float("nan"))):
                    notes += f"; rel err {r['rel_err']:.1e}"
            ratio_f = f"{best['fwd_ms'] / r['fwd_ms']:.3f}" if best else ""
            ratio_b = f"{best['fwd_bwd_ms'] / r['fwd_bwd_ms']:.3f}" if best else ""
            print(f"| {kind} | {n} | {d} | {r['method']} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | "
                  f"{r['peak_mb']:.0f} | {ratio_f} | {ratio_b} | {notes} |")


if __name__ == "__main__":
    main()
