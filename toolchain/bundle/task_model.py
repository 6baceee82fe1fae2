"""A task's segments merged into one ONNX model: the one-model-per-task deployment that the
runtime is compared with (``mtedge bench``), and an ONNX a user can hand to another runtime."""

from __future__ import annotations

import os

import onnx

from toolchain.bundle.manifest import Bundle


def task_model(bundle: str | os.PathLike, task: str, variant: str | None = None) -> onnx.ModelProto:
    """The task's segments merged into one ONNX model (input -> task output).

    Segment files share only boundary tensor names; everything internal is prefixed with the
    segment name so that initializers and intermediate values of different segments never clash."""
    b = Bundle.open(bundle)
    m, segments = b.manifest, b.variant(variant).segments
    nodes, inits, value_info, opsets = [], [], [], {}
    graph_input = graph_output = None
    ir_version = 8
    for seg in b.segments_for([task]):
        model = onnx.load(b.path(segments[seg]))
        g = model.graph
        ir_version = max(ir_version, model.ir_version)
        for op in model.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        boundary = {v.name for v in g.input} | {v.name for v in g.output}
        rename = {n: f"{seg}/{n}" for n in [i.name for i in g.initializer] +
                  [o for node in g.node for o in node.output] if n and n not in boundary}
        for node in g.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise NotImplementedError(f"segment {seg!r} has control flow ({node.op_type}); cannot merge")
            node.input[:] = [rename.get(n, n) for n in node.input]
            node.output[:] = [rename.get(n, n) for n in node.output]
            if node.name:
                node.name = f"{seg}/{node.name}"
            nodes.append(node)
        for init in g.initializer:
            init.name = rename.get(init.name, init.name)
            inits.append(init)
        for vi in g.value_info:
            vi.name = rename.get(vi.name, vi.name)
            value_info.append(vi)
        graph_input = graph_input or next((vi for vi in g.input if vi.name == m.input.name), None)
        graph_output = next((vi for vi in g.output if vi.name == m.tasks[task].output), graph_output)
    graph = onnx.helper.make_graph(nodes, f"{m.name}-{task}", [graph_input], [graph_output], inits,
                                   value_info=value_info)
    merged = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()])
    merged.ir_version = ir_version
    return merged
