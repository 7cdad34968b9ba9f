"""Input checks shared by every public entry point.

Each check raises TypeError (wrong kind of object or dtype) or ValueError (wrong shape, range or
value) with a message that names the argument, what it got and what was expected (GUIDE §2).
"""
from __future__ import annotations

import torch

MIN_BLOCK_SIZE = 16
MAX_BLOCK_SIZE = 256


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_num_nodes(num_nodes, name: str = "num_nodes") -> int:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        if isinstance(num_nodes, torch.Tensor) and num_nodes.numel() == 1 and not num_nodes.is_floating_point():
            num_nodes = int(num_nodes)
        else:
            raise TypeError(f"{name} must be a non-negative int, got {type(num_nodes).__name__}")
    if num_nodes < 0:
        raise ValueError(f"{name} must be a non-negative int, got {num_nodes}")
    return num_nodes


def check_edge_index(edge_index, num_nodes=None, name: str = "edge_index",
                     num_src_nodes=None) -> tuple[torch.Tensor, int]:
    """Checks a PyG edge_index ([2, E] integer, row 0 source, row 1 target).

    Returns the edges as int64 and the node count (inferred as max index + 1 when not given).
    With ``num_src_nodes`` the sources are checked against that count instead (bipartite graphs).
    """
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if edge_index.dtype in (torch.bool,) or edge_index.is_floating_point() or edge_index.is_complex():
        raise TypeError(f"{name} must hold integers (int64 or int32), got {_describe(edge_index)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{name} must have shape [2, E] (row 0 source, row 1 target), got {_describe(edge_index)}")
    edge_index = edge_index.long()
    if num_nodes is not None:
        num_nodes = check_num_nodes(num_nodes)
    if edge_index.numel() == 0:
        return edge_index, (num_nodes if num_nodes is not None else 0)
    lo = int(edge_index.min())
    if lo < 0:
        raise ValueError(f"{name} holds a negative node index ({lo}); indices must be in [0, num_nodes)")
    src_hi = int(edge_index[0].max())
    dst_hi = int(edge_index[1].max())
    if num_nodes is None:
        num_nodes = max(src_hi, dst_hi) + 1 if num_src_nodes is None else dst_hi + 1
    src_limit = num_nodes if num_src_nodes is None else check_num_nodes(num_src_nodes, "num_src_nodes")
    if src_hi >= src_limit:
        raise ValueError(f"{name} holds source index {src_hi}, out of range for {src_limit} nodes")
    if dst_hi >= num_nodes:
        raise ValueError(f"{name} holds target index {dst_hi}, out of range for {num_nodes} nodes")
    return edge_index, num_nodes


def check_node_vector(value, num_nodes: int, name: str, holds: str = "integers",
                      per_node: str = "one entry per node"):
    """Checks an integer tensor with one entry per node ([num_nodes]); returns it as int64 numpy."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [{num_nodes}], got {type(value).__name__}")
    if value.is_floating_point() or value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must hold {holds}, got dtype {value.dtype}")
    if value.dim() != 1 or value.shape[0] != num_nodes:
        raise ValueError(f"{name} must have shape [{num_nodes}] ({per_node}), got {tuple(value.shape)}")
    return value.detach().cpu().long().numpy()


def check_pos(pos, num_nodes=None, name: str = "pos") -> torch.Tensor:
    """Checks node coordinates: a floating tensor [N, 2] or [N, 3] without NaN or inf."""
    if not isinstance(pos, torch.Tensor):
        raise TypeError(f"{name} must be a floating torch.Tensor of shape [N, 2] or [N, 3], got {type(pos).__name__}")
    if not pos.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {_describe(pos)}")
    if pos.dim() != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(f"{name} must have shape [N, 2] or [N, 3], got {_describe(pos)}")
    if num_nodes is not None and pos.shape[0] != num_nodes:
        raise ValueError(f"{name} has {pos.shape[0]} rows but the graph has {num_nodes} nodes")
    if pos.numel() and not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{name} holds NaN or inf coordinates; every coordinate must be finite")
    return pos


def check_block_size(block_size, name: str = "block_size") -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(f"{name} must be an int, a power of two in [{MIN_BLOCK_SIZE}, {MAX_BLOCK_SIZE}], "
                        f"got {type(block_size).__name__}")
    if block_size < MIN_BLOCK_SIZE or block_size > MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise ValueError(f"{name} must be a power of two in [{MIN_BLOCK_SIZE}, {MAX_BLOCK_SIZE}], got {block_size}")
    return block_size


def check_block_shape(block_size, name: str = "block_size") -> tuple[int, int]:
    """An int B (square B×B tiles) or a pair (rows, cols), each a power of two in [16, 256]."""
    if isinstance(block_size, (tuple, list)):
        if len(block_size) != 2:
            raise ValueError(f"{name} must be an int or a pair (rows, cols), got {block_size!r}")
        return check_block_size(block_size[0], f"{name}[0]"), check_block_size(block_size[1], f"{name}[1]")
    b = check_block_size(block_size, name)
    return b, b
