"""The one torch -> ONNX call: the exporter's segments, the pruner's and slimmer's host latency
probes and the exactness check all serialize modules the same way (opset 17, weights inside)."""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

OPSET = 17


def onnx_bytes(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
               dynamic_batch: bool = False) -> bytes:
    """Export `module` to ONNX (opset 17, weights inside the file) and return the bytes."""
    if module.training:
        raise ValueError("export a module in eval mode (call .eval() first)")
    buf = io.BytesIO()
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, buf, opset_version=OPSET, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False,
        )
    data = buf.getvalue()
    onnx.checker.check_model(data, full_check=True)  # checks the bytes in C++: no Python-side parse
    return data
