import numpy as np
import pytest
import torch

from graphattn.graphs import knn_graph, mesh_edges, radius_graph


def test_knn_each_node_has_k_in_edges_and_they_are_nearest():
    pos = torch.rand(200, 3, generator=torch.Generator().manual_seed(0))
    ei = knn_graph(pos, k=5)
    assert torch.equal(torch.bincount(ei[1], minlength=200), torch.full((200,), 5))
    assert not bool((ei[0] == ei[1]).any())
    d = torch.cdist(pos.double(), pos.double())
    d.fill_diagonal_(float("inf"))
    expected = d.topk(5, largest=False).indices.sort(1).values
    got = ei[0].view(200, 5).sort(1).values
    assert torch.equal(got, expected)


def test_knn_repeated_points_and_tiny():
    pos = torch.zeros(10, 3)
    ei = knn_graph(pos, k=3)
    assert torch.equal(torch.bincount(ei[1], minlength=10), torch.full((10,), 3))
    assert not bool((ei[0] == ei[1]).any())
    assert knn_graph(torch.zeros(1, 3), k=4).shape == (2, 0)
    assert knn_graph(torch.zeros(0, 2), k=4).shape == (2, 0)
    assert knn_graph(torch.rand(3, 2), k=8).shape == (2, 6)


def test_mesh_edges_triangles_and_quads():
    tri = torch.tensor([[0, 1, 2]])
    quad = np.array([[1, 2, 3, 4]])
    ei = mesh_edges([tri, quad], 5)
    pairs = set(map(tuple, ei.t().tolist()))
    und = {(0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (1, 4)}
    assert pairs == und | {(b, a) for a, b in und}
    with pytest.raises(ValueError, match="cells"):
        mesh_edges(np.array([[0, 9, 1]]), 5)


def test_radius_graph_symmetric():
    pos = torch.tensor([[0.0, 0], [0.5, 0], [2.0, 0]])
    ei = radius_graph(pos, 1.0)
    assert set(map(tuple, ei.t().tolist())) == {(0, 1), (1, 0)}


def test_bad_pos():
    with pytest.raises(ValueError, match="pos"):
        knn_graph(torch.tensor([[0.0, float("nan"), 1.0]]), k=2)
    with pytest.raises(TypeError, match="pos"):
        knn_graph(torch.zeros(4, 3, dtype=torch.long), k=2)
