"""``graph_attention``: attention restricted to a graph's edges, over a precomputed block mask.

This file is the only launcher of the Triton kernels (triton_forward.py, triton_backward.py). It
checks inputs, picks the backend, and registers the forward and backward as ``torch.library``
custom operators (``graphattn::block_attention_forward`` / ``graphattn::block_attention_backward``)
with a fake implementation and an autograd formula, so that ``torch.compile`` traces through them
without graph breaks. They are opaque ``custom_op``s rather than ``triton_op``s: with torch 2.11,
Inductor's recompilation of these user kernels failed inside ``tl.dot`` (an accumulator type
assertion the same kernels pass when launched directly), while an opaque op compiles and runs the
kernels exactly as eager does.
"""
from __future__ import annotations

import torch

from .reference import _check_qkv, _check_scale, reference_attention
from .tile_config import SUPPORTED_MAX_HEAD_DIM, choose_tiles, launch_config, padded_head_dim

_BACKENDS = ("auto", "triton", "reference")
_PRECISIONS = ("ieee", "tf32")
_TILES = ("auto", "aligned", "packed")
_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LOG2E = 1.4426950408889634


def graph_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, *, scale: float | None = None,
                    backend: str = "auto", precision: str = "ieee", tiles: str = "auto") -> torch.Tensor:
    """Attention of each node over its incoming edges, visiting only the mask's non-empty tiles.

    ``out[i] = sum_j softmax_j(scale · q_i·k_j) · v_j`` over the edges j → i recorded in ``mask``
    (GUIDE §2: no implicit self-loops; a node without incoming edges outputs exactly 0 and receives
    zero gradients).

    Args:
        q: queries ``[Nq, H, D]`` in the mask's node order (float16, bfloat16 or float32 for the
            Triton backend; any floating dtype for the reference).
        k, v: keys and values ``[Nkv, H, D]``; for an ordinary graph ``Nkv == Nq``.
        mask: a :class:`graphattn.GraphBlockMask` of shape ``(Nq, Nkv)`` on the same device as q.
        scale: multiplies the scores; ``1/sqrt(D)`` when None.
        backend: ``"triton"`` (the tile-skipping kernels; CUDA tensors, or CPU tensors when
            ``TRITON_INTERPRET=1`` was set before the first call), ``"reference"`` (pure PyTorch,
            any device and dtype) or ``"auto"`` (Triton on CUDA tensors, the reference elsewhere).
        precision: for float32 inputs on the GPU, ``"ieee"`` (exact float32 products, the default)
            or ``"tf32"`` (tensor-core TF32 products: faster, relative error ~1e-3). Ignored for
            half types, whose products are exact in the float32 accumulator.
        tiles: which tiles the Triton kernels walk: ``"aligned"`` (the mask's own B×B tiles),
            ``"packed"`` (each query block's distinct keys gathered into dense tiles, and each key
            block's distinct queries for dK/dV; built from the mask on first use and cached with
            it, see packed_tiles.py) or ``"auto"`` (see ``tile_config.choose_tiles``).

    Returns:
        ``[Nq, H, D]`` in q's dtype. Differentiable with respect to q, k and v; the backward pass
        is deterministic (no atomics).

    Head dims from 1 to 128 are supported; other than 16, 32, 64 and 128 they are zero-padded in
    registers to the next power of two (correct, with the padded dim's cost). Softmax statistics
    and accumulators are float32 whatever the input dtype.
    """
    from ..mask.block_mask import GraphBlockMask

    _check_qkv(q, k, v)
    num_q, _, head_dim = q.shape
    num_kv = k.shape[0]
    if v.shape[2] != head_dim:
        raise ValueError(f"v must have the head dim of q and k (dim 2), got q {tuple(q.shape)} and v {tuple(v.shape)}")
    scale = _check_scale(scale, head_dim)
    if not isinstance(mask, GraphBlockMask):
        raise TypeError(f"mask must be a graphattn.GraphBlockMask, got {type(mask).__name__}")
    _check_mask_matches(mask, num_q, num_kv, q.device)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    if tiles not in _TILES:
        raise ValueError(f"tiles must be one of {_TILES}, got {tiles!r}")
    if backend == "auto":
        backend = "triton" if q.is_cuda else "reference"
    if backend == "reference":
        return reference_attention(q, k, v, mask, scale)

    if q.dtype not in _KERNEL_DTYPES:
        raise TypeError(f"backend='triton' takes float16, bfloat16 or float32 q, k, v, got {q.dtype}; "
                        f"use backend='reference' for other dtypes")
    if head_dim > SUPPORTED_MAX_HEAD_DIM:
        raise ValueError(f"backend='triton' supports head dims up to {SUPPORTED_MAX_HEAD_DIM}, got q {tuple(q.shape)}; "
                         f"use backend='reference' or split the heads")
    if not q.is_cuda and not _interpreter_enabled():
        raise ValueError(f"backend='triton' needs CUDA tensors, got q on {q.device}; run the Triton interpreter "
                         f"with TRITON_INTERPRET=1 set before graphattn's kernels are first imported, "
                         f"or use backend='reference'")
    if tiles == "auto":
        tiles = choose_tiles(mask)
    if tiles == "packed":
        from .packed_tiles import packed_tiles_of

        packed = packed_tiles_of(mask)
        # tile_full and t_tile are not read in packed mode; the mask's own tensors stand in.
        walk = (packed.row_ptr, packed.key_index, packed.row_bits, mask.tile_full,
                packed.col_ptr, packed.query_index, packed.col_bits, mask.t_tile)
        (block_m, block_n), (col_block_n, col_block_m) = packed.row_shape, packed.col_shape
    else:
        walk = (mask.row_ptr, mask.col_idx, mask.bits, mask.tile_full,
                mask.col_ptr, mask.row_idx, mask.bits, mask.t_tile)
        (block_m, block_n), (col_block_m, col_block_n) = mask.block_shape, mask.block_shape
    meta = (block_m, block_n, col_block_m, col_block_n, scale, precision, tiles == "packed")
    if torch.compiler.is_compiling():
        out, _ = torch.ops.graphattn.block_attention_forward(q, k, v, *walk, *meta)
    else:
        # Eager calls skip the registered operator's Python dispatch (argument defaults, redispatch,
        # the autograd wrapper): ~0.5 ms of host time per forward+backward, which on a 262,144-node
        # graph is as long as the kernels themselves. Same implementation functions either way.
        out = _EagerGraphAttention.apply(q, k, v, *walk, *meta)
    return out


def _check_mask_matches(mask, num_q: int, num_kv: int, device: torch.device) -> None:
    check = getattr(mask, "check_compatible", None)
    if check is not None:
        check(num_q, num_kv, name="mask")
    elif tuple(mask.shape) != (num_q, num_kv):
        raise ValueError(f"mask was built for shape {tuple(mask.shape)} (queries, keys) but q has {num_q} "
                         f"and k has {num_kv} nodes")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but q is on {device}; move it with mask.to(q.device)")


def _interpreter_enabled() -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    from .triton_forward import graph_attention_forward_kernel
    return isinstance(graph_attention_forward_kernel, InterpretedFunction)


def _launch(kernel, grid, *args, **meta):
    return kernel[grid](*args, **meta)


def _contiguous_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _kernel_meta(block_m: int, block_n: int, head_dim: int, dtype: torch.dtype, precision: str,
                 kernel: str, packed: bool) -> dict:
    """Compile-time arguments of one launch of ``kernel`` ("forward", "dq" or "dkdv")."""
    config = launch_config((block_m, block_n), head_dim, dtype)
    branch = config["full_tile_branch_forward" if kernel == "forward" else "full_tile_branch_backward"]
    meta = dict(HEAD_DIM=head_dim, BLOCK_D=padded_head_dim(head_dim), BLOCK_M=block_m, BLOCK_N=block_n,
                WORDS=(block_n + 31) // 32, FULL_TILE_BRANCH=branch,
                INPUT_PRECISION="tf32" if (precision == "tf32" and dtype == torch.float32) else "ieee",
                PACKED=packed, num_warps=config[f"num_warps_{kernel}"], num_stages=config[f"num_stages_{kernel}"])
    if config[f"maxnreg_{kernel}"] is not None:
        meta["maxnreg"] = config[f"maxnreg_{kernel}"]
    return meta


# The tile walk, as passed to the operators. Aligned tiles (the mask's CSR): row_tiles = col_idx,
# row_bits = col_bits = bits, col_tiles = row_idx. Packed tiles (packed_tiles.py): row_tiles =
# key_index, row_bits, col_tiles = query_index, col_bits; tile_full and t_tile unused.
def _forward_impl(q, k, v, row_ptr, row_tiles, row_bits, tile_full, col_ptr, col_tiles, col_bits, t_tile,
                  block_m: int, block_n: int, col_block_m: int, col_block_n: int, scale: float, precision: str,
                  packed: bool):
    from .triton_forward import graph_attention_forward_kernel

    q, k, v = _contiguous_last(q), _contiguous_last(k), _contiguous_last(v)
    num_q, heads, head_dim = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((heads, num_q), dtype=torch.float32, device=q.device)
    num_q_blocks = row_ptr.numel() - 1
    if num_q_blocks * heads == 0:
        return out, lse
    # The forward kernel needs a positive scale and takes the sign as a compile-time Q_SIGN.
    q_sign = 1 if scale > 0 else (-1 if scale < 0 else 0)
    _launch(graph_attention_forward_kernel, (num_q_blocks * heads,),
            q, k, v, out, lse, row_ptr, row_tiles, tile_full, row_bits,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), num_q, k.shape[0], heads, (abs(scale) if scale else 1.0) * _LOG2E,
            Q_SIGN=q_sign, **_kernel_meta(block_m, block_n, head_dim, q.dtype, precision, "forward", packed))
    return out, lse


def _backward_impl(grad_out, q, k, v, out, lse, row_ptr, row_tiles, row_bits, tile_full, col_ptr, col_tiles,
                   col_bits, t_tile, block_m: int, block_n: int, col_block_m: int, col_block_n: int, scale: float,
                   precision: str, packed: bool):
    from .triton_backward import dkdv_kernel, dq_kernel

    grad_out, q, k, v = (_contiguous_last(t) for t in (grad_out, q, k, v))
    num_q, heads, head_dim = q.shape
    num_kv = k.shape[0]
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dq_meta = _kernel_meta(block_m, block_n, head_dim, q.dtype, precision, "dq", packed)
    dkdv_meta = _kernel_meta(col_block_m, col_block_n, head_dim, q.dtype, precision, "dkdv", packed)
    num_q_blocks = row_ptr.numel() - 1
    num_kv_blocks = col_ptr.numel() - 1
    if heads == 0:
        return dq, dk, dv
    delta = torch.empty((heads, num_q), dtype=torch.float32, device=q.device)
    # dq_kernel writes delta, which dkdv_kernel reads: the launch order matters.
    if num_q_blocks:
        _launch(dq_kernel, (num_q_blocks * heads,),
                q, k, v, out, grad_out, lse, delta, dq, row_ptr, row_tiles, tile_full, row_bits,
                q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                out.stride(0), out.stride(1), grad_out.stride(0), grad_out.stride(1), dq.stride(0), dq.stride(1),
                num_q, num_kv, heads, scale * _LOG2E, scale, **dq_meta)
    if num_kv_blocks:
        if packed:
            # Column-side packed bits are key-major with one bit per packed query: ceil(BM / 32) words.
            dkdv_meta["WORDS"] = (col_block_m + 31) // 32
        _launch(dkdv_kernel, (num_kv_blocks * heads,),
                q, k, v, grad_out, lse, delta, dk, dv, col_ptr, col_tiles, t_tile, tile_full, col_bits,
                q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                grad_out.stride(0), grad_out.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1),
                num_q, num_kv, heads, scale * _LOG2E, scale, **dkdv_meta)
    return dq, dk, dv


# ---------------------------------------------------------------------------------- registration
_define = torch.library.custom_op


@_define("graphattn::block_attention_forward", mutates_args=())
def _forward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, row_ptr: torch.Tensor, row_tiles: torch.Tensor,
                row_bits: torch.Tensor, tile_full: torch.Tensor, col_ptr: torch.Tensor, col_tiles: torch.Tensor,
                col_bits: torch.Tensor, t_tile: torch.Tensor, block_m: int, block_n: int, col_block_m: int,
                col_block_n: int, scale: float, precision: str, packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kernel: (out [Nq, H, D], lse [H, Nq] float32).

    lse is the base-2 log-sum-exp of the scores times ``scale · log2(e)`` (what the backward's exp2
    takes), -inf on rows without edges; it is internal to the backward pass.
    """
    return _forward_impl(q, k, v, row_ptr, row_tiles, row_bits, tile_full, col_ptr, col_tiles, col_bits, t_tile,
                         block_m, block_n, col_block_m, col_block_n, scale, precision, packed)


@_define("graphattn::block_attention_backward", mutates_args=())
def _backward_op(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                 lse: torch.Tensor, row_ptr: torch.Tensor, row_tiles: torch.Tensor, row_bits: torch.Tensor,
                 tile_full: torch.Tensor, col_ptr: torch.Tensor, col_tiles: torch.Tensor, col_bits: torch.Tensor,
                 t_tile: torch.Tensor, block_m: int, block_n: int, col_block_m: int, col_block_n: int, scale: float,
                 precision: str, packed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward kernels: (dq, dk, dv), each written by one program per row block, no atomics."""
    return _backward_impl(grad_out, q, k, v, out, lse, row_ptr, row_tiles, row_bits, tile_full, col_ptr, col_tiles,
                          col_bits, t_tile, block_m, block_n, col_block_m, col_block_n, scale, precision, packed)


@_forward_op.register_fake
def _forward_fake(q, k, v, *walk_and_meta):
    return torch.empty_like(q), q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)


@_backward_op.register_fake
def _backward_fake(grad_out, q, k, v, *rest):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v = inputs[:3]
    walk = inputs[3:11]
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, *walk)
    ctx.meta = tuple(inputs[11:])


def _backward(ctx, grad_out, grad_lse):
    # lse is an internal output for the backward pass; nothing differentiates through it.
    del grad_lse
    q, k, v, out, lse, *walk = ctx.saved_tensors
    dq, dk, dv = torch.ops.graphattn.block_attention_backward(grad_out, q, k, v, out, lse, *walk, *ctx.meta)
    return (dq, dk, dv) + (None,) * (len(ctx.meta) + 8)


_forward_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerGraphAttention(torch.autograd.Function):
    """The eager path: the operators' implementations under a plain autograd.Function."""

    @staticmethod
    def forward(ctx, q, k, v, *walk_and_meta):
        walk, meta = walk_and_meta[:8], walk_and_meta[8:]
        out, lse = _forward_impl(q, k, v, *walk, *meta)
        ctx.save_for_backward(q, k, v, out, lse, *walk)
        ctx.meta = meta
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse, *walk = ctx.saved_tensors
        dq, dk, dv = _backward_impl(grad_out, q, k, v, out, lse, *walk, *ctx.meta)
        return (dq, dk, dv) + (None,) * (len(ctx.meta) + 8)
