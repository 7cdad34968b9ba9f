"""Saving and loading GraphBlockMask in a small binary format that graphattn fully controls.

Layout (all integers little-endian)::

    b"GATTNMSK"            8 bytes magic
    version                uint32 (FORMAT_VERSION)
    header_length          uint32
    header                 UTF-8 JSON: shape, block_shape, fingerprint (hex), payload_length and,
                           per array, name, dtype, shape, offset and length inside the payload
    payload                the arrays' raw bytes, back to back
    sha256                 32 bytes over everything above

Loading executes no code (no pickle): it reads bytes, checks the magic, the version, the length,
the checksum, the header, every array's dtype and shape against the mask's shape, the structure
(CSR and transpose consistent, columns ascending and in range, no bit outside the graph) and
finally recomputes the fingerprint from the bits. Any failure raises ValueError with the reason.
Files are written to a temporary file in the same folder and moved into place with os.replace, so
a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch

from .block_mask import _ARRAY_FIELDS, GraphBlockMask, _parse_num_nodes, mask_fingerprint, popcount32

MAGIC = b"GATTNMSK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")
_DIGEST = 32
_DTYPES = {"int32": (torch.int32, np.dtype("<i4")), "bool": (torch.bool, np.dtype("?"))}
_FIELD_DTYPES = {name: "int32" for name in _ARRAY_FIELDS}
_FIELD_DTYPES["tile_full"] = "bool"


def save(mask: GraphBlockMask, path) -> None:
    """Writes ``mask`` to ``path`` atomically (see the module docstring for the format)."""
    if not isinstance(mask, GraphBlockMask):
        raise TypeError(f"mask must be a GraphBlockMask, got {type(mask).__name__}")
    path = os.fspath(path)
    arrays, entries, offset = [], [], 0
    for name in _ARRAY_FIELDS:
        data = getattr(mask, name).detach().cpu().contiguous().numpy()
        data = data.astype(_DTYPES[_FIELD_DTYPES[name]][1], copy=False)  # little-endian on any host
        raw = data.tobytes()
        entries.append({"name": name, "dtype": _FIELD_DTYPES[name], "shape": list(data.shape),
                        "offset": offset, "length": len(raw)})
        arrays.append(raw)
        offset += len(raw)
    header = json.dumps({
        "shape": list(mask.shape), "block_shape": list(mask.block_shape),
        "fingerprint": f"{mask.fingerprint:016x}", "payload_length": offset, "arrays": entries,
    }, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    folder = os.path.dirname(os.path.abspath(path))
    handle, temp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".gmask", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, *arrays]:
                digest.update(piece)
                out.write(piece)
            out.write(digest.digest())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise


def load(path, *, num_nodes=None, device=None) -> GraphBlockMask:
    """Reads and checks a mask written by :func:`save` (see the module docstring)."""
    path = os.fspath(path)
    with open(path, "rb") as source:
        blob = source.read()
    where = f"{path!r}"
    if len(blob) < _PREFIX.size + _DIGEST:
        raise ValueError(f"{where} is not a graphattn mask file: truncated ({len(blob)} bytes)")
    magic, version, header_length = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError(f"{where} is not a graphattn mask file (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where} has mask format version {version}; this graphattn reads version "
                         f"{FORMAT_VERSION} only: rebuild the mask")
    header_end = _PREFIX.size + header_length
    if len(blob) < header_end + _DIGEST:
        raise ValueError(f"{where} is truncated: {len(blob)} bytes, the header alone needs {header_end + _DIGEST}")
    try:
        header = json.loads(blob[_PREFIX.size:header_end].decode())
        payload_length = int(header["payload_length"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where} has a corrupt header ({error})") from None
    expected = header_end + payload_length + _DIGEST
    if len(blob) != expected:
        kind = "truncated" if len(blob) < expected else "longer than its header says"
        raise ValueError(f"{where} is {kind}: {len(blob)} bytes, expected {expected}")
    if hashlib.sha256(blob[:-_DIGEST]).digest() != blob[-_DIGEST:]:
        raise ValueError(f"{where} is corrupt: its SHA-256 checksum does not match its contents")
    mask = _mask_from_header(header, memoryview(blob)[header_end:header_end + payload_length], where)
    check_structure(mask, where)
    if num_nodes is not None:
        num_q, num_kv = _parse_num_nodes(num_nodes)
        mask.check_compatible(num_q, num_kv, name=f"the mask in {where}")
    return mask.to(device) if device is not None else mask


def _mask_from_header(header, payload, where) -> GraphBlockMask:
    try:
        shape = tuple(int(x) for x in header["shape"])
        block_shape = tuple(int(x) for x in header["block_shape"])
        fingerprint = int(header["fingerprint"], 16)
        entries = {entry["name"]: entry for entry in header["arrays"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where} has a corrupt header ({error!r})") from None
    if len(shape) != 2 or len(block_shape) != 2 or min(shape) < 0 or any(
            b < 16 or b > 256 or b & (b - 1) for b in block_shape):
        raise ValueError(f"{where} has an invalid shape {shape} or block shape {block_shape}")
    if set(entries) != set(_ARRAY_FIELDS):
        raise ValueError(f"{where} holds arrays {sorted(entries)}, expected {sorted(_ARRAY_FIELDS)}")
    arrays = {}
    for name in _ARRAY_FIELDS:
        entry = entries[name]
        if entry.get("dtype") != _FIELD_DTYPES[name]:
            raise ValueError(f"{where}: array {name} has dtype {entry.get('dtype')!r}, expected {_FIELD_DTYPES[name]}")
        torch_dtype, np_dtype = _DTYPES[entry["dtype"]]
        dims = [int(d) for d in entry["shape"]]
        offset, length = int(entry["offset"]), int(entry["length"])
        if any(d < 0 for d in dims) or length != math.prod(dims) * np_dtype.itemsize \
                or offset < 0 or offset + length > len(payload):
            raise ValueError(f"{where}: array {name} (shape {dims}, {length} bytes at {offset}) does not fit "
                             f"the {len(payload)}-byte payload")
        data = np.frombuffer(payload[offset:offset + length], dtype=np_dtype).reshape(dims)
        if sys.byteorder != "little" and np_dtype.itemsize > 1:
            data = data.astype(np_dtype.newbyteorder("="))
        arrays[name] = torch.from_numpy(data.copy()).to(torch_dtype)
    return GraphBlockMask(shape=shape, block_shape=block_shape, fingerprint=fingerprint, **arrays)


def check_structure(mask: GraphBlockMask, where: str = "mask") -> None:
    """Raises ValueError unless the mask's arrays are a consistent mask of its shape and fingerprint."""
    (num_q, num_kv), (bm, bn) = mask.shape, mask.block_shape
    q_blocks, kv_blocks, words = math.ceil(num_q / bm), math.ceil(num_kv / bn), math.ceil(bn / 32)
    tiles = mask.col_idx.numel()

    def fail(reason):
        raise ValueError(f"{where} is not a valid mask for shape {mask.shape}, block {mask.block_shape}: {reason}")

    expected_shapes = {"row_ptr": (q_blocks + 1,), "col_idx": (tiles,), "tile_full": (tiles,),
                       "bits": (tiles, bm, words), "col_ptr": (kv_blocks + 1,), "row_idx": (tiles,),
                       "t_tile": (tiles,)}
    for name, dims in expected_shapes.items():
        if tuple(getattr(mask, name).shape) != dims:
            fail(f"{name} has shape {tuple(getattr(mask, name).shape)}, expected {dims}")
    row_ptr, col_ptr = mask.row_ptr.long(), mask.col_ptr.long()
    if row_ptr[0] != 0 or row_ptr[-1] != tiles or bool((row_ptr[1:] < row_ptr[:-1]).any()):
        fail("row_ptr is not a non-decreasing pointer array from 0 to the tile count")
    if col_ptr[0] != 0 or col_ptr[-1] != tiles or bool((col_ptr[1:] < col_ptr[:-1]).any()):
        fail("col_ptr is not a non-decreasing pointer array from 0 to the tile count")
    if tiles == 0:
        return _check_fingerprint(mask, fail)
    tile_row, tile_col = mask.tile_rows(), mask.col_idx.long()
    if bool((tile_col < 0).any()) or bool((tile_col >= kv_blocks).any()):
        fail("col_idx holds a column outside [0, KB)")
    order = tile_row * kv_blocks + tile_col
    if bool((order[1:] <= order[:-1]).any()):
        fail("col_idx is not strictly ascending inside each row")
    t_tile = mask.t_tile.long()
    if bool((t_tile < 0).any()) or bool((t_tile >= tiles).any()):
        fail("t_tile holds a tile id outside [0, T)")
    transposed = tile_col[t_tile] * q_blocks + tile_row[t_tile]
    cols = torch.repeat_interleave(torch.arange(kv_blocks), col_ptr[1:] - col_ptr[:-1])
    if bool((transposed[1:] <= transposed[:-1]).any()) or not torch.equal(tile_col[t_tile], cols) \
            or not torch.equal(tile_row[t_tile], mask.row_idx.long()):
        fail("the transpose (col_ptr, row_idx, t_tile) does not match the tiles")
    counts = popcount32(mask.bits).sum(dim=(1, 2))
    if bool((counts == 0).any()):
        fail("a listed tile has no bit set")
    rows, cols_valid = _valid_extent(tile_row, tile_col, mask)
    in_graph = _in_graph_bits(rows, cols_valid, bm, bn)
    if bool(((mask.bits & ~in_graph) != 0).any()):
        fail("bits are set for pairs outside the graph")
    if not torch.equal(mask.tile_full, counts == rows * cols_valid):
        fail("tile_full does not match the bits")
    _check_fingerprint(mask, fail)


def _valid_extent(tile_row, tile_col, mask):
    from .block_mask import valid_tile_extent
    return valid_tile_extent(tile_row, tile_col, mask.shape, mask.block_shape)


def _in_graph_bits(rows, cols, bm, bn) -> torch.Tensor:
    """int32 [T, BM, W]: the bits of each tile's in-range pairs."""
    words = math.ceil(bn / 32)
    column = torch.arange(words * 32).view(words, 32)
    bit_on = (column[None] < cols[:, None, None]).to(torch.int64) << torch.arange(32)  # [T, W, 32]
    word = bit_on.sum(-1)
    word = torch.where(word >= (1 << 31), word - (1 << 32), word).to(torch.int32)     # [T, W]
    row_on = torch.arange(bm)[None, :] < rows[:, None]                                # [T, BM]
    return torch.where(row_on[..., None], word[:, None, :], torch.zeros_like(word[:, None, :]))


def _check_fingerprint(mask, fail):
    actual = mask_fingerprint(mask.shape, mask.block_shape, mask.tile_rows(), mask.col_idx, mask.bits)
    if actual != mask.fingerprint:
        fail(f"its fingerprint {mask.fingerprint:016x} does not match its edges ({actual:016x})")
