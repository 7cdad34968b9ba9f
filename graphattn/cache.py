"""A content-addressed cache of orderings and block masks, shared by the command and Python code.

Reordering a graph and building its block mask is done once per graph and reused for every epoch
and every run. :class:`Cache` stores the result under a key computed from

- the graph's content: node coordinates by value (float32 and float64 copies of the same numbers
  share a key) and the edge *set* (edge order and duplicates do not change it, as they do not
  change the mask),
- every parameter that changes the result (method, block size, refinement, seed, objective),
- the cache format version and the library version (a new release never serves an old result).

So a changed graph or parameter can never be served a stale entry, and the same graph reached by
two routes (``graphattn precompute`` on a file, ``BlockSparseOrder(cache_dir=...)`` in a PyG
``pre_transform``) shares one entry.

Layout of a cache directory::

    DIR/v1/entries/ab/<key>.npz     one entry: permutation, mask arrays, stats, checksum
    DIR/v1/sources/<source key>.json   which entry a source file (by its bytes) and graph recipe
                                       gave, so `precompute` can skip reading unchanged files

Entries are written to a temporary file in the same directory and moved into place with
``os.replace``, so readers see either no entry or a whole one, and two processes computing the same
entry at once both leave a valid file. Every read checks a SHA-256 of the contents and the
structure (a permutation, a consistent mask); a damaged entry is reported with a
:class:`CacheWarning` and recomputed.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np

# torch is imported inside the functions that need it: a fully cached `graphattn precompute`
# checks entries with numpy alone and never pays for importing torch.

FORMAT_VERSION = 1


class CacheWarning(UserWarning):
    """A cache entry or index file was damaged or unreadable and is being recomputed."""


@dataclass
class CacheEntry:
    """One cached result: the ordering, the mask of the reordered graph and its statistics.

    ``mask`` is built from ``ordering.apply_to_edge_index(edge_index)``, i.e. it describes the
    graph in its new order (None for a point cloud cached without edges). ``stats`` is a JSON-able dict (nodes, edges, tiles per row before and
    after, fill, timings, ...). ``from_cache`` says whether it was read rather than computed.
    """

    key: str
    ordering: "object"
    mask: "object"
    stats: dict
    from_cache: bool
    path: pathlib.Path


def _library_version() -> str:
    from . import __version__

    return __version__


def _canonical_edge_keys(edge_index: torch.Tensor, num_nodes: int) -> np.ndarray:
    """Distinct edges as sorted ``dst * N + src`` keys: the edge set, independent of order and repeats."""
    edges = edge_index.detach().cpu().numpy()
    keys = np.sort(edges[1].astype(np.int64) * max(num_nodes, 1) + edges[0].astype(np.int64))
    # sort + drop repeats: several times faster than np.unique's hashing path here
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys


def _check_options(method, block_size, refine, seed, objective="tiles"):
    from ._checks import check_block_size
    from .ordering.dispatch import check_objective
    if not isinstance(method, str):
        raise TypeError(f"method must be a str (an ordering method name), got {type(method).__name__}")
    check_block_size(block_size)
    if not isinstance(refine, (bool, int, float)):
        raise TypeError(f"refine must be a bool (or a number, as graphattn.order takes), got {type(refine).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    check_objective(objective, refine)


def _mask_fields() -> tuple[list[str], list[str]]:
    """GraphBlockMask's dataclass fields split into tensors (stored as arrays) and plain values (JSON)."""
    import dataclasses

    import torch

    from .mask import GraphBlockMask

    tensors, others = [], []
    for f in dataclasses.fields(GraphBlockMask):
        (tensors if f.type in ("torch.Tensor", torch.Tensor) else others).append(f.name)
    return tensors, others


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _write_atomic(path: pathlib.Path, write) -> None:
    """Writes through ``write(file_object)`` to a temporary file, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class Cache:
    """Orderings and block masks on disk, keyed by graph content and parameters.

    ``Cache(directory)`` creates the directory on first write. The main call is
    :meth:`get_or_compute`; :meth:`key`, :meth:`load` and :meth:`store` are its parts.

    Example::

        cache = graphattn.cache.Cache("~/.cache/graphattn")
        entry = cache.get_or_compute(pos, edge_index, method="auto", block_size=64)
        edge_index = entry.ordering.apply_to_edge_index(edge_index)   # entry.mask matches these
    """

    def __init__(self, directory):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str or os.PathLike, got {type(directory).__name__}")
        self.directory = pathlib.Path(directory).expanduser()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"directory {str(self.directory)!r} exists and is not a directory")
        self.root = self.directory / f"v{FORMAT_VERSION}"

    def __repr__(self) -> str:
        return f"Cache({str(self.directory)!r})"

    # ------------------------------------------------------------------ keys
    def key(self, pos, edge_index, *, num_nodes=None, method: str = "auto", block_size: int = 64,
            refine: bool = False, seed: int = 0, objective: str = "tiles") -> str:
        """The entry key (hex SHA-256) of a graph and the ordering parameters.

        ``pos`` may be None for graphs without coordinates (graph-only methods), ``edge_index``
        None for bare point clouds (coordinate methods; no mask then). ``num_nodes`` defaults to
        ``pos.shape[0]``, else to the largest index + 1.
        """
        _check_options(method, block_size, refine, seed, objective)
        graph = _Graph(*_check_graph(pos, edge_index, num_nodes))
        return self._key_of(graph, method, block_size, refine, seed, objective)

    @staticmethod
    def _key_of(graph: "_Graph", method, block_size, refine, seed, objective="tiles") -> str:
        import torch

        pos, edge_index, num_nodes = graph.pos, graph.edge_index, graph.num_nodes
        h = hashlib.sha256()
        params = {"format": FORMAT_VERSION, "graphattn": _library_version(), "method": method,
                  "block_size": block_size, "refine": refine, "seed": seed, "num_nodes": num_nodes}
        if objective != "tiles":  # keys of entries stored before the objective existed stay valid
            params["objective"] = objective
        h.update(json.dumps(params, sort_keys=True).encode() + b"\n")
        if pos is None:
            h.update(b"pos:none\n")
        else:
            values = np.ascontiguousarray(pos.detach().cpu().to(torch.float64).numpy())
            h.update(f"pos:{values.shape}\n".encode())
            h.update(memoryview(values).cast("B"))
        if edge_index is None:
            h.update(b"edges:none\n")
        else:
            keys = graph.edge_keys()
            h.update(f"edges:{keys.size}\n".encode())
            h.update(memoryview(keys).cast("B"))
        return h.hexdigest()

    def path_of(self, key: str) -> pathlib.Path:
        """Where the entry with this key lives (whether or not it exists)."""
        if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"key must be a 64-character lowercase hex string, got {key!r}")
        return self.root / "entries" / key[:2] / f"{key}.npz"

    # ------------------------------------------------------------------ read / write
    def load(self, key: str) -> CacheEntry | None:
        """The entry with this key, or None when absent or damaged (damage warns with CacheWarning)."""
        path = self.path_of(key)
        if not path.is_file():
            return None
        try:
            return self._read_entry(path, key)
        except ValueError as exc:
            warnings.warn(f"damaged cache entry {path} ({exc}); recomputing", CacheWarning, stacklevel=2)
            return None

    def verify(self, key: str) -> dict | None:
        """The statistics of a valid entry, or None when absent or damaged (damage warns).

        Checks everything :meth:`load` checks about the file (checksum, key, permutation) without
        building tensors, so it needs no torch import: the command's fast path for cached inputs.
        """
        path = self.path_of(key)
        if not path.is_file():
            return None
        try:
            return self._read_checked(path, key)[1]["stats"]
        except ValueError as exc:
            warnings.warn(f"damaged cache entry {path} ({exc}); recomputing", CacheWarning, stacklevel=2)
            return None

    @staticmethod
    def _read_checked(path: pathlib.Path, key: str):
        """Arrays, metadata and inverse permutation of an entry file, after every check that needs no torch."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except Exception as exc:  # zipfile, OSError, EOFError, ValueError: all mean "not readable"
            raise ValueError(f"unreadable file: {type(exc).__name__}: {exc}") from None
        if not {"perm", "meta", "digest"} <= set(arrays):
            raise ValueError(f"arrays {sorted(arrays)} lack perm, meta or digest")
        digest = bytes(arrays.pop("digest")).decode("ascii", errors="replace")
        if _digest(arrays) != digest:
            raise ValueError("checksum mismatch")
        try:
            meta = json.loads(bytes(arrays["meta"]).decode("utf-8"))
        except ValueError as exc:
            raise ValueError(f"metadata is not JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
            raise ValueError(f"entry is for format {meta.get('format')!r}, key {meta.get('key')!r}")
        expected = {"perm", "meta", *(f"mask_{n}" for n in meta.get("mask_arrays", []))}
        if set(arrays) != expected:
            raise ValueError(f"arrays {sorted(arrays)} differ from the expected {sorted(expected)}")
        perm = arrays["perm"].astype(np.int64, copy=False)
        n = perm.size
        if perm.ndim != 1 or (n and (perm.min() < 0 or perm.max() >= n)):
            raise ValueError("perm is not a permutation")
        inverse = np.full(n, -1, dtype=np.int64)
        inverse[perm] = np.arange(n)
        if n and inverse.min() < 0:
            raise ValueError("perm is not a permutation")
        return arrays, meta, inverse

    def _read_entry(self, path: pathlib.Path, key: str) -> CacheEntry:
        import torch

        from .mask import GraphBlockMask
        from .ordering.ordering import Ordering

        arrays, meta, inverse = self._read_checked(path, key)
        tensor_fields, other_fields = _mask_fields()
        if meta.get("mask") is None:  # a point cloud ordered without edges: no mask
            tensor_fields, other_fields = [], []
        if sorted(meta.get("mask_arrays", [])) != sorted(tensor_fields):
            raise ValueError(f"mask arrays {meta.get('mask_arrays')} are not this version's {tensor_fields}")
        n = inverse.size
        perm, inverse = torch.from_numpy(arrays["perm"].astype(np.int64)), torch.from_numpy(inverse)
        o = meta["ordering"]
        ordering = Ordering(perm=perm, inverse=inverse, method=o["method"], block_size=o["block_size"],
                            tiles=o["tiles"], refined=o["refined"], candidates=o.get("candidates", {}),
                            objective=o.get("objective", "tiles"), packed_tiles=o.get("packed_tiles"))
        if meta.get("mask") is None:
            return CacheEntry(key=key, ordering=ordering, mask=None, stats=meta["stats"], from_cache=True, path=path)
        m = meta["mask"]
        if set(m) != set(other_fields):
            raise ValueError(f"mask metadata {sorted(m)} differs from the expected {sorted(other_fields)}")
        parts = {name: torch.from_numpy(arrays[f"mask_{name}"].copy()) for name in tensor_fields}
        parts.update({name: tuple(v) if isinstance(v, list) else v for name, v in m.items()})
        mask = GraphBlockMask(**parts)
        bm, bn = mask.block_shape
        q_blocks, kv_blocks = -(-mask.shape[0] // bm), -(-mask.shape[1] // bn)
        num_tiles = mask.col_idx.numel()
        if (mask.shape != (n, n) or mask.row_ptr.numel() != q_blocks + 1 or mask.col_ptr.numel() != kv_blocks + 1
                or int(mask.row_ptr[-1]) != num_tiles or int(mask.col_ptr[-1]) != num_tiles
                or tuple(mask.bits.shape) != (num_tiles, bm, -(-bn // 32))
                or mask.tile_full.numel() != num_tiles or mask.row_idx.numel() != num_tiles
                or mask.t_tile.numel() != num_tiles):
            raise ValueError("mask arrays are inconsistent with its shape")
        return CacheEntry(key=key, ordering=ordering, mask=mask, stats=meta["stats"], from_cache=True, path=path)

    def store(self, key: str, ordering, mask, stats: dict) -> pathlib.Path:
        """Writes an entry atomically and returns its path."""
        path = self.path_of(key)
        meta = {"format": FORMAT_VERSION, "key": key, "stats": stats,
                "ordering": {"method": ordering.method, "block_size": ordering.block_size,
                             "tiles": ordering.tiles, "refined": ordering.refined,
                             "candidates": {str(k): v for k, v in dict(ordering.candidates).items()},
                             "objective": ordering.objective, "packed_tiles": ordering.packed_tiles},
                "mask": {}}
        tensor_fields, other_fields = _mask_fields() if mask is not None else ([], [])
        if mask is None:
            meta["mask"] = None
        meta["mask_arrays"] = list(tensor_fields)
        for name in other_fields:
            value = getattr(mask, name)
            meta["mask"][name] = list(value) if isinstance(value, tuple) else value
        arrays = {"perm": ordering.perm.detach().cpu().numpy().astype(np.int64),
                  "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)}
        for name in tensor_fields:
            arrays[f"mask_{name}"] = getattr(mask, name).detach().cpu().numpy()
        arrays["digest"] = np.frombuffer(_digest(arrays).encode("ascii"), dtype=np.uint8)
        _write_atomic(path, lambda fh: np.savez(fh, **arrays))
        return path

    # ------------------------------------------------------------------ the main call
    def get_or_compute(self, pos, edge_index, *, num_nodes=None, method: str = "auto", block_size: int = 64,
                       refine: bool = False, seed: int = 0, recompute: bool = False,
                       objective: str = "tiles") -> CacheEntry:
        """The cached ordering and mask of this graph, computing and storing them when missing.

        Arguments are those of :func:`graphattn.order` (``pos`` may be None for graph-only
        methods). ``recompute=True`` ignores an existing entry and overwrites it. Returns a
        :class:`CacheEntry`; ``entry.mask`` describes ``entry.ordering.apply_to_edge_index(edge_index)``.
        """
        _check_options(method, block_size, refine, seed, objective)
        graph = _Graph(*_check_graph(pos, edge_index, num_nodes))  # checked once for key and compute
        key = self._key_of(graph, method, block_size, refine, seed, objective)
        if not isinstance(recompute, bool):
            raise TypeError(f"recompute must be a bool, got {type(recompute).__name__}")
        if not recompute:
            entry = self.load(key)
            if entry is not None:
                return entry
        ordering, mask, stats = _compute(graph, method, block_size, refine, seed, objective)
        path = self.store(key, ordering, mask, stats)
        return CacheEntry(key=key, ordering=ordering, mask=mask, stats=stats, from_cache=False, path=path)

    # ------------------------------------------------------------------ source index (the command's)
    def source_key(self, file_bytes_digest: str, recipe: dict) -> str:
        """Key of a source file (by the SHA-256 of its bytes) read with a graph recipe and parameters."""
        h = hashlib.sha256()
        h.update(json.dumps({"format": FORMAT_VERSION, "graphattn": _library_version(),
                             "file": file_bytes_digest, **recipe}, sort_keys=True).encode())
        return h.hexdigest()

    def lookup_source(self, source_key: str) -> dict | None:
        """The record of a source key (``entry``: the entry key, ``source``, ``graph``), or None.

        A damaged record warns with CacheWarning and reads as None.
        """
        path = self.root / "sources" / f"{source_key}.json"
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text("utf-8"))
            self.path_of(record["entry"])
            return record
        except (ValueError, KeyError, TypeError, OSError) as exc:
            warnings.warn(f"damaged cache index {path} ({type(exc).__name__}); recomputing", CacheWarning, stacklevel=2)
            return None

    def record_source(self, source_key: str, entry_key: str, name: str, graph: str = "") -> None:
        """Remembers which entry a source gave, and the graph recipe that was used (atomic write)."""
        self.path_of(entry_key)
        record = json.dumps({"entry": entry_key, "source": str(name), "graph": graph}).encode("utf-8")
        _write_atomic(self.root / "sources" / f"{source_key}.json", lambda fh: fh.write(record))


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


class _Graph:
    """A checked graph, with its canonical edge keys computed once and shared by key and stats."""

    def __init__(self, pos, edge_index, num_nodes):
        self.pos, self.edge_index, self.num_nodes = pos, edge_index, num_nodes
        self._keys = None

    def edge_keys(self) -> np.ndarray:
        """Sorted distinct ``dst * N + src`` keys (computed on first use)."""
        if self._keys is None:
            self._keys = _canonical_edge_keys(self.edge_index, self.num_nodes)
        return self._keys


def _check_graph(pos, edge_index, num_nodes):
    from ._checks import check_edge_index, check_pos

    if pos is None and edge_index is None:
        raise ValueError("pos and edge_index are both None; give coordinates [N, 2|3], edges [2, E] or both")
    if pos is not None:
        pos = check_pos(pos)
        num_nodes = pos.shape[0] if num_nodes is None else num_nodes
    if edge_index is not None:
        edge_index, num_nodes = check_edge_index(edge_index, num_nodes)
    if pos is not None and pos.shape[0] != num_nodes:
        raise ValueError(f"pos has {pos.shape[0]} rows but num_nodes is {num_nodes}")
    return pos, edge_index, num_nodes


def compute(pos, edge_index, *, num_nodes=None, method: str = "auto", block_size: int = 64,
            refine: bool = False, seed: int = 0, objective: str = "tiles"):
    """Orders a graph and builds the mask of the reordered graph, without any cache.

    Returns ``(ordering, mask, stats)``; ``stats`` holds node and edge counts, tiles per block row
    before and after ordering, fill, the chosen method and the seconds each step took. Without
    ``edge_index`` there is no mask: ``(ordering, None, stats)``.
    """
    _check_options(method, block_size, refine, seed, objective)
    return _compute(_Graph(*_check_graph(pos, edge_index, num_nodes)), method, block_size, refine, seed, objective)


def _compute(graph: _Graph, method, block_size, refine, seed, objective="tiles"):
    from .mask import GraphBlockMask
    from .ordering import count_tiles, order

    pos, edge_index, num_nodes = graph.pos, graph.edge_index, graph.num_nodes
    start = time.perf_counter()
    ordering = order(edge_index, pos, num_nodes=num_nodes, method=method, block_size=block_size,
                     refine=refine, seed=seed, objective=objective)
    order_seconds = time.perf_counter() - start
    if edge_index is None:
        stats = {"num_nodes": num_nodes, "num_edges": 0, "method": ordering.method, "requested_method": method,
                 "block_size": block_size, "refine": refine, "seed": seed, "objective": objective,
                 "order_seconds": order_seconds,
                 "graphattn": _library_version(),
                 "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        return ordering, None, stats
    start = time.perf_counter()
    mask = GraphBlockMask.from_edge_index(ordering.apply_to_edge_index(edge_index), num_nodes,
                                         block_size=block_size)
    mask_seconds = time.perf_counter() - start
    blocks = max(-(-num_nodes // block_size), 1)
    tiles_before = int(count_tiles(edge_index, num_nodes, block_size=block_size))
    mean, most = mask.tiles_per_row
    # Distinct edges from a sort of the keys: cheaper than counting the mask's bits.
    num_edges = int(graph.edge_keys().size)
    stats = {
        "num_nodes": num_nodes,
        "num_edges": num_edges,
        "method": ordering.method,
        "requested_method": method,
        "block_size": block_size,
        "refine": refine,
        "seed": seed,
        "objective": objective,
        "packed_tiles": ordering.packed_tiles,
        "tiles": mask.num_tiles,
        "full_tiles": mask.num_full_tiles,
        "tiles_per_row": mean,
        "tiles_per_row_max": most,
        "tiles_per_row_before": tiles_before / blocks,
        "fill": num_edges / (mask.num_tiles * block_size * block_size) if mask.num_tiles else 0.0,
        "order_seconds": order_seconds,
        "mask_seconds": mask_seconds,
        "graphattn": _library_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return ordering, mask, stats
