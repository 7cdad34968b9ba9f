"""Runs a function on several local processes with the gloo backend (127.0.0.1 only), for tests.

Each process initialises torch.distributed, runs ``fn(rank, world_size, *args)`` and stores what it
returns (or its traceback) in ``<out_dir>/rank<r>.pt``. A watchdog kills the processes it started
if they outlive ``timeout_s`` (a collective that waits forever fails the test instead of hanging CI).
"""
from __future__ import annotations

import datetime
import os
import socket
import time
import traceback

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world_size, port, out_dir, fn, args):
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    result = {}
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(seconds=60))
        try:
            result = {"value": fn(rank, world_size, *args)}
        finally:
            dist.destroy_process_group()
    except Exception:
        result = {"error": traceback.format_exc()}
    tmp = os.path.join(out_dir, f".rank{rank}.pt.tmp")
    torch.save(result, tmp)
    os.replace(tmp, os.path.join(out_dir, f"rank{rank}.pt"))


def run_ranks(fn, world_size: int, out_dir: str, *args, timeout_s: float = 120.0) -> list:
    """``fn(rank, world_size, *args)`` on ``world_size`` gloo processes; returns each rank's value.

    Raises AssertionError with the rank's traceback if any rank failed, or if they timed out.
    """
    context = mp.start_processes(_entry, args=(world_size, free_port(), out_dir, fn, args),
                                 nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise AssertionError(f"distributed workers did not finish within {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
    results = [torch.load(os.path.join(out_dir, f"rank{rank}.pt"), weights_only=False)
               for rank in range(world_size)]
    # Show every failing rank: the first one to fail is often not rank 0 (the others then report a
    # closed connection).
    errors = [f"rank {rank} failed:\n{r['error']}" for rank, r in enumerate(results) if "error" in r]
    if errors:
        raise AssertionError("\n".join(errors))
    return [r["value"] for r in results]
