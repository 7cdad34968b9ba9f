"""Data-parallel training of a GraphAttention model over many meshes, with PyTorch's DDP.

Each rank trains on its share of the meshes (DistributedSampler) and DistributedDataParallel
averages the gradients. Orderings and block masks come from graphattn's content-addressed cache
(graphattn.cache): rank 0 computes and stores every missing entry, the other ranks wait and read
them (graphattn.distributed.rank_zero_first), so each graph is ordered once, not once per rank.

The dataset is ``--num-meshes`` randomly deformed and rotated copies of one mesh (by default the
sample datasets/bumpy_sphere.npz); the task is to predict each vertex's unit normal from the vertex
positions, a target that needs each node's neighbourhood.

Launch:
    torchrun --nproc_per_node=2 examples/train_ddp.py                     # CPU: gloo
    torchrun --nproc_per_node=2 examples/train_ddp.py --epochs 1 --max-steps 2 --num-meshes 4  # smoke
    torchrun --nproc_per_node=8 examples/train_ddp.py --epochs 50         # GPUs: NCCL, one GPU a rank
    python examples/train_ddp.py                                          # one process, no DDP
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import pathlib
import time

import numpy as np
import torch
import torch.distributed as dist

ROOT = pathlib.Path(__file__).resolve().parents[1]

# NVLink multicast (NVLS) and symmetric-memory multicast stay off on shared multi-GPU hosts.
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")


# ---------------------------------------------------------------------------------------- data
def load_mesh(path) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex positions float32 [N, 3] and triangles int64 [F, 3] of an .npz with keys pos, faces."""
    with np.load(path) as data:
        if "pos" not in data or "faces" not in data:
            raise ValueError(f"{path} must hold arrays 'pos' [N, 3] and 'faces' [F, 3], got {sorted(data)}")
        pos, faces = np.asarray(data["pos"], np.float32), np.asarray(data["faces"], np.int64)
    if pos.ndim != 2 or pos.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{path}: expected pos [N, 3] and faces [F, 3], got {pos.shape} and {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= pos.shape[0]):
        raise ValueError(f"{path}: faces index vertices outside [0, {pos.shape[0]})")
    return torch.from_numpy(pos), torch.from_numpy(faces)


def deformed_copy(pos: torch.Tensor, index: int, seed: int) -> torch.Tensor:
    """Copy ``index`` of the mesh: a smooth random radial deformation, then a random rotation.

    Deterministic in (index, seed), so every rank builds the same dataset without communicating.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    pos = pos.double()
    centre = pos.mean(0)
    rel = pos - centre
    frequencies = torch.randn(3, 3, generator=g, dtype=torch.float64) * 3.0
    phases = torch.rand(3, generator=g, dtype=torch.float64) * 2 * math.pi
    bump = torch.sin(rel @ frequencies + phases).sum(1, keepdim=True) * 0.05
    rel = rel * (1.0 + bump)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return (rel @ rotation.T).float()


def vertex_normals(pos: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit area-weighted vertex normals [N, 3] (zero for vertices in no face)."""
    a, b, c = pos[faces[:, 0]], pos[faces[:, 1]], pos[faces[:, 2]]
    face_normals = torch.linalg.cross(b - a, c - a)                  # length = 2 × area
    normals = torch.zeros_like(pos)
    for corner in range(3):
        normals.index_add_(0, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=1)


def build_graph(pos, faces, graph: str, k: int) -> torch.Tensor:
    from graphattn.graphs import knn_graph, mesh_edges

    return mesh_edges(faces, pos.shape[0]) if graph == "mesh" else knn_graph(pos, k=k)


def precompute(meshes, cache_dir, *, method: str, block_size: int):
    """Each mesh's cache entry (ordering and mask of its reordered graph), computed when missing."""
    from graphattn.cache import Cache

    cache = Cache(cache_dir)
    return [cache.get_or_compute(pos, edges, method=method, block_size=block_size) for pos, edges, _ in meshes]


def make_dataset(args, rank: int = 0):
    """The training graphs in their cached order, a list of (x, edge_index, block_mask, target), and
    how many of their orderings this rank computed (the others it read from the cache)."""
    from graphattn.distributed import rank_zero_first

    base_pos, faces = load_mesh(args.mesh)
    meshes = []
    for i in range(args.num_meshes):
        pos = deformed_copy(base_pos, i, args.seed)
        meshes.append((pos, build_graph(pos, faces, args.graph, args.k), vertex_normals(pos, faces)))
    started = time.perf_counter()
    entries = rank_zero_first(precompute, meshes, args.cache_dir, method=args.method, block_size=args.block_size)
    seconds = time.perf_counter() - started
    computed = sum(not e.from_cache for e in entries)
    print(f"[rank {rank}] {len(entries)} orderings and masks: {computed} computed, "
          f"{len(entries) - computed} read from {args.cache_dir} ({seconds:.2f} s)", flush=True)
    dataset = []
    for (pos, edges, normals), entry in zip(meshes, entries):
        ordering = entry.ordering
        centred = pos - pos.mean(0)
        features = centred / centred.norm(dim=1).max()
        dataset.append((ordering.permute(features), ordering.apply_to_edge_index(edges), entry.mask,
                        ordering.permute(normals)))
    return dataset, computed


# --------------------------------------------------------------------------------------- model
class NormalPredictor(torch.nn.Module):
    """GraphAttention layers with residual connections, then a linear head to 3 channels."""

    def __init__(self, hidden: int = 32, heads: int = 4, layers: int = 3, block_size: int = 64,
                 backend: str = "auto"):
        super().__init__()
        from graphattn.nn import GraphAttention

        self.embed = torch.nn.Linear(3, hidden)
        self.convs = torch.nn.ModuleList(
            GraphAttention(hidden, hidden // heads, heads=heads, block_size=block_size, backend=backend)
            for _ in range(layers))
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(hidden) for _ in range(layers))
        self.head = torch.nn.Linear(hidden, 3)

    def forward(self, x, edge_index, block_mask=None):
        h = self.embed(x)
        for conv, norm in zip(self.convs, self.norms):
            h = h + conv(norm(h), edge_index, block_mask=block_mask).relu()
        return self.head(h)


def graph_loss(model, graph, device) -> torch.Tensor:
    """Mean squared error of the predicted normals of one graph."""
    x, edge_index, mask, target = graph
    prediction = model(x.to(device), edge_index.to(device), mask.to(device))
    return torch.nn.functional.mse_loss(prediction, target.to(device))


def train_step(model, graphs, optimizer, device) -> float:
    """One optimiser step over this rank's graphs of the global batch; returns the mean loss.

    Gradients are accumulated graph by graph (one forward and backward each, so memory holds one
    graph at a time) under ``no_sync``, and DDP all-reduces once, in the last backward.
    """
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for i, graph in enumerate(graphs):
        last = i == len(graphs) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss = graph_loss(model, graph, device) / len(graphs)
            loss.backward()
        total += loss.detach()
    optimizer.step()
    return float(total)  # one host-device synchronisation per step, not one per graph


# ------------------------------------------------------------------------------------- driver
def setup_distributed():
    """(rank, world_size, device): from torchrun's environment, or a single process without it."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mesh", default=str(ROOT / "datasets" / "bumpy_sphere.npz"), help="mesh .npz (pos, faces)")
    p.add_argument("--num-meshes", type=int, default=8, help="deformed copies in the dataset (default: 8)")
    p.add_argument("--graph", choices=("mesh", "knn"), default="mesh", help="mesh edges or a k-NN graph")
    p.add_argument("--k", type=int, default=16, help="neighbours for --graph knn (default: 16)")
    p.add_argument("--method", default="auto", help="ordering method (default: auto)")
    p.add_argument("--block-size", type=int, default=64, help="tile size B (default: 64)")
    p.add_argument("--cache-dir", default=os.environ.get("GRAPHATTN_CACHE", "~/.cache/graphattn"),
                   help="precompute cache directory (default: $GRAPHATTN_CACHE or ~/.cache/graphattn)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1, help="graphs per rank per step (default: 1)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch after this many steps")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", help="attention backend: auto, triton or reference")
    args = p.parse_args(argv)
    for name in ("num_meshes", "k", "hidden", "heads", "layers", "batch_size", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    if args.hidden % args.heads:
        p.error(f"--hidden ({args.hidden}) must be a multiple of --heads ({args.heads})")
    return args


def main(argv=None):
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    args = parse_args(argv)
    rank, world_size, device = setup_distributed()
    try:
        dataset, _ = make_dataset(args, rank)
        torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts them)
        model = NormalPredictor(args.hidden, args.heads, args.layers, args.block_size, args.backend).to(device)
        if world_size > 1:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        # DistributedSampler pads the last batch so that every rank takes the same number of steps
        # (each step ends in a collective).
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed)
        loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=list)
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            started, steps, loss_sum = time.perf_counter(), 0, 0.0
            for graphs in loader:
                loss_sum += train_step(model, graphs, optimizer, device)
                steps += 1
                if args.max_steps is not None and steps >= args.max_steps:
                    break
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            mean_loss = torch.tensor([loss_sum / max(steps, 1)], dtype=torch.float64, device=device)
            if world_size > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= world_size
            if rank == 0:
                graphs_done = steps * args.batch_size * world_size
                print(f"epoch {epoch}: loss {float(mean_loss):.5f}, {steps} steps, "
                      f"{graphs_done / seconds:.2f} graphs/s over {world_size} rank(s)", flush=True)
    finally:
        if world_size > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
