"""Shapes on the captured graph: the model captured by toolchain.graph.capture, with every
value's shape propagated for one example. The graph's output dict {task: node} is how we learn
which layers each task needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from toolchain.graph.capture import capture, task_outputs as outputs_of


@dataclass
class TracedModel:
    gm: fx.GraphModule
    input_node: fx.Node
    task_outputs: dict[str, fx.Node]  # task -> the node producing its output
    example: torch.Tensor

    @property
    def tasks(self) -> list[str]:
        return list(self.task_outputs)


def trace(model: nn.Module, example: torch.Tensor) -> TracedModel:
    """Symbolically trace `model` and propagate shapes for `example` (batch of 1 for costs)."""
    gm = capture(model.eval())
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    return TracedModel(gm, next(n for n in gm.graph.nodes if n.op == "placeholder"), outputs_of(gm), example)


def forward_with_hooks(model: nn.Module, example: torch.Tensor, hooks: Mapping[nn.Module, Callable]) -> None:
    """One eval-mode forward of `example`'s first sample with forward `hooks` installed; the hooks
    come off and the training mode is restored whatever happens."""
    handles = [mod.register_forward_hook(fn) for mod, fn in hooks.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def is_tensor_node(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def node_shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)
