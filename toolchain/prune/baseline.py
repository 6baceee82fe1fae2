"""The comparison baselines: global channel pruning to a FLOPs goal by one importance criterion.

One global threshold on scores comparable across layers removes every channel below it, rounded like
PAGCP; a bisection over it finds the least pruning that meets the goal. No task is consulted: this
is what PAGCP's oracle has to beat. Criteria (``IMPORTANCES``):

- ``l1``: each root filter's L1 norm over its layer's mean (Li et al. 2017);
- ``magnitude``: Torch-Pruning's ``MagnitudeImportance(p=1)`` over every coupled layer, mean-normalized;
- ``taylor``: Torch-Pruning's ``TaylorImportance`` (|w * dL/dw|, mean-normalized) of the summed task
  losses on a few val batches (label-free: the sampled-Fisher loss PAGCP's saliency uses);
- ``lamp``: Torch-Pruning's ``LAMPImportance`` (Lee et al. 2021: magnitude over the sum of the larger ones).
"""

from __future__ import annotations

import math
import time

from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from toolchain.errors import SpecError

from toolchain.graph.capture import capture
from toolchain.prune import cost
from toolchain.prune.groups import channel_groups
from toolchain.prune.importance import l1_scores, task_losses
from toolchain.prune.joint import pruned_copy
from toolchain.prune.pagcp import PruneResult, exactness_refusals


def _keep(scores: torch.Tensor, threshold: float, m: int) -> int:
    c = len(scores)
    if c <= m:
        return c
    above = int((scores > threshold).sum())
    return min(c, max(m, m * math.ceil(above / m)))


IMPORTANCES = ("l1", "magnitude", "taylor", "lamp")


def importance_scores(model: nn.Module, groups: list, importance: str, recipe: Any = None,
                      data: list | None = None) -> dict[str, torch.Tensor]:
    """group name -> one score per channel, comparable across groups (higher = kept longer)."""
    if importance == "l1":
        return l1_scores(model, groups)
    if importance == "magnitude":
        imp = tp.importance.MagnitudeImportance(p=1)
    elif importance == "lamp":
        imp = tp.importance.LAMPImportance(p=2)
    elif importance == "taylor":
        if recipe is None or not data:
            raise SpecError("the taylor baseline needs the recipe and val batches for its gradients")
        imp = tp.importance.TaylorImportance()
        _task_gradients(model, recipe, data)
    else:
        raise SpecError(f"unknown baseline importance {importance!r}; expected one of {', '.join(IMPORTANCES)}")
    with torch.no_grad():
        scores = {g.name: imp(g.tp_group) for g in groups}
    for p in model.parameters():
        p.grad = None
    return {n: (torch.zeros(g.channels) if v is None else v.detach().float())
            for (n, v), g in zip(scores.items(), groups)}


def _task_gradients(model: nn.Module, recipe: Any, data: list) -> None:
    """Gradients of the summed task losses (labels) or of PAGCP's sampled-Fisher losses (label-free)."""
    model.eval()
    for p in model.parameters():
        p.grad = None
    with torch.enable_grad():
        fisher = any(y is None for _, y in data)
        sum(task_losses(model, recipe, data, fisher).values(), torch.zeros(())).backward()


def l1_prune(model: nn.Module, example: torch.Tensor, goal_flops: int, round_to: int = 8,
             ignored: tuple[str, ...] = (), iterations: int = 24, importance: str = "l1", recipe: Any = None,
             data: list | None = None, refused: dict[str, str] | None = None) -> PruneResult:
    """A pruned copy of `model` with at most `goal_flops` FLOPs (or as close as rounding allows), by one
    global threshold on `importance` (``IMPORTANCES``; taylor needs `recipe` and val `data`). `refused`:
    the exactness check's refusals for `model` when the caller has them (the check takes minutes)."""
    t0 = time.perf_counter()
    model = capture(model).eval()
    groups = channel_groups(model, example, ignored=ignored)
    # the same guard as PAGCP: never prune a group whose index mapping is not proven exact
    refused = exactness_refusals(model, example, groups) if refused is None else refused
    groups = [g for g in groups if g.name not in refused]
    scores = importance_scores(model, groups, importance, recipe, data)
    flops0, params0 = cost.model_flops(model, example), cost.model_params(model)

    byname = {g.name: g for g in groups}

    def build(threshold: float) -> tuple[nn.Module, dict[str, int]]:
        keeps = {g.name: _keep(scores[g.name], threshold, round_to) for g in groups}
        return pruned_copy(model, byname, keeps, scores, example), keeps

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
    return PruneResult(best.eval(), importance, flops0, cost.model_flops(best, example), params0, cost.model_params(best),
                       channels, {g.name: g.layers for g in groups}, [], 0, refused, cost.model_flops(best, example) <= goal_flops,
                       False, {}, {}, time.perf_counter() - t0, [f"global {importance} threshold {hi:.4g}"])
