"""`mtedge inspect`: the task tree of a multitask model, with FLOPs and parameters per part."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toolchain.graph.partition import Partition, partition
from toolchain.graph.capture import capture
from toolchain.graph.tracing import trace


@dataclass
class SegmentInfo:
    tasks: list[str]
    shared: bool
    inputs: list[str]
    outputs: list[str]
    branches_from: list[str]  # producing segments of its inputs ("input" for the model input)
    flops: int
    params: int
    layers: int
    first_layer: str | None
    last_layer: str | None


@dataclass
class TaskInfo:
    segments: list[str]
    taps: list[str]  # tensors where the task's own branch reads the shared part
    flops: int
    branch_flops: int
    branch_params: int


@dataclass
class InspectReport:
    """Which layers serve which tasks and what each part costs (`mtedge inspect`, ``--json``: :meth:`to_dict`)."""

    model: str
    input_shape: list[int]
    tasks: dict[str, TaskInfo]
    segments: dict[str, SegmentInfo]
    total_flops: int
    total_params: int
    shared_flops: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def inspect_model(module: nn.Module, example: torch.Tensor) -> tuple[InspectReport, Partition]:
    """Which layers serve which tasks, and what each part costs. `example` should have batch 1:
    FLOPs are per image."""
    part = partition(trace(capture(module), example))
    segments = {}
    for name, seg in part.segments.items():
        layers = [str(n.target) for n in seg.nodes if n.op == "call_module"]
        segments[name] = SegmentInfo(
            tasks=sorted(seg.tasks, key=part.tasks.index), shared=seg.shared, inputs=seg.inputs, outputs=seg.outputs,
            branches_from=sorted({part.producer(t) or "input" for t in seg.inputs}),
            flops=int(seg.flops), params=int(seg.params), layers=len(layers),
            first_layer=layers[0] if layers else None, last_layer=layers[-1] if layers else None)
    tasks = {}
    for t in part.tasks:
        path = part.task_segments[t]
        own = [s for s in path if not part.segments[s].shared]
        tasks[t] = TaskInfo(
            segments=path, taps=sorted({i for s in own for i in part.segments[s].inputs}),
            flops=int(sum(part.segments[s].flops for s in path)),
            branch_flops=int(sum(part.segments[s].flops for s in own)),
            branch_params=int(sum(part.segments[s].params for s in own)))
    report = InspectReport(
        model=type(module).__name__, input_shape=list(example.shape), tasks=tasks, segments=segments,
        total_flops=int(sum(s.flops for s in part.segments.values())),
        total_params=int(sum(p.numel() for p in part.traced.gm.parameters())),
        shared_flops=int(sum(s.flops for s in part.segments.values() if s.shared)))
    return report, part


def render(report: InspectReport) -> None:
    """Print the task tree and the per-segment table with rich."""
    from rich.console import Console
    from rich.table import Column, Table
    from rich.tree import Tree

    console = Console()
    segs = report.segments
    tree = Tree(f"[bold]{report.model}[/] input {report.input_shape}")
    nodes = {"input": tree}
    for name, s in segs.items():  # topological: parents exist before children
        parent = nodes.get(s.branches_from[0], tree) if s.branches_from else tree
        label = (f"[{'cyan' if s.shared else 'green'}]{name}[/] "
                 f"({'shared by ' + ', '.join(s.tasks) if s.shared else 'task ' + s.tasks[0]}) "
                 f"{_fmt(s.flops)}FLOPs {_fmt(s.params)} params")
        if len(s.branches_from) > 1:
            label += f"  [dim]reads {', '.join(s.inputs)}[/]"
        nodes[name] = parent.add(label)
    console.print(tree)

    right = [Column(c, justify="right") for c in ("MFLOPs", "params", "% FLOPs")]
    table = Table("segment", "tasks", "inputs", "outputs", *right, title="segments")
    total = max(report.total_flops, 1)
    for name, s in segs.items():
        table.add_row(name, ", ".join(s.tasks), ", ".join(s.inputs), ", ".join(s.outputs),
                      f"{s.flops / 1e6:.2f}", f"{s.params:,}", f"{100 * s.flops / total:.1f}")
    table.add_row("[bold]total", "", "", "", f"[bold]{report.total_flops / 1e6:.2f}", f"[bold]{report.total_params:,}", "100.0")
    console.print(table)

    tt = Table("task", "segments", "branches off at", "MFLOPs (whole task)", "MFLOPs (own branch)", title="tasks")
    for t, d in report.tasks.items():
        tt.add_row(t, " -> ".join(d.segments), ", ".join(d.taps), f"{d.flops / 1e6:.2f}", f"{d.branch_flops / 1e6:.2f}")
    console.print(tt)


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"
