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
