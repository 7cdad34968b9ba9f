"""The demo job (``graphattn demo``), the quick benchmark (``graphattn bench``) and the tile picture.

The demo walks the whole pipeline on a bundled sample mesh and needs nothing else:

    sample mesh → graph (mesh edges, and k-NN for comparison) → every ordering compared →
    block mask → attention (the Triton kernel on CUDA, the reference on the CPU) checked against
    PyG's TransformerConv for equality and time → a summary (printed and saved) and a PNG.

Pieces written by other parts of the library are picked up when importable; a missing one is
reported as ``skipped: <piece> not available`` instead of failing the demo.
"""
from __future__ import annotations

import json
import math
import pathlib
import platform
import sys
import time

import numpy as np
import torch

SAMPLE_MESH = "bumpy_sphere.npz"


def bundled_sample(name: str = SAMPLE_MESH) -> pathlib.Path:
    """Path of a sample mesh shipped with graphattn (``datasets/`` of a source checkout, or package data)."""
    here = pathlib.Path(__file__).resolve().parent
    for candidate in (here / "data" / name, here.parent / "datasets" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the sample mesh {name} is not installed (looked in {here / 'data'} and "
                            f"{here.parent / 'datasets'}); pass --mesh FILE, or run datasets/make_samples.py")


# ======================================================================================= orderings
def _warm_up(methods, block_size: int, with_pos: bool) -> None:
    """Runs each method once on a tiny graph so that JIT compilation is not timed as ordering."""
    from .graphs import knn_graph
    from .ordering import order

    pos = torch.rand(3 * block_size, 3, generator=torch.Generator().manual_seed(0))
    edge_index = knn_graph(pos, k=4)
    for method in methods:
        try:
            order(edge_index, pos if with_pos else None, method=method, block_size=block_size)
        except (ValueError, TypeError, ImportError, RuntimeError):
            pass  # compare_orderings reports it


def compare_orderings(edge_index: torch.Tensor, pos, methods, block_size: int = 64) -> list[dict]:
    """Runs each ordering method on one graph; a method that cannot run is reported, not raised.

    Returns one dict per method: ``method``, ``tiles``, ``tiles_per_row`` (per ``block_size``-row
    block), ``packed_per_row`` (the GPU kernel's packed tiles per block row, ``count_packed_tiles``),
    ``fill`` (edges / (tiles · B²)), ``seconds``, ``ordering`` and, for ``auto``, the method it
    ``chose``; or ``method`` and ``error``.
    """
    from .ordering import count_packed_tiles, count_tiles, order

    n = int(pos.shape[0]) if pos is not None else int(edge_index.max()) + 1
    _warm_up(methods, block_size, pos is not None)
    distinct = torch.unique(edge_index[1] * max(n, 1) + edge_index[0]).numel()
    blocks = max(-(-n // block_size), 1)
    results = []
    for method in methods:
        start = time.perf_counter()
        try:
            ordering = order(edge_index, pos, num_nodes=n, method=method, block_size=block_size)
        except (ValueError, TypeError, ImportError, RuntimeError) as exc:
            results.append({"method": method, "error": str(exc).splitlines()[0]})
            continue
        seconds = time.perf_counter() - start
        tiles = ordering.tiles if ordering.tiles is not None else int(
            count_tiles(ordering.apply_to_edge_index(edge_index), n, block_size=block_size))
        packed = count_packed_tiles(edge_index, n, block_size, perm=ordering.perm)
        results.append({"method": method, "tiles": int(tiles), "tiles_per_row": tiles / blocks,
                        "packed_per_row": packed / blocks,
                        "fill": distinct / (tiles * block_size * block_size) if tiles else 0.0,
                        "seconds": seconds, "ordering": ordering,
                        "chosen": ordering.method if method == "auto" else None})
    return results


# ======================================================================================= the picture
def _tile_grid(mask, max_cells: int):
    """Non-empty tiles per cell of a (query block × key block) grid, binned down to max_cells a side."""
    q_blocks, kv_blocks = mask.num_q_blocks, mask.num_kv_blocks
    factor = max(1, math.ceil(max(q_blocks, kv_blocks) / max_cells))
    rows = np.repeat(np.arange(q_blocks), np.diff(mask.row_ptr.cpu().numpy()))
    cols = mask.col_idx.cpu().numpy().astype(np.int64)
    grid = np.zeros((math.ceil(q_blocks / factor), math.ceil(kv_blocks / factor)))
    np.add.at(grid, (rows // factor, cols // factor), 1.0)
    return grid / (factor * factor), factor


def draw_tile_patterns(masks: dict, path, *, title: str = "", max_cells: int = 700) -> pathlib.Path:
    """Draws the non-empty tiles of each mask side by side, plus a histogram of tiles per block row.

    ``masks`` maps a panel title (e.g. ``"file order"``, ``"kd order"``) to a GraphBlockMask of the
    same graph in that order. Dark cells are non-empty B×B tiles: the fewer and the closer to the
    diagonal, the less work the kernel does. Large graphs are binned to ``max_cells`` cells a
    side (a cell's shade is then the fraction of its tiles that are non-empty). Writes a PNG.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = len(masks) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 5.4), constrained_layout=True)
    histograms = []
    for ax, (name, mask) in zip(axes, masks.items()):
        grid, factor = _tile_grid(mask, max_cells)
        shown = np.ma.masked_equal(grid, 0.0)
        # gamma 0.5 keeps a cell with one non-empty tile in four clearly visible
        image = ax.imshow(shown, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),
                          interpolation="nearest", origin="upper")
        ax.set_facecolor("white")
        mean, most = mask.tiles_per_row
        ax.set_title(f"{name}\n{mask.num_tiles:,} tiles, {mean:.2f} per block row (max {most}), fill {mask.fill:.1%}",
                     fontsize=10)
        unit = f"{mask.block_shape[0]}-node blocks" + (f", {factor}×{factor} per cell" if factor > 1 else "")
        ax.set_xlabel(f"key block (source nodes; {unit})")
        ax.set_ylabel("query block (target nodes)")
        histograms.append((name, np.diff(mask.row_ptr.cpu().numpy())))
        if factor > 1:
            fig.colorbar(image, ax=ax, shrink=0.7, label="fraction of tiles non-empty")
    ax = axes[-1]
    top = max(int(h.max()) if h.size else 0 for _, h in histograms) + 1
    bins = np.arange(0, top + 1) - 0.5
    for name, counts in histograms:
        ax.hist(counts, bins=bins, alpha=0.6, label=f"{name} (mean {counts.mean():.2f})")
    ax.set_xlabel("non-empty tiles in a block row")
    ax.set_ylabel("block rows")
    ax.set_title("tiles per block row: the kernel's work per query block", fontsize=10)
    ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ======================================================================================= attention
def _pyg_edge_list_attention(q, k, v, edge_index):
    """Attention as PyG's TransformerConv computes it: gather, segment softmax, scatter."""
    from torch_geometric.utils import scatter, softmax

    src, dst = edge_index
    scores = (q[dst] * k[src]).sum(-1) / math.sqrt(q.shape[-1])
    alpha = softmax(scores, dst, num_nodes=q.shape[0])
    return scatter(v[src] * alpha.unsqueeze(-1), dst, 0, dim_size=q.shape[0], reduce="sum")


def _timed(fn, repeats: int, device: torch.device):
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def _available(module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _pick_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available")
    return device


def _layer_check(x, edge_index, mask, device, heads=4, channels=16, repeats=3) -> list[dict]:
    """graphattn.nn.GraphAttention against TransformerConv with the same weights: max |diff| and time."""
    from torch_geometric.nn import TransformerConv

    GraphAttention = _available("graphattn.nn", "GraphAttention")
    if GraphAttention is None:
        return [{"name": "GraphAttention layer", "skipped": "graphattn.nn.GraphAttention not available"}]
    torch.manual_seed(0)
    conv = TransformerConv(x.shape[1], channels, heads=heads).to(device).eval()
    layer = GraphAttention(x.shape[1], channels, heads=heads).to(device).eval()
    layer.load_state_dict(conv.state_dict())
    rows = []
    with torch.no_grad():
        t_conv, want = _timed(lambda: conv(x, edge_index), repeats, device)
        rows.append({"name": "TransformerConv (PyG)", "seconds": t_conv, "max_abs_diff": 0.0})
        try:
            # The precomputed mask is handed over, as a pipeline with a cache would.
            t_layer, got = _timed(lambda: layer(x, edge_index, block_mask=mask), repeats, device)
            rows.append({"name": "graphattn GraphAttention", "seconds": t_layer,
                         "max_abs_diff": float((got.double() - want.double()).abs().max())})
        except Exception as exc:  # a layer still being written must not sink the demo
            rows.append({"name": "graphattn GraphAttention", "skipped": f"{type(exc).__name__}: {exc}"})
    return rows


def _attention_check(edge_index, mask, num_nodes, device, heads=4, head_dim=32, repeats=3) -> list[dict]:
    """graph_attention (Triton on CUDA), reference_attention and PyG's edge-list formula on one input."""
    reference_attention = _available("graphattn.ops", "reference_attention")
    graph_attention = _available("graphattn.ops", "graph_attention")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(num_nodes, heads, head_dim, generator=g).to(device) for _ in range(3))
    edge_index = edge_index.to(device)
    rows = []
    t, want = _timed(lambda: _pyg_edge_list_attention(q, k, v, edge_index), repeats, device)
    rows.append({"name": "PyG edge-list attention", "seconds": t, "max_abs_diff": 0.0})
    if reference_attention is None:
        rows.append({"name": "reference_attention", "skipped": "graphattn.ops.reference_attention not available"})
    else:
        t, got = _timed(lambda: reference_attention(q, k, v, edge_index), repeats, device)
        rows.append({"name": "graphattn reference_attention", "seconds": t,
                     "max_abs_diff": float((got.double() - want.double()).abs().max())})
    if graph_attention is None:
        rows.append({"name": "graph_attention", "skipped": "graphattn.ops.graph_attention not available"})
    elif device.type != "cuda":
        rows.append({"name": "graph_attention (Triton)", "skipped": "needs CUDA; the CPU runs the reference above"})
    else:
        device_mask = mask.to(device)
        try:
            t, got = _timed(lambda: graph_attention(q, k, v, device_mask), repeats, device)
            rows.append({"name": "graphattn graph_attention (Triton)", "seconds": t,
                         "max_abs_diff": float((got.double() - want.double()).abs().max())})
        except Exception as exc:
            rows.append({"name": "graph_attention (Triton)", "skipped": f"{type(exc).__name__}: {exc}"})
    return rows


def _timing_table(rows) -> str:
    from .cli import format_table

    base = next((r["seconds"] for r in rows if "seconds" in r), None)
    table = []
    for r in rows:
        if "skipped" in r:
            table.append((r["name"], "-", "-", "-", f"skipped: {r['skipped']}"))
        else:
            table.append((r["name"], f"{r['seconds'] * 1e3:.1f}", f"{base / r['seconds']:.2f}x" if base else "-",
                          f"{r['max_abs_diff']:.2e}", ""))
    return format_table(("path", "ms", "speed vs first", "max |diff| vs first", ""), table)


def _environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"}
    for module in ("triton", "torch_geometric"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = "not installed"
    from . import __version__

    env["graphattn"] = __version__
    return env


def run_demo(mesh_path=None, out_dir="graphattn-demo", device=None) -> int:
    """The demo job; prints each step and writes ``summary.json`` and ``tile_pattern.png`` to ``out_dir``."""
    from .graphs import knn_graph
    from .io import build_graph, read_mesh
    from .mask import GraphBlockMask
    from .ordering import METHODS

    started = time.perf_counter()
    device = _pick_device(device)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = pathlib.Path(mesh_path) if mesh_path else bundled_sample()
    env = _environment(device)
    print(f"graphattn {env['graphattn']} demo on {env['device']} (torch {env['torch']}, triton {env['triton']}, "
          f"torch_geometric {env['torch_geometric']})")

    print(f"\n[1/6] mesh: {path}")
    mesh = read_mesh(path)
    print(f"      {mesh.num_nodes:,} vertices, {mesh.num_cells:,} cells ({', '.join(mesh.cells) or 'point cloud'})")

    print("\n[2/6] graphs")
    start = time.perf_counter()
    edge_index, recipe = build_graph(mesh, "auto")
    t_mesh = time.perf_counter() - start
    start = time.perf_counter()
    knn = knn_graph(mesh.pos, k=16)
    t_knn = time.perf_counter() - start
    print(f"      {recipe} graph: {edge_index.shape[1]:,} edges ({edge_index.shape[1] / mesh.num_nodes:.1f} per node), {t_mesh:.2f} s")
    print(f"      knn:16 graph: {knn.shape[1]:,} edges, {t_knn:.2f} s")

    block_size = 64
    print(f"\n[3/6] orderings of the {recipe} graph (B = {block_size}; fewer tiles per block row = less kernel work;\n"
          f"      packed/row: the packed tiles the default GPU kernel walks, what objective='packed' minimises)")
    methods = [m for m in METHODS if m not in ("auto",)] + ["auto"]
    results = compare_orderings(edge_index, mesh.pos, methods, block_size)
    from .cli import _ordering_table, format_table

    print(format_table(*_ordering_table(results)))
    knn_results = compare_orderings(knn, mesh.pos, ["identity", "auto"], block_size)
    knn_auto = knn_results[-1]
    if "error" not in knn_auto:
        print(f"      knn:16 graph: auto chose {knn_auto['chosen']}: {knn_auto['tiles_per_row']:.2f} tiles per block row "
              f"(file order {knn_results[0]['tiles_per_row']:.2f})")
    best = next(r for r in results if r["method"] == "auto")
    if "error" in best:
        raise RuntimeError(f"the auto ordering failed: {best['error']}")
    ordering = best["ordering"]

    print("\n[4/6] block mask of the reordered graph")
    ordered_edges = ordering.apply_to_edge_index(edge_index)
    start = time.perf_counter()
    mask = GraphBlockMask.from_edge_index(ordered_edges, mesh.num_nodes, block_size=block_size)
    t_mask = time.perf_counter() - start
    before = GraphBlockMask.from_edge_index(edge_index, mesh.num_nodes, block_size=block_size)
    print(f"      {mask}\n      built in {t_mask:.2f} s; file order had {before.num_tiles:,} tiles "
          f"({before.num_tiles / max(mask.num_tiles, 1):.2f}x as many)")

    print(f"\n[5/6] attention on {device} (4 heads × 32 channels), reordered graph")
    attention_rows = _attention_check(ordered_edges, mask, mesh.num_nodes, device)
    print(_timing_table(attention_rows))
    print("      layer: TransformerConv vs graphattn.nn.GraphAttention (same weights, 64 → 4 × 16 channels)")
    g = torch.Generator().manual_seed(1)
    x = ordering.permute(torch.randn(mesh.num_nodes, 64, generator=g)).to(device)
    layer_rows = _layer_check(x, ordered_edges.to(device), mask.to(device), device)
    print(_timing_table(layer_rows))

    print("\n[6/6] summary")
    png = draw_tile_patterns({"file order": before, f"{ordering.method} order (auto)": mask},
                             out_dir / "tile_pattern.png",
                             title=f"{path.name}: {mesh.num_nodes:,} nodes, {recipe} graph, {block_size}×{block_size} tiles")
    worst = max((r.get("max_abs_diff", 0.0) for r in attention_rows + layer_rows), default=0.0)
    agree = worst <= 1e-4
    summary = {
        "mesh": str(path), "nodes": mesh.num_nodes, "edges": int(edge_index.shape[1]), "graph": recipe,
        "environment": env,
        "orderings": [{k: v for k, v in r.items() if k != "ordering"} for r in results],
        "chosen": ordering.method,
        "tiles_per_row_before": before.num_tiles / max(before.num_q_blocks, 1),
        "tiles_per_row_after": mask.tiles_per_row[0], "fill_after": mask.fill,
        "attention": attention_rows, "layer": layer_rows, "max_abs_diff": worst, "agree": agree,
        "seconds": time.perf_counter() - started, "png": str(png),
    }
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out_dir / "summary.json")
    print(f"      ordering: {ordering.method}, {summary['tiles_per_row_before']:.2f} → {summary['tiles_per_row_after']:.2f} "
          f"tiles per block row ({summary['tiles_per_row_before'] / max(summary['tiles_per_row_after'], 1e-9):.2f}x fewer)")
    print(f"      attention paths agree with PyG: {'yes' if agree else 'NO'} (max |diff| {worst:.2e})")
    print(f"      picture: {png.resolve()}")
    print(f"      summary: {(out_dir / 'summary.json').resolve()}")
    print(f"      total {summary['seconds']:.1f} s")
    return 0 if agree else 1


# ======================================================================================= bench
def _surface_points(n: int, seed: int = 0) -> torch.Tensor:
    """Points on a bumpy closed surface (a sphere pushed in and out), like a scanned shape."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3, generator=g, dtype=torch.float64)
    p /= p.norm(dim=1, keepdim=True)
    bumps = 1.0 + 0.2 * torch.sin(5 * p[:, 0]) * torch.cos(4 * p[:, 1]) + 0.1 * torch.sin(7 * p[:, 2])
    return (p * bumps[:, None]).float()


def run_bench(nodes=None, k=16, heads=4, head_dim=32, device=None, repeats=5) -> int:
    """Times the attention paths on a k-NN graph of surface points; prints a table with the environment."""
    from .graphs import knn_graph
    from .mask import GraphBlockMask
    from .ordering import order

    device = _pick_device(device)
    nodes = nodes or (262_144 if device.type == "cuda" else 20_000)
    env = _environment(device)
    print(f"graphattn bench: {nodes:,} surface points, k={k}, {heads} heads × {head_dim}, device {env['device']}")
    print(f"  torch {env['torch']}, triton {env['triton']}, torch_geometric {env['torch_geometric']}, "
          f"graphattn {env['graphattn']}, python {env['python']}")
    pos = _surface_points(nodes)
    start = time.perf_counter()
    edge_index = knn_graph(pos, k=k)
    t_graph = time.perf_counter() - start
    start = time.perf_counter()
    ordering = order(edge_index, pos, method="auto")
    t_order = time.perf_counter() - start
    edge_index = ordering.apply_to_edge_index(edge_index)
    start = time.perf_counter()
    mask = GraphBlockMask.from_edge_index(edge_index, nodes, block_size=64)
    t_mask = time.perf_counter() - start
    print(f"  set-up: knn {t_graph:.2f} s, ordering ({ordering.method}) {t_order:.2f} s, mask {t_mask:.2f} s; "
          f"{mask.tiles_per_row[0]:.2f} tiles per block row")
    rows = _attention_check(edge_index, mask, nodes, device, heads=heads, head_dim=head_dim, repeats=repeats)
    print("\nforward, median of", repeats, "runs:")
    print(_timing_table(rows))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(nodes, heads * head_dim, generator=g).to(device)
    layer_rows = _layer_check(x, edge_index.to(device), mask.to(device), device, heads=heads, channels=head_dim,
                              repeats=repeats)
    print(f"\nlayer forward ({heads * head_dim} → {heads} × {head_dim}):")
    print(_timing_table(layer_rows))
    worst = max((r.get("max_abs_diff", 0.0) for r in rows + layer_rows), default=0.0)
    if worst > 1e-3:
        print(f"warning: outputs differ by up to {worst:.2e}", file=sys.stderr)
        return 1
    return 0
