"""Built-in trainer for zoo models on real data (Fashion-MNIST), with optional distillation.

Used by `mtedge train` and, after pruning, by `mtedge compress` for recovery fine-tuning.
A user's own model brings its own loop through the recipe hook (see toolchain.compress).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from toolchain.data.loaders import Batch, batches
from toolchain.errors import SpecError
from toolchain.evaluate import evaluate
from toolchain.progress import progress_bar
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


def task_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind in ("classification", "segmentation"):
        return F.cross_entropy(pred, target)
    if kind in ("reconstruction", "depth", "regression", "keypoints"):
        return F.l1_loss(pred, target)
    raise SpecError(f"no built-in loss for task kind {kind!r}")


def distill_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    if kind in ("classification", "segmentation"):
        t = temperature
        return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t / (
            student[0, 0].numel()
        )
    return F.l1_loss(student, teacher)


def training_batches(recipe: Recipe, epochs: float, batch_size: int, limit: int | None = None,
                     seed: int = 0) -> tuple[int, Iterator[Batch]]:
    """(total steps, labeled batches) of the recipe's training split (its val images held out, at
    most `limit` images), reshuffled every epoch, `epochs` (fractional) epochs long."""
    from toolchain.data import fashion

    full = fashion.load_split("train")
    part = full.subset(len(full) - recipe.data.val_count)
    if limit:
        part = part.subset(limit)
    total = max(1, int(round(epochs * math.ceil(len(part) / batch_size))))

    def stream() -> Iterator[Batch]:
        step, epoch = 0, 0
        while True:
            for batch in fashion.iterate(part, batch_size, shuffle=True, seed=seed + epoch):
                yield batch
                step += 1
                if step >= total:
                    return
            epoch += 1

    return total, stream()


def one_cycle(params, lr: float, weight_decay: float, total_steps: int, pct_start: float = 0.15):
    """AdamW under a one-cycle schedule: every mtedge training loop (training, recovery, slimming)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=pct_start)


def train(
    model: nn.Module,
    recipe: Recipe,
    config: TrainConfig = TrainConfig(),
    teacher: nn.Module | None = None,
    on_step: Callable[[int, float], None] | None = None,
    description: str = "training",
) -> nn.Module:
    """Train `model` in place on the recipe's training split (needs labels)."""
    if recipe.data.kind != "fashion-mnist":
        raise SpecError(
            f"the built-in trainer needs labeled data (fashion-mnist); recipe {recipe.name!r} has "
            f"data.kind={recipe.data.kind!r}: bring your own loop through the recipe hook"
        )
    torch.manual_seed(config.seed)
    total_steps, data = training_batches(recipe, config.epochs, config.batch_size, config.limit, config.seed)
    opt, sched = one_cycle(model.parameters(), config.lr, config.weight_decay, total_steps)
    kinds = {t: recipe.tasks[t].kind for t in recipe.tasks}
    if teacher is not None:
        teacher.eval()
    model.train()
    with progress_bar() as progress:
        job = progress.add_task(description, total=total_steps)
        for step, (x, targets) in enumerate(data, 1):
            out = model(x)
            loss = sum(task_loss(kinds[t], out[t], targets[t]) for t in kinds)
            if teacher is not None and config.distill_weight > 0:
                with torch.no_grad():
                    ref = teacher(x)
                loss = loss + config.distill_weight * sum(distill_loss(kinds[t], out[t], ref[t]) for t in kinds)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            progress.update(job, advance=1, description=f"{description} loss {loss.item():.3f}")
            if on_step:
                on_step(step, loss.item())
    model.eval()
    return model


def evaluate_on_test(model: nn.Module, recipe: Recipe, count: int | None = None) -> dict[str, float]:
    """Per-task metrics on the test split (all 10,000 images unless `count`)."""
    return evaluate(model, recipe, batches(recipe, "test", count=count, batch_size=500))
