"""The comparison baseline: plain global L1-magnitude channel pruning to a FLOPs goal.

Every root filter gets its L1 norm divided by its layer's mean (so layers of different scales
compare); one global threshold removes every channel below it, rounded like PAGCP (multiples of
`round_to`, never below it). A bisection over the threshold finds the least pruning that meets the
FLOPs goal. No task is consulted: this is what PAGCP's oracle has to beat at equal FLOPs.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn

from toolchain.graph.capture import capture
from toolchain.prune import cost
from toolchain.prune.groups import channel_groups, dependency_graph
from toolchain.prune.importance import l1_scores, lowest
from toolchain.prune.pagcp import PruneResult, exactness_refusals


def _keep(scores: torch.Tensor, threshold: float, m: int) -> int:
    c = len(scores)
    if c <= m:
        return c
    above = int((scores > threshold).sum())
    return min(c, max(m, m * math.ceil(above / m)))


def l1_prune(model: nn.Module, example: torch.Tensor, goal_flops: int, round_to: int = 8,
             ignored: tuple[str, ...] = (), iterations: int = 24) -> PruneResult:
    """A pruned copy of `model` with at most `goal_flops` FLOPs (or as close as rounding allows)."""
    t0 = time.perf_counter()
    model = capture(model).eval()
    groups = channel_groups(model, example, ignored=ignored)
    # the same guard as PAGCP: never prune a group whose index mapping is not proven exact
    refused = exactness_refusals(model, example, groups)
    groups = [g for g in groups if g.name not in refused]
    scores = l1_scores(model, groups)
    flops0, params0 = cost.model_flops(model, example), cost.model_params(model)

    def build(threshold: float) -> tuple[nn.Module, dict[str, int]]:
        cand = copy.deepcopy(model)
        graph = dependency_graph(cand, example)
        keeps = {}
        for g in groups:
            keeps[g.name] = _keep(scores[g.name], threshold, round_to)
            g.prune(cand, lowest(scores[g.name], g.channels - keeps[g.name]), graph=graph)
        return cand, keeps

    lo, hi = 0.0, max(float(s.max()) for s in scores.values()) + 1.0  # lo: no pruning; hi: everything at its floor
    best, best_keeps = build(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        cand, keeps = build(mid)
        if cost.model_flops(cand, example) <= goal_flops:
            hi, best, best_keeps = mid, cand, keeps
        else:
            lo = mid
    channels = {g.name: (g.channels, best_keeps[g.name]) for g in groups}
    return PruneResult(best.eval(), "l1", flops0, cost.model_flops(best, example), params0, cost.model_params(best),
                       channels, {g.name: g.layers for g in groups}, [], 0, refused, cost.model_flops(best, example) <= goal_flops,
                       False, {}, {}, time.perf_counter() - t0, [f"global L1 threshold {hi:.4f} (layer-mean normalized)"])
