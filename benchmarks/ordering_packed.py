"""Packed tiles (what the GPU kernel walks) under each ordering, and what objective="packed" buys.

``graph_attention`` gathers each 64-node block's distinct neighbours into packed tiles of 32
(``graphattn.count_packed_tiles``), so its time follows the distinct neighbours per block, not the
aligned 64×64 tiles that ``order(method="auto")`` minimises by default. For the inputs of
benchmarks/ordering.py (same cache) this prints the packed tiles per block row (forward side plus
backward side) of the main methods, of auto's default choice (objective "tiles") and of
``objective="packed"``, with the seconds each ``order`` call took and the ratio of the two autos.

    python benchmarks/ordering_packed.py                 # meshes, 1e5 and 1e6 clouds (~5 min, 2 cores)
    python benchmarks/ordering_packed.py --sizes 100000  # skip the 1e6 clouds
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import torch

import graphattn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ordering import CLOUDS, inputs  # noqa: E402  (the same inputs and graph cache)

METHODS = ["morton", "hilbert", "kd", "rcm", "bands", "multilevel"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--clouds", nargs="*", default=list(CLOUDS), choices=list(CLOUDS))
    parser.add_argument("--no-meshes", action="store_true")
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("/tmp/graphattn-ordering-bench"))
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"# {time.strftime('%Y-%m-%d')} · torch {torch.__version__}; cells: packed tiles per 64-row block "
          "(count_packed_tiles / ceil(N / 64)) and the seconds of the order call")
    warm = torch.rand(300, 3)
    for objective in ("tiles", "packed"):
        graphattn.order(graphattn.knn_graph(warm, k=8), warm, method="auto", objective=objective)
    header = ["input", "graph", "N"] + METHODS + ["auto (tiles)", "auto (packed)", "packed / tiles", "chose"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ratios = []
    for label, recipe, pos, ei in inputs(args.cache, args.sizes, args.clouds, not args.no_meshes):
        n = pos.shape[0]
        rows = -(-n // 64)
        cells, counts = [], {}
        for name in METHODS + ["auto", "auto (packed)"]:
            objective = "packed" if name == "auto (packed)" else "tiles"
            start = time.perf_counter()
            o = graphattn.order(ei, pos, method=name.split()[0], objective=objective)
            seconds = time.perf_counter() - start
            counts[name] = o.packed_tiles if objective == "packed" else graphattn.count_packed_tiles(ei, n, perm=o.perm)
            cells.append(f"{counts[name] / rows:.2f} ({seconds:.2f}s)")
        ratio = counts["auto (packed)"] / counts["auto"]
        ratios.append(ratio)
        print("| " + " | ".join([label, recipe, f"{n:,}"] + cells + [f"{ratio:.3f}", o.method]) + " |", flush=True)
    if not ratios:
        return
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"# packed tiles of objective='packed' / of auto's default choice: geometric mean {geo:.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} inputs")


if __name__ == "__main__":
    main()
