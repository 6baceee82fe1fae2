"""Trace a multitask model with torch.fx and record every value's shape.

The traced graph must end in a dict {task: tensor}; that dict is how we learn which layers
each task needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from toolchain.errors import SpecError


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
    model = model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:
        raise SpecError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {e}); "
            "data-dependent Python control flow in forward() must be removed or moved into a leaf module"
        ) from None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise SpecError(f"a multitask model takes one image batch; forward() has {len(placeholders)} inputs")
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    result = out_node.args[0]
    if not isinstance(result, dict) or not result:
        raise SpecError("forward() must return a dict task-name -> tensor")
    task_outputs: dict[str, fx.Node] = {}
    for task, node in result.items():
        if not isinstance(node, fx.Node):
            raise SpecError(f"output {task!r} is a constant, not a tensor computed from the input")
        task_outputs[str(task)] = node
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    return TracedModel(gm, placeholders[0], task_outputs, example)


def is_tensor_node(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def node_shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)
