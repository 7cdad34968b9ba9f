"""numba's ``njit`` when numba is importable, else a pass-through (slow, but correct) fallback.

numba is a declared dependency; the fallback only keeps a bare source checkout importable.
"""
from __future__ import annotations

try:
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency; this keeps `import` working without it
    def njit(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda fn: fn

    prange = range
