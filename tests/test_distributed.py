"""graphattn.distributed on the CPU: partition, plans, and 2-process gloo runs of graph-parallel
attention and data-parallel training, compared with one process in float64."""
import math

import pytest
import torch

from conftest import random_graph
from distributed_harness import run_ranks
from graphattn import GraphBlockMask
from graphattn.distributed import GraphParallelPlan, partition_nodes
from graphattn.ops import reference_attention

WORLD = 2
HEADS, KEY_DIM, VALUE_DIM = 2, 4, 4


# ---------------------------------------------------------------------------------------- graphs
def _one_way_graph():
    """Edges inside each half, plus edges from rank 0's nodes into rank 1's only: rank 0 has no halo."""
    g = torch.Generator().manual_seed(3)
    n, cut = 150, 64
    inside0 = torch.randint(0, cut, (2, 300), generator=g)
    inside1 = torch.randint(cut, n, (2, 500), generator=g)
    across = torch.stack([torch.randint(0, cut, (60,), generator=g), torch.randint(cut, n, (60,), generator=g)])
    return torch.cat([inside0, inside1, across], dim=1), n, (0, cut, n)


def _two_components():
    """Two components that land on different ranks: no halo at all."""
    g = torch.Generator().manual_seed(4)
    a = torch.randint(0, 32, (2, 200), generator=g)
    b = torch.randint(32, 77, (2, 200), generator=g)
    return torch.cat([a, b], dim=1), 77, (0, 32, 77)


def scenario(name):
    """(edge_index, num_nodes, block_size, boundaries or None) of each test graph."""
    if name == "random_odd":        # 203 nodes: not divisible by 2, nor by the block size
        return random_graph(203, 1500, seed=11), 203, 16, None
    if name == "random_sparse":     # many nodes without incoming edges (they must output 0)
        return random_graph(331, 120, seed=12), 331, 32, None
    if name == "knn_ordered":       # a k-NN graph in Morton-like (sorted) order, the real use case
        pos = torch.rand(400, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        pos = pos[torch.argsort(pos[:, 0])]
        from graphattn.graphs import knn_graph
        return knn_graph(pos, k=8), 400, 16, None
    if name == "one_way":
        edges, n, bounds = _one_way_graph()
        return edges, n, 16, bounds
    if name == "no_halo":
        edges, n, bounds = _two_components()
        return edges, n, 16, bounds
    if name == "empty_rank":        # fewer block rows than ranks: rank 1 owns nothing
        return random_graph(10, 40, seed=13), 10, 16, None
    raise KeyError(name)


SCENARIOS = ["random_odd", "random_sparse", "knn_ordered", "one_way", "no_halo", "empty_rank"]


def scenario_tensors(name, num_nodes):
    g = torch.Generator().manual_seed(100 + SCENARIOS.index(name))
    q = torch.randn(num_nodes, HEADS, KEY_DIM, generator=g, dtype=torch.float64)
    k = torch.randn(num_nodes, HEADS, KEY_DIM, generator=g, dtype=torch.float64)
    v = torch.randn(num_nodes, HEADS, VALUE_DIM, generator=g, dtype=torch.float64)
    weight = torch.randn(num_nodes, HEADS, VALUE_DIM, generator=g, dtype=torch.float64)
    return q, k, v, weight


def single_process(name):
    edges, n, _, _ = scenario(name)
    q, k, v, weight = scenario_tensors(name, n)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = reference_attention(q, k, v, edges, scale=0.7)
    (out * weight).sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


# ------------------------------------------------------------------------- what each rank runs
def _graph_parallel_worker(rank, world_size, names):
    import torch.distributed as dist

    from graphattn.distributed import (exchange_halo, gather_nodes, graph_parallel_attention,
                                       partition_edge_shards, redistribute_edges)

    results = {}
    for name in names:
        edges, n, block, bounds = scenario(name)
        plan = GraphParallelPlan.from_edge_index(edges, n, rank=rank, world_size=world_size,
                                                 block_size=block, boundaries=bounds)
        local_edges = edges[:, (edges[1] >= plan.start) & (edges[1] < plan.end)]
        plan_from_local = GraphParallelPlan.from_local_edges(local_edges, n, plan.boundaries, rank=rank,
                                                             world_size=world_size, block_size=block)
        q, k, v, weight = (plan.local_slice(t) for t in scenario_tensors(name, n))
        q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
        out = graph_parallel_attention(q, k, v, plan, scale=0.7)
        (out * weight).sum().backward()
        results[name] = {
            "boundaries": plan.boundaries,
            "num_halo": plan.num_halo, "num_send": plan.num_send,
            "halo_nodes": plan.halo_nodes, "send_index": plan.send_index,
            "local_plan_halo": plan_from_local.halo_nodes, "local_plan_send": plan_from_local.send_index,
            "local_plan_counts": (plan_from_local.send_counts, plan_from_local.recv_counts),
            "counts": (plan.send_counts, plan.recv_counts),
            "out": gather_nodes(out.detach(), plan),
            "dq": gather_nodes(q.grad, plan), "dk": gather_nodes(k.grad, plan), "dv": gather_nodes(v.grad, plan),
        }
    # Graphs no rank holds whole: random, overlapping edge shards.
    for name in names:
        edges, n, block, bounds = scenario(name)
        shard = edge_shard(edges, rank, world_size)
        got = {balance: partition_edge_shards(shard, n, block_size=block, balance=balance)
               for balance in ("tiles", "edges", "nodes")}
        use = bounds if bounds is not None else got["tiles"]
        got["incoming"] = redistribute_edges(shard, n, use, block_size=block)
        got["used_boundaries"] = use
        sharded_plan = GraphParallelPlan.from_local_edges(got["incoming"], n, use, rank=rank, world_size=world_size,
                                                          block_size=block)
        got["plan"] = (sharded_plan.halo_nodes, sharded_plan.send_index, sharded_plan.mask.fingerprint)
        got["whole_mask"] = GraphParallelPlan.from_edge_index(edges, n, rank=rank, world_size=world_size,
                                                              block_size=block, boundaries=use).mask.fingerprint
        results[name]["sharded"] = got

    # exchange_halo on its own, with two tensors of different row shapes travelling together.
    edges, n, block, bounds = scenario("random_odd")
    plan = GraphParallelPlan.from_edge_index(edges, n, rank=rank, world_size=world_size, block_size=block)
    # Ranks that disagree on the boundaries are told so, all of them, instead of exchanging wrong rows.
    disagreeing = list(plan.boundaries)
    disagreeing[1] = block * (rank + 1)
    try:
        GraphParallelPlan.from_local_edges(edges[:, (edges[1] >= disagreeing[rank]) & (edges[1] < disagreeing[rank + 1])],
                                           n, disagreeing, rank=rank, world_size=world_size, block_size=block)
        results["mismatch"] = None
    except ValueError as error:
        results["mismatch"] = str(error)
    first, second, weight_first, weight_second = exchange_tensors(n)
    local = [plan.local_slice(first).clone().requires_grad_(), plan.local_slice(second).clone().requires_grad_()]
    halo = exchange_halo(local, plan)
    ((halo[0] * weight_first[plan.halo_nodes]).sum() + (halo[1] * weight_second[plan.halo_nodes]).sum()).backward()
    results["exchange"] = {"halo": [h.detach() for h in halo], "halo_nodes": plan.halo_nodes,
                           "grads": [gather_nodes(t.grad, plan) for t in local], "is_list": isinstance(halo, list)}
    dist.barrier()
    return results


def edge_shard(edges, rank, world_size):
    """This rank's part of the edges: a random split in which a tenth of the edges sit on two ranks."""
    g = torch.Generator().manual_seed(77)
    home = torch.randint(0, world_size, (edges.shape[1],), generator=g)
    twice = torch.rand(edges.shape[1], generator=g) < 0.1
    mine = (home == rank) | (twice & ((home + 1) % world_size == rank))
    return edges[:, mine]


def exchange_tensors(num_nodes):
    g = torch.Generator().manual_seed(9)
    return (torch.randn(num_nodes, 3, generator=g, dtype=torch.float64),
            torch.randn(num_nodes, 2, 2, generator=g, dtype=torch.float64),
            torch.randn(num_nodes, 3, generator=g, dtype=torch.float64),
            torch.randn(num_nodes, 2, 2, generator=g, dtype=torch.float64))


@pytest.fixture(scope="module")
def graph_parallel_runs(tmp_path_factory):
    return run_ranks(_graph_parallel_worker, WORLD, str(tmp_path_factory.mktemp("gp")), SCENARIOS)


@pytest.fixture(scope="module")
def three_rank_runs(tmp_path_factory):
    """Three ranks: a middle rank sends rows to both neighbours, so rows go to several ranks."""
    return run_ranks(_graph_parallel_worker, 3, str(tmp_path_factory.mktemp("gp3")), ["random_odd"])


# --------------------------------------------------------------------------------- partition
def test_partition_is_block_aligned_and_covers_all_nodes():
    edges = random_graph(1000, 8000, seed=1)
    for world in (1, 2, 3, 5):
        bounds = partition_nodes(edges, 1000, world, block_size=64)
        assert len(bounds) == world + 1 and bounds[0] == 0 and bounds[-1] == 1000
        assert all(a <= b for a, b in zip(bounds, bounds[1:]))
        assert all(b % 64 == 0 for b in bounds[1:-1])


def test_partition_balances_tiles_not_nodes():
    # The first half of the nodes has a dense block of edges, the second half a sparse chain:
    # balancing by tiles must give the dense half fewer nodes.
    g = torch.Generator().manual_seed(2)
    dense = torch.randint(0, 512, (2, 20000), generator=g)
    chain = torch.arange(512, 1023)
    sparse = torch.stack([chain, chain + 1])
    edges = torch.cat([dense, sparse], dim=1)
    by_tiles = partition_nodes(edges, 1024, 2, block_size=32, balance="tiles")
    by_nodes = partition_nodes(edges, 1024, 2, block_size=32, balance="nodes")
    assert by_nodes == (0, 512, 1024)
    assert by_tiles[1] < 512
    mask = GraphBlockMask.from_edge_index(edges, 1024, block_size=32)
    tiles_per_row = (mask.row_ptr[1:] - mask.row_ptr[:-1]).double()
    cut = by_tiles[1] // 32
    first, second = float(tiles_per_row[:cut].sum()), float(tiles_per_row[cut:].sum())
    assert abs(first - second) <= float(tiles_per_row.max())  # within one block row of even


def test_partition_of_a_graph_smaller_than_the_ranks():
    bounds = partition_nodes(random_graph(10, 30), 10, 4, block_size=16)
    assert bounds[0] == 0 and bounds[-1] == 10 and len(bounds) == 5
    assert sum(b > a for a, b in zip(bounds, bounds[1:])) == 1


def test_partition_without_edges_balances_nodes():
    assert partition_nodes(torch.empty(2, 0, dtype=torch.long), 256, 2, block_size=64) == (0, 128, 256)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(world_size=0), ValueError, "world_size"),
    (dict(world_size=2.0), TypeError, "world_size"),
    (dict(world_size=2, block_size=48), ValueError, "block_size"),
    (dict(world_size=2, balance="area"), ValueError, "balance"),
])
def test_partition_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        partition_nodes(random_graph(100, 300), 100, **kwargs)


# ---------------------------------------------------------------------------------- plans
@pytest.mark.parametrize("name", SCENARIOS)
def test_plans_reproduce_the_graph_without_processes(name):
    """Each rank's local mask, with its halo rows fetched by index, gives the single-process rows."""
    edges, n, block, bounds = scenario(name)
    q, k, v, _ = scenario_tensors(name, n)
    expected = reference_attention(q, k, v, edges, scale=0.7)
    plans = [GraphParallelPlan.from_edge_index(edges, n, rank=r, world_size=WORLD, block_size=block,
                                               boundaries=bounds) for r in range(WORLD)]
    for plan in plans:
        assert plan.mask.shape == (plan.num_local, plan.num_local + plan.num_halo)
        assert plan.num_halo == sum(plan.recv_counts) and plan.recv_counts[plan.rank] == 0
        keys = torch.cat([plan.local_slice(k), k[plan.halo_nodes]])
        values = torch.cat([plan.local_slice(v), v[plan.halo_nodes]])
        out = reference_attention(plan.local_slice(q), keys, values, plan.mask, scale=0.7)
        torch.testing.assert_close(out, expected[plan.start:plan.end], rtol=1e-12, atol=1e-12)
    # What rank r sends to rank s is exactly what s receives from r, in the same order.
    for r, sender in enumerate(plans):
        offsets = [0] + torch.tensor(sender.send_counts).cumsum(0).tolist()
        for s, receiver in enumerate(plans):
            sent = sender.send_index[offsets[s]:offsets[s + 1]] + sender.start
            recv_offsets = [0] + torch.tensor(receiver.recv_counts).cumsum(0).tolist()
            received = receiver.halo_nodes[recv_offsets[r]:recv_offsets[r + 1]]
            assert torch.equal(sent, received)


def test_single_rank_plan_is_the_whole_graph():
    edges = random_graph(90, 400, seed=7)
    plan = GraphParallelPlan.from_edge_index(edges, 90, rank=0, world_size=1, block_size=16)
    whole = GraphBlockMask.from_edge_index(edges, 90, block_size=16)
    assert plan.num_halo == 0 and plan.num_send == 0 and plan.boundaries == (0, 90)
    assert plan.mask.fingerprint == whole.fingerprint
    assert torch.equal(plan.mask.col_idx, whole.col_idx) and torch.equal(plan.mask.bits, whole.bits)


def test_local_mask_keeps_the_global_tiles_of_local_keys():
    """Block-aligned boundaries: a rank's local-by-local tiles are the global mask's tiles."""
    edges, n, block, _ = scenario("knn_ordered")
    whole = GraphBlockMask.from_edge_index(edges, n, block_size=block)
    plan = GraphParallelPlan.from_edge_index(edges, n, rank=1, world_size=2, block_size=block)
    first_block = plan.start // block
    global_local = set()
    for row in range(first_block, whole.num_q_blocks):
        for col in whole.col_idx[whole.row_ptr[row]:whole.row_ptr[row + 1]].tolist():
            if col >= first_block:
                global_local.add((row - first_block, col - first_block))
    local_blocks = math.ceil(plan.num_local / block)
    mine = set()
    for row in range(plan.mask.num_q_blocks):
        for col in plan.mask.col_idx[plan.mask.row_ptr[row]:plan.mask.row_ptr[row + 1]].tolist():
            if col < local_blocks and (col + 1) * block <= plan.num_local:
                mine.add((row, col))
    assert {t for t in global_local if (t[1] + 1) * block <= plan.num_local} == mine


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(rank=2, world_size=2), ValueError, "rank"),
    (dict(rank=0, world_size=2, boundaries=(0, 50, 100)), ValueError, "multiples of block_size"),
    (dict(rank=0, world_size=2, boundaries=(0, 100)), ValueError, "world_size"),
    (dict(rank=0, world_size=2, boundaries=(0, 64, 90)), ValueError, "num_nodes"),
    (dict(rank="0", world_size=2), TypeError, "rank"),
])
def test_plan_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        GraphParallelPlan.from_edge_index(random_graph(100, 300), 100, block_size=16, **kwargs)


def test_graph_parallel_attention_checks_its_inputs():
    from graphattn.distributed import graph_parallel_attention

    plan = GraphParallelPlan.from_edge_index(random_graph(100, 300), 100, rank=0, world_size=2, block_size=16)
    q = torch.randn(plan.num_local + 1, 2, 4)
    with pytest.raises(ValueError, match="num_local"):
        graph_parallel_attention(q, q, q, plan)
    with pytest.raises(TypeError, match="GraphParallelPlan"):
        graph_parallel_attention(q, q, q, "plan")
    q = torch.randn(plan.num_local, 2, 4)
    with pytest.raises(RuntimeError, match="init_process_group"):
        graph_parallel_attention(q, q, q, plan)


# ---------------------------------------------------------------------- 2 processes, gloo
@pytest.mark.parametrize("name", SCENARIOS)
def test_graph_parallel_forward_and_backward_equal_one_process(graph_parallel_runs, name):
    expected = dict(zip(("out", "dq", "dk", "dv"), single_process(name)))
    for rank, results in enumerate(graph_parallel_runs):
        got = results[name]
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=1e-12, atol=1e-12, msg=f"{key} on rank {rank}")


@pytest.mark.parametrize("name", SCENARIOS)
def test_plans_from_local_edges_equal_plans_from_the_whole_graph(graph_parallel_runs, name):
    for results in graph_parallel_runs:
        got = results[name]
        assert torch.equal(got["local_plan_halo"], got["halo_nodes"])
        assert torch.equal(got["local_plan_send"], got["send_index"])
        assert got["local_plan_counts"] == got["counts"]


def test_halo_cases_are_covered(graph_parallel_runs):
    """The scenarios include what they claim: a rank without halo, no halo at all, an empty rank."""
    one_way = [r["one_way"] for r in graph_parallel_runs]
    assert one_way[0]["num_halo"] == 0 and one_way[0]["num_send"] > 0 and one_way[1]["num_halo"] > 0
    assert all(r["no_halo"]["num_halo"] == 0 and r["no_halo"]["num_send"] == 0 for r in graph_parallel_runs)
    bounds = graph_parallel_runs[0]["empty_rank"]["boundaries"]
    assert bounds == (0, 10, 10)
    assert graph_parallel_runs[0]["random_odd"]["boundaries"][-1] == 203


def test_exchange_halo_fetches_owner_rows_and_returns_their_gradients(graph_parallel_runs):
    edges, n, _, _ = scenario("random_odd")
    first, second, weight_first, weight_second = exchange_tensors(n)
    # Each node's gradient is its weight times the number of ranks that received it as halo.
    times_received = torch.zeros(n, dtype=torch.float64)
    for results in graph_parallel_runs:
        got = results["exchange"]
        assert got["is_list"]
        assert got["halo_nodes"].numel() > 0
        torch.testing.assert_close(got["halo"][0], first[got["halo_nodes"]], rtol=0, atol=0)
        torch.testing.assert_close(got["halo"][1], second[got["halo_nodes"]], rtol=0, atol=0)
        times_received[got["halo_nodes"]] += 1
    for results in graph_parallel_runs:
        grads = results["exchange"]["grads"]
        torch.testing.assert_close(grads[0], weight_first * times_received[:, None], rtol=0, atol=0)
        torch.testing.assert_close(grads[1], weight_second * times_received[:, None, None], rtol=0, atol=0)


def test_three_ranks_sum_the_gradients_of_rows_sent_twice(three_rank_runs):
    edges, n, _, _ = scenario("random_odd")
    first, second, weight_first, weight_second = exchange_tensors(n)
    times_received = torch.zeros(n, dtype=torch.float64)
    for results in three_rank_runs:
        halo_nodes = results["exchange"]["halo_nodes"]
        torch.testing.assert_close(results["exchange"]["halo"][0], first[halo_nodes], rtol=0, atol=0)
        times_received[halo_nodes] += 1
    assert int(times_received.max()) == 2  # some rows went to both other ranks
    expected = dict(zip(("out", "dq", "dk", "dv"), single_process("random_odd")))
    for rank, results in enumerate(three_rank_runs):
        grads = results["exchange"]["grads"]
        torch.testing.assert_close(grads[0], weight_first * times_received[:, None], rtol=0, atol=0)
        torch.testing.assert_close(grads[1], weight_second * times_received[:, None, None], rtol=0, atol=0)
        for key, value in expected.items():
            torch.testing.assert_close(results["random_odd"][key], value, rtol=1e-12, atol=1e-12,
                                       msg=f"{key} on rank {rank} of 3")


def test_plans_from_local_edges_refuse_boundaries_that_differ_across_ranks(graph_parallel_runs):
    for results in graph_parallel_runs:
        assert results["mismatch"] is not None and "differ across ranks" in results["mismatch"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_edge_shards_give_the_whole_graph_partition_and_incoming_edges(graph_parallel_runs, name):
    edges, n, block, _ = scenario(name)
    for rank, results in enumerate(graph_parallel_runs):
        got = results[name]["sharded"]
        for balance in ("tiles", "edges", "nodes"):
            assert got[balance] == partition_nodes(edges, n, WORLD, block_size=block, balance=balance), balance
        start, end = got["used_boundaries"][rank], got["used_boundaries"][rank + 1]
        expected = edges[:, (edges[1] >= start) & (edges[1] < end)]
        as_set = lambda e: set(map(tuple, e.t().tolist()))  # noqa: E731
        assert as_set(got["incoming"]) == as_set(expected)
        # The plan built from the redistributed shards is the plan built from the whole graph.
        halo_nodes, send_index, mask_fingerprint = got["plan"]
        assert torch.equal(halo_nodes, results[name]["halo_nodes"])
        assert torch.equal(send_index, results[name]["send_index"])
        assert mask_fingerprint == got["whole_mask"]


def test_edge_shards_on_three_ranks(three_rank_runs):
    edges, n, block, _ = scenario("random_odd")
    for rank, results in enumerate(three_rank_runs):
        got = results["random_odd"]["sharded"]
        assert got["tiles"] == partition_nodes(edges, n, 3, block_size=block)
        start, end = got["tiles"][rank], got["tiles"][rank + 1]
        expected = edges[:, (edges[1] >= start) & (edges[1] < end)]
        # As sets: an edge held by two shards arrives twice (plans count it once).
        assert set(map(tuple, got["incoming"].t().tolist())) == set(map(tuple, expected.t().tolist()))


def test_benchmark_plan_mode_reports_the_halo(capsys):
    """benchmarks/distributed.py --mode plan (one process, no GPU) runs and prints the split."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "distributed.py"
    spec = importlib.util.spec_from_file_location("distributed_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--mode", "plan", "--nodes", "3000", "--k", "8"])
    printed = capsys.readouterr().out
    assert "| 0 | " in printed and "| 1 | " in printed
    assert "of the keys and values" in printed and "bytes per step" in printed
