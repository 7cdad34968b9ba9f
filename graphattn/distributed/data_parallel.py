"""Data parallel helpers: precompute once on rank 0, then let every other rank read the cache."""
from __future__ import annotations


def rank_zero_first(fn, *args, group=None, **kwargs):
    """Runs ``fn(*args, **kwargs)`` on rank 0, waits for it, then runs it on the other ranks.

    With ``fn`` a cached precompute (it returns a cached result when there is one and computes and
    stores it otherwise, e.g. through :mod:`graphattn.cache`), the work happens once, on rank 0, and
    the other ranks load what rank 0 stored, instead of every rank computing the same orderings and
    masks at the same time. Without an initialised process group it just calls ``fn``. Returns
    ``fn``'s result on every rank. If ``fn`` fails on rank 0, rank 0 re-raises its error and the
    other ranks raise RuntimeError instead of waiting forever.
    """
    import torch.distributed as dist

    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not (dist.is_available() and dist.is_initialized()):
        return fn(*args, **kwargs)
    first = 0 if group is None else dist.get_global_rank(group, 0)
    result, error = None, None
    if dist.get_rank(group) == 0:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # re-raised below, after the other ranks have been told
            error = exc
    # Doubles as the barrier: the other ranks wait here until rank 0 has finished.
    status = [None if error is None else f"{type(error).__name__}: {error}"]
    dist.broadcast_object_list(status, src=first, group=group)
    if error is not None:
        raise error
    if status[0] is not None:
        raise RuntimeError(f"rank 0 failed in {getattr(fn, '__name__', fn)!r}: {status[0]}")
    if dist.get_rank(group) != 0:
        result = fn(*args, **kwargs)
    return result
