"""The performance-aware oracle: each task's drop (against the unpruned model, on a fixed val subset)
when a candidate is pruned, and whether every drop is within its budget. Suffix re-execution,
screening + confirmation, the confidence margin (``margin_z``) and the cost counters (``evaluations``,
``confirmations``, ``images_evaluated``): docs/pruning.md, "Algorithm as built" step 3 and "The
recipe's bounds are the contract". Without the margin the search ends exactly at the bound on its own
subset and the largest cut is past it on other images (selection on noise).
"""

from __future__ import annotations

import math
import operator

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.fx as fx
from torch import nn

from toolchain.data.loaders import Batch
from toolchain.evaluate import task_metric_name
from toolchain.graph.capture import capture, task_outputs
from toolchain.metrics import make_metric
from toolchain.prune.groups import ChannelGroup
from toolchain.recipe import Recipe


CHUNK = 16  # images per chunk for the standard error of a drop (confirmed verdicts, margin_z > 0)

# a budget scale: one multiple of every task's allowed drop, or one per task (PruneConfig.relax_tasks)
Scale = float | dict[str, float]


@dataclass
class Verdict:
    metrics: dict[str, float]  # per task, on the oracle subset
    drops: dict[str, float]  # against the unpruned model (positive = worse)
    ok: bool  # every drop within its budget
    # confirmed verdicts with a confidence margin: per task, z x the standard error of the drop
    margins: dict[str, float] = field(default_factory=dict)

    @property
    def judged(self) -> dict[str, float]:
        """The drops the verdict was judged on: each drop plus its confidence margin."""
        return {t: d + self.margins.get(t, 0.0) for t, d in self.drops.items()}


@dataclass
class _Suffix:
    gm: fx.GraphModule
    nodes: list[fx.Node]  # nodes to re-run, in graph order
    tasks: list[str]  # tasks whose outputs depend on the group
    frontier: list[list[Any]] | None  # per batch: values of the frontier nodes (same order as frontier_nodes)
    frontier_nodes: list[fx.Node] = field(default_factory=list)
    outputs: dict[str, fx.Node] = field(default_factory=dict)


class Oracle:
    """Per-task drops of candidates against `unpruned` on a fixed list of batches.

    `budgets` bounds each task's drop (metric units) at budget scale 1; a task in `max_scale` never
    gets more than that multiple, however far the scale is relaxed; `label_free` scores fidelity to
    `unpruned` instead of labels. `evaluations` counts the candidates judged."""

    def __init__(self, unpruned: nn.Module, recipe: Recipe, data: Sequence[Batch], budgets: dict[str, float],
                 label_free: bool, max_scale: dict[str, float] | None = None, screen_count: int | None = None) -> None:
        self.recipe = recipe
        self.label_free = label_free
        self.budgets = dict(budgets)
        self.max_scale = dict(max_scale or {})
        self.evaluations = self.confirmations = self.images_evaluated = 0
        self.tasks = list(recipe.tasks)
        self.metric_names = {t: task_metric_name(recipe, t, label_free) for t in self.tasks}
        self.hib = {t: make_metric(self.metric_names[t]).higher_is_better for t in self.tasks}
        unpruned.eval()
        with torch.no_grad():
            if label_free:
                self.data = [(x, {t: v.clone() for t, v in unpruned(x).items()}) for x, _ in data]
            else:
                self.data = [(x, y) for x, y in data]
        total = sum(len(x) for x, _ in self.data)
        self.screening = screen_count is not None and screen_count < total
        self.screen = _spread(self.data, screen_count) if self.screening else self.data
        if label_free:  # the unpruned model's outputs are the targets: score them, no second forward
            self.before = self._score_outputs(self.data)
            self.before_screen = self._score_outputs(self.screen)
        else:
            self.before = self.score(unpruned)  # on the whole subset
            self.before_screen = self.score(unpruned, data=self.screen) if self.screening else dict(self.before)
        self._current: dict[str, float] = dict(self.before)
        self._current_screen: dict[str, float] = dict(self.before_screen)
        self.margin_z = 0.0  # > 0: confirmed verdicts keep z standard errors of each drop inside its bound
        self._before_chunks: dict[str, list[float]] | None = None
        self._unpruned = unpruned
        self._gm: fx.GraphModule | None = None
        self._out: dict[str, fx.Node] = {}
        self._state: tuple | None = None

    # -- plain evaluation ---------------------------------------------------------------------

    def score(self, model: nn.Module, data: Sequence[Batch] | None = None) -> dict[str, float]:
        """Metrics of `model` on the subset, or on `data` (full forwards)."""
        return _metrics(model, self.data if data is None else data, self.metric_names)

    def _score_outputs(self, data: Sequence[Batch]) -> dict[str, float]:
        ms = {t: make_metric(self.metric_names[t]) for t in self.tasks}
        for _, y in data:
            for t in self.tasks:
                ms[t].update(y[t], y[t])
        return {t: m.value() for t, m in ms.items()}

    def drops(self, metrics: dict[str, float], before: dict[str, float] | None = None) -> dict[str, float]:
        before = self.before if before is None else before
        return {t: (before[t] - v) if self.hib[t] else (v - before[t]) for t, v in metrics.items()}

    def bound(self, task: str, scale: Scale) -> float:
        """The drop `task` may have at budget `scale` (one scale for every task, or one per task)."""
        s = scale[task] if isinstance(scale, dict) else scale
        return self.budgets[task] * min(s, self.max_scale.get(task, s))

    def within(self, drops: dict[str, float], scale: Scale = 1.0) -> bool:
        return not self.over(drops, scale)

    def over(self, drops: dict[str, float], scale: Scale) -> list[str]:
        """The tasks whose drop is past their bound at `scale` (the ones a verdict failed on)."""
        return [t for t, d in drops.items() if d > self.bound(t, scale) + 1e-9]

    def needed_scales(self, drops: dict[str, float]) -> dict[str, float]:
        """Per task, the smallest budget scale that accepts its drop (inf past its max_relax)."""
        need = {}
        for t, d in drops.items():
            s = d / self.budgets[t] if self.budgets[t] > 0 else (0.0 if d <= 1e-9 else math.inf)
            need[t] = math.inf if s > self.max_scale.get(t, math.inf) + 1e-9 else s
        return need

    def needed_scale(self, drops: dict[str, float]) -> float:
        """The smallest single budget scale that accepts `drops` (inf when a task's max_relax forbids it)."""
        return max(self.needed_scales(drops).values(), default=0.0)

    # -- the current model and its cached prefixes -----------------------------------------------

    def set_current(self, model: nn.Module, metrics: dict[str, float] | None = None,
                    screen_metrics: dict[str, float] | None = None) -> None:
        """The model candidates are derived from (after each accepted step), with its metrics on
        the whole subset and on the screening images (computed when not given)."""
        model.eval()
        self._current = dict(metrics) if metrics is not None else self.score(model)
        screen = self._current if not self.screening else screen_metrics
        self._current_screen = dict(screen) if screen is not None else self.score(model, data=self.screen)
        try:  # the captured graph (the model itself when it is captured already)
            self._gm = capture(model)
            self._out = task_outputs(self._gm)
        except Exception:  # untraceable models are still judged, by full forwards
            self._gm, self._out = None, {}

    @property
    def current(self) -> dict[str, float]:
        return dict(self._current)

    @torch.no_grad()
    def prepare(self, model: nn.Module, group: ChannelGroup) -> _Suffix | None:
        """Cache the frontier values of `group` on the subset (one forward of the current `model`)."""
        gm = self._gm
        if gm is None or set(self._out) != set(self.tasks):
            return None
        targets = {str(n.target): n for n in gm.graph.nodes if n.op == "call_module"}
        if not all(name in targets for name in group.layers if _has_weights(model, name)):
            return None
        changed: set[fx.Node] = set()
        for n in gm.graph.nodes:  # topological order: a node changes if it is a group layer or reads a changed node
            if (n.op == "call_module" and str(n.target) in group.layers) or any(a in changed for a in n.all_input_nodes):
                changed.add(n)
        tasks = [t for t in self.tasks if self._out[t] in changed]
        needed: set[fx.Node] = set()
        stack = [self._out[t] for t in tasks]
        while stack:  # only changed nodes on the way to an affected task's output
            n = stack.pop()
            if n in needed or n not in changed:
                continue
            needed.add(n)
            stack.extend(n.all_input_nodes)
        nodes = [n for n in gm.graph.nodes if n in needed]
        frontier_nodes = list(dict.fromkeys(a for n in nodes for a in n.all_input_nodes if a not in needed))
        suffix = _Suffix(gm, nodes, tasks, [], frontier_nodes, {t: self._out[t] for t in tasks})
        if tasks:  # a group no task output reads has no frontier to cache
            want = set(frontier_nodes)
            for x, _ in self.screen:
                env = _run(gm, [n for n in gm.graph.nodes if n.op != "output"], {}, x, stop_when=want)
                suffix.frontier.append([_detach(env[n]) for n in frontier_nodes])
        return suffix

    @torch.no_grad()
    def judge(self, candidate: nn.Module, suffix: _Suffix | None, budget_scale: Scale = 1.0) -> Verdict:
        """Metrics, drops and verdict of `candidate` (the current model with one group pruned) on
        the screening images (the whole subset without screening)."""
        candidate.eval()
        if suffix is None:
            return self._screened(self.score(candidate, data=self.screen), budget_scale)
        metrics = dict(self._current_screen)
        if suffix.tasks:
            gm = fx.GraphModule(candidate, suffix.gm.graph)  # the candidate's modules, the traced graph
            ms = {t: make_metric(self.metric_names[t]) for t in suffix.tasks}
            for (x, y), values in zip(self.screen, suffix.frontier or []):
                # fresh copies: an in-place op in the suffix (`out += identity`) must not edit the cache
                env = {n: _detach(v) for n, v in zip(suffix.frontier_nodes, values)}
                env = _run(gm, suffix.nodes, env, x)
                for t in suffix.tasks:
                    ms[t].update(env[suffix.outputs[t]], y[t])
            metrics.update({t: m.value() for t, m in ms.items()})
        return self._screened(metrics, budget_scale, ran=bool(suffix.tasks))

    def _screened(self, metrics: dict[str, float], budget_scale: Scale, ran: bool = True) -> Verdict:
        """Count one screening evaluation (its images when a forward ran) and judge its metrics."""
        self.evaluations += 1
        if ran:
            self.images_evaluated += sum(len(x) for x, _ in self.screen)
        d = self.drops(metrics, self.before_screen)
        return Verdict(metrics, d, self.within(d, budget_scale))

    def judge_all(self, candidates: Sequence[tuple[nn.Module, _Suffix | None]], budget_scale: Scale = 1.0,
                  evaluator: Any = None) -> list[Verdict]:
        """Verdicts of several candidates (each with its group's suffix), in order. With an
        `evaluator` (toolchain.workers), candidates judged by full forwards go to its workers:
        the screening images travel once per worker, each candidate once; same metrics as in-process."""
        if evaluator is None or len(candidates) < 2 or any(s is not None for _, s in candidates):
            return [self.judge(c, s, budget_scale) for c, s in candidates]
        found = evaluator.map(_screen_metrics, [c for c, _ in candidates], state=self._screen_state(),
                              description="oracle")
        return [self._screened(metrics, budget_scale) for metrics in found]

    def _screen_state(self) -> tuple:
        # one object for the whole search, so the evaluator ships it to each worker once
        if self._state is None:
            self._state = (list(self.screen), dict(self.metric_names))
        return self._state

    @torch.no_grad()
    def confirm(self, candidate: nn.Module, budget_scale: Scale = 1.0) -> Verdict:
        """The exact verdict on the whole subset (full forwards): what an accepted step must pass.
        Without screening the screening verdict already was this one; callers skip it then."""
        self.evaluations += 1
        self.confirmations += 1
        self.images_evaluated += sum(len(x) for x, _ in self.data)
        if self.margin_z <= 0:
            metrics = self.score(candidate)
            d = self.drops(metrics)
            return Verdict(metrics, d, self.within(d, budget_scale))
        metrics, chunks = _chunked_metrics(candidate, self.data, self.metric_names)
        if self._before_chunks is None:
            self._before_chunks = _chunked_metrics(self._unpruned, self.data, self.metric_names)[1]
        d = self.drops(metrics)
        # a task the step leaves as it was (its metric unchanged: the group does not feed it) is not
        # judged again: its drop is the current model's, which was accepted (or given as the start).
        # Charging its margin anew would let one task near its bound refuse every other task's step.
        changed = [t for t in self.tasks if metrics[t] != self._current[t]]
        margins = {t: self.margin_z * _standard_error(self.drops({t: a}, {t: b})[t]
                                                      for a, b in zip(chunks[t], self._before_chunks[t]))
                   if t in changed else 0.0 for t in self.tasks}
        return Verdict(metrics, d, self.within({t: d[t] + margins[t] for t in d}, budget_scale), margins)


@torch.no_grad()
def _metrics(model: nn.Module, data: Sequence[Batch], metric_names: dict[str, str]) -> dict[str, float]:
    """task -> metric of `model` on `data` (full forwards)."""
    model.eval()
    ms = {t: make_metric(name) for t, name in metric_names.items()}
    for x, y in data:
        out = model(x)
        for t in ms:
            ms[t].update(out[t], y[t])
    return {t: m.value() for t, m in ms.items()}


@torch.no_grad()
def _chunked_metrics(model: nn.Module, data: Sequence[Batch],
                     metric_names: dict[str, str]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(metrics on all of `data`, per task the metric of every chunk of CHUNK images), one forward."""
    model.eval()
    whole = {t: make_metric(name) for t, name in metric_names.items()}
    chunks: dict[str, list[float]] = {t: [] for t in metric_names}
    for x, y in data:
        out = model(x)
        for t in whole:
            whole[t].update(out[t], y[t])
            for i in range(0, len(x), CHUNK):
                m = make_metric(metric_names[t])
                m.update(out[t][i : i + CHUNK], y[t][i : i + CHUNK])
                chunks[t].append(m.value())
    return {t: m.value() for t, m in whole.items()}, chunks


def _standard_error(values: Any) -> float:
    """Standard error of the mean of `values` (0 for fewer than two)."""
    v = torch.tensor(list(values), dtype=torch.float64)
    return float(v.std() / len(v) ** 0.5) if len(v) > 1 else 0.0


def _screen_metrics(state: tuple, model: nn.Module) -> dict[str, float]:
    """Evaluator task: a candidate's metrics on the screening images (module level: Ray ships it by name)."""
    return _metrics(model, *state)


def _spread(data: Sequence[Batch], count: int) -> list[Batch]:
    """`count` samples spread evenly over `data` (every k-th), batched as `data` is: a folder's first
    images are often crops of one photo (docs/pruning.md, "Algorithm as built" step 3)."""
    total = sum(len(x) for x, _ in data)
    idx = torch.tensor([i * total // count for i in range(count)])
    xs = torch.cat([x for x, _ in data])[idx]
    ys = None if data[0][1] is None else {t: torch.cat([y[t] for _, y in data])[idx] for t in data[0][1]}
    size = len(data[0][0])
    return [(xs[i : i + size], None if ys is None else {t: v[i : i + size] for t, v in ys.items()})
            for i in range(0, count, size)]


def _has_weights(model: nn.Module, name: str) -> bool:
    return next(model.get_submodule(name).parameters(recurse=False), None) is not None


def _detach(v: Any) -> Any:
    return v.detach().clone() if isinstance(v, torch.Tensor) else v


def _run(gm: fx.GraphModule, nodes: Sequence[fx.Node], env: dict[fx.Node, Any], x: torch.Tensor,
         stop_when: set[fx.Node] | None = None) -> dict[fx.Node, Any]:
    """Execute `nodes` (graph order) of `gm` with values in `env` (modified, returned)."""
    remaining = set(stop_when) if stop_when else None

    def read(a: fx.Node) -> Any:  # placeholders and constants a re-run node reads off the cached frontier
        return env[a] if a in env else _run(gm, [a], env, x)[a]

    for n in nodes:
        if n in env:
            continue
        if n.op == "placeholder":
            env[n] = x
        elif n.op == "get_attr":
            env[n] = operator.attrgetter(str(n.target))(gm)
        else:
            args, kwargs = fx.node.map_arg(n.args, read), fx.node.map_arg(n.kwargs, read)
            if n.op == "call_module":
                env[n] = gm.get_submodule(str(n.target))(*args, **kwargs)
            elif n.op == "call_function":
                env[n] = n.target(*args, **kwargs)
            elif n.op == "call_method":
                env[n] = getattr(args[0], str(n.target))(*args[1:], **kwargs)
        if remaining is not None:
            remaining.discard(n)
            if not remaining:
                break
    return env
