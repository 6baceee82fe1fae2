"""Recovery after pruning: fine-tune the pruned model on the recipe's ``train`` split.

- Any recipe's data, through ``toolchain.data.loaders.batches(recipe, "train", ...)``: batches
  with labels add the task losses; every batch (labels or not) is distilled from the unpruned
  model when a teacher is given. Unlabeled data needs the teacher (label-free distillation).
- Distillation losses per task kind (``distill_loss``): classification KL to temperature-softened
  teacher probabilities; segmentation the same per pixel; depth / regression / keypoints /
  reconstruction L1 divided by the teacher's mean absolute output, so a task's weight does not
  depend on its output units.
- A user's own loop: the recipe's hook ``hooks: {finetune: "package.module:function"}``, called
  as ``function(model, recipe, teacher)`` (teacher is None without distillation); it trains
  `model` in place (or returns the trained module). The hook wins over the built-in loop.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from toolchain.data.loaders import batches, has_labels, split_length
from toolchain.errors import SpecError
from toolchain.progress import progress_bar
from toolchain.recipe import Recipe
from toolchain.train import one_cycle, task_loss

REGRESSION_KINDS = ("depth", "regression", "keypoints", "reconstruction")


def distill_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """How far `student` is from `teacher` for one task of `kind` (0 when equal)."""
    if kind in ("classification", "segmentation"):
        t = temperature
        log_p = F.log_softmax(student / t, 1)
        q = F.softmax(teacher / t, 1)
        # KL per sample (classification) or per pixel (segmentation), averaged; x t^2 keeps gradients
        # on the scale of the hard loss
        return (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(1).mean() * t * t
    if kind in REGRESSION_KINDS:
        scale = teacher.detach().abs().mean().clamp_min(1e-6)
        return F.l1_loss(student, teacher) / scale
    raise SpecError(f"no distillation loss for task kind {kind!r}; expected one of classification, segmentation, "
                    f"{', '.join(REGRESSION_KINDS)}")


def finetune(model: nn.Module, recipe: Recipe, epochs: float, teacher: nn.Module | None = None,
             distill_weight: float = 1.0, limit: int | None = None, lr: float = 1e-3, batch_size: int = 128,
             temperature: float = 2.0, weight_decay: float = 1e-4, freeze_bn: bool | None = None,
             balance: bool = False, on_epoch: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """Fine-tune `model` (in place; also returned) for `epochs` passes over the recipe's train split
    (at most `limit` samples per pass; a fractional last epoch runs that share of its batches).

    `freeze_bn` keeps batch-norm statistics as they are (the layers run in eval mode; their scale
    and shift still learn). Default: frozen for label-free distillation, where the goal is the
    teacher's function and a few small batches of the user's images would replace statistics the
    network was trained with; updated when there are labels. `balance` divides each task's
    distillation loss by its value on the first batch, so a task the pruning hurt in a small way (a
    small loss) is not drowned by one it hurt badly. `on_epoch(epoch, model)` is called after each
    epoch (1-based; the last may be fractional) with the model in eval mode."""
    hook = recipe.hook("finetune")
    if hook is not None:
        out = hook(model, recipe, teacher)
        return (out if isinstance(out, nn.Module) else model).eval()
    if epochs <= 0:
        return model.eval()
    labeled = has_labels(recipe)
    if not labeled and teacher is None:
        raise SpecError(
            f"recipe {recipe.name!r} has no labels ({recipe.data.kind} data): fine-tuning it distills the unpruned "
            "model, so pass --distill (or teacher=...), or bring your own loop with the recipe hook "
            "`hooks: {finetune: \"package.module:function\"}`"
        )
    kinds = {t: spec.kind for t, spec in recipe.tasks.items()}
    steps_per_epoch = math.ceil(split_length(recipe, "train", limit) / batch_size)
    total = max(1, int(math.ceil(epochs * steps_per_epoch)))
    opt, sched = one_cycle(model.parameters(), lr, weight_decay, total)
    if teacher is not None:
        teacher.eval()
    if freeze_bn is None:
        freeze_bn = not labeled
    torch.manual_seed(0)
    first: dict[str, float] = {}
    _train_mode(model, freeze_bn)
    step = 0
    with progress_bar() as progress:
        job = progress.add_task("fine-tuning", total=total)
        for epoch in range(int(math.ceil(epochs))):
            # a new seed per epoch: a new order and, with the recipe's data.augment, new random views
            for x, targets in batches(recipe, "train", count=limit, batch_size=batch_size, seed=epoch, shuffle=True,
                                        augment=True):
                if step >= total:
                    break
                out = model(x)
                loss = torch.zeros(())
                if targets is not None:
                    loss = loss + sum(task_loss(kinds[t], out[t], targets[t]) for t in kinds)
                if teacher is not None and distill_weight > 0:
                    with torch.no_grad():
                        ref = teacher(x)
                    per_task = {t: distill_loss(kinds[t], out[t], ref[t], temperature) for t in kinds}
                    if balance:  # each task's loss over its first value: every task starts at weight 1
                        first = first or {t: float(v.detach()) for t, v in per_task.items()}
                        per_task = {t: v / max(first[t], 1e-8) for t, v in per_task.items()}
                    loss = loss + distill_weight * sum(per_task.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                progress.update(job, advance=1, description=f"fine-tuning loss {loss.item():.3f}")
            if on_epoch is not None:
                on_epoch(epoch + 1, model.eval())
                _train_mode(model, freeze_bn)
    return model.eval()


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


@dataclass
class Recovery:
    """What recovery returned and why: the state kept ("unrecovered" or "epoch N") and every
    candidate's held-out check (index 0: the unrecovered model)."""

    model: nn.Module
    kept: str
    checks: list = field(default_factory=list)  # toolchain.bounds.BoundsCheck per candidate

    def note(self) -> str:
        if not self.checks:
            return f"recovery: kept the {self.kept} model"
        best = self.checks[0 if self.kept == "unrecovered" else int(self.kept.split()[-1])]
        worst = max(best.tasks.values(), key=lambda b: b.used)
        return (f"recovery: kept the {self.kept} model of {len(self.checks)} candidates (best held-out {best.split} "
                f"fidelity within bounds; worst task {worst.task} at {worst.drop:.3f} of {worst.allowed:g} allowed)")


def recover(model: nn.Module, recipe: Recipe, epochs: float, judge: Callable[[nn.Module], object],
            teacher: nn.Module | None = None, **options) -> Recovery:
    """Fine-tune `model` in place, keeping the state that holds the bounds best on held-out data.

    `judge(model)` measures a candidate (a toolchain.bounds.BoundsCheck on the val split); the
    unrecovered model is candidate 0 and each epoch's state another. The one kept has the fewest
    tasks past their bound, then the smallest largest share of an allowed drop, then the smallest
    sum (BoundsCheck.severity); ties keep the earlier state, so recovery that only hurts (a learning
    rate that diverges) returns the unrecovered model unchanged. `options` go to `finetune`."""
    checks = [judge(model.eval())]
    best = (checks[0].severity(), "unrecovered", copy.deepcopy(model.state_dict()))

    def keep_if_better(epoch: int, m: nn.Module) -> None:
        nonlocal best
        check = judge(m)
        checks.append(check)
        if check.severity() < best[0]:
            best = (check.severity(), f"epoch {epoch}", copy.deepcopy(m.state_dict()))

    trained = finetune(model, recipe, epochs, teacher=teacher, on_epoch=keep_if_better, **options)
    if len(checks) == 1:  # a recipe hook trained it (no epochs seen): its result is the one trained candidate
        keep_if_better(1, trained)
    kept = model if best[1] == "unrecovered" else trained  # a hook may return a new module
    kept.load_state_dict(best[2])
    return Recovery(kept.eval(), best[1], checks)
