"""Attention over block masks: the Triton kernels and the pure-PyTorch reference.

Modules load on first use so that ``import graphattn.ops`` stays cheap (no Triton import on CPU).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "reference_attention": "graphattn.ops.reference",
    "graph_attention": "graphattn.ops.attention",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphattn.ops' has no attribute {name!r}")
