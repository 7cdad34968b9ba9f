"""graphattn: fast attention on irregular meshes and point clouds.

The pipeline runs one way: geometry → graph → ordering → block mask → kernel → layer.
Importing graphattn is light; submodules load on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "order": "graphattn.ordering",
    "Ordering": "graphattn.ordering",
    "count_tiles": "graphattn.ordering",
    "count_packed_tiles": "graphattn.ordering",
    "tile_floor": "graphattn.ordering",
    "TileFloor": "graphattn.ordering",
    "GraphBlockMask": "graphattn.mask",
    "graph_attention": "graphattn.ops",
    "reference_attention": "graphattn.ops",
    "knn_graph": "graphattn.graphs",
    "radius_graph": "graphattn.graphs",
    "mesh_edges": "graphattn.graphs",
    "GraphAttention": "graphattn.nn",
    "BlockSparseOrder": "graphattn.transforms",
}
_SUBMODULES = {"ordering", "mask", "masks", "ops", "nn", "transforms", "graphs", "io", "cache", "cli",
               "distributed"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"graphattn.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'graphattn' has no attribute {name!r}")


def __dir__():
    return __all__
