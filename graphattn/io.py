"""Mesh and point-cloud readers: one function, :func:`read_mesh`, for every format the command takes.

Formats and who reads them (meshio 5.3 was checked on each; it is used where it gets the file right):

============  ===============================================================================
``.obj``      own reader: meshio fails on files whose UV count differs from the vertex count
``.ply``      own reader, ascii and binary (either endianness), ``face`` and ``tristrips``
              elements: meshio fails on binary faces followed by per-face colour properties
``.off``      own reader: meshio's takes triangles only and trips over repeated spaces
``.su2``      own reader, every zone: meshio keeps the first zone's points and every zone's cells
``.stl``      meshio (ascii and binary; it merges the vertices that STL repeats per face)
``.msh``      meshio (gmsh 2.2 and 4.1)
``.vtk``      meshio (legacy)
``.vtu``      meshio (XML)
``.npz``      ``pos`` [N, 2|3] and optionally ``faces`` [F, V] and/or ``edge_index`` [2, E]
``.pt``       ``torch.save`` of a dict with the same keys (PyG's ``face`` [3, F] is accepted too);
              loaded with ``weights_only=True``, so pickled objects are refused
============  ===============================================================================

Every reader returns a :class:`Mesh`: float32 positions, the cells grouped by type with zone
offsets applied, and given edges if the file had them. Damaged or inconsistent files raise
``ValueError`` naming the file and what is wrong; nothing is guessed.
"""
from __future__ import annotations

import io as _stdio
import os
import pathlib
import re
import struct
import sys
import warnings
import zipfile
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field

import numpy as np

# torch is imported where tensors are made, so that listing files (find_mesh_files) stays light.

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".su2", ".msh", ".vtk", ".vtu", ".npz", ".pt")

# Corner-to-corner edges of the volume cells (VTK/meshio and SU2 corner order). Polygons are not
# listed: their edges join consecutive corners, which mesh_edges does itself.
_VOLUME_EDGES = {
    "tetra": ((0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)),
    "pyramid": ((0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4), (2, 4), (3, 4)),
    "wedge": ((0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (0, 3), (1, 4), (2, 5)),
    "hexahedron": ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                   (0, 4), (1, 5), (2, 6), (3, 7)),
}
# Corners of each cell type (higher-order types keep their corner nodes first, as meshio orders them).
_CORNERS = {"line": 2, "triangle": 3, "quad": 4, "tetra": 4, "pyramid": 5, "wedge": 6, "hexahedron": 8}
_HIGHER_ORDER = {"line3": "line", "triangle6": "triangle", "triangle7": "triangle", "quad8": "quad",
                 "quad9": "quad", "tetra10": "tetra", "pyramid13": "pyramid", "pyramid14": "pyramid",
                 "wedge15": "wedge", "wedge18": "wedge", "hexahedron20": "hexahedron",
                 "hexahedron24": "hexahedron", "hexahedron27": "hexahedron"}


@dataclass
class Mesh:
    """What a mesh or point-cloud file holds, ready for a graph builder.

    ``pos`` is float32 [N, 2] or [N, 3]. ``cells`` maps a cell type (``"line"``, ``"triangle"``,
    ``"quad"``, ``"polygon<V>"``, ``"tetra"``, ``"pyramid"``, ``"wedge"``, ``"hexahedron"``) to an
    int64 array [C, V] of vertex indices. ``edge_index`` holds edges the file gave directly
    ([2, E] int64, row 0 source), or None. ``path`` is the file it came from.
    """

    pos: torch.Tensor
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    edge_index: torch.Tensor | None = None
    path: str = ""

    @property
    def num_nodes(self) -> int:
        """Number of vertices N (including any that no cell uses)."""
        return int(self.pos.shape[0])

    @property
    def num_cells(self) -> int:
        """Number of cells of every type."""
        return sum(int(c.shape[0]) for c in self.cells.values())

    @property
    def has_connectivity(self) -> bool:
        """Whether the file defines neighbours (cells or edges) rather than bare points."""
        return self.num_cells > 0 or (self.edge_index is not None and self.edge_index.shape[1] > 0)

    def edge_cells(self) -> list[np.ndarray]:
        """The cells as arrays that :func:`graphattn.graphs.mesh_edges` turns into the right edges.

        Polygons go as they are (consecutive corners joined); volume cells are expanded to their
        corner-to-corner edges, given as [C*k, 2] pairs, because joining a tetrahedron's or a
        hexahedron's corners in sequence would miss some edges and invent others.
        """
        groups = []
        for cell_type, cells in self.cells.items():
            if cell_type in _VOLUME_EDGES:
                pairs = np.asarray(_VOLUME_EDGES[cell_type])
                groups.append(cells[:, pairs].reshape(-1, 2))
            else:
                groups.append(cells)
        return groups

    def __repr__(self) -> str:
        cells = ", ".join(f"{k}: {v.shape[0]}" for k, v in self.cells.items()) or "none"
        edges = "none" if self.edge_index is None else str(self.edge_index.shape[1])
        return f"Mesh({self.path!r}, nodes={self.num_nodes}, dim={self.pos.shape[1]}, cells={{{cells}}}, edges={edges})"


def read_mesh(path) -> Mesh:
    """Reads a mesh or point cloud; the format follows the file's suffix (see the module docstring).

    Raises ``FileNotFoundError`` when the file does not exist, and ``ValueError`` naming the file
    for an unknown suffix or a file that is malformed (bad header, truncated data, indices out of
    range, NaN/inf coordinates).
    """
    path = pathlib.Path(path)
    if not isinstance(path, pathlib.Path):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    readers = {".obj": _read_obj, ".ply": _read_ply, ".off": _read_off, ".su2": _read_su2,
               ".npz": _read_npz, ".pt": _read_pt, ".stl": _read_meshio, ".msh": _read_meshio,
               ".vtk": _read_meshio, ".vtu": _read_meshio}
    if suffix not in readers:
        raise ValueError(f"{path}: unknown mesh format {suffix!r}; expected one of {', '.join(MESH_SUFFIXES)}")
    try:
        pos, cells, edge_index = readers[suffix](path)
    except (ValueError, TypeError):
        raise
    except (EOFError, IndexError, KeyError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"{path}: malformed {suffix} file ({type(exc).__name__}: {exc})") from exc
    return _finish(path, pos, cells, edge_index)


def find_mesh_files(inputs) -> list[pathlib.Path]:
    """Expands files and directories (searched recursively) into the mesh files they hold, sorted.

    A file named directly is kept whatever its suffix (reading it reports an unknown format); in a
    directory only files with a suffix from ``MESH_SUFFIXES`` are taken. Raises
    ``FileNotFoundError`` for an input that does not exist.
    """
    found: list[pathlib.Path] = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MESH_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    unique, seen = [], set()
    for f in found:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


# ---------------------------------------------------------------------------------------- helpers
def _finish(path, pos, cells, edge_index) -> Mesh:
    pos = np.asarray(pos)
    if pos.ndim != 2 or pos.shape[0] == 0 or pos.shape[1] not in (2, 3):
        raise ValueError(f"{path}: expected vertex coordinates of shape [N, 2] or [N, 3] with N >= 1, got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.number):
        raise ValueError(f"{path}: vertex coordinates are not numbers (dtype {pos.dtype})")
    if not np.isfinite(pos).all():
        raise ValueError(f"{path}: vertex coordinates hold NaN or inf")
    n = pos.shape[0]
    grouped: dict[str, list[np.ndarray]] = {}
    for cell_type, block in cells:
        block = np.asarray(block)
        if block.size == 0:
            continue
        if block.ndim != 2 or not np.issubdtype(block.dtype, np.integer):
            raise ValueError(f"{path}: {cell_type} cells must be integer arrays [C, V], got shape {block.shape}, dtype {block.dtype}")
        block = block.astype(np.int64, copy=False)
        lo, hi = int(block.min()), int(block.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"{path}: {cell_type} cells reference vertex {lo if lo < 0 else hi}, outside [0, {n})")
        grouped.setdefault(cell_type, []).append(block)
    merged = {k: np.concatenate(v) if len(v) > 1 else v[0] for k, v in grouped.items()}
    if edge_index is not None:
        import torch

        edge_index = torch.as_tensor(np.asarray(edge_index))
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point() or edge_index.dtype == torch.bool:
            raise ValueError(f"{path}: edge_index must be integers of shape [2, E], got shape {tuple(edge_index.shape)}, dtype {edge_index.dtype}")
        edge_index = edge_index.long()
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"{path}: edge_index references nodes outside [0, {n})")
    import torch

    return Mesh(pos=torch.from_numpy(np.ascontiguousarray(pos, dtype=np.float32)), cells=merged,
                edge_index=edge_index, path=str(path))


def _polygons_by_size(faces: list[list[int]], kind: str = "face") -> list[tuple[str, np.ndarray]]:
    """Groups polygons of any sizes into arrays of one size each."""
    by_size: dict[int, list[list[int]]] = {}
    for f in faces:
        by_size.setdefault(len(f), []).append(f)
    out = []
    for size, group in sorted(by_size.items()):
        if size < 2:
            continue
        out.append((_polygon_type(size), np.asarray(group, dtype=np.int64)))
    return out


def _polygon_type(size: int) -> str:
    return {2: "line", 3: "triangle", 4: "quad"}.get(size, f"polygon{size}")


def _uniform_table(lines: list[str], dtype, what: str, path) -> list[np.ndarray] | np.ndarray:
    """Parses whitespace-separated rows; one array when every row has the same length."""
    if not lines:
        return np.empty((0, 0), dtype=dtype)
    first = len(lines[0].split())
    tokens = " ".join(lines).split()
    if len(tokens) == first * len(lines):
        try:
            return np.array(tokens, dtype=np.float64 if dtype is float else np.int64).reshape(len(lines), first)
        except ValueError as exc:
            raise ValueError(f"{path}: {what} rows hold something that is not a number ({exc})") from None
    try:
        return [np.array(line.split(), dtype=np.float64 if dtype is float else np.int64) for line in lines]
    except ValueError as exc:
        raise ValueError(f"{path}: {what} rows hold something that is not a number ({exc})") from None


def _vertex_positions(lines, path) -> np.ndarray:
    """x, y, z of text vertex lines (OBJ, OFF); further columns (w, colours) are not positions."""
    table = _uniform_table(lines, float, "vertex", path)
    if isinstance(table, list):
        if min(len(r) for r in table) < 3:
            raise ValueError(f"{path}: a vertex line has fewer than 3 coordinates")
        return np.stack([r[:3] for r in table])
    if table.shape[1] < 3:
        raise ValueError(f"{path}: vertex lines have {table.shape[1]} values, expected at least 3")
    return table[:, :3]


def _read_text(path) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# ---------------------------------------------------------------------------------------- OBJ
_OBJ_SLASH = re.compile(r"/\S*")


def _read_obj(path):
    verts: list[str] = []
    faces: list[str] = []
    lines_el: list[str] = []
    for line in _read_text(path).splitlines():
        if line.startswith("v "):
            verts.append(line[2:])
        elif line.startswith("f "):
            faces.append(_OBJ_SLASH.sub("", line[2:]))
        elif line.startswith("l "):
            lines_el.append(_OBJ_SLASH.sub("", line[2:]))
    if not verts:
        raise ValueError(f"{path}: no vertices ('v x y z' lines) found")
    pos = _vertex_positions(verts, path)
    n = pos.shape[0]

    def resolve(rows, what):
        # OBJ indices are 1-based; negative ones count back from the end of the vertex list
        # (exact for the usual files that list every vertex before its first use).
        table = _uniform_table(rows, int, what, path)
        groups = [(_polygon_type(table.shape[1]), table)] if not isinstance(table, list) else _polygons_by_size(table)
        return [(kind, np.where(idx < 0, idx + n, idx - 1)) for kind, idx in groups]

    cells = resolve(faces, "face") if faces else []
    if lines_el:
        for _, block in resolve(lines_el, "line"):
            # A polyline a-b-c is the segments (a, b), (b, c).
            cells.append(("line", np.stack([block[:, :-1].reshape(-1), block[:, 1:].reshape(-1)], 1)))
    return pos, cells, None


# ---------------------------------------------------------------------------------------- OFF
def _read_off(path):
    lines = []
    for line in _read_text(path).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    if not lines:
        raise ValueError(f"{path}: empty file, expected an 'OFF' header")
    head = lines[0].split()
    if not head[0].endswith("OFF"):
        raise ValueError(f"{path}: first line is {lines[0]!r}, expected an OFF header ('OFF', 'COFF', 'NOFF', ...)")
    if head[0].startswith("4") or "n" in head[0].lower().replace("noff", "").replace("off", ""):
        raise ValueError(f"{path}: OFF variant {head[0]!r} is not supported (3D vertices only)")
    rest = lines[1:]
    counts = head[1:] if len(head) > 1 else (rest.pop(0).split() if rest else [])
    if len(counts) < 2:
        raise ValueError(f"{path}: missing the '<vertices> <faces> <edges>' count line")
    try:
        num_verts, num_faces = int(counts[0]), int(counts[1])
    except ValueError:
        raise ValueError(f"{path}: count line {' '.join(counts)!r} is not integers") from None
    if num_verts < 1 or num_faces < 0 or len(rest) < num_verts + num_faces:
        raise ValueError(f"{path}: header announces {num_verts} vertices and {num_faces} faces "
                         f"but the file has {len(rest)} data lines")
    pos = _vertex_positions(rest[:num_verts], path)
    faces = []
    face_rows = _uniform_table(rest[num_verts:num_verts + num_faces], int, "face", path) if num_faces else []
    rows = list(face_rows) if isinstance(face_rows, list) else None
    if rows is None and num_faces:
        counts_col = face_rows[:, 0]
        if (counts_col == counts_col[0]).all() and face_rows.shape[1] >= 1 + counts_col[0]:
            return pos, [(_polygon_type(int(counts_col[0])), face_rows[:, 1:1 + counts_col[0]])], None
        rows = list(face_rows)
    for r in rows:
        k = int(r[0]) if len(r) else -1
        if k < 1 or len(r) < 1 + k:
            raise ValueError(f"{path}: face line {' '.join(map(str, r))!r} does not hold the vertex count it announces")
        faces.append(list(r[1:1 + k]))
    return pos, _polygons_by_size(faces), None


# ---------------------------------------------------------------------------------------- PLY
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _read_ply(path):
    with open(path, "rb") as fh:
        data = fh.read()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file (expected a 'ply' ... 'end_header' header)")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body_start = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    fmt = None
    elements: list[tuple[str, int, list[tuple]]] = []  # (name, count, [(prop, type) or (prop, count_t, item_t)])
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else None
        elif words[0] == "element" and len(words) == 3:
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list" and len(words) == 5:
                if words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unknown PLY type in {line!r}")
                elements[-1][2].append((words[4], _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"{path}: cannot parse PLY header line {line!r}")
        else:
            raise ValueError(f"{path}: cannot parse PLY header line {line!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: PLY format {fmt!r} is not one of ascii, binary_little_endian, binary_big_endian")
    if fmt == "ascii":
        parsed = _ply_ascii(path, data[body_start:], elements)
    else:
        parsed = _ply_binary(path, data[body_start:], elements, "<" if fmt == "binary_little_endian" else ">")
    if "vertex" not in parsed:
        raise ValueError(f"{path}: PLY file has no 'vertex' element")
    vertex = parsed["vertex"]
    missing = [c for c in ("x", "y") if c not in vertex]
    if missing:
        raise ValueError(f"{path}: PLY vertex element lacks properties {missing}")
    columns = [vertex["x"], vertex["y"]] + ([vertex["z"]] if "z" in vertex else [])
    pos = np.stack([np.asarray(c, dtype=np.float64) for c in columns], 1)
    cells = []
    if "face" in parsed:
        lists = parsed["face"].get("vertex_indices", parsed["face"].get("vertex_index"))
        if lists is None:
            raise ValueError(f"{path}: PLY face element has no 'vertex_indices' list")
        # A list property comes back as one [C, k] array when every list has length k.
        cells += [(_polygon_type(lists.shape[1]), lists)] if isinstance(lists, np.ndarray) else _polygons_by_size(lists)
    if "tristrips" in parsed:
        strips = parsed["tristrips"].get("vertex_indices", parsed["tristrips"].get("vertex_index"))
        if strips is None:
            raise ValueError(f"{path}: PLY tristrips element has no 'vertex_indices' list")
        tris = _strips_to_triangles(strips)
        if len(tris):
            cells.append(("triangle", tris))
    if "edge" in parsed and "vertex1" in parsed["edge"] and "vertex2" in parsed["edge"]:
        cells.append(("line", np.stack([np.asarray(parsed["edge"]["vertex1"]), np.asarray(parsed["edge"]["vertex2"])], 1).astype(np.int64)))
    return pos, cells, None


def _strips_to_triangles(strips) -> np.ndarray:
    """Triangle strips (``-1`` restarts a strip) to triangles, dropping degenerate ones."""
    tris = []
    for strip in (strips if isinstance(strips, list) else list(strips)):
        strip = np.asarray(strip, dtype=np.int64).reshape(-1)
        for run in np.split(strip, np.flatnonzero(strip < 0)):
            run = run[run >= 0]
            if run.size < 3:
                continue
            a, b, c = run[:-2], run[1:-1], run[2:]
            # Every other triangle of a strip is flipped back to keep the orientation.
            odd = np.arange(a.size) % 2 == 1
            t = np.stack([a, np.where(odd, c, b), np.where(odd, b, c)], 1)
            tris.append(t[(a != b) & (b != c) & (a != c)])
    return np.concatenate(tris) if tris else np.empty((0, 3), np.int64)


def _ply_ascii(path, body: bytes, elements):
    lines = body.decode("ascii", errors="replace").splitlines()
    lines = [ln for ln in lines if ln.strip()]
    cursor = 0
    parsed = {}
    for name, count, props in elements:
        rows = lines[cursor:cursor + count]
        if len(rows) < count:
            raise ValueError(f"{path}: PLY element {name!r} announces {count} rows, the file has {len(rows)}")
        cursor += count
        has_list = any(len(p) == 3 for p in props)
        out: dict = {}
        if not has_list:
            table = _uniform_table(rows, float, name, path)
            if isinstance(table, list) or (count and table.shape[1] != len(props)):
                raise ValueError(f"{path}: PLY element {name!r} rows do not have {len(props)} values each")
            for i, p in enumerate(props):
                out[p[0]] = table[:, i] if count else np.empty(0)
        else:
            table = _uniform_table(rows, float, name, path)
            if not isinstance(table, list) and count:
                # Every row the same length: if the lists are the leading property and all have one
                # length k, the rows are [k, i1..ik, other properties...].
                k = int(table[0, 0])
                first_is_list = len(props[0]) == 3
                if first_is_list and (table[:, 0] == k).all() and all(len(p) == 2 for p in props[1:]) \
                        and table.shape[1] == 1 + k + len(props) - 1:
                    out[props[0][0]] = table[:, 1:1 + k].astype(np.int64)
                    for i, p in enumerate(props[1:]):
                        out[p[0]] = table[:, 1 + k + i]
                    parsed[name] = out
                    continue
                table = list(table)
            values: dict[str, list] = {p[0]: [] for p in props}
            for r in table:
                at = 0
                for p in props:
                    if len(p) == 3:
                        k = int(r[at])
                        if at + 1 + k > len(r):
                            raise ValueError(f"{path}: PLY element {name!r} row is shorter than its list count {k}")
                        values[p[0]].append(r[at + 1:at + 1 + k].astype(np.int64))
                        at += 1 + k
                    else:
                        values[p[0]].append(r[at])
                        at += 1
            for p in props:
                out[p[0]] = values[p[0]] if len(p) == 3 else np.asarray(values[p[0]])
        parsed[name] = out
    return parsed


def _ply_binary(path, body: bytes, elements, endian: str):
    offset = 0
    parsed = {}
    for name, count, props in elements:
        has_list = any(len(p) == 3 for p in props)
        if not has_list:
            dtype = np.dtype([(p[0], endian + p[1]) for p in props])
            need = dtype.itemsize * count
            if offset + need > len(body):
                raise ValueError(f"{path}: PLY element {name!r} is truncated ({len(body) - offset} bytes left, {need} needed)")
            table = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
            offset += need
            parsed[name] = {p[0]: table[p[0]] for p in props}
            continue
        # Fast path: every list in the element has the length of the first record's lists, so the
        # records form one fixed-size structured type. Checked after reading; otherwise walk them.
        lengths = []
        at = offset
        for p in props:
            if len(p) == 3:
                ct = np.dtype(endian + p[1])
                if at + ct.itemsize > len(body):
                    raise ValueError(f"{path}: PLY element {name!r} is truncated")
                k = int(np.frombuffer(body, dtype=ct, count=1, offset=at)[0]) if count else 0
                lengths.append(k)
                at += ct.itemsize + k * np.dtype(p[2]).itemsize
            else:
                at += np.dtype(p[1]).itemsize
        fields = []
        for p in props:
            if len(p) == 3:
                k = lengths.pop(0)
                fields += [(p[0] + "#count", endian + p[1]), (p[0], endian + p[2], (k,))]
            else:
                fields.append((p[0], endian + p[1]))
        dtype = np.dtype(fields)
        need = dtype.itemsize * count
        table = np.frombuffer(body, dtype=dtype, count=count, offset=offset) if offset + need <= len(body) else None
        if table is not None and all((table[p[0] + "#count"] == dtype[p[0]].shape[0]).all() for p in props if len(p) == 3):
            offset += need
            out = {}
            for p in props:
                if len(p) == 3:
                    out[p[0]] = table[p[0]].astype(np.int64)
                else:
                    out[p[0]] = table[p[0]]
            parsed[name] = out
            continue
        values: dict[str, list] = {p[0]: [] for p in props}
        for _ in range(count):
            for p in props:
                if len(p) == 3:
                    ct, it = np.dtype(endian + p[1]), np.dtype(endian + p[2])
                    if offset + ct.itemsize > len(body):
                        raise ValueError(f"{path}: PLY element {name!r} is truncated")
                    k = int(np.frombuffer(body, dtype=ct, count=1, offset=offset)[0])
                    offset += ct.itemsize
                    if k < 0 or offset + k * it.itemsize > len(body):
                        raise ValueError(f"{path}: PLY element {name!r} is truncated or has a bad list count {k}")
                    values[p[0]].append(np.frombuffer(body, dtype=it, count=k, offset=offset).astype(np.int64))
                    offset += k * it.itemsize
                else:
                    t = np.dtype(endian + p[1])
                    if offset + t.itemsize > len(body):
                        raise ValueError(f"{path}: PLY element {name!r} is truncated")
                    values[p[0]].append(np.frombuffer(body, dtype=t, count=1, offset=offset)[0])
                    offset += t.itemsize
        parsed[name] = {p[0]: (values[p[0]] if len(p) == 3 else np.asarray(values[p[0]])) for p in props}
    return parsed


# ---------------------------------------------------------------------------------------- SU2
_SU2_TYPES = {3: "line", 5: "triangle", 9: "quad", 10: "tetra", 12: "hexahedron", 13: "wedge", 14: "pyramid"}


def _read_su2(path):
    lines = [ln.split("%", 1)[0].strip() for ln in _read_text(path).splitlines()]
    lines = [ln for ln in lines if ln]
    zones_pos: list[np.ndarray] = []
    cells: list[tuple[str, np.ndarray]] = []
    zone_cells: list[tuple[str, np.ndarray]] = []
    ndime = None
    offset = 0
    i = 0

    def value(line):
        return line.split("=", 1)[1].split()

    def close_zone():
        nonlocal zone_cells, offset
        if not zones_pos:
            return
        for t, c in zone_cells:
            cells.append((t, c + offset))
        offset += zones_pos[-1].shape[0]
        zone_cells = []

    saw_points = False
    while i < len(lines):
        line = lines[i]
        key = line.split("=", 1)[0].strip().upper() if "=" in line else ""
        if key == "IZONE":
            if saw_points:
                close_zone()
                saw_points = False
            i += 1
        elif key == "NDIME":
            ndime = int(value(line)[0])
            if ndime not in (2, 3):
                raise ValueError(f"{path}: NDIME= {ndime}, expected 2 or 3")
            i += 1
        elif key == "NELEM":
            count = int(value(line)[0])
            rows = lines[i + 1:i + 1 + count]
            if len(rows) < count:
                raise ValueError(f"{path}: NELEM= {count} but only {len(rows)} element lines follow")
            by_type: dict[int, list[list[int]]] = {}
            for r in rows:
                parts = r.split()
                code = int(parts[0])
                if code not in _SU2_TYPES:
                    raise ValueError(f"{path}: unknown SU2 element type {code} in line {r!r}")
                k = _CORNERS[_SU2_TYPES[code]]
                if len(parts) < 1 + k:
                    raise ValueError(f"{path}: element line {r!r} has fewer than the {k} nodes of its type")
                by_type.setdefault(code, []).append([int(x) for x in parts[1:1 + k]])
            for code, group in by_type.items():
                zone_cells.append((_SU2_TYPES[code], np.asarray(group, dtype=np.int64)))
            i += 1 + count
        elif key == "NPOIN":
            if ndime is None:
                raise ValueError(f"{path}: NPOIN before NDIME")
            count = int(value(line)[0])
            rows = lines[i + 1:i + 1 + count]
            if len(rows) < count:
                raise ValueError(f"{path}: NPOIN= {count} but only {len(rows)} point lines follow")
            table = _uniform_table(rows, float, "point", path)
            if isinstance(table, list):
                if min(len(r) for r in table) < ndime:
                    raise ValueError(f"{path}: a point line has fewer than NDIME= {ndime} coordinates")
                table = np.stack([r[:ndime] for r in table])
            elif table.shape[1] < ndime:
                raise ValueError(f"{path}: point lines have {table.shape[1]} values, expected at least {ndime}")
            zones_pos.append(table[:, :ndime])
            saw_points = True
            i += 1 + count
        elif key == "MARKER_ELEMS":
            # Boundary markers repeat sides of the volume elements: nothing new for the graph.
            i += 1 + int(value(line)[0])
        else:
            i += 1
    close_zone()
    if not zones_pos:
        raise ValueError(f"{path}: no NPOIN= section found; not an SU2 mesh")
    dims = {p.shape[1] for p in zones_pos}
    if len(dims) > 1:
        raise ValueError(f"{path}: zones have different dimensions {sorted(dims)}")
    return np.concatenate(zones_pos), cells, None


# ---------------------------------------------------------------------------------------- meshio
@contextmanager
def _quiet():
    """meshio prints notes (string tags, ...) to stdout; keep the command's output clean."""
    with redirect_stdout(_stdio.StringIO()), warnings.catch_warnings():
        # meshio's STL sniffing multiplies a header word that overflows for ascii files
        warnings.simplefilter("ignore", RuntimeWarning)
        saved, sys.stderr = sys.stderr, _stdio.StringIO()
        try:
            yield
        finally:
            sys.stderr = saved


def _read_meshio(path):
    import meshio

    try:
        with _quiet():
            mesh = meshio.read(str(path))
    except Exception as exc:  # meshio raises many kinds (ReadError, ValueError, struct.error...)
        raise ValueError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    cells = []
    for block in mesh.cells:
        cell_type = _HIGHER_ORDER.get(block.type, block.type)
        data = np.asarray(block.data)
        if cell_type == "vertex":
            continue
        if cell_type in _CORNERS:
            data = data[:, :_CORNERS[cell_type]]
        elif cell_type.startswith("polygon"):
            pass
        else:
            raise ValueError(f"{path}: cell type {block.type!r} is not supported")
        cells.append((_polygon_type(data.shape[1]) if cell_type.startswith("polygon") else cell_type, data))
    return np.asarray(mesh.points), cells, None


# ---------------------------------------------------------------------------------------- npz / pt
def _arrays_from_mapping(path, items):
    if "pos" not in items:
        raise ValueError(f"{path}: no 'pos' array (keys: {sorted(items)}); expected pos [N, 2|3]")
    pos = np.asarray(items["pos"])
    if not np.issubdtype(pos.dtype, np.floating):
        raise ValueError(f"{path}: 'pos' must be floating point, got dtype {pos.dtype}")
    cells = []
    if "faces" in items:
        faces = np.asarray(items["faces"])
        if faces.ndim != 2:
            raise ValueError(f"{path}: 'faces' must be [F, V], got shape {faces.shape}")
        cells.append((_polygon_type(faces.shape[1]), faces))
    elif "face" in items:
        face = np.asarray(items["face"])  # PyG's convention: [3, F]
        if face.ndim != 2:
            raise ValueError(f"{path}: 'face' must be [V, F] (PyG convention), got shape {face.shape}")
        cells.append((_polygon_type(face.shape[0]), face.T))
    edge_index = items.get("edge_index")
    return pos, cells, (None if edge_index is None else np.asarray(edge_index))


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            items = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    return _arrays_from_mapping(path, items)


def _read_pt(path):
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ValueError(f"{path}: not a torch.save file of a dict of tensors ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict with 'pos' (and optionally 'faces'/'face', 'edge_index'), "
                         f"got {type(data).__name__}")
    items = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    return _arrays_from_mapping(path, items)


# ---------------------------------------------------------------------------------------- graphs
def parse_graph_spec(spec: str) -> tuple[str, float | int | None]:
    """``"auto"``, ``"mesh"``, ``"knn:K"`` or ``"radius:R"`` → (kind, parameter); ValueError otherwise."""
    if not isinstance(spec, str):
        raise TypeError(f"graph must be a str ('auto', 'mesh', 'knn:K' or 'radius:R'), got {type(spec).__name__}")
    kind, _, arg = spec.partition(":")
    if kind in ("auto", "mesh") and not arg:
        return kind, None
    try:
        if kind == "knn":
            k = int(arg)
            if k >= 1:
                return kind, k
        elif kind == "radius":
            r = float(arg)
            if r > 0 and np.isfinite(r):
                return kind, r
    except ValueError:
        pass
    raise ValueError(f"graph must be 'auto', 'mesh', 'knn:K' (K a positive int) or 'radius:R' (R > 0), got {spec!r}")


def build_graph(mesh: Mesh, graph: str = "auto", *, auto_k: int = 16) -> tuple[torch.Tensor, str]:
    """The graph of a mesh as a PyG ``edge_index`` and the recipe that made it.

    ``graph``: ``"mesh"`` takes the file's connectivity (its ``edge_index`` when it gave one, else
    the edges of its cells, both directions); ``"knn:K"`` the K nearest neighbours of each point;
    ``"radius:R"`` every pair closer than R; ``"auto"`` is ``"mesh"`` when the file has cells or
    edges and ``"knn:16"`` for a bare point cloud. Returns ``(edge_index, recipe)``, e.g.
    ``(tensor, "mesh")`` or ``(tensor, "knn:16")``.
    """
    from .graphs import knn_graph, mesh_edges, radius_graph

    kind, arg = parse_graph_spec(graph)
    if kind == "auto":
        kind, arg = ("mesh", None) if mesh.has_connectivity else ("knn", auto_k)
    if kind == "mesh":
        if not mesh.has_connectivity:
            raise ValueError(f"{mesh.path}: has no cells or edges, so it has no mesh graph; "
                             f"use a point-cloud graph such as 'knn:16'")
        if mesh.edge_index is not None and mesh.edge_index.shape[1] > 0:
            return mesh.edge_index, "mesh"
        return mesh_edges(mesh.edge_cells(), mesh.num_nodes), "mesh"
    if kind == "knn":
        return knn_graph(mesh.pos, k=int(arg)), f"knn:{arg}"
    return radius_graph(mesh.pos, float(arg)), f"radius:{arg:g}"
