"""A PNG of a GraphBlockMask's tile occupancy, readable from 10^3 to 10^7 nodes.

Up to ``resolution`` block rows and columns, every tile is one cell: white empty, orange partial,
dark blue full. Beyond that the tile grid is binned into a fixed ``resolution``² image whose pixels
show the share of their tiles that are non-empty, on a log colour scale (a 1M-node graph has 16k×16k
tiles of 64, far more than pixels), with full tiles in a second panel. The title carries the mask's
statistics.
"""
from __future__ import annotations

import math
import os
import tempfile

import torch

from .block_mask import GraphBlockMask


def _binned(tile_row, tile_col, q_blocks, kv_blocks, resolution):
    """Tiles per pixel of an image at most resolution × resolution, and tiles each pixel covers."""
    height, width = min(q_blocks, resolution), min(kv_blocks, resolution)
    py = tile_row * height // q_blocks
    px = tile_col * width // kv_blocks
    counts = torch.bincount(py * width + px, minlength=height * width).view(height, width).double()
    rows_per = torch.bincount(torch.arange(q_blocks) * height // q_blocks, minlength=height).double()
    cols_per = torch.bincount(torch.arange(kv_blocks) * width // kv_blocks, minlength=width).double()
    return counts, rows_per[:, None] * cols_per[None, :]


def _node_label(value, _position) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def plot(mask: GraphBlockMask, path, *, resolution: int = 1024, title: str | None = None) -> None:
    """Writes the occupancy PNG of ``mask`` to ``path`` (atomically)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.ticker import FuncFormatter

    if not isinstance(mask, GraphBlockMask):
        raise TypeError(f"mask must be a GraphBlockMask, got {type(mask).__name__}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 16:
        raise ValueError(f"resolution must be an int >= 16, got {resolution!r}")
    q_blocks, kv_blocks = max(mask.num_q_blocks, 1), max(mask.num_kv_blocks, 1)
    tile_row, tile_col = mask.tile_rows().cpu(), mask.col_idx.long().cpu()
    full = mask.tile_full.cpu()
    mean, most = mask.tiles_per_row
    stats = (f"{mask.shape[0]:,} x {mask.shape[1]:,} nodes, blocks {mask.block_shape[0]}x{mask.block_shape[1]}: "
             f"{mask.num_tiles:,} tiles ({mask.num_full_tiles:,} full), tiles/row mean {mean:.2f} max {most}, "
             f"fill {mask.fill:.2%}, {mask.nbytes / 2**20:.1f} MiB")
    heading = f"{title}\n{stats}" if title else stats
    extent = (0, mask.shape[1], mask.shape[0], 0)

    if q_blocks <= resolution and kv_blocks <= resolution:
        cells = torch.zeros(q_blocks, kv_blocks)
        cells[tile_row, tile_col] = 1.0
        cells[tile_row[full], tile_col[full]] = 2.0
        fig, ax = plt.subplots(figsize=(8, 8 * min(max(q_blocks / kv_blocks, 0.25), 4)), dpi=150)
        cmap = ListedColormap(["white", "#f28e2b", "#1f3b73"])
        ax.imshow(cells.numpy(), cmap=cmap, vmin=0, vmax=2, interpolation="nearest", extent=extent, aspect="auto")
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="#f28e2b"), plt.Rectangle((0, 0), 1, 1, color="#1f3b73")],
                  labels=["partial tile", "full tile"], loc="upper right", fontsize=8)
        axes = [ax]
    else:
        panels = [(torch.ones_like(full), "non-empty tiles")]
        if bool(full.any()):
            panels.append((full, "full tiles"))
        fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels) + 1, 7.5), dpi=150, squeeze=False)
        axes = list(axes[0])
        for ax, (chosen, label) in zip(axes, panels):
            counts, capacity = _binned(tile_row[chosen], tile_col[chosen], q_blocks, kv_blocks, resolution)
            share = (counts / capacity).numpy()
            floor = 1.0 / capacity.max().item()
            cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="white", under="white")
            image = ax.imshow(share, norm=LogNorm(vmin=floor, vmax=1.0), cmap=cmap, interpolation="nearest",
                              extent=extent, aspect="auto")
            ax.set_title(f"{label} per pixel (share of the "
                         f"~{math.ceil(q_blocks / share.shape[0])}x{math.ceil(kv_blocks / share.shape[1])} tiles it covers)",
                         fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    for ax in axes:
        ax.xaxis.set_major_formatter(FuncFormatter(_node_label))
        ax.yaxis.set_major_formatter(FuncFormatter(_node_label))
        ax.set_xlabel("key (source) node")
        ax.set_ylabel("query (target) node")
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    path = os.fspath(path)
    handle, temp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(handle)
    try:
        fig.savefig(temp_path, format="png")
        os.replace(temp_path, path)
    finally:
        plt.close(fig)
        if os.path.exists(temp_path):
            os.unlink(temp_path)
