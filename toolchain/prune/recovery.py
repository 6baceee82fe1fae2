"""Recovery after pruning: fine-tune the pruned model, optionally distilling from the unpruned one.

- zoo models (labelled Fashion-MNIST data): the built-in trainer, toolchain.train.train, with the
  unpruned model as teacher when distilling;
- a user's own model: the recipe's hook ``hooks: {finetune: "package.module:function"}``, called
  as ``function(model, recipe, teacher)`` (teacher is None without distillation); it trains
  `model` in place (or returns the trained module).
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from toolchain.errors import SpecError
from toolchain.recipe import Recipe
from toolchain.train import TrainConfig, train


def finetune_hook(recipe: Recipe) -> Callable[[nn.Module, Recipe, nn.Module | None], nn.Module | None] | None:
    """The recipe's `hooks.finetune` callable, or None when the recipe has none."""
    spec = recipe.hooks.get("finetune")
    if not spec:
        return None
    mod_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise SpecError(f"recipe hook finetune={spec!r} cannot be imported ({e}); expected 'package.module:function'") from None
    if not callable(fn):
        raise SpecError(f"recipe hook finetune={spec!r} is not callable")
    return fn


def finetune(model: nn.Module, recipe: Recipe, epochs: float, teacher: nn.Module | None = None,
             distill_weight: float = 1.0, limit: int | None = None, lr: float = 1e-3) -> nn.Module:
    """Fine-tune `model` (in place; also returned). A recipe hook wins over the built-in trainer."""
    hook = finetune_hook(recipe)
    if hook is not None:
        out = hook(model, recipe, teacher)
        return (out if isinstance(out, nn.Module) else model).eval()
    if recipe.data.kind != "fashion-mnist":
        raise SpecError(
            f"recipe {recipe.name!r} has unlabeled data ({recipe.data.kind}); the built-in trainer cannot fine-tune it. "
            "Add `hooks: {finetune: \"package.module:function\"}` to the recipe, or pass --finetune-epochs 0"
        )
    config = TrainConfig(epochs=epochs, lr=lr, limit=limit, distill_weight=distill_weight if teacher is not None else 0.0)
    return train(model, recipe, config, teacher=teacher, description="fine-tuning").eval()
