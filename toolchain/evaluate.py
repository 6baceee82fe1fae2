"""Per-task evaluation of a multitask model, against labels or (label-free) a reference model."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from toolchain.data.loaders import Batch
from toolchain.graph.capture import multitask
from toolchain.metrics import FIDELITY_METRIC, make_metric
from toolchain.recipe import Recipe


def task_metric_name(recipe: Recipe, task: str, label_free: bool) -> str:
    """The metric a task is judged by: its recipe metric against labels, or (label-free) the fidelity
    metric of its kind -- scale-free, or RMSE in the user's unit when the task sets `unit_scale`."""
    t = recipe.task(task)
    if not label_free:
        return t.metric
    return f"rmse*{t.unit_scale:g}" if t.unit_scale is not None else FIDELITY_METRIC[t.kind]


def higher_is_better(recipe: Recipe, task: str, label_free: bool = False) -> bool:
    """Whether a larger value of the metric `task` is judged by (:func:`task_metric_name`) is better."""
    return make_metric(task_metric_name(recipe, task, label_free)).higher_is_better


@torch.no_grad()
def evaluate(model: nn.Module, recipe: Recipe, data: Iterable[Batch], reference: nn.Module | None = None,
             tasks: Iterable[str] | None = None) -> dict[str, float]:
    """Metric per task. With `reference`, targets are the reference's outputs (fidelity mode);
    otherwise batches must carry labels."""
    model = multitask(model, recipe).eval()
    reference = multitask(reference, recipe).eval() if reference is not None else None
    names = list(tasks) if tasks is not None else list(recipe.tasks)
    label_free = reference is not None
    metrics = {t: make_metric(task_metric_name(recipe, t, label_free)) for t in names}
    for x, targets in data:
        out = model(x)
        if label_free:
            targets = reference(x)
        elif targets is None:
            raise ValueError("data has no labels: pass reference= for label-free evaluation")
        for t in names:
            metrics[t].update(out[t], targets[t])
    return {t: m.value() for t, m in metrics.items()}


def drops(before: dict[str, float], after: dict[str, float], recipe: Recipe, label_free: bool = False) -> dict[str, float]:
    """How much worse each task got, in its metric's unit (positive = worse)."""
    return {t: (before[t] - after[t]) if higher_is_better(recipe, t, label_free) else (after[t] - before[t])
            for t in after}
