"""GraphAttention models beyond one process (CPU, gloo, 2 processes, float64):

- graph parallel: a model converted with ``graph_parallel`` and called with a plan gives the
  single-process output, and its parameter gradients summed over the ranks equal the
  single-process gradients;
- data parallel: DistributedDataParallel with a DistributedSampler gives the single-process
  gradients of the same global batch.
"""
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from conftest import random_graph
from distributed_harness import run_ranks

WORLD = 2
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_ddp.py"


def load_example():
    """examples/train_ddp.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("train_ddp_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_small_mesh(path):
    """A closed triangle mesh of 150 points on a sphere (their convex hull), in the sample format."""
    from scipy.spatial import ConvexHull

    points = np.random.default_rng(0).normal(size=(150, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    np.savez(path, pos=points.astype(np.float32), faces=ConvexHull(points).simplices.astype(np.int32))


def example_args(tmp_dir):
    example = load_example()
    return example, example.parse_args(["--mesh", str(tmp_dir / "mesh.npz"), "--num-meshes", "4",
                                        "--cache-dir", str(tmp_dir / "cache"), "--hidden", "8", "--heads", "2",
                                        "--layers", "2", "--block-size", "16", "--batch-size", "2",
                                        "--method", "hilbert"])


def example_model(example, args):
    torch.manual_seed(args.seed)
    return example.NormalPredictor(args.hidden, args.heads, args.layers, args.block_size).double()


def as_double(dataset):
    return [(x.double(), edges, mask, target.double()) for x, edges, mask, target in dataset]


class TwoLayers(torch.nn.Module):
    """A model written for edge_index, unaware of graph parallelism."""

    def __init__(self):
        super().__init__()
        from graphattn.nn import GraphAttention

        self.first = GraphAttention(5, 4, heads=2)                          # concat heads, plain skip
        self.second = GraphAttention(8, 3, heads=3, concat=False, beta=True)  # mean of heads, gated skip

    def forward(self, x, edges):
        return self.second(self.first(x, edges).relu(), edges)


def make_model(seed=0):
    torch.manual_seed(seed)
    return TwoLayers().double()


def run_model(model, x, edges):
    return model(x, edges)


def graph_parallel_case():
    edges = random_graph(173, 1400, seed=21)
    g = torch.Generator().manual_seed(22)
    x = torch.randn(173, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(173, 3, generator=g, dtype=torch.float64)
    return edges, x, weight


def data_parallel_dataset():
    """Six graphs of different sizes, with features and per-node targets."""
    g = torch.Generator().manual_seed(31)
    graphs = []
    for i, n in enumerate((40, 57, 33, 61, 45, 38)):
        edges = random_graph(n, 6 * n, seed=40 + i)
        graphs.append((torch.randn(n, 5, generator=g, dtype=torch.float64), edges,
                       torch.randn(n, 3, generator=g, dtype=torch.float64)))
    return graphs


def graph_loss(model, graph):
    x, edges, target = graph
    return torch.nn.functional.mse_loss(run_model(model, x, edges), target)


# ------------------------------------------------------------------------- what each rank runs
def _worker(rank, world_size, tmp_dir):
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from graphattn.distributed import GraphParallelPlan, all_reduce_gradients, gather_nodes, graph_parallel

    results = {}
    # Graph parallel: one graph split over the ranks.
    edges, x, weight = graph_parallel_case()
    model = graph_parallel(make_model())
    plan = GraphParallelPlan.from_edge_index(edges, x.shape[0], rank=rank, world_size=world_size, block_size=16)
    out = run_model(model, plan.local_slice(x), plan)
    (out * plan.local_slice(weight)).sum().backward()
    all_reduce_gradients(model)  # each rank holds its nodes' share of every parameter's gradient
    grads = [p.grad.clone() for p in model.parameters()]
    results["graph_parallel"] = {"out": gather_nodes(out.detach(), plan), "grads": grads,
                                 "halo": plan.num_halo}

    # Data parallel: the global batch is the whole dataset, split by DistributedSampler.
    dataset = data_parallel_dataset()
    model = DistributedDataParallel(make_model())
    sampler = DistributedSampler(range(len(dataset)), num_replicas=world_size, rank=rank, shuffle=False)
    mine = list(sampler)
    loss = sum(graph_loss(model, dataset[i]) for i in mine) / len(mine)
    loss.backward()
    results["data_parallel"] = {"indices": mine, "grads": [p.grad.clone() for p in model.parameters()]}

    # The example's own pipeline: cached precompute on rank 0 first, DDP, gradient accumulation
    # under no_sync over the rank's share of a global batch of 4 graphs.
    example, args = example_args(tmp_dir)
    dataset, computed = example.make_dataset(args, rank)
    model = DistributedDataParallel(example_model(example, args))
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed)
    mine = list(sampler)
    example.train_step(model, as_double([dataset[i] for i in mine]), torch.optim.SGD(model.parameters(), lr=0.0),
                       torch.device("cpu"))
    results["example"] = {"indices": mine, "computed": computed,
                          "grads": [p.grad.clone() for p in model.parameters()]}
    return results


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory):
    tmp_dir = tmp_path_factory.mktemp("training")
    write_small_mesh(tmp_dir / "mesh.npz")
    return tmp_dir


@pytest.fixture(scope="module")
def runs(training_dir):
    return run_ranks(_worker, WORLD, str(training_dir), training_dir)


def test_graph_parallel_model_equals_one_process(runs):
    edges, x, weight = graph_parallel_case()
    model = make_model()
    out = run_model(model, x, edges)
    (out * weight).sum().backward()
    assert all(r["graph_parallel"]["halo"] > 0 for r in runs)
    for rank, r in enumerate(runs):
        got = r["graph_parallel"]
        torch.testing.assert_close(got["out"], out.detach(), rtol=1e-12, atol=1e-12, msg=f"output on rank {rank}")
        for (name, p), grad in zip(model.named_parameters(), got["grads"]):
            torch.testing.assert_close(grad, p.grad, rtol=1e-10, atol=1e-12, msg=f"grad of {name} on rank {rank}")


def test_data_parallel_gradients_equal_one_process_on_the_global_batch(runs):
    dataset = data_parallel_dataset()
    model = make_model()
    loss = sum(graph_loss(model, g) for g in dataset) / len(dataset)
    loss.backward()
    seen = sorted(i for r in runs for i in r["data_parallel"]["indices"])
    assert seen == list(range(len(dataset)))  # the sampler split the whole batch, nothing twice
    for rank, r in enumerate(runs):
        for (name, p), grad in zip(model.named_parameters(), r["data_parallel"]["grads"]):
            torch.testing.assert_close(grad, p.grad, rtol=1e-10, atol=1e-12, msg=f"grad of {name} on rank {rank}")


def test_example_precomputes_once_and_its_ddp_step_equals_one_process(runs, training_dir):
    assert runs[0]["example"]["computed"] == 4   # rank 0 ordered every mesh...
    assert runs[1]["example"]["computed"] == 0   # ...and rank 1 read them all from the cache
    global_batch = [i for r in runs for i in r["example"]["indices"]]
    assert sorted(global_batch) == [0, 1, 2, 3]
    example, args = example_args(training_dir)
    dataset, computed = example.make_dataset(args)
    assert computed == 0
    model = example_model(example, args)
    example.train_step(model, as_double([dataset[i] for i in global_batch]),
                       torch.optim.SGD(model.parameters(), lr=0.0), torch.device("cpu"))
    for rank, r in enumerate(runs):
        for (name, p), grad in zip(model.named_parameters(), r["example"]["grads"]):
            torch.testing.assert_close(grad, p.grad, rtol=1e-10, atol=1e-12, msg=f"grad of {name} on rank {rank}")


def test_graph_parallel_keeps_parameters_and_still_takes_edge_index():
    from graphattn.distributed import GraphParallelAttention, graph_parallel

    model = make_model()
    before = dict(model.named_parameters())
    keys = list(model.state_dict())
    edges, x, _ = graph_parallel_case()
    expected = model(x, edges)
    assert graph_parallel(model) is model
    assert isinstance(model.first, GraphParallelAttention) and isinstance(model.second, GraphParallelAttention)
    assert list(model.state_dict()) == keys
    assert all(p is before[name] for name, p in model.named_parameters())
    torch.testing.assert_close(model(x, edges), expected, rtol=0, atol=0)


@pytest.mark.parametrize("change,error,words", [
    ("pair", TypeError, "bipartite"),
    ("rows", ValueError, "num_local"),
    ("dropout", ValueError, "dropout"),
    ("weights", ValueError, "return_attention_weights"),
])
def test_graph_parallel_layer_refuses_what_it_cannot_compute(change, error, words):
    from graphattn.distributed import GraphParallelPlan, graph_parallel
    from graphattn.nn import GraphAttention

    edges, x, _ = graph_parallel_case()
    plan = GraphParallelPlan.from_edge_index(edges, x.shape[0], rank=0, world_size=2, block_size=16)
    layer = graph_parallel(GraphAttention(5, 4, heads=2, dropout=0.5 if change == "dropout" else 0.0).double())
    local = plan.local_slice(x)
    with pytest.raises(error, match=words):
        if change == "pair":
            layer((local, local), plan)
        elif change == "rows":
            layer(x, plan)
        elif change == "weights":
            layer(local, plan, return_attention_weights=True)
        else:
            layer.train()(local, plan)
