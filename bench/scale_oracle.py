"""The pruning oracle through the evaluation interface, without changing toolchain/prune.

What PAGCP would hand to `Evaluator.map` (docs/scale-out.md, "Adopting it in the oracle"): the
candidate points of the groups of one round, judged against the same current model. Every point
is a pure function of (current model, group, keep), so judging them as one batch, on any worker,
gives the verdicts the serial loop would compute one by one. Here: round 1 of zoo:fashion-mt
(unpruned model, round_to 8, max_step 0.5), every keep count of every prunable group.

The state a worker holds: the current model, the oracle (its fixed val subset and targets) and
the channel scores. Groups (bound to a Torch-Pruning dependency graph) and each group's cached
frontier are rebuilt per worker process on first use, not shipped.
"""

from __future__ import annotations

import copy
import time

import torch

_LOCAL: dict[int, dict] = {}  # per process: id(state) -> groups and frontier caches built from it


def _judge(state: dict, item: tuple[str, int]) -> tuple[dict, dict, bool]:
    from toolchain.prune.groups import channel_groups
    from toolchain.prune.importance import lowest

    name, keep = item
    local = _LOCAL.setdefault(id(state), {})
    if "groups" not in local:
        local["groups"] = {g.name: g for g in channel_groups(state["model"], state["example"])}
        local["suffix"] = {}
    g = local["groups"][name]
    oracle = state["oracle"]
    if oracle._gm is None:  # shipped without its fx trace (a GraphModule does not pickle): trace here
        oracle.set_current(state["model"], oracle.current)
    if name not in local["suffix"]:
        local["suffix"][name] = oracle.prepare(state["model"], g)
    cand = copy.deepcopy(state["model"])
    g.prune(cand, lowest(state["scores"][name], g.channels - keep), example=state["example"])
    v = oracle.judge(cand, local["suffix"][name])
    return v.metrics, v.drops, v.ok


def oracle_batch(val_count: int = 512) -> dict:
    from scale import _weights  # noqa: F401  (same weights rule as the grid)

    from toolchain.data.loaders import batches, example_input
    from toolchain.model import load
    from toolchain.prune import cost
    from toolchain.prune.groups import channel_groups
    from toolchain.prune.importance import channel_scores
    from toolchain.prune.oracle import Oracle
    from toolchain.prune.pagcp import exactness_refusals
    from toolchain.prune.sequential import keep_candidates
    from toolchain.scale.evaluator import RayEvaluator, SerialEvaluator

    loaded, weights = _weights()
    model, recipe = loaded.module.eval(), loaded.recipe
    example = example_input(recipe)
    data = list(batches(recipe, "val", count=val_count, batch_size=128))
    oracle = Oracle(copy.deepcopy(model), recipe, data, {t: s.allowed_drop for t, s in recipe.tasks.items()}, False)
    oracle.set_current(model, oracle.before)
    groups = channel_groups(model, example)
    refused = exactness_refusals(model, example, groups)
    groups = [g for g in groups if g.name not in refused]
    scores = channel_scores(model, groups, recipe, data[:2])
    flops = cost.layer_flops(model, example)
    items = []
    bisection = 0
    for g in groups:
        keeps = keep_candidates(g.channels, 8, 0.5, 0.0, cost.flops_per_channel(model, g, flops))
        items += [(g.name, k) for k in keeps[1:]]
        n = len(keeps) - 1
        bisection += 0 if n < 1 else 1 + max(0, (n - 1).bit_length())  # worst case of the serial bisection
    state = {"model": model, "oracle": oracle, "scores": scores, "example": example}
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    serial = SerialEvaluator().map(_judge, items, state=state, description="oracle batch (serial)")
    serial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    shipped = copy.copy(oracle)
    shipped._gm, shipped._out = None, {}  # the Oracle would do this in a __getstate__ (issue 18's file)
    state = {**state, "oracle": shipped}
    ev = RayEvaluator(workers=2, threads=1)
    startup_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        parallel = ev.map(_judge, items, state=state, description="oracle batch (2 workers)")
        parallel_s = time.perf_counter() - t0
    finally:
        ev.close()
    diff = max(abs(a[0][t] - b[0][t]) for a, b in zip(serial, parallel) for t in a[0])
    return {"weights": weights, "val_images": sum(int(x.shape[0]) for x, _ in data), "groups": len(groups),
            "candidates": len(items), "serial_bisection_evaluations_worst_case": bisection,
            "serial_2_threads_s": serial_s, "ray_2_workers_1_thread_s": parallel_s, "ray_startup_s": startup_s,
            "speedup": serial_s / parallel_s,
            "identical_verdicts": [v[2] for v in serial] == [v[2] for v in parallel] and diff == 0.0,
            "same_feasibility": [v[2] for v in serial] == [v[2] for v in parallel], "max_abs_metric_diff": diff}
