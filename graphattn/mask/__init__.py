"""Block masks: which tiles of the (reordered) adjacency hold edges, and the bits inside them."""
from .block_mask import GraphBlockMask

__all__ = ["GraphBlockMask"]
