"""Precision-typed float16 ONNX for strongly typed TensorRT networks (written with plain `onnx`).

Contract of `to_fp16(model)`:

- every float32 initializer and Constant becomes float16, so weights are stored and computed
  in float16 -- except tensors whose ONNX type must stay float32 (Resize `roi`/`scales`) and
  tensors listed in `keep_float32_inputs`;
- graph inputs and outputs keep their names. Those named in `float32_boundaries` (the model
  input and task outputs, docs/bundle-format.md rule 3) stay float32, with a Cast to float16
  after each such input and a Cast to float32 before each such output; every other boundary
  tensor (between two segments) becomes float16 itself. `float32_boundaries=None` keeps every
  boundary float32;
- Cast nodes that cast *to* float32 inside the graph now cast to float16;
- the result passes `onnx.checker.check_model(full_check=True)` and runs in onnxruntime's CPU
  provider (ops without a float16 CPU kernel get float32 fallbacks inserted by onnxruntime at
  session creation; the file itself stays float16 -- see docs/quantization.md).
"""

from __future__ import annotations

from typing import Collection

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolchain.errors import MtedgeError

# (op_type, input index) whose tensor must stay float32 whatever the data type is
_FLOAT32_ONLY_INPUTS = {("Resize", 1), ("Resize", 2)}
_FLOAT16_MAX = 65504.0


class Fp16ConversionError(MtedgeError):
    """The float16 graph does not check or a weight does not fit in float16."""


def to_fp16(model: onnx.ModelProto, name: str = "segment",
            float32_boundaries: Collection[str] | None = None) -> onnx.ModelProto:
    """A float16 copy of `model` (see the module docstring for the contract)."""

    def stays32(t: str) -> bool:
        return float32_boundaries is None or t in float32_boundaries

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep32 = {t for node in g.node for idx, t in enumerate(node.input)
              if t and (node.op_type, idx) in _FLOAT32_ONLY_INPUTS}
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            _half(init, f"{name}: initializer {init.name}")

    for node in g.node:
        if node.op_type == "Constant" and node.output[0] not in keep32:
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    _half(a.t, f"{name}: constant {node.output[0]}")
        elif node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
        elif node.op_type == "ConstantOfShape":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    _half(a.t)

    # boundaries: Cast after each float input, Cast before each float output
    new_nodes: list[onnx.NodeProto] = []
    renamed: dict[str, str] = {}
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT and not stays32(inp.name):
            inp.type.tensor_type.elem_type = TensorProto.FLOAT16
        elif inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            internal = f"{inp.name}__fp16"
            renamed[inp.name] = internal
            new_nodes.append(helper.make_node("Cast", [inp.name], [internal], name=f"cast_in_{inp.name}", to=TensorProto.FLOAT16))
    for node in g.node:
        for i, t in enumerate(node.input):
            if t in renamed and (node.op_type, i) not in _FLOAT32_ONLY_INPUTS:
                node.input[i] = renamed[t]
    out_renamed: dict[str, str] = {}
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT and not stays32(out.name):
            out.type.tensor_type.elem_type = TensorProto.FLOAT16
        elif out.type.tensor_type.elem_type == TensorProto.FLOAT:
            out_renamed[out.name] = f"{out.name}__fp16"
    for node in g.node:
        for i, t in enumerate(node.output):
            if t in out_renamed:
                node.output[i] = out_renamed[t]
        for i, t in enumerate(node.input):  # an output tensor may also feed other nodes
            if t in out_renamed:
                node.input[i] = out_renamed[t]
    tail = [helper.make_node("Cast", [renamed.get(o, out_renamed[o])], [o], name=f"cast_out_{o}", to=TensorProto.FLOAT)
            for o in (out.name for out in g.output) if o in out_renamed]  # renamed.get: an input passed straight through
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    try:
        onnx.checker.check_model(m, full_check=True)
    except onnx.checker.ValidationError as e:
        raise Fp16ConversionError(f"{name}: the float16 graph does not check: {str(e).splitlines()[0]}") from None
    return m


def _half(t: onnx.TensorProto, where: str | None = None) -> None:
    """Make float32 `t` float16 in place; with `where` (named in the error), check that its values fit."""
    arr = numpy_helper.to_array(t)
    if where is not None and arr.size and float(np.max(np.abs(arr))) > _FLOAT16_MAX:
        raise Fp16ConversionError(f"{where} holds values beyond float16's range (±65504); "
                                  "keep this model in fp32 or int8")
    t.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), t.name))


def float16_ops(model: onnx.ModelProto) -> list[str]:
    """Op types that compute on float16 tensors in `model` (for the report)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return sorted({n.op_type for n in inferred.graph.node if n.op_type != "Cast"
                   and any(types.get(t) == TensorProto.FLOAT16 for t in n.input)})
