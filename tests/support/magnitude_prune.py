"""Magnitude channel pruning with Torch-Pruning, for composing pruning with quantization in tests
and bench/quant.py (the real pruning pipeline is `mtedge compress`; this only makes narrower
models, so it lives with the test support code, not in the wheel)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def magnitude_prune(module: nn.Module, example: torch.Tensor, ratio: float, keep: Sequence[nn.Module] = ()) -> nn.Module:
    """Remove `ratio` of the channels of every prunable layer (L1 magnitude, Torch-Pruning's
    DependencyGraph keeps shapes consistent); layers in `keep` (task output layers) keep their
    output channels. Prunes `module` in place and returns it in eval mode."""
    import torch_pruning as tp

    module.eval()
    pruner = tp.pruner.MagnitudePruner(
        module, example, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=ratio,
        ignored_layers=list(keep), output_transform=lambda out: sum(v.sum() for v in out.values()),
    )
    pruner.step()
    return module.eval()


def output_layers(module: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv/Linear layers whose width equals some task output's channel count: a safe superset of
    the task output layers (keeping a few extra layers unpruned is harmless)."""
    with torch.no_grad():
        widths = {int(v.shape[1]) for v in module.eval()(example).values()}
    return [m for m in module.modules()
            if (isinstance(m, nn.Conv2d) and m.out_channels in widths) or (isinstance(m, nn.Linear) and m.out_features in widths)]
