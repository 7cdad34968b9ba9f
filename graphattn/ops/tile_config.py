"""Launch parameters of the attention kernels, chosen per tile shape, head dim and dtype.

The tile shape itself is the mask's block shape (BM, BN): it is fixed when the mask is built, and
``recommended_block_shape`` says which one to build. What is left to choose per launch is the warp
count and the software-pipelining depth. The choices below are measured heuristics (see
benchmarks/RESULTS.md, section "Graph attention kernels"), not an autotuner: an autotuner would
time every config on the first call of each shape, and a fixed rule keeps the first call cheap and
the results independent of timing noise.

``OVERRIDES`` lets benchmarks try other settings without editing code: a dict with any of
``num_warps`` and ``num_stages`` (every kernel), their per-kernel forms ``num_warps_<kernel>`` and
``num_stages_<kernel>`` for kernel ``forward``, ``dq`` or ``dkdv``, ``maxnreg_<kernel>`` (a register cap
per thread, to trade spills for resident programs), and ``full_tile_branch_forward``
and ``full_tile_branch_backward``, applied to every launch while set.
"""
from __future__ import annotations

import torch

SUPPORTED_MAX_HEAD_DIM = 128

OVERRIDES: dict = {}

# Keys per row-side packed tile and queries per column-side packed tile (packed_shapes).
PACKED_WIDTH = 32

# The kernels launched per call: the forward, then dQ (which also stores delta), then dK/dV.
KERNELS = ("forward", "dq", "dkdv")


def padded_head_dim(head_dim: int) -> int:
    """The power of two >= max(16, head_dim) the kernels compute with (zero-padded in registers)."""
    return max(16, 1 << (head_dim - 1).bit_length())


def launch_config(block_shape: tuple[int, int], head_dim: int, dtype: torch.dtype) -> dict:
    """Per-kernel ``num_warps_*`` and ``num_stages_*`` and the full-tile branch switches.

    - 4 warps for tiles of up to 64×64 with D <= 64: each warp then owns 16 query rows, what one
      mma instruction covers, and more warps only split the tile's softmax into smaller pieces.
      Larger tiles or D = 128 (more accumulator registers) take 8 warps.
    - Pipeline stages: 2 for the forward, 3 for dQ, and for dK/dV 3 at padded D >= 64 and 2
      below. Measured on an H100 (packed 32-wide tiles, k=16 surface and volume graphs,
      N=262,144, bf16; benchmarks/RESULTS.md, session 3): 3 stages slowed the forward 6-9% at
      D=32 (0.190 -> 0.206 ms surface) and were even at D=64; they sped dQ up 3-4% at D=32 and
      1% at D=64; dK/dV at D=64 gained 2% (0.850 -> 0.830 ms backward, surface) but lost 15% at
      D=32 (0.562 -> 0.646 ms), where its 122 registers already allow four programs per SM and the
      third stage's shared memory costs one. (An earlier H200 sweep with 64-wide packed tiles
      had found 2 stages best for every kernel.) With aligned tiles 1, 2 and 3 stages measured
      the same.
    - ``full_tile_branch_*``: whether full tiles skip the bit test behind a run-time branch, or
      every tile tests its bits (exact either way: full tiles keep their bits). Measured on an H200
      (k=16 surface graph, N=262,144, 64×64 tiles, D=32, bf16): the branch costs the forward 9%
      (0.624 vs 0.570 ms; it keeps the tile loads out of the software pipeline) but saves the
      backward 9% (1.73 vs 1.89 ms). Masks with many full tiles (dense blocks, Longformer
      windows) gain from the branch in both passes.
    """
    block_m, block_n = block_shape
    padded = padded_head_dim(head_dim)
    big = block_m * block_n > 64 * 64 or padded > 64 or (dtype == torch.float32 and padded > 32)
    config = {"full_tile_branch_forward": False, "full_tile_branch_backward": True, "packed_width": PACKED_WIDTH}
    stages = {"forward": 2, "dq": 3, "dkdv": 3 if padded >= 64 else 2}
    for kernel in KERNELS:
        config[f"num_warps_{kernel}"] = 8 if big else 4
        config[f"num_stages_{kernel}"] = stages[kernel]
        # The compiler's register choice. A cap of 104 (D=32) or 128 (D=64) on dK/dV spilled and
        # ran its backward 1-35% slower on an H100.
        config[f"maxnreg_{kernel}"] = None
    overrides = dict(OVERRIDES)
    for knob in ("num_warps", "num_stages"):
        if knob in overrides:
            value = overrides.pop(knob)
            config.update({f"{knob}_{kernel}": value for kernel in KERNELS})
    unknown = set(overrides) - set(config)
    if unknown:
        raise KeyError(f"unknown tile_config.OVERRIDES keys {sorted(unknown)}; known: {sorted(config)}")
    config.update(overrides)
    return config


def recommended_block_shape(head_dim: int) -> tuple[int, int]:
    """The mask block shape (BM, BN) to build for k-NN-like graphs with this head dim.

    Measured on an H200 (k=16 k-NN graphs, N=262,144, bf16, packed tiles): 64×64 blocks gave the
    best forward+backward; 128×64 was 1.6-1.9× slower in both passes (more masked pairs per packed
    tile) and 32-query blocks ran the forward 1.6-1.8× slower. The packing inside those blocks is
    ``packed_shapes``' (32 wide).
    """
    del head_dim  # one shape for every D until a difference beyond noise is measured
    return (64, 64)



def packed_shapes(block_shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(row_shape, col_shape) of the packed tiles of a mask with this block shape.

    row_shape = (BM queries per block, keys per packed tile) for the forward and dQ passes;
    col_shape = (BN keys per block, queries per packed tile) for the dK/dV pass. The pack width is
    ``min(block dim, 32)`` (``OVERRIDES["packed_width"]`` changes the 32). Measured on an H200
    (k=16 k-NN surface graph, N=262,144, H=4, bf16, D=32; benchmarks/RESULTS.md), per kernel:
    32-wide row tiles of 64-query blocks ran the forward in 0.188 ms and dQ in 0.217 ms against
    0.213 and 0.240 ms with 64-wide tiles, and 32-wide column tiles of 64-key blocks ran dK/dV in
    0.395 ms against 0.491 ms. Narrower packs waste fewer masked pairs per tile (a 64-query
    block's ~190 distinct keys fill 6 tiles of 32 better than 3 of 64) and need one bit word per
    tile row; the dK/dV kernel also holds fewer registers (181 at 64 wide, which allowed only two
    programs per SM).
    """
    width = launch_config(block_shape, 16, torch.bfloat16)["packed_width"]
    block_m, block_n = block_shape
    return (block_m, min(block_n, width)), (block_n, min(block_m, width))


def choose_tiles(mask) -> str:
    """``"aligned"`` or ``"packed"`` for graph_attention(tiles="auto").

    Packed: on k=16 k-NN graphs (H200, bf16, H=4) it walks 3.5x (surface) to 5.4x (volume) fewer
    tiles and ran the forward 2.7-4.4x and forward+backward 2.0-3.2x faster than aligned 64×64
    tiles (benchmarks/RESULTS.md). Its layout is built on first use (about 5 ms at N=262,144) and
    cached with the mask. That build cannot be traced by torch.compile, so while compiling, auto
    keeps aligned tiles unless the packed layout already exists (masks built on CUDA by
    ``from_edge_index`` or ``cat`` have it; any eager call, or ``packed_tiles_of(mask)``, builds it).
    """
    from .packed_tiles import has_packed_tiles

    if torch.compiler.is_compiling() and not has_packed_tiles(mask):
        return "aligned"
    return "packed"
