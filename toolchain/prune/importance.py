"""Channel saliency for multitask pruning: which channels of a group to remove first.

Score of channel c of group g (higher = keep)::

    score[c] = max over tasks t of  taylor_t[c] / mean(taylor_t over g)     (what any task needs)
             + magnitude[c] / mean(magnitude over g)                        (joint weight size)

- ``magnitude``: Torch-Pruning's group magnitude importance: the L2 norm of channel c's slice of
  *every* coupled layer (producers' filters, consumers' input slices, batch-norm scale), averaged
  over the layers -- the joint effect across layers, not the root filter alone.
- ``taylor_t``: first-order Taylor |w * dL_t/dw| of task t's loss on the validation batches,
  accumulated over every coupled layer of the group (Torch-Pruning's group Taylor importance).
  Per-task normalization keeps a task with a large loss from dominating, and the max keeps a
  channel that *any* task relies on (the PAGCP idea: filters needed by one task are not traded for
  another task's).

Losses: labelled data uses the trainer's task losses; label-free data uses the distillation loss
against the unpruned model's outputs.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn

from toolchain.data.loaders import Batch
from toolchain.prune.groups import ChannelGroup
from toolchain.recipe import Recipe
from toolchain.train import distill_loss, task_loss


def magnitude(group: ChannelGroup) -> torch.Tensor:
    """Group L2 magnitude per channel (all coupled layers, batch-norm scale included)."""
    imp = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer=None)
    with torch.no_grad():
        return imp(group.tp_group).detach().float()


def taylor_per_task(model: nn.Module, groups: Sequence[ChannelGroup], recipe: Recipe, data: Sequence[Batch],
                    reference: nn.Module | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """task -> group name -> first-order Taylor importance per channel (on `data`).

    With `reference` (label-free), a task's loss is its distillation loss to the reference."""
    model.eval()  # batch norm uses running statistics: we score the deployed function
    kinds = {t: recipe.tasks[t].kind for t in recipe.tasks}
    imp = tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer=None)
    out: dict[str, dict[str, torch.Tensor]] = {}
    params = [p for p in model.parameters()]
    for task in kinds:
        for p in params:
            p.grad = None
        with torch.enable_grad():
            for x, targets in data:
                pred = model(x)[task]
                if reference is not None or targets is None:
                    with torch.no_grad():
                        ref = (reference or model)(x)[task]
                    loss = distill_loss(kinds[task], pred, ref)
                else:
                    loss = task_loss(kinds[task], pred, targets[task])
                loss.backward()
        per_group: dict[str, torch.Tensor] = {}
        for g in groups:
            try:
                per_group[g.name] = imp(g.tp_group).detach().float().abs()
            except (TypeError, AttributeError):  # a layer this task never reached has no gradient
                per_group[g.name] = torch.zeros(g.channels)
        out[task] = per_group
    for p in params:
        p.grad = None
    return out


def _normalized(v: torch.Tensor) -> torch.Tensor:
    v = torch.nan_to_num(v.float(), nan=0.0)
    m = v.mean()
    return v / m if m > 0 else torch.zeros_like(v)


def channel_scores(model: nn.Module, groups: Sequence[ChannelGroup], recipe: Recipe, data: Sequence[Batch],
                   reference: nn.Module | None = None, use_taylor: bool = True) -> dict[str, torch.Tensor]:
    """group name -> score per channel (higher = more important; see the module docstring)."""
    taylor = taylor_per_task(model, groups, recipe, data, reference) if use_taylor else {}
    scores: dict[str, torch.Tensor] = {}
    for g in groups:
        s = _normalized(magnitude(g))
        per_task = [_normalized(taylor[t][g.name]) for t in taylor if g.name in taylor[t]]
        if per_task:
            s = s + torch.stack(per_task).max(dim=0).values
        scores[g.name] = s
    return scores


def l1_scores(model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
    """The plain baseline: L1 norm of each root filter, normalized by the layer's mean (the usual
    global-magnitude pruning; Li et al. 2017 with Torch-Pruning's per-layer mean normalization)."""
    scores = {}
    for g in groups:
        w = g.root_module.weight.detach()
        if isinstance(g.root_module, nn.ConvTranspose2d):
            w = w.transpose(0, 1)
        scores[g.name] = _normalized(w.abs().flatten(1).sum(1))
    return scores


def lowest(scores: torch.Tensor, count: int) -> list[int]:
    """Indices of the `count` lowest scores (ties broken by index, deterministic)."""
    if count <= 0:
        return []
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:count])
