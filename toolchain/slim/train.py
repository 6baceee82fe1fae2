"""Training a slimmable multitask model: sandwich rule, in-place distillation, configuration-invariant
encoder distillation, then batch-norm recalibration per configuration (docs/slimmable.md).

Each step (:func:`sandwich_step`, also the hook for a user's own loop):

1. the widest configuration learns from the labels (or, label-free, from a teacher's outputs) and,
   with a teacher and ``teacher_weight`` > 0, also from the original model's outputs: this anchors
   full width to the trained model while the narrower configurations pull on the shared weights;
2. the narrowest configuration and ``random_configs`` random ones learn from the widest's outputs
   of the same step (in-place distillation, detached), plus ``label_weight`` x the label loss;
3. configuration-invariant distillation (CI-KD): every narrower configuration's encoder features
   (the tensors decoders read) match the widest's on the channels they keep (mean squared error).

Gradients of all configurations accumulate; the caller steps the optimizer once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from toolchain.data.loaders import Batch, batches, split_length
from toolchain.errors import SpecError
from toolchain.fit import FeatureTap, feature_distance, fit, reestimate_bn
from toolchain.progress import progress_bar
from toolchain.recipe import Recipe
from toolchain.slim.convert import SlimmableModel, WidthConfig, norm_layers
from toolchain.train import TrainConfig, distill_loss, task_loss


@dataclass
class SlimTrainConfig(TrainConfig):
    epochs: float = 1.0
    lr: float = 1e-3
    random_configs: int = 1  # random configurations per step besides widest and narrowest
    # Weights. Every configuration shares the widest's weights, so the narrower ones' losses pull
    # full width away from the trained model; on fashion-mt (0.5 epoch, 3,000 test images) full-width
    # denoise fell 1.04 dB without a teacher, 0.50 dB with teacher_weight 1, 0.28 dB with 3, 0.32 dB
    # with the narrower configurations' weights halved, 0.17 dB with both (docs/slimmable.md).
    distill_weight: float = 0.5  # in-place distillation from the widest
    feature_weight: float = 1.0  # configuration-invariant distillation of encoder features
    label_weight: float = 0.25  # narrower configurations also see the labels
    teacher_weight: float = 3.0  # the widest also distills from the original model (when one is given)
    calib_images: int = 512  # batch-norm recalibration images per configuration


def feature_loss(slim: SlimmableModel, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """CI-KD: mean squared error between the current (narrower) configuration's encoder features and
    the widest's, on the channels the narrower one keeps."""
    keep = {n: None if slim._masks.get(g) is None else int(slim._masks[g].sum())
            for n, g in slim.spec.feature_points.items()}
    return feature_distance({n: v for n, v in student.items() if n in keep}, teacher, keep)


def sandwich_step(slim: SlimmableModel, x: torch.Tensor, targets: Mapping[str, torch.Tensor] | None,
                  kinds: Mapping[str, str], rng: random.Random, config: SlimTrainConfig = SlimTrainConfig(),
                  teacher: nn.Module | None = None) -> dict[str, float]:
    """One sandwich-rule step on batch `x`: forward + backward of the widest, the narrowest and
    `config.random_configs` random configurations; gradients accumulate in `slim` (call
    ``optimizer.zero_grad()`` before and ``optimizer.step()`` after). `targets` None: label-free,
    the widest distills from `teacher` (the original model). Returns the loss per configuration."""
    if targets is None and teacher is None:
        raise SpecError("sandwich_step without labels needs teacher= (the original model) for the widest configuration")
    tasks = slim.tasks
    widest = WidthConfig.uniform(max(slim.spec.widths), tasks)
    narrowest = WidthConfig.uniform(min(slim.spec.widths), tasks)
    configs = [widest, narrowest] + [slim.sample(rng) for _ in range(config.random_configs)]
    losses: dict[str, float] = {}
    try:
        with FeatureTap(slim.model, slim.spec.feature_points) as tap:
            slim.set_config(widest, load_stats=False)
            out_w = slim(x)
            ref = None
            if teacher is not None and (targets is None or config.teacher_weight > 0):  # only when a loss reads it
                with torch.no_grad():
                    ref = teacher(x)
            if targets is None:
                loss = sum(distill_loss(kinds[t], out_w[t], ref[t]) for t in tasks)
            else:
                loss = sum(task_loss(kinds[t], out_w[t], targets[t]) for t in tasks)
                if ref is not None:
                    loss = loss + config.teacher_weight * sum(distill_loss(kinds[t], out_w[t], ref[t]) for t in tasks)
            loss.backward()
            losses["widest"] = float(loss.detach())
            soft = {t: v.detach() for t, v in out_w.items()}
            feats_w = {n: v.detach() for n, v in tap.values.items()}
            for i, c in enumerate(configs[1:]):
                slim.set_config(c, load_stats=False)
                out = slim(x)
                loss = config.distill_weight * sum(distill_loss(kinds[t], out[t], soft[t]) for t in tasks)
                if config.feature_weight > 0:
                    loss = loss + config.feature_weight * feature_loss(slim, tap.values, feats_w)
                if targets is not None and config.label_weight > 0:
                    loss = loss + config.label_weight * sum(task_loss(kinds[t], out[t], targets[t]) for t in tasks)
                loss.backward()
                losses["narrowest" if i == 0 else f"random{i}"] = float(loss.detach())
    finally:
        slim.set_config(widest, load_stats=False)
    return losses


def train_slimmable(slim: SlimmableModel, recipe: Recipe, config: SlimTrainConfig = SlimTrainConfig(),
                    on_step: Callable[[int, dict[str, float]], None] | None = None,
                    teacher: nn.Module | None = None) -> SlimmableModel:
    """Sandwich training, then :func:`recalibrate`. Trains in place and returns `slim` in eval mode
    at full width. `teacher`: the original trained model, distilled into the widest configuration
    (``config.teacher_weight``).

    The recipe hook ``hooks: {slim_train: "package.module:function"}`` wins: it is called as
    ``function(slim, recipe, config)`` and runs the user's own loop, calling :func:`sandwich_step`
    per batch. Without it, the built-in loop trains on the recipe's training split (labeled
    fashion-mnist)."""
    hook = recipe.hook("slim_train")
    if hook is not None:
        slim.train()
        hook(slim, recipe, config)
        recalibrate(slim, recipe, images=config.calib_images)
        return slim
    if recipe.data.kind != "fashion-mnist":
        raise SpecError(f"the built-in slimmable trainer needs labeled data (fashion-mnist); recipe {recipe.name!r} has "
                        f"data.kind={recipe.data.kind!r}: add `hooks: {{slim_train: \"package.module:function\"}}` "
                        "to the recipe, a loop that calls toolchain.slim.train.sandwich_step per batch")
    rng = random.Random(config.seed)
    kinds = {t: recipe.tasks[t].kind for t in slim.tasks}
    if teacher is not None:
        teacher.eval()
    # a shorter warm-up than training from scratch: the slimmable network starts from trained weights
    fit(slim, lambda x, targets: sandwich_step(slim, x, targets, kinds, rng, config, teacher),
        lambda epoch: batches(recipe, "train", count=config.limit, batch_size=config.batch_size,
                              seed=config.seed + epoch, shuffle=True),
        math.ceil(split_length(recipe, "train", config.limit) / config.batch_size), config.epochs, config.lr,
        config.weight_decay, pct_start=0.1, seed=config.seed, description="slimmable training", on_step=on_step)
    recalibrate(slim, recipe, images=config.calib_images)
    return slim


@torch.no_grad()
def recalibrate(slim: SlimmableModel, recipe: Recipe, images: int = 512, data: Iterable[Batch] | None = None) -> None:
    """Re-estimate batch-norm running statistics for every width and store them in `slim.bn_stats`:
    per encoder width (``encoder@50``; ``encoder@100-75-50`` per stage) and per (encoder widths,
    decoder width) for each decoder (``denoise@50/75``). Uses `images` training images (or `data`). Leaves `slim` in eval mode
    at full width with the full-width statistics loaded."""
    batch_list = list(data) if data is not None else list(batches(recipe, "train", count=images, batch_size=256))
    modules = dict(slim.model.named_modules())
    widths = sorted(slim.spec.widths, reverse=True)
    encoders = slim.spec.encoder_configs()
    slim.bn_stats = {}
    with progress_bar(transient=True) as progress:
        job = progress.add_task("batch-norm recalibration", total=len(encoders) * len(widths))
        for we in encoders:
            for wd in widths:
                cfg = WidthConfig.make(we, {t: wd for t in slim.tasks})
                slim.set_config(cfg, load_stats=False)
                reestimate_bn(slim, batch_list)
                for unit, key in slim.stats_keys(cfg).items():
                    if key not in slim.bn_stats:
                        slim.bn_stats[key] = {n: {"running_mean": modules[n].running_mean.clone(),
                                                  "running_var": modules[n].running_var.clone()}
                                              for n in norm_layers(slim, unit)}
                progress.advance(job)
    slim.eval()
    slim.set_config(WidthConfig.uniform(1.0, slim.tasks))
