"""The content-addressed cache: keys, checked reads, recomputation of damaged entries, concurrency."""
import multiprocessing
import warnings

import numpy as np
import pytest
import torch

import graphattn
from graphattn.cache import Cache, CacheWarning, compute
from graphattn.graphs import knn_graph
from graphattn.mask import GraphBlockMask


def cloud(n=700, seed=0):
    pos = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32))
    return pos, knn_graph(pos, k=8)


def test_entry_matches_a_fresh_computation(tmp_path):
    pos, ei = cloud()
    entry = Cache(tmp_path).get_or_compute(pos, ei, method="hilbert", block_size=32)
    assert not entry.from_cache and entry.path.is_file()
    want = graphattn.order(ei, pos, method="hilbert", block_size=32)
    assert torch.equal(entry.ordering.perm, want.perm)
    # the mask describes the reordered graph, edge for edge
    reordered = want.apply_to_edge_index(ei)
    got_edges = set(map(tuple, entry.mask.edge_index().t().tolist()))
    assert got_edges == set(map(tuple, reordered.t().tolist()))
    assert entry.stats["num_nodes"] == 700 and entry.stats["num_edges"] == ei.shape[1]
    assert entry.stats["tiles"] == entry.mask.num_tiles == graphattn.count_tiles(reordered, 700, block_size=32)

    again = Cache(tmp_path).get_or_compute(pos, ei, method="hilbert", block_size=32)
    assert again.from_cache and again.key == entry.key
    assert torch.equal(again.ordering.perm, entry.ordering.perm)
    assert torch.equal(again.ordering.inverse, entry.ordering.inverse)
    assert again.ordering.method == "hilbert" and again.ordering.tiles == entry.ordering.tiles
    for name in ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile"):
        assert torch.equal(getattr(again.mask, name), getattr(entry.mask, name)), name
    assert again.mask.fingerprint == entry.mask.fingerprint
    assert again.stats == entry.stats


def test_key_depends_on_content_and_every_parameter(tmp_path):
    cache = Cache(tmp_path)
    pos, ei = cloud()
    base = cache.key(pos, ei)
    # same graph by value: edge order, repeats and float64 coordinates do not matter
    shuffled = ei[:, torch.randperm(ei.shape[1])]
    assert cache.key(pos.double(), torch.cat([shuffled, ei[:, :5]], 1)) == base
    moved = pos.clone()
    moved[3, 0] += 1e-3
    variants = [cache.key(moved, ei), cache.key(pos, ei[:, 1:]), cache.key(pos, ei, method="rcm"),
                cache.key(pos, ei, block_size=32), cache.key(pos, ei, refine=True), cache.key(pos, ei, seed=1),
                cache.key(None, ei)]
    assert len(set(variants + [base])) == len(variants) + 1


def test_damaged_entries_are_recomputed_with_a_warning(tmp_path):
    cache = Cache(tmp_path)
    pos, ei = cloud()
    first = cache.get_or_compute(pos, ei, method="morton")
    raw = first.path.read_bytes()
    damages = {
        "flipped byte": raw[:len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0xFF]) + raw[len(raw) // 2 + 1:],
        "truncated": raw[: len(raw) // 3],
        "empty": b"",
    }
    for what, content in damages.items():
        first.path.write_bytes(content)
        with pytest.warns(CacheWarning, match="damaged cache entry"):
            entry = cache.get_or_compute(pos, ei, method="morton")
        assert not entry.from_cache, what
        assert torch.equal(entry.ordering.perm, first.ordering.perm)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.get_or_compute(pos, ei, method="morton").from_cache, what


def test_entry_of_another_key_is_refused(tmp_path):
    cache = Cache(tmp_path)
    pos, ei = cloud()
    a = cache.get_or_compute(pos, ei, method="morton")
    b_key = cache.key(pos, ei, method="hilbert")
    cache.path_of(b_key).parent.mkdir(parents=True, exist_ok=True)
    cache.path_of(b_key).write_bytes(a.path.read_bytes())  # a valid file under the wrong name
    with pytest.warns(CacheWarning, match="key"):
        assert cache.load(b_key) is None


def _compute_in_child(directory, seed, queue):
    pos, ei = cloud(n=3000)
    for _ in range(3):
        entry = Cache(directory).get_or_compute(pos, ei, method="hilbert", recompute=True)
    queue.put(entry.key)


def test_two_processes_writing_one_entry_leave_it_valid(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, as the command's workers
    queue = ctx.Queue()
    procs = [ctx.Process(target=_compute_in_child, args=(str(tmp_path), s, queue)) for s in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    keys = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(keys) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entry = Cache(tmp_path).load(keys.pop())
    assert entry is not None and entry.from_cache
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == []


def test_compute_without_cache_and_bad_arguments(tmp_path):
    pos, ei = cloud(n=200)
    ordering, mask, stats = compute(pos, ei, method="rcm", block_size=16)
    assert isinstance(mask, GraphBlockMask) and mask.block_shape == (16, 16)
    assert stats["tiles_per_row"] == pytest.approx(mask.num_tiles / mask.num_q_blocks)
    cache = Cache(tmp_path)
    with pytest.raises(ValueError, match="block_size"):
        cache.get_or_compute(pos, ei, block_size=48)
    with pytest.raises(TypeError, match="method"):
        cache.get_or_compute(pos, ei, method=3)
    with pytest.raises(ValueError, match="pos has 199 rows"):
        cache.key(pos[:-1], ei, num_nodes=200)
    with pytest.raises(ValueError, match="out of range"):
        cache.key(pos[:100], ei)
    with pytest.raises(ValueError, match="key must be"):
        cache.path_of("../../etc")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        Cache(tmp_path / "file")


def test_point_cloud_without_edges_caches_the_ordering_only(tmp_path):
    pos, _ = cloud(n=300)
    cache = Cache(tmp_path)
    entry = cache.get_or_compute(pos, None, method="hilbert")
    assert entry.mask is None and not entry.from_cache
    assert torch.equal(entry.ordering.perm, graphattn.order(None, pos, method="hilbert").perm)
    again = cache.get_or_compute(pos, None, method="hilbert")
    assert again.from_cache and again.mask is None and torch.equal(again.ordering.perm, entry.ordering.perm)
    with pytest.raises(ValueError, match="both None"):
        cache.key(None, None)


def test_the_transform_reuses_what_the_command_computed(tmp_path, capsys):
    """A PyG pre_transform with cache_dir finds the entries `graphattn precompute` wrote."""
    from torch_geometric.data import Data
    from torch_geometric.transforms import FaceToEdge

    from graphattn import cli
    from graphattn.transforms import BlockSparseOrder
    from test_io import grid_mesh

    pos, tris = grid_mesh(30, 20)
    np.savez(tmp_path / "mesh.npz", pos=pos, faces=tris)
    assert cli.main(["precompute", str(tmp_path / "mesh.npz"), "--out", str(tmp_path / "cache"), "--no-progress"]) == 0
    capsys.readouterr()
    (stored,) = list((tmp_path / "cache").rglob("entries/*/*.npz"))
    before = stored.stat().st_mtime_ns

    data = FaceToEdge()(Data(pos=torch.from_numpy(pos), face=torch.from_numpy(tris).t().contiguous()))
    transform = BlockSparseOrder(cache_dir=tmp_path / "cache")
    out = transform(data)
    assert list((tmp_path / "cache").rglob("entries/*/*.npz")) == [stored]  # no new entry
    assert stored.stat().st_mtime_ns == before
    cached = Cache(tmp_path / "cache").load(stored.stem)
    assert torch.equal(out.order_perm_index, cached.ordering.perm)
