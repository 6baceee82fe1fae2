"""The pruning oracle on Ray workers: a whole PAGCP run (joint search), serial vs 2 workers.

The joint search judges `points_per_probe` prefixes per probe (toolchain/prune/joint.py); with an
evaluator they go out as one `Evaluator.map`. Both runs use points_per_probe=2, so they probe the
same prefixes: the serial run (2 torch threads) judges the two one after the other, the parallel
run (2 Ray workers, 1 thread each) side by side. Reported: wall time of each run (Ray start-up
apart), the screening share of it (the part that is distributed; saliency and confirmations stay
in the driver), and whether the two pruned models are the same (channels and every step's drops).
"""

from __future__ import annotations

import dataclasses
import time

import torch


def oracle_batch(val_count: int = 512) -> dict:
    from scale import _weights

    from toolchain.prune.pagcp import PruneConfig, prune
    from toolchain.workers import RayEvaluator

    loaded, weights = _weights()
    model, recipe = loaded.module.eval(), loaded.recipe
    config = PruneConfig(keep_flops=0.4, round_to=4, val_count=val_count, batch_size=128, max_rounds=8,
                         points_per_probe=2, screen_count=val_count // 4, exactness_fractions=(),
                         relax_bounds=True)  # measures the oracle on workers at a goal, not the bounds
    torch.set_num_threads(2)
    serial = prune(model, recipe, config)
    t0 = time.perf_counter()
    ev = RayEvaluator(workers=2, threads=1)
    startup_s = time.perf_counter() - t0
    try:
        parallel = prune(model, recipe, dataclasses.replace(config, evaluator=ev))
    finally:
        ev.close()
    same_drops = [p.drops for p in serial.path] == [p.drops for p in parallel.path]
    return {"weights": weights, "val_images": val_count, "screen_images": config.screen_count,
            "candidates": serial.oracle_evaluations, "parallel_evaluations": parallel.oracle_evaluations,
            "flops_removed_pct": 100 * serial.flops_removed,
            "serial_2_threads_s": serial.seconds, "ray_2_workers_1_thread_s": parallel.seconds,
            "ray_startup_s": startup_s, "speedup": serial.seconds / parallel.seconds,
            "screen_s": {"serial": serial.cost["phase_seconds"]["screen"],
                         "parallel": parallel.cost["phase_seconds"]["screen"]},
            "screen_speedup": serial.cost["phase_seconds"]["screen"] / max(parallel.cost["phase_seconds"]["screen"], 1e-9),
            # 2 threads in one process vs 1 thread per worker may round differently: identical is
            # asserted by tests/test_scale.py at equal thread counts; here it is reported
            "identical_verdicts": serial.channels == parallel.channels and same_drops,
            "same_channels": serial.channels == parallel.channels}
