"""The ``graphattn`` command (also ``python -m graphattn``).

Subcommands:

- ``precompute INPUT... --out DIR``: graph, ordering, block mask and statistics of every mesh or
  point cloud into a content-addressed cache (graphattn.cache), with a progress bar, parallel
  workers, resumption (cached inputs are skipped) and a summary table. A bad input is reported by
  name and the others still run; the exit status is 1 when any input failed.
- ``inspect FILE``: every ordering's tiles and time on that file, and a PNG of the tile pattern
  before and after ordering.
- ``demo``: the whole pipeline on the bundled sample mesh (see graphattn.demo).
- ``bench``: a quick side-by-side timing of the attention paths on this machine.

Exit status: 0 on success, 1 when an input failed, 2 for a usage error (argparse's convention).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import warnings

GRAPH_HELP = ("graph of each input: 'auto' (mesh edges when the file has cells or edges, else "
              "knn:16), 'mesh', 'knn:K' or 'radius:R' (default: auto)")


def _methods() -> tuple[str, ...]:
    from .ordering import METHODS

    return tuple(METHODS)


def _graph_spec(text: str) -> str:
    from .io import parse_graph_spec

    try:
        parse_graph_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _block_size(text: str) -> int:
    from ._checks import check_block_size

    try:
        return check_block_size(int(text), "--block-size")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphattn`` command (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="graphattn",
        description="Block-sparse attention on meshes and point clouds: precompute and cache "
                    "orderings and block masks, inspect a mesh, run the demo or a benchmark.")
    parser.add_argument("--version", action="version", version=f"graphattn {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("precompute", help="order and mask every input into a cache directory",
                       description="Reads each mesh or point cloud, builds its graph, orders it, builds the "
                                   "block mask of the reordered graph and stores all of it in a "
                                   "content-addressed cache. Inputs already in the cache are skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="mesh files or directories (searched recursively for .obj .ply .off .stl .su2 "
                        ".msh .vtk .vtu .npz .pt)")
    p.add_argument("--out", required=True, metavar="DIR", help="cache directory (created if missing)")
    p.add_argument("--graph", default="auto", type=_graph_spec, help=GRAPH_HELP)
    p.add_argument("--method", default="auto", help="ordering method (default: auto, the best of several)")
    p.add_argument("--block-size", default=64, type=_block_size, help="tile size B, a power of two in [16, 256] (default: 64)")
    p.add_argument("--refine", action="store_true", help="run the tile-count local search after ordering")
    p.add_argument("--objective", default="packed", choices=("tiles", "packed"),
                   help="what --method auto minimises: the packed tiles the GPU kernel walks (default, "
                        "as BlockSparseOrder) or B×B tiles (graphattn.order's default; needed by --refine)")
    p.add_argument("--workers", default=1, type=_positive_int, help="parallel worker processes (default: 1)")
    p.add_argument("--strict", action="store_true", help="stop at the first input that fails")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_precompute)

    p = sub.add_parser("inspect", help="compare orderings on one file and draw its tile pattern",
                       description="Builds the graph of FILE, runs every ordering method (or those given), "
                                   "prints tiles per block row and time, and draws the tile pattern "
                                   "before and after the best ordering.")
    p.add_argument("file", metavar="FILE", help="a mesh or point-cloud file")
    p.add_argument("--method", action="append", metavar="METHOD",
                   help="ordering method to try (repeatable; default: every method)")
    p.add_argument("--graph", default="auto", type=_graph_spec, help=GRAPH_HELP)
    p.add_argument("--block-size", default=64, type=_block_size, help="tile size B (default: 64)")
    p.add_argument("--png", metavar="OUT.png", help="write the before/after tile picture here")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("demo", help="the whole pipeline on a bundled sample mesh",
                       description="Sample mesh -> graph -> orderings compared -> block mask -> attention "
                                   "(Triton on CUDA, the reference on the CPU) checked against PyG's "
                                   "TransformerConv -> a summary and a PNG.")
    p.add_argument("--mesh", metavar="FILE", help="use this mesh instead of the bundled bumpy sphere")
    p.add_argument("--out", default="graphattn-demo", metavar="DIR", help="output directory (default: ./graphattn-demo)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("bench", help="quick side-by-side timing of the attention paths",
                       description="Times reference attention, graph_attention, PyG edge-list attention and "
                                   "TransformerConv on a k-NN graph of random surface points.")
    p.add_argument("--nodes", type=_positive_int, default=None, help="points (default: 20,000 on CPU, 262,144 on CUDA)")
    p.add_argument("--k", type=_positive_int, default=16, help="neighbours per node (default: 16)")
    p.add_argument("--heads", type=_positive_int, default=4, help="attention heads (default: 4)")
    p.add_argument("--head-dim", type=_positive_int, default=32, help="head dim (default: 32)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed repeats, median reported (default: 5)")
    p.set_defaults(run=cmd_bench)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv=None) -> int:
    """Entry point of the ``graphattn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; what was finished is in the cache", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # Usage-level problems (a missing input, an unknown method) end the command without a
        # traceback; per-input failures in precompute are handled there and do not land here.
        print(f"graphattn {args.command}: error: {exc}", file=sys.stderr)
        return 2


# ======================================================================================= precompute
def _recipe(args) -> dict:
    recipe = {"graph": args.graph, "method": args.method, "block_size": args.block_size,
              "refine": bool(args.refine), "seed": 0}
    if args.objective != "tiles":  # source keys recorded before the objective existed stay valid
        recipe["objective"] = args.objective
    return recipe


def _init_worker() -> None:
    import torch

    # Each worker is one of N processes on the machine: one thread apiece avoids oversubscription.
    torch.set_num_threads(1)


def _short_reason(exc: BaseException, path: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    return text if isinstance(exc, (ValueError, FileNotFoundError)) else f"{type(exc).__name__}: {text}"


def process_file(path: str, cache_dir: str, recipe: dict, source_key: str | None = None,
                 recompute: bool = False) -> dict:
    """Reads one input, builds its graph, and gets its entry from the cache or computes it.

    Returns a summary row (a dict); a failure is returned as a row with ``status="failed"`` and
    the reason, never raised, so that one bad file does not stop the others. Runs in a worker.
    """
    from .cache import Cache, file_digest
    from .io import build_graph, read_mesh

    start = time.perf_counter()
    row = {"file": path, "status": "failed", "warnings": []}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cache = Cache(cache_dir)
            if source_key is None:
                source_key = cache.source_key(file_digest(path), recipe)
            mesh = read_mesh(path)
            edge_index, graph = build_graph(mesh, recipe["graph"])
            entry = cache.get_or_compute(mesh.pos, edge_index, method=recipe["method"],
                                         block_size=recipe["block_size"], refine=recipe["refine"],
                                         seed=recipe["seed"], recompute=recompute,
                                         objective=recipe.get("objective", "tiles"))
            cache.record_source(source_key, entry.key, path, graph)
        row["warnings"] = [str(w.message) for w in caught
                           if issubclass(w.category, UserWarning) and "damaged" in str(w.message)]
        row.update(_row_of(entry.stats, entry.key, graph))
        row["status"] = "cached" if entry.from_cache else "computed"
    except Exception as exc:  # a bad input must not stop the others: report it by name
        row["error"] = _short_reason(exc, path)
    row["seconds"] = time.perf_counter() - start
    return row


def _process_task(task) -> dict:
    return process_file(*task)


def _died(task) -> dict:
    return {"file": task[0], "status": "failed", "seconds": 0.0,
            "error": "the worker process died while processing it (a crash in native code, or killed for memory)"}


def _executor(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker, safe whatever threads this process started
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)


def run_in_workers(tasks, workers: int, report, function=_process_task) -> bool:
    """Runs ``function(task)`` for every task in ``workers`` processes, passing each row to ``report``.

    ``report(row)`` returning True stops the run (``--strict``); returns whether it stopped. At
    most ``workers`` tasks are in flight, so when a worker dies (a crash in native code, the
    out-of-memory killer) only those few are suspects: each is rerun alone in its own process,
    the one that kills its process again is reported as failed, and the rest continue in a fresh
    pool. A crash therefore costs one input, never the run.
    """
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = list(reversed(tasks))
    suspects: list = []
    while queue or suspects:
        for task in suspects:
            with _executor(1) as alone:
                try:
                    row = alone.submit(function, task).result()
                except BrokenProcessPool:
                    row = _died(task)
            if report(row):
                return True
        suspects = []
        if not queue:
            break
        with _executor(workers) as pool:
            running = {}
            while queue or running:
                while queue and len(running) < workers:
                    task = queue.pop()
                    running[pool.submit(function, task)] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    try:
                        row = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    del running[future]
                    if report(row):
                        pool.shutdown(wait=True, cancel_futures=True)
                        return True
                if broken:
                    suspects = list(running.values())
                    break
    return False


def _row_of(stats: dict, key: str, graph: str = "") -> dict:
    packed = stats.get("packed_tiles")  # entries ordered for the packed kernel (objective "packed")
    blocks = max(-(-stats["num_nodes"] // stats["block_size"]), 1)
    return {"nodes": stats["num_nodes"], "edges": stats["num_edges"], "method": stats["method"], "graph": graph,
            "tiles_per_row": stats["tiles_per_row"], "tiles_per_row_before": stats["tiles_per_row_before"],
            "fill": stats["fill"], "packed_per_row": None if packed is None else packed / blocks, "key": key}


def _quick_lookup(cache, path: str, recipe: dict):
    """The cached row of an unchanged input without reading it as a mesh, or (None, source key, damaged)."""
    from .cache import file_digest

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source_key = cache.source_key(file_digest(path), recipe)
        record = cache.lookup_source(source_key)
        stats = cache.verify(record["entry"]) if record else None
    damaged = [str(w.message) for w in caught if "damaged" in str(w.message)]
    if stats is None:
        return None, source_key, damaged
    row = {"file": path, "status": "cached", "warnings": damaged,
           **_row_of(stats, record["entry"], record.get("graph", ""))}
    row["seconds"] = time.perf_counter() - start
    return row, source_key, damaged


def cmd_precompute(args) -> int:
    """``graphattn precompute``: see the module docstring."""
    from tqdm import tqdm

    from .cache import Cache
    from .io import find_mesh_files

    if args.refine and args.objective == "packed":
        raise ValueError("--refine minimises B×B tiles: pass --objective tiles with it "
                         "(the default objective is packed)")
    files = [str(f) for f in find_mesh_files(args.inputs)]
    if not files:
        raise ValueError(f"no mesh files found in {' '.join(args.inputs)}")
    cache = Cache(args.out)
    recipe = _recipe(args)
    started = time.perf_counter()
    rows: list[dict] = []
    stopped = False
    progress = tqdm(total=len(files), unit="mesh", desc="precompute", disable=True if args.no_progress else None,
                    file=sys.stderr, dynamic_ncols=True)

    def report(row: dict) -> bool:
        """Records a finished input; returns True when the run must stop (--strict)."""
        rows.append(row)
        for message in row.get("warnings", []):
            progress.write(f"warning: {message}", file=sys.stderr)
        if row["status"] == "failed":
            progress.write(f"FAILED {row['file']}: {row['error']}", file=sys.stderr)
        progress.update(1)
        return row["status"] == "failed" and args.strict

    # Unchanged inputs are answered from the index in this process: hashing a file's bytes is far
    # cheaper than reading it as a mesh, so a fully cached rerun starts no worker at all.
    tasks = []
    for path in files:
        try:
            row, source_key, damaged = _quick_lookup(cache, path, recipe)
        except OSError as exc:
            if report({"file": path, "status": "failed", "error": _short_reason(exc, path), "seconds": 0.0}):
                stopped = True
                break
            continue
        if row is not None:
            report(row)
        else:
            for message in damaged:
                progress.write(f"warning: {message}", file=sys.stderr)
            tasks.append((path, str(cache.directory), recipe, source_key, bool(damaged)))

    if tasks and not stopped:
        # Checked here rather than first: importing the ordering engine imports torch, which a
        # fully cached run never needs (an unknown method cannot have cached entries).
        if args.method not in _methods():
            progress.close()
            raise ValueError(f"--method must be one of {', '.join(_methods())}, got {args.method!r}")
        workers = min(args.workers, len(tasks))
        if workers == 1:
            for task in tasks:
                if report(_process_task(task)):
                    stopped = True
                    break
        else:
            stopped = run_in_workers(tasks, workers, report)
    progress.close()

    _print_summary(rows, time.perf_counter() - started, cache, len(files), stopped)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _print_summary(rows, seconds, cache, total, stopped) -> None:
    ok = [r for r in rows if r["status"] != "failed"]
    header = ("file", "nodes", "edges", "graph", "method", "tiles/row before", "tiles/row", "fill", "packed/row",
              "time s", "status")
    table = []
    for r in sorted(rows, key=lambda r: r["file"]):
        if r["status"] == "failed":
            table.append((r["file"], "-", "-", "-", "-", "-", "-", "-", "-", f"{r['seconds']:.2f}", "FAILED"))
        else:
            packed = "-" if r.get("packed_per_row") is None else f"{r['packed_per_row']:.2f}"
            table.append((r["file"], f"{r['nodes']:,}", f"{r['edges']:,}", r["graph"], r["method"],
                          f"{r['tiles_per_row_before']:.2f}", f"{r['tiles_per_row']:.2f}", f"{r['fill']:.2%}",
                          packed, f"{r['seconds']:.2f}", r["status"]))
    print(format_table(header, table))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("computed", "cached", "failed")}
    line = (f"{len(rows)} of {total} inputs: {counts['computed']} computed, {counts['cached']} cached, "
            f"{counts['failed']} failed in {seconds:.1f} s; cache: {cache.directory}")
    if stopped:
        line += f" (stopped at the first failure, --strict; {total - len(rows)} not run)"
    print(line)
    if ok:
        print(f"total: {sum(r['nodes'] for r in ok):,} nodes, {sum(r['edges'] for r in ok):,} edges")


def format_table(header, rows) -> str:
    """A plain-text table: left-aligned first column, right-aligned numbers."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


# ======================================================================================= inspect
def cmd_inspect(args) -> int:
    """``graphattn inspect``: every ordering's tiles and time on one file, and the before/after PNG."""
    from .demo import compare_orderings, draw_tile_patterns
    from .io import build_graph, read_mesh
    from .mask import GraphBlockMask

    methods = args.method or [m for m in _methods() if m != "auto"] + ["auto"]
    unknown = [m for m in methods if m not in _methods()]
    if unknown:
        raise ValueError(f"--method must be among {', '.join(_methods())}, got {', '.join(unknown)}")
    mesh = read_mesh(args.file)
    edge_index, graph = build_graph(mesh, args.graph)
    n = mesh.num_nodes
    print(f"{args.file}: {n:,} nodes, {edge_index.shape[1]:,} edges ({graph} graph), block size {args.block_size}")
    results = compare_orderings(edge_index, mesh.pos, methods, args.block_size)
    print(format_table(*_ordering_table(results)))
    best = min((r for r in results if r.get("ordering") is not None and r["method"] != "identity"),
               key=lambda r: r["tiles"], default=None)
    if args.png:
        if best is None:
            raise ValueError("no ordering method succeeded, nothing to draw")
        before = GraphBlockMask.from_edge_index(edge_index, n, block_size=args.block_size)
        after = GraphBlockMask.from_edge_index(best["ordering"].apply_to_edge_index(edge_index), n,
                                              block_size=args.block_size)
        title = f"{pathlib.Path(args.file).name}: {n:,} nodes, {graph} graph"
        label = f"{best['chosen']} order (auto)" if best.get("chosen") else f"{best['method']} order"
        draw_tile_patterns({"file order": before, label: after}, args.png, title=title)
        print(f"wrote {args.png}")
    return 0


def _ordering_table(results):
    # "packed/row": the packed tiles the GPU kernel walks per block row (forward + backward sides),
    # what order(..., objective="packed") minimises; the aligned columns are what auto minimises.
    header = ("method", "tiles", "tiles/row", "vs file order", "fill", "packed/row", "time s")
    base = next((r["tiles"] for r in results if r["method"] == "identity" and r.get("tiles") is not None), None)
    rows = []
    for r in results:
        if r.get("error"):
            rows.append((r["method"], "-", "-", "-", "-", "-", f"skipped: {r['error']}"))
            continue
        ratio = f"{r['tiles'] / base:.2f}x" if base else "-"
        chosen = f" ({r['chosen']})" if r.get("chosen") else ""
        rows.append((r["method"] + chosen, f"{r['tiles']:,}", f"{r['tiles_per_row']:.2f}", ratio,
                     f"{r['fill']:.2%}", f"{r['packed_per_row']:.2f}", f"{r['seconds']:.3f}"))
    return header, rows


# ======================================================================================= demo, bench
def cmd_demo(args) -> int:
    """``graphattn demo``: see graphattn.demo.run_demo."""
    from .demo import run_demo

    return run_demo(mesh_path=args.mesh, out_dir=args.out, device=args.device)


def cmd_bench(args) -> int:
    """``graphattn bench``: see graphattn.demo.run_bench."""
    from .demo import run_bench

    return run_bench(nodes=args.nodes, k=args.k, heads=args.heads, head_dim=args.head_dim,
                     device=args.device, repeats=args.repeats)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
