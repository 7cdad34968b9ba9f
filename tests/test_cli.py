"""The `graphattn` command end to end, on generated files of every format the readers take."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import graphattn.io
from graphattn import cli
from graphattn.cache import Cache
from test_io import grid_mesh, write_every_format

NX, NY = 24, 20  # 480 nodes: several 64-node blocks, so orderings have something to do
TOTAL = 16  # 15 files from write_every_format and a point cloud


@pytest.fixture
def inputs(tmp_path):
    """A directory with one mesh per format (in a nested folder too) and a bare point cloud."""
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    pos, tris = grid_mesh(NX, NY)
    write_every_format(folder / "nested", pos, tris, nx=NX)
    np.savez(folder / "cloud.npz", pos=np.random.default_rng(3).normal(size=(300, 3)).astype(np.float32))
    return folder


def files_in(folder):
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def entries(cache_dir):
    return sorted(pathlib.Path(cache_dir).rglob("entries/*/*.npz"))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary_rows(out, files):
    """status by file, read from the summary table."""
    status = {}
    for line in out.splitlines():
        for f in files:
            if line.startswith(f + " ") or line == f:
                status[f] = line.split()[-1]
    return status


def test_precompute_every_format_then_served_from_cache(inputs, tmp_path, capsys, monkeypatch):
    cache_dir = tmp_path / "cache"
    files = files_in(inputs)
    assert len(files) == TOTAL
    code, out, err = run(capsys, "precompute", inputs, "--out", cache_dir, "--no-progress")
    assert code == 0, err
    status = summary_rows(out, files)
    assert set(status) == set(files)
    # The same grid in 13 files shares one entry (same positions and edges); the two STL files
    # number their merged vertices in their own way, the SU2 file splits shared nodes by zone,
    # and the cloud is its own graph.
    assert all(s in ("computed", "cached") for s in status.values())
    assert f"{TOTAL} of {TOTAL} inputs" in out and "0 failed" in out
    assert "knn:16" in out and "mesh" in out
    stored = entries(cache_dir)
    assert 3 <= len(stored) <= 6
    for path in stored:
        key = path.stem
        assert Cache(cache_dir).load(key) is not None

    # Second run: answered from the index without reading any mesh.
    def no_reading(path):
        raise AssertionError(f"read {path} although it is cached")

    monkeypatch.setattr(graphattn.io, "read_mesh", no_reading)
    code, out, err = run(capsys, "precompute", inputs, "--out", cache_dir, "--no-progress")
    assert code == 0, err
    assert set(summary_rows(out, files).values()) == {"cached"}
    assert f"0 computed, {TOTAL} cached, 0 failed" in out


def test_damaged_entry_is_recomputed_with_a_warning(inputs, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    assert run(capsys, "precompute", inputs / "cloud.npz", "--out", cache_dir, "--no-progress")[0] == 0
    (entry,) = entries(cache_dir)
    good = entry.read_bytes()
    entry.write_bytes(good[:1000] + b"\0" * 64 + good[1064:])
    code, out, err = run(capsys, "precompute", inputs / "cloud.npz", "--out", cache_dir, "--no-progress")
    assert code == 0
    assert "damaged cache entry" in err and "Traceback" not in err
    assert "1 computed, 0 cached" in out
    assert entry.read_bytes() != good[:1000] + b"\0" * 64 + good[1064:]
    code, out, err = run(capsys, "precompute", inputs / "cloud.npz", "--out", cache_dir, "--no-progress")
    assert "0 computed, 1 cached" in out and "damaged" not in err
    # A damaged index record is recomputed too.
    (record,) = (cache_dir / "v1" / "sources").glob("*.json")
    record.write_text("{not json")
    code, out, err = run(capsys, "precompute", inputs / "cloud.npz", "--out", cache_dir, "--no-progress")
    assert code == 0 and "damaged cache index" in err
    assert json.loads(record.read_text())["entry"] == entry.stem


def test_bad_files_are_reported_by_name_and_the_others_complete(inputs, tmp_path, capsys):
    bad = inputs / "broken.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 9\nproperty float x\nend_header\n1\n")
    empty = inputs / "empty.obj"
    empty.write_text("")
    cache_dir = tmp_path / "cache"
    code, out, err = run(capsys, "precompute", inputs, "--out", cache_dir, "--no-progress")
    assert code == 1
    assert f"FAILED {bad}: PLY element 'vertex' announces 9 rows" in err
    assert f"FAILED {empty}: no vertices" in err
    assert "Traceback" not in err + out
    status = summary_rows(out, files_in(inputs))
    assert status[str(bad)] == "FAILED" and status[str(empty)] == "FAILED"
    assert sum(s in ("computed", "cached") for s in status.values()) == TOTAL  # every good file

    # --strict stops at the first failure (files are taken in sorted order: broken.ply first).
    code, out, err = run(capsys, "precompute", inputs, "--out", tmp_path / "strict", "--no-progress", "--strict")
    assert code == 1
    assert f"FAILED {bad}" in err and f"FAILED {empty}" not in err
    assert "stopped at the first failure" in out


def test_parallel_and_concurrent_runs_leave_a_valid_cache(inputs, tmp_path, capsys):
    """Two commands on one cache at once (console script with 2 workers, and python -m graphattn)."""
    cache_dir = tmp_path / "cache"
    script = pathlib.Path(sys.executable).with_name("graphattn")
    first = [str(script)] if script.exists() else [sys.executable, "-m", "graphattn"]
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).parent))
    commands = [first + ["precompute", str(inputs), "--out", str(cache_dir), "--workers", "2", "--no-progress"],
                [sys.executable, "-m", "graphattn", "precompute", str(inputs), "--out", str(cache_dir), "--no-progress"]]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in commands]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert f"{TOTAL} of {TOTAL} inputs" in out and "0 failed" in out
        assert "Traceback" not in err
    assert not [p for p in cache_dir.rglob("*.tmp")]
    code, out, err = run(capsys, "precompute", inputs, "--out", cache_dir, "--no-progress")
    assert code == 0 and f"0 computed, {TOTAL} cached" in out and "damaged" not in err


def test_help_on_every_subcommand(capsys):
    for argv in (["--help"], ["precompute", "--help"], ["inspect", "--help"], ["demo", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
        assert "usage: graphattn" in capsys.readouterr().out


def test_usage_errors_exit_2_without_traceback(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["precompute", str(inputs), "--out", str(tmp_path / "c"), "--graph", "knn:zero"])
    assert info.value.code == 2 and "graph must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["precompute", str(inputs), "--out", str(tmp_path / "c"), "--block-size", "48"])
    assert info.value.code == 2
    code, out, err = run(capsys, "precompute", tmp_path / "missing", "--out", tmp_path / "c")
    assert code == 2 and "missing: no such file or directory" in err
    code, out, err = run(capsys, "precompute", inputs, "--out", tmp_path / "c", "--method", "bogus")
    assert code == 2 and "--method must be one of" in err
    code, out, err = run(capsys, "inspect", inputs / "cloud.npz", "--graph", "mesh")
    assert code == 2 and "no cells or edges" in err and "Traceback" not in err
    code, out, err = run(capsys, "precompute", inputs, "--out", tmp_path / "c", "--refine")
    assert code == 2 and "pass --objective tiles with it" in err


def test_precompute_orders_for_the_packed_kernel_by_default(inputs, tmp_path, capsys):
    # The default entry holds the order that minimises the kernel's packed tiles; --objective
    # tiles (what --refine needs) is a separate entry.
    cache_dir = tmp_path / "cache"
    code, out, err = run(capsys, "precompute", inputs / "cloud.npz", "--out", cache_dir, "--no-progress")
    assert code == 0, err
    (entry_path,) = entries(cache_dir)
    entry = Cache(cache_dir).load(entry_path.stem)
    assert entry.ordering.objective == "packed" and entry.stats["objective"] == "packed"
    assert entry.ordering.packed_tiles == min(entry.ordering.candidates.values())
    code, out, err = run(capsys, "precompute", inputs / "cloud.npz", "--out", cache_dir, "--no-progress",
                         "--objective", "tiles", "--refine")
    assert code == 0 and len(entries(cache_dir)) == 2


def test_inspect_prints_every_method_and_draws_the_png(inputs, tmp_path, capsys):
    png = tmp_path / "pattern.png"
    code, out, err = run(capsys, "inspect", inputs / "nested" / "mesh.obj", "--png", png)
    assert code == 0, err
    from graphattn.ordering import METHODS

    for method in METHODS:
        assert method in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 300


def test_inspect_real_mesh(shared_meshes, tmp_path, capsys):
    png = tmp_path / "bunny.png"
    code, out, err = run(capsys, "inspect", shared_meshes / "scan" / "bunny_8k.ply", "--method", "hilbert",
                         "--method", "rcm", "--png", png)
    assert code == 0, err
    assert "8,171 nodes" in out and png.is_file()


def test_demo_and_bench_on_small_inputs(tmp_path, capsys):
    pos, tris = grid_mesh(40, 30)
    np.savez(tmp_path / "small.npz", pos=pos, faces=tris)
    code, out, err = run(capsys, "demo", "--mesh", tmp_path / "small.npz", "--out", tmp_path / "demo")
    assert code == 0, err
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["agree"] and summary["nodes"] == 1200
    assert summary["tiles_per_row_after"] <= summary["tiles_per_row_before"]
    assert (tmp_path / "demo" / "tile_pattern.png").stat().st_size > 10_000
    assert "attention paths agree with PyG: yes" in out
    code, out, err = run(capsys, "bench", "--nodes", "2000", "--repeats", "1")
    assert code == 0, err
    assert "PyG edge-list attention" in out and "TransformerConv" in out


def _crash_on_b(task):
    """A task function for run_in_workers: kills its own process on task 'b', as a native crash would."""
    if task[0] == "b":
        os._exit(3)
    return {"file": task[0], "status": "computed", "seconds": 0.0}


def test_a_worker_crash_costs_one_input_not_the_run():
    tasks = [(name,) for name in "abcdefg"]
    rows = []
    stopped = cli.run_in_workers(tasks, 2, lambda row: rows.append(row) and False, function=_crash_on_b)
    assert not stopped
    status = {r["file"]: r["status"] for r in rows}
    assert sorted(status) == list("abcdefg")
    assert status.pop("b") == "failed" and set(status.values()) == {"computed"}
    assert "worker process died" in next(r["error"] for r in rows if r["file"] == "b")
    # --strict: the crash stops the run
    rows.clear()
    assert cli.run_in_workers(tasks, 2, lambda row: rows.append(row) or row["status"] == "failed",
                              function=_crash_on_b)
    assert rows[-1]["file"] == "b" and rows[-1]["status"] == "failed"
