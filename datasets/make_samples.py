"""Generates the sample meshes bundled with graphattn (run from the repository root).

    python datasets/make_samples.py

- ``bumpy_sphere.npz``: a closed triangle surface (an icosphere subdivided 6 times, 40,962
  vertices, 81,920 triangles) pushed in and out by a few smooth bumps, like a scanned shape.
- ``plate_with_holes.npz``: a 2D triangulated plate with three circular holes and points graded
  towards the holes, like a CFD/FEM mesh (about 12,000 vertices).

Each file holds ``pos`` (float32 [N, 3]; z = 0 for the plate) and ``faces`` (int32 [F, 3]).
The script is deterministic: running it again gives the same files.
"""
from __future__ import annotations

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    t = (1.0 + 5 ** 0.5) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = np.array(verts, dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    f = np.array(faces, dtype=np.int64)
    for _ in range(subdivisions):
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        edges.sort(axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = v[uniq[:, 0]] + v[uniq[:, 1]]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = inv.reshape(3, -1).T + len(v)  # midpoints of edges (01, 12, 20) per face
        v = np.concatenate([v, mid])
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc, ca = m[:, 0], m[:, 1], m[:, 2]
        f = np.concatenate([np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1),
                            np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1)])
    return v, f


def bumpy_sphere() -> tuple[np.ndarray, np.ndarray]:
    v, f = icosphere(6)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, 3))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    heights = rng.uniform(-0.25, 0.35, size=12)
    radius = 1.0 + sum(h * np.exp(-np.sum((v - c) ** 2, axis=1) / 0.08) for c, h in zip(centers, heights))
    return (v * radius[:, None]).astype(np.float32), f.astype(np.int32)


def plate_with_holes() -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(1)
    holes = np.array([[0.8, 0.5, 0.15], [1.6, 0.3, 0.1], [2.2, 0.65, 0.12]])  # x, y, radius
    points = [rng.uniform([0, 0], [3, 1], size=(9000, 2))]
    for x, y, r in holes:  # rings graded towards each hole
        for k in range(14):
            rr = r * (1.0 + 0.06 * k * (1 + 0.15 * k))
            n = int(2 * np.pi * rr / (0.012 * (1 + 0.2 * k)))
            ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + 0.3 * k
            points.append(np.stack([x + rr * np.cos(ang), y + rr * np.sin(ang)], 1))
    p = np.concatenate(points)
    p = p[(p[:, 0] >= 0) & (p[:, 0] <= 3) & (p[:, 1] >= 0) & (p[:, 1] <= 1)]
    inside = np.zeros(len(p), bool)
    for x, y, r in holes:
        inside |= np.hypot(p[:, 0] - x, p[:, 1] - y) < r * 0.999
    p = p[~inside]
    tri = Delaunay(p).simplices
    centroid = p[tri].mean(axis=1)
    in_hole = np.zeros(len(tri), bool)
    for x, y, r in holes:
        in_hole |= np.hypot(centroid[:, 0] - x, centroid[:, 1] - y) < r
    tri = tri[~in_hole]
    used = np.unique(tri)
    remap = np.full(len(p), -1)
    remap[used] = np.arange(len(used))
    pos = np.concatenate([p[used], np.zeros((len(used), 1))], axis=1)
    return pos.astype(np.float32), remap[tri].astype(np.int32)


def main() -> None:
    for name, make in (("bumpy_sphere", bumpy_sphere), ("plate_with_holes", plate_with_holes)):
        pos, faces = make()
        np.savez_compressed(HERE / f"{name}.npz", pos=pos, faces=faces)
        print(f"{name}.npz: {len(pos)} vertices, {len(faces)} triangles")


if __name__ == "__main__":
    main()
