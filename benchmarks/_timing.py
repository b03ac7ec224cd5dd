"""Side-by-side timing for the benchmarks: callables that take turns, here or in child processes.

A *timer* maps ``k`` to the ``(wall, cpu)`` seconds per call of ``k`` calls in a row:
:func:`local` times a callable in this process, :class:`Child` builds one in a fresh process
(its own allocator state and environment) and times it there. :func:`median_rounds` runs
timers in alternating turns so that the machine's load hits them alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

Timer = Callable[[int], tuple[float, float]]


def local(fn: Callable[[], Any]) -> Timer:
    """``fn`` timed ``k`` calls at a time in this process."""

    def timed(k: int) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(k):
            fn()
        return (time.perf_counter() - t0) / k, (time.process_time() - c0) / k

    return timed


def _serve(conn, factory: Callable[..., Callable[[], Any]], args: tuple, env: dict[str, str], threads: int) -> None:
    os.environ.update(env)
    torch.set_num_threads(threads)
    timed = local(factory(*args))
    while (k := conn.recv()) is not None:
        conn.send(timed(k))


class Child:
    """``factory(*args)`` (a module-level function returning the callable to time) built and
    timed in a spawned process with ``env`` added to its environment and this process's torch
    thread count. Call it with ``k``; :meth:`close` ends it."""

    def __init__(
        self, factory: Callable[..., Callable[[], Any]], *args: Any, env: dict[str, str] | None = None
    ) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(theirs, factory, args, env or {}, torch.get_num_threads()), daemon=True
        )
        self.process.start()

    def __call__(self, k: int) -> tuple[float, float]:
        self.conn.send(k)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def median_rounds(timers: dict[str, Timer], rounds: int, min_time: float = 0.25) -> dict[str, tuple[float, float]]:
    """``(wall, cpu)`` median seconds of one call of each timer over ``rounds`` rounds, taking
    turns (every other round in reverse order), after one warm-up call each. ``k`` calls make a
    round, chosen from the warm-up so that a round lasts at least ``min_time`` seconds (short
    steps are otherwise timed one by one, at the mercy of every scheduler tick), the same ``k``
    for all. ``cpu`` is the CPU time of the process that ran them (all its threads): on a machine
    shared with other jobs it moves less than the wall-clock time."""
    names = list(timers)
    k = max(max(1, round(min_time / max(timers[name](1)[0], 1e-6))) for name in names)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timers[name](k))
    return {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()}
