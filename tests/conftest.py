import os
import pathlib

import pytest
import torch

# Without CUDA the Triton backend runs through Triton's CPU interpreter; triton.jit reads this
# variable when the kernels are first imported, so it is set before any test module imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED_MESHES = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "meshes"


@pytest.fixture
def shared_meshes():
    if not SHARED_MESHES.is_dir():
        pytest.skip("../shared/meshes is not present")
    return SHARED_MESHES


def random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.int64)
    return torch.randint(0, num_nodes, (2, num_edges), generator=g)


def random_multigraph(n: int, density: float, seed: int, loops: bool) -> torch.Tensor:
    """Property-test graphs: int(n * density) random edges (isolated nodes, components and
    duplicates come by chance); with ``loops``, every self-loop and a third of the edges again."""
    m = int(n * density)
    ei = random_graph(n, m, seed)
    if loops and n:
        ei = torch.cat([ei, torch.arange(n).repeat(2, 1), ei[:, : m // 3]], 1)
    return ei


def batched_knn_clouds(sizes=(300, 45, 500), k: int = 8, seed: int = 6):
    """A PyG-style batch of k-NN graphs of random clouds: (pos, edge_index, batch vector)."""
    from graphattn.graphs import knn_graph

    g = torch.Generator().manual_seed(seed)
    parts, edges, offset = [], [], 0
    for size in sizes:
        p = torch.rand(size, 3, generator=g)
        parts.append(p)
        edges.append(knn_graph(p, k=k) + offset)
        offset += size
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(list(sizes)))
    return torch.cat(parts), torch.cat(edges, 1), batch


def brute_force_tiles(edge_index: torch.Tensor, perm: torch.Tensor, block_size: int, offset: int = 0) -> int:
    """Non-empty block_size² tiles of ``edge_index`` after ``x_new = x[perm]``, by a Python set: the
    oracle for every tile counter. ``offset`` shifts the block grid (a graph inside a batch)."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return len({((int(inverse[d]) + offset) // block_size, (int(inverse[s]) + offset) // block_size)
                for s, d in edge_index.t().tolist()})
