"""The one way mtedge times things side by side: interleaved rounds, medians.

Calls take turns (A, B, A, B, ...) instead of running one after the other, so that drift of the
machine (frequency, other processes) hits every contestant alike; figures are medians.
"""

from __future__ import annotations

import time
from typing import Callable, Hashable, Mapping, Sequence, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)


def interleaved_ms(calls: Mapping[K, Callable[[], object]], runs: int, warmup: int = 0,
                   after_round: Callable[[], None] | None = None) -> dict[K, list[float]]:
    """Wall ms of every call in each of ``runs`` rounds, the calls taking turns; ``warmup`` rounds
    untimed; ``after_round()`` (a progress bar) outside the timed calls."""
    times: dict[K, list[float]] = {k: [] for k in calls}
    for i in range(warmup + runs):
        for k, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times[k].append((time.perf_counter() - t0) * 1e3)
        if after_round and i >= warmup:
            after_round()
    return times


def repeated_and_alternating_ms(call: Callable[[K], object], keys: Sequence[K], per_key: int, rounds: int,
                                on_repeated: Callable[[K, float], None] | None = None,
                                ) -> tuple[dict[K, list[float]], dict[K, list[float]]]:
    """Switching cost, measured in ``rounds`` interleaved rounds: each key called ``per_key`` times in a
    row (repeated), then the keys taking turns call by call (alternating). ``on_repeated(key, ms)``
    after each repeated call (e.g. to read the runtime's own timer for the same call)."""
    rep: dict[K, list[float]] = {k: [] for k in keys}
    alt: dict[K, list[float]] = {k: [] for k in keys}
    for _ in range(rounds):
        for k in keys:
            for _ in range(per_key):
                t0 = time.perf_counter()
                call(k)
                rep[k].append((time.perf_counter() - t0) * 1e3)
                if on_repeated:
                    on_repeated(k, rep[k][-1])
        for i in range(len(keys) * per_key):
            k = keys[i % len(keys)]
            t0 = time.perf_counter()
            call(k)
            alt[k].append((time.perf_counter() - t0) * 1e3)
    return rep, alt


def medians(times: Mapping[K, Sequence[float]]) -> dict[K, float]:
    return {k: float(np.median(v)) for k, v in times.items()}


def stats_ms(samples: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile and count of ms samples (the shape every bench report uses)."""
    a = np.asarray(samples)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "n": int(a.size)}
