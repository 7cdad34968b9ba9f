"""Readers of every mesh format against a mesh whose edges are known.

The writers below are also used by tests/test_cli.py to make one file of each format.
"""
import re
import struct

import meshio
import numpy as np
import pytest
import torch

from graphattn.graphs import mesh_edges
from graphattn.io import MESH_SUFFIXES, Mesh, find_mesh_files, read_mesh


# ------------------------------------------------------------------------------ a known mesh
def grid_mesh(nx=7, ny=5, seed=0):
    """A jittered triangulated grid: positions [N, 3] float32 and triangles [F, 3] int64."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64), indexing="xy")
    pos = np.stack([x.ravel(), y.ravel(), rng.uniform(-0.2, 0.2, nx * ny)], 1)
    pos[:, :2] += rng.uniform(-0.1, 0.1, (nx * ny, 2))
    pos = pos.astype(np.float32)
    tris = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i, (j + 1) * nx + i + 1
            tris += [(a, b, d), (a, d, c)]
    return pos, np.asarray(tris, dtype=np.int64)


def edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def triangle_edges(tris, n):
    return edge_set(mesh_edges(torch.from_numpy(tris), n))


# ------------------------------------------------------------------------------ writers
def write_obj(path, pos, tris):
    with open(path, "w") as f:
        f.write("# test\n")
        for p in pos:
            f.write(f"v {p[0]:.9g} {p[1]:.9g} {p[2]:.9g}\n")
        for k in range(len(pos) + 3):  # more UVs than vertices: the case meshio cannot read
            f.write(f"vt {k / (len(pos) + 3):.4f} 0.5\n")
        for k, t in enumerate(tris):
            f.write("f " + " ".join(f"{v + 1}/{(k % len(pos)) + 1}" for v in t) + "\n")


def write_off(path, pos, tris):
    with open(path, "w") as f:
        f.write("OFF\n# comment\n")
        f.write(f"{len(pos)}  {len(tris)}  0\n")
        for p in pos:
            f.write(f"{p[0]:.9g}  {p[1]:.9g} {p[2]:.9g}\n")
        for t in tris:
            f.write(f"3 {t[0]} {t[1]} {t[2]}\n")


def write_ply(path, pos, tris, fmt="ascii", strips=None, face_colour=False):
    """PLY with faces (optionally followed by uchar colour properties) or a tristrips element."""
    endian = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}[fmt]
    header = ["ply", f"format {fmt} 1.0", "comment test", f"element vertex {len(pos)}",
              "property float x", "property float y", "property float z", "property uchar red"]
    if strips is None:
        header += [f"element face {len(tris)}", "property list uchar int vertex_indices"]
        if face_colour:
            header += ["property uchar red", "property uchar green"]
    else:
        header += [f"element tristrips {len(strips)}", "property list int int vertex_indices"]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        if fmt == "ascii":
            for p in pos:
                f.write(f"{p[0]:.9g} {p[1]:.9g} {p[2]:.9g} 7\n".encode())
            if strips is None:
                for t in tris:
                    f.write((f"3 {t[0]} {t[1]} {t[2]}" + (" 1 2" if face_colour else "") + "\n").encode())
            else:
                for s in strips:
                    f.write((f"{len(s)} " + " ".join(map(str, s)) + "\n").encode())
        else:
            for p in pos:
                f.write(struct.pack(endian + "fffB", *map(float, p), 7))
            if strips is None:
                for t in tris:
                    f.write(struct.pack(endian + "Biii", 3, *map(int, t)))
                    if face_colour:
                        f.write(struct.pack("BB", 1, 2))
            else:
                for s in strips:
                    f.write(struct.pack(endian + "i" + "i" * len(s), len(s), *map(int, s)))


def grid_strips(nx, ny):
    """One triangle strip per grid row, restarted with -1 halfway to exercise restarts."""
    strips = []
    for j in range(ny - 1):
        s = []
        for i in range(nx):
            s += [(j + 1) * nx + i, j * nx + i]
            if i == nx // 2:
                s += [-1, (j + 1) * nx + i, j * nx + i]
        strips.append(s)
    return strips


def write_su2_two_zones(path, pos, tris):
    """The mesh split into two zones (each with its own local numbering) plus a marker section."""
    half = len(tris) // 2
    zones = [tris[:half], tris[half:]]
    with open(path, "w") as f:
        f.write("NZONE= 2\n")
        for z, zt in enumerate(zones):
            used = np.unique(zt)
            local = {int(g): k for k, g in enumerate(used)}
            f.write(f"IZONE= {z + 1}\n% zone {z + 1}\nNDIME= 3\nNELEM= {len(zt)}\n")
            for k, t in enumerate(zt):
                f.write(f"5 {local[int(t[0])]} {local[int(t[1])]} {local[int(t[2])]} {k}\n")
            f.write(f"NPOIN= {len(used)}\n")
            for k, g in enumerate(used):
                p = pos[g]
                f.write(f"{p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {k}\n")
            f.write("NMARK= 1\nMARKER_TAG= wall\nMARKER_ELEMS= 1\n3 0 1\n")
    # zone z's node k is global node used_z[k]; the reader numbers zone 2 after zone 1
    return np.concatenate([np.unique(zt) for zt in zones])


def write_every_format(directory, pos, tris, nx=7):
    """One file per reader path for a ``grid_mesh(nx, ...)``; returns {file name: node renumbering or None}."""
    n = len(pos)
    written = {}
    write_obj(directory / "mesh.obj", pos, tris)
    write_off(directory / "mesh.off", pos, tris)
    write_ply(directory / "ascii.ply", pos, tris, "ascii")
    write_ply(directory / "binary_le.ply", pos, tris, "binary_little_endian", face_colour=True)
    write_ply(directory / "binary_be.ply", pos, tris, "binary_big_endian")
    ny = n // nx
    write_ply(directory / "strips.ply", pos, tris, "binary_little_endian", strips=grid_strips(nx, ny))
    write_ply(directory / "strips_ascii.ply", pos, tris, "ascii", strips=grid_strips(nx, ny))
    mesh = meshio.Mesh(pos.astype(np.float64), [("triangle", tris)])
    meshio.write(directory / "ascii.stl", mesh, file_format="stl", binary=False)
    meshio.write(directory / "binary.stl", mesh, file_format="stl", binary=True)
    meshio.write(directory / "mesh.msh", mesh, file_format="gmsh")
    meshio.write(directory / "mesh.vtk", mesh)
    meshio.write(directory / "mesh.vtu", mesh)
    np.savez(directory / "mesh.npz", pos=pos, faces=tris.astype(np.int32))
    torch.save({"pos": torch.from_numpy(pos), "face": torch.from_numpy(tris).t().contiguous()}, directory / "mesh.pt")
    global_of = write_su2_two_zones(directory / "zones.su2", pos, tris)
    for f in directory.iterdir():
        written[f.name] = global_of if f.suffix == ".su2" else None
    return written


# ------------------------------------------------------------------------------ tests
def same_graph(mesh: Mesh, pos, tris, node_of=None):
    """The read mesh has the expected positions and edges, up to a renumbering ``node_of``."""
    n = len(pos)
    got = mesh_edges(mesh.edge_cells(), mesh.num_nodes)
    if node_of is None and mesh.num_nodes == n and np.allclose(mesh.pos.numpy(), pos, atol=1e-6):
        node_of = np.arange(n)
    if node_of is None:  # STL merges vertices in its own order: match them by position
        key = {tuple(np.round(p, 5)): k for k, p in enumerate(pos)}
        node_of = np.array([key[tuple(np.round(p, 5))] for p in mesh.pos.numpy().astype(np.float32)])
    assert mesh.num_nodes == len(node_of)  # SU2 zones keep their own copies of shared nodes
    np.testing.assert_allclose(mesh.pos.numpy(), pos[node_of], atol=1e-6)
    mapped = torch.from_numpy(node_of)[got]
    assert edge_set(mapped) == triangle_edges(tris, n)


def test_every_format_reads_the_same_graph(tmp_path):
    pos, tris = grid_mesh()
    written = write_every_format(tmp_path, pos, tris)
    assert {f.rsplit(".", 1)[1] for f in written} == {s[1:] for s in MESH_SUFFIXES}
    for name, node_of in written.items():
        mesh = read_mesh(tmp_path / name)
        assert mesh.pos.dtype == torch.float32
        assert mesh.pos.shape[1] == 3
        if name.startswith("strips"):
            assert set(mesh.cells) == {"triangle"}
        same_graph(mesh, pos, tris, node_of)


def test_strips_give_the_strip_triangles(tmp_path):
    pos = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    write_ply(tmp_path / "s.ply", pos, None, "ascii", strips=[[0, 1, 2, 3, -1, 3, 4, 5]])
    tris = read_mesh(tmp_path / "s.ply").cells["triangle"]
    # strip 0 1 2 3 -> (0,1,2), (1,3,2) [flipped]; restart; 3 4 5 -> (3,4,5)
    assert tris.tolist() == [[0, 1, 2], [1, 3, 2], [3, 4, 5]]


def test_mixed_polygons_and_point_cloud(tmp_path):
    pos = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    with open(tmp_path / "m.obj", "w") as f:
        f.write("".join(f"v {p[0]} {p[1]} {p[2]}\n" for p in pos))
        f.write("f 1 2 3\nf 3 4 5 6\nf -1 -2 -3\nl 1 4 6\n")
    mesh = read_mesh(tmp_path / "m.obj")
    assert mesh.cells["triangle"].tolist() == [[0, 1, 2], [5, 4, 3]]
    assert mesh.cells["quad"].tolist() == [[2, 3, 4, 5]]
    assert mesh.cells["line"].tolist() == [[0, 3], [3, 5]]
    np.savez(tmp_path / "cloud.npz", pos=pos)
    cloud = read_mesh(tmp_path / "cloud.npz")
    assert not cloud.has_connectivity and cloud.cells == {} and cloud.edge_index is None
    ei = np.array([[0, 1], [1, 2]])
    np.savez(tmp_path / "edges.npz", pos=pos, edge_index=ei)
    assert read_mesh(tmp_path / "edges.npz").edge_index.tolist() == ei.tolist()


def test_volume_cells_give_their_edges(tmp_path):
    pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1], [2, 0, 0]], float)
    hexa = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    tet = np.array([[1, 8, 2, 5]])
    meshio.write(tmp_path / "v.vtu", meshio.Mesh(pos, [("hexahedron", hexa), ("tetra", tet)]))
    mesh = read_mesh(tmp_path / "v.vtu")
    got = edge_set(mesh_edges(mesh.edge_cells(), mesh.num_nodes))
    hex_edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
    tet_edges = [(1, 8), (8, 2), (2, 1), (1, 5), (8, 5), (2, 5)]
    want = {e for a, b in hex_edges + tet_edges for e in ((a, b), (b, a))}
    assert got == want  # no face diagonals, every tetra edge


def test_real_meshes_match_their_documented_sizes(shared_meshes):
    expected = {"cfd/mesh_cht_3cyl.su2": (47824, 47302), "cad/cycloidal.ply": (21384, 43368),
                "cad/counter.unitsmm.STL": (41837, 83750), "scan/spot.obj": (2930, 5856),
                "cfd/mesh_RAE2822_turb.su2": (13937, 18042 + 4800)}
    for name, (nodes, cells) in expected.items():
        mesh = read_mesh(shared_meshes / name)
        assert (mesh.num_nodes, mesh.num_cells) == (nodes, cells), name


@pytest.mark.parametrize("name, content, reason", [
    ("bad.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n2\n", "announces 3 rows"),
    ("bad.off", b"OFF\n4 1 0\n0 0 0\n1 0 0\n", "announces 4 vertices"),
    ("bad.obj", b"# nothing here\n", "no vertices"),
    ("bad.su2", b"NDIME= 2\nNELEM= 1\n5 0 1 7 0\nNPOIN= 3\n0 0 0\n1 0 1\n0 1 2\n", "outside [0, 3)"),
    ("bad.stl", b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0\n", "cannot read"),
    ("bad.npz", b"PK\x03\x04 definitely not a zip", "not a readable .npz"),
    ("bad.pt", b"not a torch file", "not a torch.save file"),
    ("nan.obj", b"v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or inf"),
    ("range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "outside [0, 3)"),
    ("binary.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\n"
                   b"property float y\nproperty float z\nend_header\n\x00\x00", "truncated"),
    ("mesh.xyz", b"0 0 0\n", "unknown mesh format"),
])
def test_malformed_files_raise_value_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(reason)) as info:
        read_mesh(path)
    assert name in str(info.value)


def test_npz_without_pos_and_missing_file(tmp_path):
    np.savez(tmp_path / "x.npz", points=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no 'pos'"):
        read_mesh(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError):
        read_mesh(tmp_path / "missing.obj")


def test_find_mesh_files_recurses_and_filters(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.obj", "a/b/two.PLY", "a/b/notes.txt", "three.npz"):
        (tmp_path / name).write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in find_mesh_files([tmp_path / "a", tmp_path / "three.npz"])]
    assert found == ["a/b/two.PLY", "a/one.obj", "three.npz"]
    with pytest.raises(FileNotFoundError):
        find_mesh_files([tmp_path / "nope"])


def test_build_graph_recipes(tmp_path):
    from graphattn.graphs import knn_graph
    from graphattn.io import build_graph, parse_graph_spec

    pos, tris = grid_mesh()
    np.savez(tmp_path / "m.npz", pos=pos, faces=tris)
    np.savez(tmp_path / "c.npz", pos=pos)
    mesh, cloud = read_mesh(tmp_path / "m.npz"), read_mesh(tmp_path / "c.npz")
    ei, recipe = build_graph(mesh)
    assert recipe == "mesh" and edge_set(ei) == triangle_edges(tris, len(pos))
    ei, recipe = build_graph(cloud)
    assert recipe == "knn:16" and torch.equal(ei, knn_graph(cloud.pos, k=16))
    ei, recipe = build_graph(mesh, "knn:4")
    assert recipe == "knn:4" and ei.shape[1] == 4 * len(pos)
    ei, recipe = build_graph(mesh, "radius:1.5")
    assert recipe == "radius:1.5" and ei.shape[1] > 0
    with pytest.raises(ValueError, match="no cells or edges"):
        build_graph(cloud, "mesh")
    for bad in ("knn", "knn:0", "radius:-1", "delaunay", "mesh:3"):
        with pytest.raises(ValueError, match="graph must be"):
            parse_graph_spec(bad)
