"""The one torch -> ONNX call: the exporter's segments, the pruner's and slimmer's host latency
probes and the exactness check all serialize modules the same way (opset 17, weights inside)."""

from __future__ import annotations

import io
import warnings
from typing import Sequence

import onnx
import torch
from torch import nn

OPSET = 17


class TaskSubset(nn.Module):
    """Wraps a multitask model so that it returns only some tasks, in that order (the rest is never
    traced): a bundle segment's task, a whole-model latency probe's outputs."""

    def __init__(self, model: nn.Module, tasks: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.keep = tuple(tasks)
        # a fresh module is in training mode; exporters restore that mode recursively afterwards,
        # which would flip the wrapped model's batch norms into training mode
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        return {t: out[t] for t in self.keep}


def onnx_bytes(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
               dynamic_batch: bool = False) -> bytes:
    """Export `module` to ONNX (opset 17, weights inside the file) and return the bytes."""
    if module.training:
        raise ValueError("export a module in eval mode (call .eval() first)")
    buf = io.BytesIO()
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, opset_version=OPSET, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False)
    data = buf.getvalue()
    onnx.checker.check_model(data, full_check=True)  # checks the bytes in C++: no Python-side parse
    return data
