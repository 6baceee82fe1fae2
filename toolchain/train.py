"""Built-in trainer for zoo models on real data (Fashion-MNIST), with optional distillation, and the
losses every mtedge trainer uses (task_loss, distill_loss). The loop itself is toolchain.fit.
A user's own model brings its own loop through the recipe hook (see toolchain.compress).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from toolchain.data.loaders import batches, split_length
from toolchain.errors import SpecError
from toolchain.evaluate import evaluate
from toolchain.fit import FeatureTap, feature_distance, fit, train_mode
from toolchain.recipe import Recipe


@dataclass
class TrainConfig:
    epochs: float = 3.0  # fractional epochs train on a prefix of the shuffled data
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    limit: int | None = None  # use at most this many training images (tiny runs in tests)
    distill_weight: float = 0.0  # >0: also match a teacher's outputs (recovery after pruning)
    seed: int = 0


REGRESSION_KINDS = ("depth", "regression", "keypoints", "reconstruction")


def task_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind in ("classification", "segmentation"):
        return F.cross_entropy(pred, target)
    if kind in REGRESSION_KINDS:
        return F.l1_loss(pred, target)
    raise SpecError(f"no built-in loss for task kind {kind!r}")


def distill_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """How far `student` is from `teacher` for one task of `kind` (0 when equal). Classification:
    KL to the temperature-softened teacher probabilities, per sample; segmentation the same per
    pixel (x t^2 keeps gradients on the scale of the hard loss). Depth / regression / keypoints /
    reconstruction: L1 over the teacher's mean absolute output, so a task's weight does not depend
    on its output units."""
    if kind in ("classification", "segmentation"):
        t = temperature
        log_p = F.log_softmax(student / t, 1)
        q = F.softmax(teacher / t, 1)
        return (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(1).mean() * t * t
    if kind in REGRESSION_KINDS:
        return F.l1_loss(student, teacher) / teacher.detach().abs().mean().clamp_min(1e-6)
    raise SpecError(f"no distillation loss for task kind {kind!r}; expected one of classification, segmentation, "
                    f"{', '.join(REGRESSION_KINDS)}")


def fit_recipe(model: nn.Module, recipe: Recipe, epochs: float, teacher: nn.Module | None = None,
               distill_weight: float = 1.0, limit: int | None = None, lr: float = 1e-3, batch_size: int = 128,
               temperature: float = 2.0, weight_decay: float = 1e-4, freeze_bn: bool = False, balance: bool = False,
               feature_points: Sequence[str] = (), feature_weight: float = 0.0, seed: int = 0,
               description: str = "training", on_step: Callable[[int, float], None] | None = None,
               on_epoch: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """Train `model` in place on the recipe's train split (at most `limit` samples per epoch) through
    :func:`toolchain.fit.fit`: the task losses where batches have labels, plus, with a `teacher`,
    `distill_weight` x its outputs' distillation (`balance`: each task's over its first value, so
    every task starts at weight 1) and `feature_weight` x the distance of the `feature_points`
    modules' outputs to the teacher's. `freeze_bn`: batch-norm statistics stay as they are."""
    kinds = {t: spec.kind for t, spec in recipe.tasks.items()}
    distilling = teacher is not None and distill_weight > 0
    points = list(feature_points) if distilling and feature_weight > 0 else []
    if teacher is not None:
        teacher.eval()
    first: dict[str, float] = {}

    def step(x: torch.Tensor, targets) -> float:
        nonlocal first
        with FeatureTap(model, points) as mine:
            out = model(x)
        loss = torch.zeros(())
        if targets is not None:
            loss = loss + sum(task_loss(kinds[t], out[t], targets[t]) for t in kinds)
        if distilling:
            with torch.no_grad(), FeatureTap(teacher, points) as theirs:
                ref = teacher(x)
            per_task = {t: distill_loss(kinds[t], out[t], ref[t], temperature) for t in kinds}
            if balance:
                first = first or {t: float(v.detach()) for t, v in per_task.items()}
                per_task = {t: v / max(first[t], 1e-8) for t, v in per_task.items()}
            loss = loss + distill_weight * sum(per_task.values())
            if points:
                loss = loss + feature_weight * feature_distance(mine.values, theirs.values)
        loss.backward()
        return loss.item()

    # a new seed per epoch: a new order and, with the recipe's data.augment, new random views
    return fit(model, step, lambda epoch: batches(recipe, "train", count=limit, batch_size=batch_size, seed=seed + epoch,
                                                  shuffle=True, augment=True),
               math.ceil(split_length(recipe, "train", limit) / batch_size), epochs, lr, weight_decay, seed=seed,
               description=description, train_mode=lambda m: train_mode(m, freeze_bn), on_step=on_step,
               on_epoch=on_epoch)


def train(model: nn.Module, recipe: Recipe, config: TrainConfig = TrainConfig(), teacher: nn.Module | None = None,
          on_step: Callable[[int, float], None] | None = None, description: str = "training") -> nn.Module:
    """Train `model` in place on the recipe's training split (needs labels)."""
    if recipe.data.kind != "fashion-mnist":
        raise SpecError(f"the built-in trainer needs labeled data (fashion-mnist); recipe {recipe.name!r} has "
                        f"data.kind={recipe.data.kind!r}: bring your own loop through the recipe hook")
    return fit_recipe(model, recipe, config.epochs, teacher, config.distill_weight, config.limit, config.lr,
                      config.batch_size, weight_decay=config.weight_decay, seed=config.seed, description=description,
                      on_step=on_step)


def evaluate_on_test(model: nn.Module, recipe: Recipe, count: int | None = None) -> dict[str, float]:
    """Per-task metrics on the test split (all 10,000 images unless `count`)."""
    return evaluate(model, recipe, batches(recipe, "test", count=count, batch_size=500))
