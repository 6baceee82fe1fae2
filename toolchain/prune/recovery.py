"""Recovery after pruning: fine-tune the pruned model on the recipe's ``train`` split
(``toolchain.train.fit_recipe``: task losses where there are labels, distillation from the unpruned
model; unlabeled data needs the teacher) with the recipe's ``recovery`` options (docs/pruning.md),
keeping the state that holds the bounds best on val (:func:`recover`). The recipe hook
``hooks: {finetune: "package.module:function"}``, called as ``function(model, recipe, teacher)``,
replaces the built-in loop: it trains `model` in place or returns it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from toolchain.data.loaders import batches, has_labels
from toolchain.errors import SpecError
from toolchain.fit import reestimate_bn as reestimate
from toolchain.graph.capture import capture, module_tasks, trunk_boundary
from toolchain.recipe import Recipe
from toolchain.train import distill_loss, fit_recipe  # noqa: F401  distill_loss: re-exported


def trunk_features(model: nn.Module, recipe: Recipe) -> list[str]:
    """The shared trunk's modules whose outputs the task branches read: what feature distillation matches."""
    gm = capture(model, recipe.outputs)
    points = [str(n.target) for n in trunk_boundary(gm, module_tasks(gm, list(recipe.tasks)))]
    if not points:
        raise SpecError(f"feature distillation needs a trunk shared by several tasks; {recipe.name!r} has none: "
                        "set recovery.feature_weight: 0 in the recipe")
    return points


def finetune(model: nn.Module, recipe: Recipe, epochs: float, teacher: nn.Module | None = None,
             distill_weight: float = 1.0, limit: int | None = None, lr: float = 1e-3, batch_size: int = 128,
             temperature: float = 2.0, weight_decay: float = 1e-4, freeze_bn: bool | None = None,
             balance: bool = False, on_epoch: Callable[[int, nn.Module], None] | None = None,
             feature_weight: float | None = None, reestimate_bn: bool | None = None, seed: int = 0) -> nn.Module:
    """Fine-tune `model` (in place; also returned) for `epochs` passes over the recipe's train split
    (at most `limit` samples a pass; a fractional last epoch runs that share of its batches);
    toolchain.train.fit_recipe describes the losses and `on_epoch(epoch, model)`. Options left None
    take the recipe's ``recovery`` section (docs/pruning.md): `reestimate_bn` first recomputes
    batch-norm statistics (then `on_epoch(0, model)`); `freeze_bn` keeps them during fine-tuning
    ("auto": frozen for label-free distillation, updated with labels); `feature_weight` > 0 also
    distills the teacher's trunk features where the task branches read them."""
    hook = recipe.hook("finetune")
    if hook is not None:
        out = hook(model, recipe, teacher)
        return (out if isinstance(out, nn.Module) else model).eval()
    options, labeled = recipe.recovery, has_labels(recipe)
    feature_weight = options.feature_weight if feature_weight is None else feature_weight
    if freeze_bn is None:
        freeze_bn = not labeled if options.freeze_bn == "auto" else options.freeze_bn == "true"
    if options.reestimate_bn if reestimate_bn is None else reestimate_bn:
        reestimate(model, batches(recipe, "train", count=limit, batch_size=batch_size, seed=seed, shuffle=True,
                                  augment=True))
        if on_epoch is not None:
            on_epoch(0, model)
    if epochs <= 0:
        return model.eval()
    if not labeled and teacher is None:
        raise SpecError(
            f"recipe {recipe.name!r} has no labels ({recipe.data.kind} data): fine-tuning it distills the unpruned "
            "model, so pass --distill (or teacher=...), or bring your own loop with the recipe hook "
            "`hooks: {finetune: \"package.module:function\"}`"
        )
    points = trunk_features(teacher, recipe) if teacher is not None and distill_weight > 0 and feature_weight > 0 else []
    return fit_recipe(model, recipe, epochs, teacher, distill_weight, limit, lr, batch_size, temperature, weight_decay,
                      freeze_bn, balance, points, feature_weight, seed, "fine-tuning", on_epoch=on_epoch)


@dataclass
class Recovery:
    """What recovery returned and why: the state kept ("unrecovered", "bn re-estimated" or "epoch N")
    and every candidate's held-out check (index 0: the unrecovered model; `kept_index`: the kept one)."""

    model: nn.Module
    kept: str
    checks: list = field(default_factory=list)  # toolchain.bounds.BoundsCheck per candidate
    kept_index: int = 0

    def note(self) -> str:
        if not self.checks:
            return f"recovery: kept the {self.kept} model"
        best = self.checks[self.kept_index]
        worst = max(best.tasks.values(), key=lambda b: b.used)
        return (f"recovery: kept the {self.kept} model of {len(self.checks)} candidates (best held-out {best.split} "
                f"fidelity within bounds; worst task {worst.task} at {worst.drop:.3f} of {worst.allowed:g} allowed)")


def recover(model: nn.Module, recipe: Recipe, epochs: float, judge: Callable[[nn.Module], object],
            teacher: nn.Module | None = None, **options) -> Recovery:
    """Fine-tune `model` in place, keeping the state that holds the bounds best on held-out data.

    `judge(model)` measures a candidate (a toolchain.bounds.BoundsCheck on val): the unrecovered model,
    the batch-norm re-estimated one (fine-tuning starts from it only when it is the better) and each
    epoch's state. The least BoundsCheck.severity is kept; ties keep the earlier state, so recovery that
    only hurts (a diverging learning rate) returns the unrecovered model unchanged. `options` go to
    `finetune`."""
    checks = [judge(model.eval())]
    best = (checks[0].severity(), "unrecovered", copy.deepcopy(model.state_dict()), 0)

    def keep_if_better(epoch: int, m: nn.Module) -> None:
        nonlocal best
        check = judge(m)
        checks.append(check)
        if check.severity() < best[0]:
            label = "bn re-estimated" if epoch == 0 else f"epoch {epoch}"
            best = (check.severity(), label, copy.deepcopy(m.state_dict()), len(checks) - 1)
        elif epoch == 0:  # re-estimation hurt on val: fine-tune from the pruned state instead
            m.load_state_dict(best[2])

    trained = finetune(model, recipe, epochs, teacher=teacher, on_epoch=keep_if_better, **options)
    if len(checks) == 1:  # a recipe hook trained it (no epochs seen): its result is the one trained candidate
        keep_if_better(1, trained)
    kept = model if best[1] == "unrecovered" else trained  # a hook may return a new module
    kept.load_state_dict(best[2])
    return Recovery(kept.eval(), best[1], checks, best[3])
