"""PyG layers backed by graphattn: :class:`GraphAttention`, a drop-in for ``TransformerConv``."""
from .graph_attention import GraphAttention
from .graph_cache import GraphCache, default_cache

__all__ = ["GraphAttention", "GraphCache", "default_cache"]
