"""Channel groups: the units structured pruning removes channels from.

A group's layers are coupled through Torch-Pruning's ``DependencyGraph`` (removing output channel
``i`` of the root removes it everywhere in the group), so pruning any proper subset of its channels
leaves a valid, smaller, dense model; task output layers (:func:`output_layers`) are never pruned.
docs/pruning.md, "Algorithm as built" step 1. Contract used by the exactness checker and the pruner::

    groups = channel_groups(model, example)            # list[ChannelGroup], full channel range
    g.prune(model, idxs)                                # removes channels `idxs` of g's root, in place
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import operator

import torch
import torch.fx as fx
import torch_pruning as tp
from torch import nn

from toolchain.errors import SpecError
from toolchain.graph.capture import capture, task_outputs

_PRODUCERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Conv1d)


@dataclass
class ChannelGroup:
    """One set of coupled channels, rooted at a producer layer (its output channels). `tp_group` is
    Torch-Pruning's group over the root's full channel range, bound to the model the groups were built
    from; :meth:`prune` resolves the root by name, so it works on any model with the same module names."""

    name: str  # the root layer's module name, e.g. "encoder.stage1.0.0"
    root_module: nn.Module
    channels: int  # current output channels of the root
    tp_group: tp.dependency.Group
    layers: list[str]  # every coupled layer (module names), the root first
    out_layers: list[str] = field(default_factory=list)  # layers whose outputs shrink
    in_layers: list[str] = field(default_factory=list)  # layers whose inputs shrink

    def prune(self, model: nn.Module, idxs: Sequence[int], example: torch.Tensor | None = None,
              graph: tp.DependencyGraph | None = None) -> None:
        """Remove output channels `idxs` of this group's root (and every coupled channel) from
        `model`, in place. `model` may be the model the group came from or a copy of it; for a copy,
        pass `example` (a dependency graph is built for it) or a `graph` already built on it."""
        idxs = sorted({int(i) for i in idxs})
        if not idxs:
            return
        if len(idxs) >= self.channels:
            raise SpecError(f"cannot remove all {self.channels} channels of group {self.name}; keep at least one")
        if graph is None:
            if model is self.tp_group._DG.model:
                graph = self.tp_group._DG
            elif example is None:
                raise SpecError(f"pruning group {self.name} on another model needs `example` to build its dependency graph")
            else:
                graph = dependency_graph(model, example)
        root = _module(model, self.name)
        group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs)
        if not graph.check_pruning_group(group):
            raise SpecError(f"pruning {len(idxs)} channels of {self.name} would empty a coupled layer")
        group.prune()


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise SpecError(f"model has no layer {name!r} (was it built from another architecture?)") from None


def dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of `model` traced on `example` (forward returns {task: tensor})."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():  # the graph is traced through autograd
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example, output_transform=_flatten_outputs, verbose=False
            )
    finally:
        model.train(was_training)


def _flatten_outputs(out: object) -> torch.Tensor:
    # a scalar touching every task output: Torch-Pruning traces the autograd graph from it
    if isinstance(out, (dict, list, tuple)):
        return sum(v.float().sum() for v in (out.values() if isinstance(out, dict) else out))
    return out.sum()


def _trace(model: nn.Module) -> fx.GraphModule:
    # the model's own forward as it runs (dead calls kept): groups are pruned on this very module
    return capture(model, allow_default_names=True, keep_dead_calls=True)


def _producers_behind(node: object, modules: dict[str, nn.Module]) -> tuple[set[str], bool]:
    """The Conv/Linear layers whose output channels reach `node` through channel-preserving
    operations (activations, norms, resizing, pooling, flatten, element-wise maths, concatenation),
    and whether the network input reaches it the same way, with no such layer in between."""
    producers: set[str] = set()
    reaches_input = False
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if not isinstance(n, fx.Node) or n in seen:
            continue
        seen.add(n)
        if n.op == "call_module" and isinstance(modules[str(n.target)], _PRODUCERS):
            producers.add(str(n.target))
            continue
        reaches_input |= n.op == "placeholder"
        if n.op in ("placeholder", "get_attr"):
            continue
        # any other module (activation, norm, pooling, a user's parameter-free op) is read
        # through: its output channels are its input's channels
        stack.extend(n.all_input_nodes)
    return producers, reaches_input


def output_layers(model: nn.Module, example: torch.Tensor | None = None,
                  gm: fx.GraphModule | None = None) -> dict[str, list[str]]:
    """Task name -> names of the layers whose output channels are that task's output channels: the
    Conv/Linear layers behind it through channel-preserving operations (:func:`_producers_behind`).
    These layers are never pruned: their width is the task's contract."""
    gm = gm or _trace(model)
    modules = dict(gm.named_modules())
    return {task: sorted(_producers_behind(node, modules)[0]) for task, node in task_outputs(gm).items()}


_ELEMENTWISE = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul, "add", "add_", "sub", "mul"}


def _unsafe_layers(gm: fx.GraphModule, traced: set[str]) -> dict[str, str]:
    """Layers whose output channels Torch-Pruning cannot prune safely, with the reason: producers meeting
    the network input in an element-wise op (the autograd trace misses that coupling), and producers
    feeding a layer no task output depends on (untraced, its inputs would not shrink with theirs)."""
    modules = dict(gm.named_modules())
    unsafe: dict[str, str] = {}
    for n in gm.graph.nodes:
        if n.op in ("call_function", "call_method") and n.target in _ELEMENTWISE:
            behind = [_producers_behind(a, modules) for a in n.args if isinstance(a, fx.Node)]
            if len(behind) >= 2 and any(inp and not prods for prods, inp in behind):
                for prods, _ in behind:
                    for p in prods:
                        unsafe.setdefault(p, f"its channels meet the network input in `{n.name}`")
        elif n.op == "call_module" and isinstance(modules[str(n.target)], _PRODUCERS) and str(n.target) not in traced:
            for a in n.all_input_nodes:
                for p in _producers_behind(a, modules)[0]:
                    unsafe.setdefault(p, f"it feeds {n.target}, which no task output depends on")
    return unsafe


def channel_groups(model: nn.Module, example: torch.Tensor, ignored: Iterable[str] = (),
                   graph: tp.DependencyGraph | None = None, protect_outputs: bool = True,
                   skipped: dict[str, str] | None = None) -> list[ChannelGroup]:
    """Every prunable channel group of `model` (a multitask module returning {task: tensor}).

    `ignored`: layer names that must keep their output channels (a group touching one is left out).
    Groups through a grouped (non-depthwise) convolution are left out too (removing single channels
    would break its group structure), recorded in `skipped` with the reason when given. With
    `protect_outputs` (default) the task output layers (:func:`output_layers`) are added to `ignored`.
    Groups come in the graph's order; each covers its root's full channel range."""
    ignored = set(ignored)
    skipped = {} if skipped is None else skipped
    names = {m: n for n, m in model.named_modules()}
    unknown = [n for n in ignored if n not in dict(model.named_modules())]
    if unknown:
        raise SpecError(f"ignored layer(s) {', '.join(sorted(unknown))} are not in {type(model).__name__}")
    gm = _trace(model) if protect_outputs else None
    if gm is not None:
        for layers in output_layers(model, example, gm).values():
            ignored.update(layers)
    graph = graph or dependency_graph(model, example)
    traced = {names[m] for m in graph.module2node if isinstance(m, nn.Module) and m in names}
    unsafe = _unsafe_layers(gm, traced) if gm is not None else {}
    ignored_modules = [model.get_submodule(n) for n in ignored]
    groups: list[ChannelGroup] = []
    for g in graph.get_all_groups(ignored_layers=ignored_modules, root_module_types=(nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
        root = g[0].dep.target.module
        deps = [(names[d.target.module], d.handler) for d, _ in g
                if isinstance(d.target.module, nn.Module) and d.target.module in names]
        out_layers = list(dict.fromkeys(n for n, h in deps if graph.is_out_channel_pruning_fn(h)))
        in_layers = list(dict.fromkeys(n for n, h in deps if graph.is_in_channel_pruning_fn(h)
                                       and not graph.is_out_channel_pruning_fn(h)))
        if any(n in ignored for n in out_layers):
            continue
        channels = graph.get_out_channels(root)
        if channels is None or channels < 2:
            continue
        bad = next((n for n in out_layers if n in unsafe), None)
        if bad is not None:
            skipped[names[root]] = f"layer {bad} cannot be pruned: {unsafe[bad]}"
            continue
        grouped = [names[m] for m in (dep.target.module for dep, _ in g)
                   if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels and m in names]
        if grouped:
            skipped[names[root]] = f"couples grouped convolution {grouped[0]} (groups > 1, not depthwise)"
            continue
        layers = list(dict.fromkeys([names[root], *out_layers, *in_layers]))
        groups.append(ChannelGroup(names[root], root, int(channels), g, layers, out_layers, in_layers))
    return groups
