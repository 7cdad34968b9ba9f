"""Train the same small graph transformer with PyG's TransformerConv and with graphattn's GraphAttention.

The task: on a triangle mesh, regress a smooth PDE-like field from vertex positions — a wave pattern
``sin(6x)·cos(4y) + z`` after three steps of heat-equation smoothing along the mesh edges. Both models start from the same seed; the two
layer classes initialise identically, so the loss curves agree to rounding (same function, same
weights, same data) and the comparison is purely one of time and memory.

    .venv/bin/python examples/train_mesh.py                      # CPU, plate mesh, ~1 minute
    .venv/bin/python examples/train_mesh.py --mesh datasets/bumpy_sphere.npz --device cuda --epochs 200

The mesh is reordered once with :class:`graphattn.transforms.BlockSparseOrder` (both models train
on the reordered graph; attention is permutation-equivariant, so TransformerConv is unaffected).
"""
from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_mesh(path: pathlib.Path):
    """Positions [N, 3] float32 and triangles [F, 3] from a sample ``.npz`` (``pos``, ``faces``)."""
    with np.load(path) as arrays:
        if "pos" not in arrays or "faces" not in arrays:
            raise ValueError(f"{path} must hold arrays 'pos' [N, 3] and 'faces' [F, 3], has {sorted(arrays)}")
        pos = torch.from_numpy(arrays["pos"].astype(np.float32))
        faces = torch.from_numpy(arrays["faces"].astype(np.int64))
    return pos, faces


def build_data(mesh: pathlib.Path, block_size: int):
    from torch_geometric.data import Data

    from graphattn.graphs import mesh_edges
    from graphattn.transforms import BlockSparseOrder

    pos, faces = load_mesh(mesh)
    pos = pos - pos.mean(0)
    pos = pos / pos.norm(dim=1).max()
    edge_index = mesh_edges(faces, pos.shape[0])
    src, dst = edge_index
    degree = torch.bincount(dst, minlength=pos.shape[0]).clamp_min(1)[:, None]
    field = torch.sin(6 * pos[:, :1]) * torch.cos(4 * pos[:, 1:2]) + pos[:, 2:3]
    for _ in range(3):  # heat-equation smoothing: each step averages a vertex with its neighbours
        field = 0.5 * field + 0.5 * torch.zeros_like(field).index_add_(0, dst, field[src]) / degree
    target = (field - field.mean()) / field.std()                      # standardised regression target
    data = Data(pos=pos, edge_index=edge_index, face=faces.t().contiguous(), y=target)
    start = time.perf_counter()
    data = BlockSparseOrder(block_size=block_size)(data)
    return data, time.perf_counter() - start


class Net(torch.nn.Module):
    """Encoder → attention layers (residual) → decoder; ``layer_class`` is the only difference."""

    def __init__(self, layer_class, hidden: int, heads: int, layers: int, **layer_kwargs):
        super().__init__()
        self.encode = torch.nn.Linear(3, hidden)
        self.layers = torch.nn.ModuleList(
            layer_class(hidden, hidden // heads, heads=heads, **layer_kwargs) for _ in range(layers))
        self.decode = torch.nn.Linear(hidden, 1)

    def forward(self, pos, edge_index):
        h = self.encode(pos)
        for layer in self.layers:
            h = h + torch.nn.functional.gelu(layer(h, edge_index))
        return self.decode(h)


def train(name, layer_class, data, args, **layer_kwargs):
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = Net(layer_class, args.hidden, args.heads, args.layers, **layer_kwargs).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    pos, edge_index, target = data.pos.to(device), data.edge_index.to(device), data.y.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, epoch_times = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            prediction = model(pos, edge_index)
        loss = torch.nn.functional.mse_loss(prediction.float(), target)
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.1f} MiB (CUDA peak allocated)"
    else:
        peak = (f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB "
                f"(process peak RSS so far; per-model peaks need --device cuda)")
    # The first epoch includes one-off work (kernel compilation, the mask build): report it apart.
    steady = epoch_times[1:] or epoch_times
    print(f"{name:>16}: {args.epochs} epochs, first {epoch_times[0] * 1e3:.1f} ms, then median "
          f"{np.median(steady) * 1e3:.1f} ms/epoch; peak memory {peak}")
    return losses, float(np.median(steady))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mesh", type=pathlib.Path, default=REPO / "datasets" / "plate_with_holes.npz")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--every", type=int, default=4, help="print every this many epochs of the loss curves")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.hidden % args.heads:
        parser.error("--epochs must be >= 1 and --hidden a multiple of --heads")

    from torch_geometric.nn import TransformerConv

    from graphattn.nn import GraphAttention

    data, order_seconds = build_data(args.mesh, args.block_size)
    print(f"mesh {args.mesh.name}: {data.num_nodes} nodes, {data.edge_index.shape[1]} edges; reordered in "
          f"{order_seconds:.2f} s; device {args.device}, torch {torch.__version__}")
    curves = {}
    curves["TransformerConv"], base_time = train("TransformerConv", TransformerConv, data, args)
    curves["GraphAttention"], our_time = train("GraphAttention", GraphAttention, data, args,
                                               block_size=args.block_size)
    print(f"\n{'epoch':>6} {'TransformerConv':>16} {'GraphAttention':>16}")
    for epoch in range(0, args.epochs, max(args.every, 1)):
        print(f"{epoch + 1:>6} {curves['TransformerConv'][epoch]:>16.6f} {curves['GraphAttention'][epoch]:>16.6f}")
    if (args.epochs - 1) % max(args.every, 1):
        print(f"{args.epochs:>6} {curves['TransformerConv'][-1]:>16.6f} {curves['GraphAttention'][-1]:>16.6f}")
    gap = max(abs(a - b) for a, b in zip(curves["TransformerConv"], curves["GraphAttention"]))
    print(f"\nlargest loss difference between the two curves: {gap:.2e}; "
          f"time per epoch ratio TransformerConv / GraphAttention: {base_time / our_time:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
