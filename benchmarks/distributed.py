"""Benchmark of graphattn beyond one device: data parallel and graph parallel, W ranks vs one.

Launch with torchrun, one process per GPU (NCCL), or on the CPU with gloo for a smoke check:

    torchrun --nproc_per_node=2 benchmarks/distributed.py                      # both modes, 2 GPUs
    torchrun --nproc_per_node=2 benchmarks/distributed.py --mode graph --nodes 8388608
    torchrun --nproc_per_node=2 benchmarks/distributed.py --smoke              # CPU, gloo, tiny sizes

Graph parallel: a k-NN graph (k=16) of ``--nodes`` points on a bumpy closed surface (or in a cube,
``--shape volume``), Hilbert-ordered, split into block-aligned ranges balanced by tiles. Times the
forward + backward of attention (``graph_attention`` on one device against
``graph_parallel_attention`` on W ranks) and of one GraphAttention layer (projections + attention +
skip), bf16 on GPUs. Reports the halo rows and bytes exchanged per step (keys and values forward,
their gradients backward) and the halo as a fraction of all keys and values.

Data parallel: the training step of examples/train_ddp.py (GraphAttention model, deformed copies of
a mesh, one optimiser step over a global batch) on rank 0 alone, then with DistributedDataParallel
on all ranks; reports graphs per second and the speed-up.

The single-device baselines run on rank 0 in the same job while the other ranks wait. Step times
of W ranks are the slowest rank's (each step ends in a collective). Prints a markdown table on
rank 0; ``--json`` also writes the figures (rank 0, atomically).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

# NVLink multicast (NVLS) and symmetric-memory multicast stay off on shared multi-GPU hosts.
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    if dist.get_rank() == 0:
        print(message, flush=True)


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, *, warmup: int, repeats: int, collective: bool) -> float:
    """Median seconds of ``fn()``. With ``collective``, every rank runs it, each repeat starts
    after a barrier and counts as the slowest rank's time."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if collective:
            dist.barrier()
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if collective:
            slowest = torch.tensor([elapsed], dtype=torch.float64, device=_comm_device(device))
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            elapsed = float(slowest)
        times.append(elapsed)
    return statistics.median(times)


def _comm_device(device):
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


# -------------------------------------------------------------------------------- graph parallel
def surface_points(num_nodes: int, shape: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if shape == "volume":
        return torch.rand(num_nodes, 3, generator=g)
    directions = torch.nn.functional.normalize(torch.randn(num_nodes, 3, generator=g), dim=1)
    radius = 1.0 + 0.15 * torch.sin(5 * directions[:, 0]) * torch.cos(4 * directions[:, 1])
    return directions * radius[:, None]


def ordered_knn(num_nodes: int, k: int, shape: str, block_size: int, seed: int) -> torch.Tensor:
    """The Hilbert-ordered k-NN graph of the benchmark's points (CPU edge_index)."""
    import graphattn
    from graphattn.graphs import knn_graph

    started = time.perf_counter()
    pos = surface_points(num_nodes, shape, seed)
    ordering = graphattn.order(pos=pos, method="hilbert", block_size=block_size)
    edges = knn_graph(ordering.permute(pos), k=k)
    print(f"graph: {num_nodes} nodes, {edges.shape[1]} edges ({shape}, k={k}, Hilbert order) in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return edges


def build_ordered_knn(num_nodes: int, k: int, shape: str, block_size: int, seed: int, device) -> torch.Tensor:
    """Rank 0 builds the Hilbert-ordered k-NN graph and broadcasts it; returns edge_index on ``device``."""
    comm = _comm_device(device)
    if dist.get_rank() == 0:
        edges = ordered_knn(num_nodes, k, shape, block_size, seed)
        count = torch.tensor([edges.shape[1]], dtype=torch.int64, device=comm)
    else:
        count = torch.empty(1, dtype=torch.int64, device=comm)
    dist.broadcast(count, src=0)
    if dist.get_rank() != 0:
        edges = torch.empty(2, int(count), dtype=torch.int64)
    edges = edges.to(comm)
    dist.broadcast(edges, src=0)
    return edges.to(device)


def plan_only(args) -> None:
    """Halo and balance of the graph-parallel split, without processes or a GPU (the plans of all
    ranks computed in this process): the traffic figures do not depend on the device."""
    from graphattn.distributed import GraphParallelPlan, partition_nodes

    edges = ordered_knn(args.nodes, args.k, args.shape, args.block_size, args.seed)
    world = args.world_size
    started = time.perf_counter()
    bounds = partition_nodes(edges, args.nodes, world, block_size=args.block_size)
    partition_seconds = time.perf_counter() - started
    row_bytes = 2 * args.heads * args.head_dim * 2                      # bf16 key and value rows
    print(f"\ncommand: python benchmarks/distributed.py {' '.join(sys.argv[1:])}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {datetime.date.today().isoformat()}; "
          f"partition {partition_seconds:.1f} s; boundaries {bounds}")
    print(f"\n| rank | nodes | local tiles | halo rows | halo / local | rows sent |\n|---|---|---|---|---|---|")
    total_halo = 0
    for rank in range(world):
        plan = GraphParallelPlan.from_edge_index(edges, args.nodes, rank=rank, world_size=world,
                                                 block_size=args.block_size, boundaries=bounds)
        total_halo += plan.num_halo
        print(f"| {rank} | {plan.num_local:,} | {plan.mask.num_tiles:,} | {plan.num_halo:,} | "
              f"{plan.halo_fraction:.2%} | {plan.num_send:,} |", flush=True)
    print(f"\nhalo: {total_halo:,} rows = {total_halo / args.nodes:.2%} of the keys and values; "
          f"{2 * total_halo * row_bytes:,} bytes per step at H={args.heads}, D={args.head_dim}, bf16 "
          f"(fwd k,v + bwd dk,dv)")


def bench_graph_parallel(args, device, dtype) -> dict:
    from graphattn import GraphBlockMask
    from graphattn.distributed import GraphParallelPlan, graph_parallel, graph_parallel_attention
    from graphattn.nn import GraphAttention
    from graphattn.ops import graph_attention

    rank, world = dist.get_rank(), dist.get_world_size()
    edges = build_ordered_knn(args.nodes, args.k, args.shape, args.block_size, args.seed, device)
    started = time.perf_counter()
    plan = GraphParallelPlan.from_edge_index(edges, args.nodes, rank=rank, world_size=world,
                                             block_size=args.block_size)
    synchronize(device)
    plan_seconds = time.perf_counter() - started
    heads, head_dim = args.heads, args.head_dim
    channels = heads * head_dim
    row_bytes = 2 * channels * torch.finfo(dtype).bits // 8            # one key row and one value row
    halo_rows = torch.tensor([plan.num_halo, plan.num_local, plan.mask.num_tiles], dtype=torch.int64,
                             device=_comm_device(device))
    all_rows = [torch.empty_like(halo_rows) for _ in range(world)]
    dist.all_gather(all_rows, halo_rows)
    per_rank = [tuple(int(v) for v in t.tolist()) for t in all_rows]
    total_halo = sum(h for h, _, _ in per_rank)
    log(f"plan: {plan_seconds:.2f} s on rank {rank}; per rank (halo rows, local rows, local tiles): {per_rank}")

    g = torch.Generator(device=device).manual_seed(args.seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    local_q, local_k, local_v = (randn(plan.num_local, heads, head_dim).requires_grad_() for _ in range(3))
    local_x = randn(plan.num_local, channels).requires_grad_()
    torch.manual_seed(args.seed)
    layer = graph_parallel(GraphAttention(channels, head_dim, heads=heads, block_size=args.block_size)
                           .to(device=device, dtype=dtype))

    def parallel_attention():
        out = graph_parallel_attention(local_q, local_k, local_v, plan)
        out.float().sum().backward()

    def parallel_layer():
        layer(local_x, plan).float().sum().backward()

    result = {"nodes": args.nodes, "edges": edges.shape[1], "k": args.k, "shape": args.shape,
              "heads": heads, "head_dim": head_dim, "dtype": str(dtype).replace("torch.", ""),
              "block_size": args.block_size, "world_size": world, "boundaries": list(plan.boundaries),
              "per_rank_halo_local_tiles": per_rank, "halo_rows": total_halo,
              "halo_fraction": total_halo / args.nodes,
              # forward: halo keys and values; backward: their gradients, the same size, sent back.
              "halo_bytes_per_step": 2 * total_halo * row_bytes,
              "plan_seconds": plan_seconds}
    result["parallel_attention_s"] = timed(parallel_attention, device, warmup=args.warmup, repeats=args.repeats,
                                           collective=True)
    result["parallel_layer_s"] = timed(parallel_layer, device, warmup=args.warmup, repeats=args.repeats,
                                       collective=True)
    del local_q, local_k, local_v, local_x

    if rank == 0:
        mask = GraphBlockMask.from_edge_index(edges, args.nodes, block_size=args.block_size)
        q, k, v = (randn(args.nodes, heads, head_dim).requires_grad_() for _ in range(3))
        x = randn(args.nodes, channels).requires_grad_()

        def single_attention():
            graph_attention(q, k, v, mask).float().sum().backward()

        def single_layer():
            layer(x, edges, block_mask=mask).float().sum().backward()

        result["single_attention_s"] = timed(single_attention, device, warmup=args.warmup,
                                             repeats=args.repeats, collective=False)
        result["single_layer_s"] = timed(single_layer, device, warmup=args.warmup, repeats=args.repeats,
                                         collective=False)
        del q, k, v, x, mask
    dist.barrier()
    return result


# --------------------------------------------------------------------------------- data parallel
def load_example():
    spec = importlib.util.spec_from_file_location("train_ddp_example", ROOT / "examples" / "train_ddp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_data_parallel(args, device, dtype) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    example = load_example()
    rank, world = dist.get_rank(), dist.get_world_size()
    example_args = example.parse_args([
        "--num-meshes", str(args.graphs), "--graph", "knn", "--k", str(args.k), "--method", "hilbert",
        "--block-size", str(args.block_size), "--cache-dir", args.cache_dir, "--hidden", str(args.hidden),
        "--heads", str(args.heads), "--layers", str(args.layers), "--batch-size", str(args.batch_size),
        *(["--mesh", args.mesh] if args.mesh else [])])
    dataset, _ = example.make_dataset(example_args, rank)
    dataset = [(x.to(device, dtype), edges.to(device), mask.to(device), target.to(device, dtype))
               for x, edges, mask, target in dataset]
    nodes = dataset[0][0].shape[0]

    def make_model():
        torch.manual_seed(args.seed)
        return example.NormalPredictor(args.hidden, args.heads, args.layers, args.block_size).to(device, dtype)

    def steps_over(model, graphs_per_step, offset):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        position = [0]

        def step():
            start = (position[0] * graphs_per_step * world + offset) % len(dataset)
            graphs = [dataset[(start + i) % len(dataset)] for i in range(graphs_per_step)]
            example.train_step(model, graphs, optimizer, device)
            position[0] += 1
        return step

    result = {"graphs": args.graphs, "nodes_per_graph": nodes, "k": args.k, "hidden": args.hidden,
              "heads": args.heads, "layers": args.layers, "batch_per_rank": args.batch_size,
              "dtype": str(dtype).replace("torch.", ""), "world_size": world}
    if rank == 0:
        seconds = timed(steps_over(make_model(), args.batch_size, 0), device, warmup=args.warmup,
                        repeats=args.repeats, collective=False)
        result["single_graphs_per_s"] = args.batch_size / seconds
    dist.barrier()
    ddp = DistributedDataParallel(make_model(), device_ids=[device.index] if device.type == "cuda" else None)
    seconds = timed(steps_over(ddp, args.batch_size, rank * args.batch_size), device, warmup=args.warmup,
                    repeats=args.repeats, collective=True)
    result["parallel_graphs_per_s"] = args.batch_size * world / seconds
    return result


# ----------------------------------------------------------------------------------------- main
def versions(device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.date.today().isoformat(), "backend": dist.get_backend()}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    info["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("both", "graph", "data", "plan"), default="both",
                   help="plan: halo and balance of the graph-parallel split only, one process, no GPU "
                        "(run with python, not torchrun)")
    p.add_argument("--world-size", type=int, default=2, help="ranks for --mode plan (default: 2)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU check with gloo")
    p.add_argument("--nodes", type=int, default=None, help="graph-parallel nodes (default: 8,388,608; smoke 4,096)")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--shape", choices=("surface", "volume"), default="surface")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--graphs", type=int, default=None, help="data-parallel dataset size (default: 16; smoke 4)")
    p.add_argument("--mesh", default=None, help="data-parallel mesh .npz (default: the example's bumpy "
                   "sphere, 40,962 nodes; smoke: the plate with holes, 10,808 nodes)")
    p.add_argument("--hidden", type=int, default=None, help="data-parallel width (default: 128; smoke 16)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2, help="data-parallel graphs per rank per step")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="precompute cache (default: a temporary directory)")
    p.add_argument("--json", default=None, help="also write the figures here (rank 0)")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.nodes = args.nodes or (4096 if smoke else 8_388_608)
    args.graphs = args.graphs or (4 if smoke else 16)
    if smoke and args.mesh is None:
        args.mesh = str(ROOT / "datasets" / "plate_with_holes.npz")  # 10,808 nodes
    args.hidden = args.hidden or (16 if smoke else 128)
    if smoke:
        args.layers = min(args.layers, 2)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    args.repeats = args.repeats if args.repeats is not None else (3 if smoke else 10)
    return args


def write_json(path, payload) -> None:
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "plan":
        plan_only(args)
        return
    if "RANK" not in os.environ:
        raise SystemExit("launch with torchrun, e.g. torchrun --nproc_per_node=2 benchmarks/distributed.py")
    use_cuda = torch.cuda.is_available() and not args.smoke
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device, dtype = torch.device("cuda", torch.cuda.current_device()), torch.bfloat16
    else:
        device, dtype = torch.device("cpu"), torch.float32
    dist.init_process_group("nccl" if use_cuda else "gloo")
    cleanup = None
    try:
        if args.cache_dir is None:
            # One directory for all ranks: rank 0 creates it and tells the others.
            name = [tempfile.mkdtemp(prefix="graphattn-bench-") if dist.get_rank() == 0 else None]
            dist.broadcast_object_list(name, src=0)
            args.cache_dir = cleanup = name[0]
        command = f"torchrun --nproc_per_node={dist.get_world_size()} benchmarks/distributed.py {' '.join(sys.argv[1:])}"
        payload = {"versions": versions(device), "command": command.strip()}
        if args.mode in ("both", "graph"):
            payload["graph_parallel"] = bench_graph_parallel(args, device, dtype)
        if args.mode in ("both", "data"):
            payload["data_parallel"] = bench_data_parallel(args, device, dtype)
        if dist.get_rank() == 0:
            print_tables(payload)
            if args.json:
                write_json(args.json, payload)
    finally:
        dist.destroy_process_group()
        if cleanup and int(os.environ.get("RANK", 0)) == 0:
            import shutil
            shutil.rmtree(cleanup, ignore_errors=True)


def print_tables(payload) -> None:
    v = payload["versions"]
    print(f"\ncommand: {payload['command']}")
    print(f"device: {v['device']} × {payload.get('graph_parallel', payload.get('data_parallel'))['world_size']}, "
          f"backend {v['backend']}, torch {v['torch']}, triton {v['triton']}, python {v['python']}, {v['date']}")
    gp = payload.get("graph_parallel")
    if gp:
        w = gp["world_size"]
        print(f"\ngraph parallel: k={gp['k']} k-NN ({gp['shape']}) of {gp['nodes']:,} nodes, {gp['edges']:,} edges, "
              f"H={gp['heads']}, D={gp['head_dim']}, {gp['dtype']}, B={gp['block_size']}")
        print(f"halo: {gp['halo_rows']:,} rows = {gp['halo_fraction']:.2%} of the keys and values; "
              f"{gp['halo_bytes_per_step']:,} bytes per step (fwd k,v + bwd dk,dv)")
        print(f"\n| fwd+bwd | 1 device ms | {w} ranks ms | speed-up |\n|---|---|---|---|")
        for name in ("attention", "layer"):
            single, parallel = gp.get(f"single_{name}_s"), gp[f"parallel_{name}_s"]
            print(f"| {name} | {single * 1e3:.2f} | {parallel * 1e3:.2f} | {single / parallel:.2f}× |")
    dp = payload.get("data_parallel")
    if dp:
        w = dp["world_size"]
        print(f"\ndata parallel: {dp['graphs']} graphs of {dp['nodes_per_graph']:,} nodes (k={dp['k']}), "
              f"{dp['layers']} layers, hidden {dp['hidden']}, {dp['heads']} heads, {dp['dtype']}, "
              f"{dp['batch_per_rank']} graphs per rank per step")
        print(f"\n| graphs/s 1 device | graphs/s {w} ranks | speed-up |\n|---|---|---|")
        print(f"| {dp['single_graphs_per_s']:.2f} | {dp['parallel_graphs_per_s']:.2f} | "
              f"{dp['parallel_graphs_per_s'] / dp['single_graphs_per_s']:.2f}× |")


if __name__ == "__main__":
    main()
