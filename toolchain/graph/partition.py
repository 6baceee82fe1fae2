"""Partition a traced multitask model into a DAG of segments.

Nodes with the same task set (the tasks whose output depends on them) form one segment; values cross segment
boundaries only as tensors. Why task sets (acyclic, each subset runs exactly its paths): docs/architecture.md,
"Partition: why task sets".
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from toolchain.errors import SpecError
from toolchain.graph.capture import reach, task_sets
from toolchain.graph.cost import node_flops
from toolchain.graph.tracing import TracedModel, is_tensor_node, node_shape

INPUT_NAME = "image"


@dataclass
class Segment:
    name: str
    tasks: frozenset[str]
    nodes: list[fx.Node]  # in graph (topological) order
    inputs: list[str] = field(default_factory=list)  # tensor names read from outside
    outputs: list[str] = field(default_factory=list)  # tensor names others read, or task outputs
    flops: int = 0
    params: int = 0

    @property
    def shared(self) -> bool:
        return len(self.tasks) > 1


@dataclass
class Partition:
    traced: TracedModel
    segments: dict[str, Segment]  # topological order
    tensor_of: dict[fx.Node, str]  # boundary node -> tensor name
    tensor_shapes: dict[str, tuple[int, ...]]
    task_outputs: dict[str, str]  # task -> tensor name
    task_segments: dict[str, list[str]]  # task -> segments it needs, topological

    @property
    def tasks(self) -> list[str]:
        return list(self.task_outputs)

    def segments_for(self, tasks: list[str] | tuple[str, ...]) -> list[str]:
        """The segments to run for `tasks`: the union of their paths, each once, in order."""
        if unknown := [t for t in tasks if t not in self.task_outputs]:
            raise SpecError(f"unknown task(s) {', '.join(unknown)}; the model has tasks: {', '.join(self.tasks)}")
        wanted = set(tasks)
        return [s for s, seg in self.segments.items() if seg.tasks & wanted]

    def producer(self, tensor: str) -> str | None:
        return next((name for name, seg in self.segments.items() if tensor in seg.outputs), None)


def _segment_name(tasks: frozenset[str], all_tasks: list[str]) -> str:
    if len(tasks) == len(all_tasks) and len(all_tasks) > 1:
        return "trunk"
    if len(tasks) == 1:
        return next(iter(tasks))
    return "shared_" + "_".join(t for t in all_tasks if t in tasks)


def partition(traced: TracedModel, strip_prefix: str = "") -> Partition:
    """Split `traced` into segments. `strip_prefix` is removed from module paths in tensor names
    (a wrapper module adds one)."""
    gm = traced.gm
    all_tasks = traced.tasks
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    order = {n: i for i, n in enumerate(nodes)}

    # 1. task sets, walked back from each task output (nodes no task reads are not exported)
    tasks_of = task_sets(gm)
    if not tasks_of.get(traced.input_node):
        raise SpecError("no task output depends on the model input")

    # 2. tensor names: the input is `image`, a task output is named after its task
    tensor_of: dict[fx.Node, str] = {traced.input_node: INPUT_NAME}
    for task, node in traced.task_outputs.items():
        if node in tensor_of:
            raise SpecError(f"task {task!r} returns the same tensor as {tensor_of[node]!r}; outputs must differ")
        tensor_of[node] = task

    # 3. group computing nodes by task set; non-tensor helper nodes (shapes, constants) are not
    #    assigned: they are recomputed inside each segment that uses them
    groups: dict[frozenset[str], list[fx.Node]] = {}
    for n in nodes:
        if n.op not in ("placeholder", "get_attr") and n in tasks_of and is_tensor_node(n):
            groups.setdefault(tasks_of[n], []).append(n)

    seg_of: dict[fx.Node, frozenset[str]] = {n: k for k, ns in groups.items() for n in ns}
    segments = {k: Segment(_segment_name(k, all_tasks), k, ns) for k, ns in groups.items()}

    # 4. boundaries: a tensor produced in one segment (or the input) and read in another
    def tensor_inputs(n: fx.Node) -> list[fx.Node]:
        """Tensor-valued producers `n` depends on, looking through non-tensor helper nodes."""
        return reach(n.all_input_nodes, lambda m: m.op == "placeholder" or (is_tensor_node(m) and m.op != "get_attr"),
                     lambda m: m.all_input_nodes)

    for key, seg in segments.items():
        reads = sorted({m for n in seg.nodes for m in tensor_inputs(n) if seg_of.get(m) != key}, key=order.__getitem__)
        for m in reads:
            tensor_of.setdefault(m, _tensor_name(m, tensor_of, strip_prefix))
            producer = seg_of.get(m)
            if producer is not None and tensor_of[m] not in segments[producer].outputs:
                segments[producer].outputs.append(tensor_of[m])
        seg.inputs = [tensor_of[m] for m in reads]
    for task, node in traced.task_outputs.items():
        seg = segments[seg_of[node]]
        if task not in seg.outputs:
            seg.outputs.append(task)
    for seg in segments.values():  # outputs in graph order, so files are stable
        pos = {tensor_of[n]: order[n] for n in seg.nodes if n in tensor_of}
        seg.outputs.sort(key=lambda t: pos[t])
        seg.flops = sum(node_flops(gm, n) for n in seg.nodes)
        seg.params = sum(p.numel() for p in _segment_parameters(gm, seg))

    # 5. topological order of segments: by task-set size (supersets first), then first node
    ordered = sorted(segments.values(), key=lambda s: (-len(s.tasks), order[s.nodes[0]]))
    named = {s.name: s for s in ordered}
    _check_topological(named)
    return Partition(traced, named, tensor_of, tensor_shapes={t: node_shape(n) for n, t in tensor_of.items()},
                     task_outputs={t: t for t in traced.task_outputs},
                     task_segments={t: [s for s, seg in named.items() if t in seg.tasks] for t in all_tasks})


def _tensor_name(node: fx.Node, taken: dict[fx.Node, str], strip_prefix: str) -> str:
    """Readable, unique boundary names: the module path for module outputs (`encoder.stage2.1.2`)."""
    name = str(node.target).removeprefix(strip_prefix) if node.op == "call_module" else node.name
    return name if name not in taken.values() else node.name


def _check_topological(segments: dict[str, Segment]) -> None:
    available = {INPUT_NAME}
    for name, seg in segments.items():
        if missing := [t for t in seg.inputs if t not in available]:
            raise SpecError(f"internal: segment {name!r} reads {missing} before they are produced")
        available.update(seg.outputs)


def _segment_parameters(gm: fx.GraphModule, seg: Segment) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for n in seg.nodes:
        if n.op == "call_module":
            for p in gm.get_submodule(n.target).parameters():
                seen[id(p)] = p
        for m in n.all_input_nodes:
            if m.op == "get_attr":
                obj = operator.attrgetter(str(m.target))(gm)
                if isinstance(obj, torch.nn.Parameter):
                    seen[id(obj)] = obj
    return list(seen.values())


def segment_module(part: Partition, name: str) -> fx.GraphModule:
    """A standalone GraphModule for one segment: inputs in `seg.inputs` order, returns a tuple
    in `seg.outputs` order. Helper nodes (shapes, constants) are copied in as needed."""
    seg = part.segments[name]
    gm = part.traced.gm
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    by_name = {t: n for n, t in part.tensor_of.items()}
    for t in seg.inputs:
        env[by_name[t]] = g.placeholder(_py_ident(t))
    members = set(seg.nodes)

    def copy(n: fx.Node) -> fx.Node:
        if n in env:
            return env[n]
        if n not in members and is_tensor_node(n) and n.op != "get_attr":
            raise SpecError(f"internal: segment {name!r} reads {n.name} which is not one of its inputs")
        for m in n.all_input_nodes:
            copy(m)
        env[n] = g.node_copy(n, lambda m: env[m])
        return env[n]

    for n in seg.nodes:
        copy(n)
    outs = tuple(env[by_name[t]] for t in seg.outputs)
    g.output(outs)
    g.lint()
    return fx.GraphModule(gm, g, class_name=f"Segment_{_py_ident(name)}")


def _py_ident(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)
