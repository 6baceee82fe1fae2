"""Recovery after pruning: fine-tune the pruned model, optionally distilling from the unpruned one.

- zoo models (labelled Fashion-MNIST data): the built-in trainer, toolchain.train.train, with the
  unpruned model as teacher when distilling;
- a user's own model: the recipe's hook ``hooks: {finetune: "package.module:function"}``, called
  as ``function(model, recipe, teacher)`` (teacher is None without distillation); it trains
  `model` in place (or returns the trained module).
"""

from __future__ import annotations

from torch import nn

from toolchain.errors import SpecError
from toolchain.recipe import Recipe
from toolchain.train import TrainConfig, train


def finetune(model: nn.Module, recipe: Recipe, epochs: float, teacher: nn.Module | None = None,
             distill_weight: float = 1.0, limit: int | None = None, lr: float = 1e-3) -> nn.Module:
    """Fine-tune `model` (in place; also returned). A recipe hook wins over the built-in trainer."""
    hook = recipe.hook("finetune")
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
