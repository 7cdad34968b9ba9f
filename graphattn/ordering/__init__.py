"""Node orderings that pack each node's neighbours into few B×B tiles of the adjacency.

``order()`` is the entry point; ``Ordering`` holds the permutation; ``count_tiles`` measures an
order. One module per method family: curves (morton, hilbert), graph_orders (rcm, min_degree),
kd, partition, auto (with its ``polish`` candidate), refine (the C++ local search in csrc/); floor
bounds the tiles of any order.
"""
from .dispatch import METHODS, OBJECTIVES, order
from .floor import TileFloor, tile_floor
from .ordering import Ordering
from .tiles import count_packed_tiles, count_tiles

__all__ = ["METHODS", "OBJECTIVES", "Ordering", "TileFloor", "count_packed_tiles", "count_tiles", "order", "tile_floor"]
