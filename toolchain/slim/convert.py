"""Conversion of a trained multitask model into a slimmable one.

    slim = convert(model, recipe.tasks, example)     # importance-ordered, function-preserving
    slim.set_config(WidthConfig(0.5, {"garment": 1.0, ...}))
    slim(x)                                          # the 0.5-encoder configuration (channel masks)
    dense = materialize(slim, config, example)       # a plain, smaller nn.Module for export

Units, the keep(C, w) rounding, importance ordering, masks vs sliced weights and batch-norm recalibration:
docs/slimmable.md, "Design". The model type (SlimmableModel, WidthConfig, SlimSpec) is toolchain.slimmable.
"""

from __future__ import annotations

import copy
from typing import Iterable, Mapping, Sequence

import torch
import torch.fx as fx
from torch import nn

from toolchain.errors import SpecError
from toolchain.graph.capture import capture, module_tasks, trunk_boundary
from toolchain.graph.tracing import forward_with_hooks
from toolchain.prune.groups import ChannelGroup, channel_groups, dependency_graph
from toolchain.slimmable import DEFAULT_WIDTHS, ENCODER, GroupInfo, SlimmableModel, SlimSpec, WidthConfig
from toolchain.slimmable import keep_channels, parse_config_name  # noqa: F401  re-exported

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _feature_points(gm: fx.GraphModule, depends: dict[str, frozenset[str]], groups: list[GroupInfo]) -> dict[str, str]:
    """Encoder outputs that decoders read (the trunk boundary): module name -> the group whose mask
    covers its channels, the nearest group producer upstream (walking back through parameter-free
    modules such as ReLU)."""
    owner = {layer: g.name for g in groups if g.unit == ENCODER for layer in g.out_layers}
    points: dict[str, str] = {}
    for n in trunk_boundary(gm, depends):
        m, seen = n, 0
        while isinstance(m, fx.Node) and seen < 8:
            if m.op == "call_module" and str(m.target) in owner:
                points[str(n.target)] = owner[str(m.target)]
                break
            ins = m.all_input_nodes
            if len(ins) != 1:
                break
            m, seen = ins[0], seen + 1
    return points


def _permute_group(group: ChannelGroup, order: torch.Tensor) -> None:
    """Reorder the channels of `group` (root channel order[j] moves to position j) in every coupled
    layer, consistently: a function-preserving permutation."""
    handlers_done: set[tuple[int, str, tuple[int, ...]]] = set()
    for item in group.tp_group:
        dep, mod = item.dep, item.dep.target.module
        if not isinstance(mod, nn.Module):
            continue
        graph = group.tp_group._DG
        if graph.is_out_channel_pruning_fn(dep.handler):
            direction = "out"
        elif graph.is_in_channel_pruning_fn(dep.handler):
            direction = "in"
        else:
            continue
        idxs = [int(i) for i in item.idxs]
        roots = item.root_idxs
        if roots is None or any(r is None for r in roots):
            raise SpecError(f"cannot map channels of {type(mod).__name__} in group {group.name} to the root; "
                            "this layer type is not supported for slimming")
        key = (id(mod), direction, tuple(idxs))
        if key in handlers_done:
            continue
        handlers_done.add(key)
        by_root: dict[int, list[int]] = {}
        for i, r in zip(idxs, roots):
            by_root.setdefault(int(r), []).append(i)
        _reorder_module(mod, direction, by_root, order, group.name)


def _reorder_module(mod: nn.Module, direction: str, by_root: dict[int, list[int]], order: torch.Tensor, group: str) -> None:
    tensors: list[tuple[torch.Tensor, int]] = []
    bias = [(mod.bias, 0)] if getattr(mod, "bias", None) is not None else []
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        depthwise = mod.groups > 1
        if depthwise and mod.groups != mod.in_channels:
            raise SpecError(f"grouped convolution in group {group} cannot be slimmed (groups={mod.groups})")
        tensors = [(mod.weight, 0), *bias] if direction == "out" or depthwise else [(mod.weight, 1)]
    elif isinstance(mod, (nn.ConvTranspose2d, nn.Linear)):
        # a transposed convolution stores its weight [in, out, ...], a linear layer [out, in]
        out_dim = 1 if isinstance(mod, nn.ConvTranspose2d) else 0
        tensors = [(mod.weight, out_dim), *bias] if direction == "out" else [(mod.weight, 1 - out_dim)]
    elif isinstance(mod, _NORMS):
        tensors = [(t, 0) for t in (mod.weight, mod.bias, mod.running_mean, mod.running_var) if t is not None]
    elif isinstance(mod, nn.PReLU):
        tensors = [(mod.weight, 0)] if mod.weight.numel() > 1 else []
    elif any(True for _ in mod.parameters(recurse=False)):
        raise SpecError(f"layer type {type(mod).__name__} in group {group} has parameters slimming cannot reorder; "
                        "wrap it or list its producer in ignored=[...]")
    if not tensors:
        return
    size = tensors[0][0].shape[tensors[0][1]]
    src = torch.arange(size)
    for j in range(len(order)):  # root channel order[j]'s positions fill root channel j's
        for d, s in zip(by_root[j], by_root[int(order[j])]):
            src[d] = s
    with torch.no_grad():
        for t, dim in tensors:
            t.copy_(t.index_select(dim, src))


def _stages_by_resolution(model: nn.Module, example: torch.Tensor, roots: list[str]) -> dict[str, int]:
    """root layer -> encoder stage: layers whose outputs share a spatial size form a stage, the
    highest resolution first (a layer without spatial output -- a linear -- joins the last)."""
    sizes: dict[str, int] = {}
    modules = dict(model.named_modules())
    def size_of(r: str):
        return lambda mod, inp, out: sizes.__setitem__(r, int(out[0, 0].numel()) if out.dim() > 2 else 0)

    forward_with_hooks(model, example, {modules[r]: size_of(r) for r in roots})
    order = sorted({v for v in sizes.values() if v > 0}, reverse=True)
    last = max(len(order) - 1, 0)
    return {r: order.index(sizes[r]) if sizes.get(r, 0) > 0 else last for r in roots}


def convert(model: nn.Module, tasks: Sequence[str], example: torch.Tensor,
            scores: Mapping[str, torch.Tensor] | None = None, widths: Sequence[float] = DEFAULT_WIDTHS,
            round_to: int = 4, ignored: Iterable[str] = (), encoder_stages: bool = False) -> SlimmableModel:
    """Make a slimmable model from a trained multitask `model` (copied, never modified).

    `scores`: group root name -> importance per channel (higher = keep); default: the group's
    L2 magnitude (toolchain.prune.importance.magnitude). Pass
    ``toolchain.prune.importance.channel_scores(...)`` for the pruner's task-aware score.
    `encoder_stages`: one width per encoder stage (groups by output resolution) instead of one
    width for the whole encoder; the grid and the search then cover |widths|^stages encoders.
    Contract: the result at full width computes the same function as `model`.
    """
    from toolchain.prune.importance import magnitude

    widths = tuple(sorted({float(w) for w in widths}, reverse=True))
    if not widths or widths[0] != 1.0 or any(not 0 < w <= 1 for w in widths):
        raise SpecError(f"widths {list(widths)} must lie in (0, 1] and include 1.0 (the trained width)")
    if round_to < 1:
        raise SpecError(f"round_to={round_to} must be a positive channel multiple (e.g. 4 or 8)")
    model = copy.deepcopy(capture(model)).eval()
    tasks = list(tasks)
    groups = channel_groups(model, example, ignored=ignored)
    if not groups:
        raise SpecError(f"{type(model).__name__} has no channel group that can be slimmed")
    gm = capture(model)
    depends = module_tasks(gm, tasks)  # module name -> the tasks whose output depends on a call of it
    infos: list[GroupInfo] = []
    for g in groups:
        users = depends.get(g.name, frozenset())
        unit = next(iter(users)) if len(users) == 1 else ENCODER
        order = torch.argsort(-(scores[g.name] if scores and g.name in scores else magnitude(g)).float(), stable=True)
        _permute_group(g, order)
        infos.append(GroupInfo(g.name, unit, g.channels, list(g.out_layers), list(g.in_layers)))
    stages = 1
    if encoder_stages:
        enc = [i.name for i in infos if i.unit == ENCODER]
        stage_of = _stages_by_resolution(model, example, enc)
        for i in infos:
            i.stage = stage_of.get(i.name, 0)
        stages = max(stage_of.values(), default=0) + 1
    units = [ENCODER] + [t for t in tasks if any(i.unit == t for i in infos)]
    unit_layers: dict[str, list[str]] = {u: [] for u in [ENCODER, *tasks]}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, *_NORMS)):
            users = depends.get(name, frozenset())
            unit_layers[next(iter(users)) if len(users) == 1 else ENCODER].append(name)
    spec = SlimSpec(tasks, widths, round_to, infos, units, unit_layers, _feature_points(gm, depends, infos), stages)
    return SlimmableModel(model, spec)


def norm_layers(slim: SlimmableModel, unit: str) -> list[str]:
    """Batch-norm layers of `unit` (whose running statistics depend on the configuration)."""
    modules = dict(slim.model.named_modules())
    return [n for n in slim.spec.unit_layers.get(unit, []) if isinstance(modules[n], _NORMS)]


@torch.no_grad()
def materialize(slim: SlimmableModel, config: WidthConfig, example: torch.Tensor) -> nn.Module:
    """A dense copy of the model at `config` (suffix channels removed), in eval mode."""
    slim.check_config(config)
    prev = slim.config
    slim.set_config(config)
    dense = copy.deepcopy(slim.model)
    slim.set_config(prev)
    for mod in dense.modules():
        mod._forward_hooks.clear()
    dense.eval()
    graph = dependency_graph(dense, example)
    live = {g.name: g for g in channel_groups(dense, example, graph=graph)}
    for g in slim.spec.groups:
        k = slim.spec.keep(g, config)
        if k < g.channels:
            if g.name not in live:
                raise SpecError(f"group {g.name} is not prunable in the copy; the model changed since conversion")
            live[g.name].prune(dense, list(range(k, g.channels)), graph=graph)
    return dense.eval()
