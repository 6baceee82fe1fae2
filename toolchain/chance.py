"""Chance level: what a task's metric is for a predictor that ignores its input.

A compression study on a model that performs at chance measures nothing (every "result" is within
its bounds of a constant), so the sweep refuses such a reference. The constant predictors, one per
task kind, fitted on the same labels they are scored on (the strongest input-free baseline): the most
frequent class (classification; on every pixel for segmentation), else the mean target per element.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from toolchain.data.loaders import Batch
from toolchain.errors import SpecError
from toolchain.evaluate import higher_is_better
from toolchain.metrics import make_metric
from toolchain.recipe import Recipe

BASELINE = {"classification": "the most frequent class", "segmentation": "the most frequent class on every pixel"}


class ChanceLevel(SpecError):
    """A reference model performs no better than a constant predictor on some task."""


@torch.no_grad()
def chance_metrics(model: nn.Module, recipe: Recipe, data: Sequence[Batch]) -> dict[str, float]:
    """task -> the recipe metric of the best constant predictor on `data` (labeled batches).
    `model` only gives the output shapes (one forward of the first batch)."""
    if not data or data[0][1] is None:
        raise SpecError("chance level needs labeled data: the recipe's test split has no labels")
    shapes = {t: v.shape[1:] for t, v in model.eval()(data[0][0][:1]).items()}
    constant = {t: _constant_output(recipe.task(t).kind, shapes[t], [y[t] for _, y in data]) for t in recipe.tasks}
    out = {}
    for t in recipe.tasks:
        metric = make_metric(recipe.task(t).metric)
        for _, y in data:
            metric.update(constant[t].expand(len(y[t]), *constant[t].shape[1:]), y[t])
        out[t] = metric.value()
    return out


def _constant_output(kind: str, shape: torch.Size, targets: list[torch.Tensor]) -> torch.Tensor:
    if kind in ("classification", "segmentation"):
        counts = torch.bincount(torch.cat([t.flatten() for t in targets]).long(), minlength=shape[0])
        logits = torch.zeros((1, *shape))
        logits[:, int(counts.argmax())] = 1.0
        return logits
    return torch.cat(targets).float().mean(0, keepdim=True)


def refuse_chance_level(reference: dict[str, float], chance: dict[str, float], recipe: Recipe, what: str) -> None:
    """Raise ChanceLevel when a task of `reference` is not better than chance by more than its allowed
    drop: a compressed model within that bound could then be a constant predictor."""
    bad = []
    for t, value in reference.items():
        margin = (value - chance[t]) if higher_is_better(recipe, t) else (chance[t] - value)
        spec = recipe.task(t)
        if margin <= spec.allowed_drop:
            bad.append(f"{t} {spec.metric} {value:.2f} vs chance {chance[t]:.2f} "
                       f"({BASELINE.get(spec.kind, 'the mean target')}), not above it by more than its allowed drop "
                       f"{spec.allowed_drop:g}")
    if bad:
        raise ChanceLevel(f"{what} performs at chance on its test split: {'; '.join(bad)}. Its compression results would "
                          "measure nothing; train the model first (`mtedge train MODEL -o trained.pt`) and pass the "
                          "trained checkpoint (`--checkpoint trained.pt`)")


__all__ = ["ChanceLevel", "chance_metrics", "refuse_chance_level"]
