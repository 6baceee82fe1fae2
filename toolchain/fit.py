"""The one training loop of every mtedge trainer (training, pruning recovery, slimmable training) and
what they share: feature distillation and batch-norm re-estimation. A trainer supplies only what
differs, its batches and a step that back-propagates its loss (several forwards may accumulate, as
the sandwich rule does); :func:`fit` owns AdamW under a one-cycle schedule, the progress bar (its
estimate covers every step of every epoch) and the per-epoch callback."""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from toolchain.progress import progress_bar

_NORMS = nn.modules.batchnorm._BatchNorm


def fit(model: nn.Module, step: Callable[[torch.Tensor, object], float | dict[str, float]],
        epoch_batches: Callable[[int], Iterable], steps_per_epoch: int, epochs: float, lr: float,
        weight_decay: float = 1e-4, pct_start: float = 0.15, seed: int = 0, description: str = "training",
        train_mode: Callable[[nn.Module], None] | None = None,
        on_step: Callable[[int, object], None] | None = None,
        on_epoch: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """Train `model` in place for `epochs` (fractional: the last epoch runs that share of its batches);
    returns it in eval mode. `epoch_batches(epoch)`: that epoch's (x, targets) batches (0-based);
    `step(x, targets)`: back-propagates the loss, returns it (or losses by name) to show.
    `train_mode(model)`: default ``model.train()``. `on_step(step, losses)` after every step and
    `on_epoch(epoch, model)` after each epoch (both 1-based; the model in eval mode)."""
    total = max(1, math.ceil(epochs * steps_per_epoch))
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct_start)
    set_train = train_mode or (lambda m: m.train())
    set_train(model)
    done = 0
    with progress_bar() as progress:
        job = progress.add_task(description, total=total)
        for epoch in range(math.ceil(total / max(1, steps_per_epoch))):
            for x, targets in epoch_batches(epoch):
                if done >= total:
                    break
                opt.zero_grad(set_to_none=True)
                losses = step(x, targets)
                opt.step()
                sched.step()
                done += 1
                shown = losses if isinstance(losses, dict) else {"loss": losses}
                progress.update(job, advance=1, description=description + "".join(
                    f" {k} {v:.3f}" for k, v in shown.items()))
                if on_step is not None:
                    on_step(done, losses)
            if on_epoch is not None:
                on_epoch(epoch + 1, model.eval())
                set_train(model)
    return model.eval()


class FeatureTap:
    """`with FeatureTap(model, names) as tap:` -- tap.values holds the named modules' outputs of the
    last forward; the hooks go when the block ends."""

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        self.values: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(lambda m, i, out, n=n: self.values.__setitem__(n, out))
                        for n in names if n in modules]

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


def feature_distance(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                     channels: Mapping[str, int | None] | None = None) -> torch.Tensor:
    """How far the student's features are from the teacher's, summed over the points both hold (0
    when equal). Same shapes (after keeping the first `channels[name]`, the ones a narrower slimmable
    width keeps): mean squared error. Different channel counts (pruning removed channels, with no
    record of which): the distance between the batch similarity matrices (each sample's features
    against every other's, rows normalized), which needs no channel correspondence."""
    channels = channels or {}
    total = torch.zeros(())
    for name, s in student.items():
        if name not in teacher:
            continue
        t = teacher[name].detach()
        k = channels.get(name)
        if k is not None:
            s, t = s[:, :k], t[:, :k]
        if s.shape != t.shape:
            s, t = (F.normalize(f.flatten(1) @ f.flatten(1).t(), dim=1) * f.shape[0] ** 0.5 for f in (s, t))
        total = total + F.mse_loss(s, t)
    return total


@torch.no_grad()
def reestimate_bn(model: nn.Module, data: Iterable) -> nn.Module:
    """Recompute every batch-norm layer's running statistics as the mean over `data`'s batches of its
    inputs' batch mean and (unbiased) variance, the rest in eval mode; returns `model` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    saved = [m.momentum for m in norms]
    model.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches, not an exponential one
            m.train()
        for x, _ in data:
            model(x)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()
    return model


def train_mode(model: nn.Module, freeze_bn: bool = False) -> None:
    """Training mode; `freeze_bn`: batch norm keeps its statistics (scale and shift still learn)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, _NORMS):
                m.eval()
