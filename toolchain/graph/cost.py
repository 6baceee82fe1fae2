"""FLOPs of captured nodes and layers, in the convention of toolchain/flops.py."""

from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from toolchain.flops import conv_flops, matmul_flops
from toolchain.graph.tracing import is_tensor_node, node_shape


def module_flops(mod: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """FLOPs of one call of a layer (0 for layers the convention does not count)."""
    if isinstance(mod, nn.modules.conv._ConvNd):
        return conv_flops(math.prod(in_shape), math.prod(out_shape), mod.weight.shape, mod.transposed)
    if isinstance(mod, nn.Linear):
        return matmul_flops(math.prod(out_shape), mod.in_features)
    return 0


def node_flops(gm: fx.GraphModule, node: fx.Node) -> int:
    if not is_tensor_node(node):
        return 0
    out = node_shape(node)
    first = node.args[0] if node.args else None
    if node.op == "call_module":
        return module_flops(gm.get_submodule(node.target), node_shape(first) if _is_tensor(first) else (), out)
    if node.op != "call_function":
        return 0
    if node.target is F.linear and _is_tensor(node.args[1]):
        return matmul_flops(math.prod(out), node_shape(node.args[1])[-1])
    if node.target in (torch.matmul, torch.bmm, torch.mm, operator.matmul) and _is_tensor(first):
        return matmul_flops(math.prod(out), node_shape(first)[-1])
    if node.target is F.conv2d and _is_tensor(node.args[1]):
        return conv_flops(math.prod(node_shape(first)), math.prod(out), node_shape(node.args[1]))
    return 0


def _is_tensor(arg: object) -> bool:
    return isinstance(arg, fx.Node) and is_tensor_node(arg)
