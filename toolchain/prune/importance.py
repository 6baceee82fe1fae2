"""Channel saliency for multitask pruning: which channels of a group to remove first.

Score of channel c of group g (higher = keep)::

    score[c] = max over tasks t of  taylor_t[c] / mean(taylor_t over g)     (what any task needs)
             + magnitude[c] / mean(magnitude over g)                        (joint weight size)

- ``magnitude``: Torch-Pruning's group magnitude: the L2 norm of channel c's slice of *every*
  coupled layer (filters, consumers' input slices, batch-norm scale), averaged over the layers.
- ``taylor_t``: first-order Taylor |w * dL_t/dw| of task t's loss on val batches, over every coupled
  layer (Torch-Pruning's group Taylor). Per-task normalization keeps a task with a large loss from
  dominating; the max keeps a channel *any* task relies on (PAGCP: one task's filters are not traded
  for another's).

Label-free there is no loss to differentiate (distillation against the unpruned model has a zero
gradient before the first cut), so the score is the *sampled-Fisher sensitivity*: the squared Taylor
term of a loss whose expected square is the second-order change of the outputs (:func:`_fisher_loss`).

The sequential search compares channels within a group (:func:`channel_scores`); the joint search
needs scores comparable across groups (:func:`joint_scores`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from toolchain.data.loaders import Batch
from toolchain.prune.groups import ChannelGroup
from toolchain.recipe import Recipe
from toolchain.train import task_loss


def magnitude(group: ChannelGroup) -> torch.Tensor:
    """Group L2 magnitude per channel (all coupled layers, batch-norm scale included)."""
    imp = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer=None)
    with torch.no_grad():
        return imp(group.tp_group).detach().float()


def taylor_per_task(model: nn.Module, groups: Sequence[ChannelGroup], recipe: Recipe, data: Sequence[Batch],
                    label_free: bool = False, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """task -> group name -> Taylor importance per channel on `data` (see the module docstring):
    labelled, |w * dL_t/dw| of the task loss; label-free, the sampled-Fisher sensitivity."""
    model.eval()  # batch norm uses running statistics: we score the deployed function
    fisher = label_free or any(y is None for _, y in data)
    # Fisher: the signed sum per channel (the whole channel is removed), squared; bias terms count
    # because removing a channel removes its bias too
    imp = tp.importance.GroupTaylorImportance(group_reduction="sum", normalizer=None, multivariable=fisher, bias=fisher)
    params = list(model.parameters())
    out: dict[str, dict[str, torch.Tensor]] = {}
    with torch.enable_grad():
        losses = task_losses(model, recipe, data, fisher, seed)  # one forward; a backward per task
        for i, (task, loss) in enumerate(losses.items()):
            for p in params:
                p.grad = None
            loss.backward(retain_graph=i < len(losses) - 1)
            for p in params:  # a layer this task never reaches has no gradient: it contributes zero
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            per_group: dict[str, torch.Tensor] = {}
            for g in groups:
                v = imp(g.tp_group)
                v = torch.zeros(g.channels) if v is None else v.detach().float().abs()
                per_group[g.name] = v.square() if fisher else v
            out[task] = per_group
    for p in params:
        p.grad = None
    return out


def task_losses(model: nn.Module, recipe: Recipe, data: Sequence[Batch], fisher: bool,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """task -> loss of `model` on all of `data` in one forward (run it with gradients enabled): the
    trainer's task loss against the labels, or with `fisher` the sampled-Fisher loss (:func:`_fisher_loss`)."""
    preds = model(torch.cat([b for b, _ in data]))
    gen = torch.Generator().manual_seed(seed)
    return {t: (_fisher_loss(s.kind, preds[t], gen) if fisher
                else task_loss(s.kind, preds[t], torch.cat([y[t] for _, y in data]))) for t, s in recipe.tasks.items()}


def _fisher_loss(kind: str, pred: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A loss whose squared Taylor term estimates, in expectation, how far removing a channel moves the
    outputs: for class scores the softmax KL (at the distillation temperature), labels sampled from the
    model's own prediction (sampled Fisher); for other outputs the squared change, through a Gaussian
    random projection. Unlike distillation, its gradient is not zero where the two models agree."""
    if kind in ("classification", "segmentation"):
        t = 2.0
        logits = (pred.float() / t).movedim(1, -1).reshape(-1, pred.shape[1])
        with torch.no_grad():
            sampled = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
        return F.cross_entropy(logits, sampled, reduction="sum")
    r = torch.randn(pred.shape, generator=gen)
    return (pred.float() * r).sum()


def joint_scores(model: nn.Module, groups: Sequence[ChannelGroup], recipe: Recipe, data: Sequence[Batch],
                 label_free: bool = False, use_taylor: bool = True) -> dict[str, torch.Tensor]:
    """group name -> score per channel, comparable *across* groups (the joint search ranks every
    channel of the network at once): each task's Taylor importance divided by that task's total
    over all groups, the max over tasks. Without Taylor, group magnitude over its mean (a ranking
    that is comparable only roughly)."""
    if not use_taylor:
        return {g.name: _normalized(magnitude(g)) for g in groups}
    taylor = taylor_per_task(model, groups, recipe, data, label_free)
    totals = {t: sum(float(v.sum()) for v in per.values()) for t, per in taylor.items()}
    scores = {}
    for g in groups:
        per_task = [taylor[t][g.name] / totals[t] for t in taylor if totals[t] > 0]
        scores[g.name] = torch.stack(per_task).max(dim=0).values if per_task else torch.zeros(g.channels)
    return scores


def _normalized(v: torch.Tensor) -> torch.Tensor:
    v = torch.nan_to_num(v.float(), nan=0.0)
    m = v.mean()
    return v / m if m > 0 else torch.zeros_like(v)


def channel_scores(model: nn.Module, groups: Sequence[ChannelGroup], recipe: Recipe, data: Sequence[Batch],
                   label_free: bool = False, use_taylor: bool = True) -> dict[str, torch.Tensor]:
    """group name -> score per channel, comparable within its group (higher = more important; see
    the module docstring)."""
    taylor = taylor_per_task(model, groups, recipe, data, label_free) if use_taylor else {}
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
