"""From a compute budget and task preferences to a width configuration.

A task depends only on (encoder width, its decoder width), so |W|^2 val evaluations give the exact metric of
every configuration; the exhaustive search over range-normalized metrics: docs/slimmable.md, "Search".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from toolchain.data.loaders import Batch
from toolchain.errors import SpecError
from toolchain.evaluate import evaluate, higher_is_better
from toolchain.prune.cost import layer_flops
from toolchain.recipe import Recipe
from toolchain.slim.convert import materialize
from toolchain.slimmable import ENCODER, SlimmableModel, WidthConfig, _pct, encoder_assignments

if TYPE_CHECKING:
    from toolchain.workers import Evaluator


def _key(config: WidthConfig, d: float) -> str:
    """Table key of (the configuration's encoder widths, decoder width d): ``75/50``, ``100-75-50/50``."""
    return f"{config.encoder_key}/{_pct(d)}"


@dataclass
class SlimTable:
    """Per (encoder width, decoder width): each task's metric and each unit's FLOPs."""

    widths: list[float]
    tasks: list[str]
    higher_is_better: dict[str, bool]
    metrics: dict[str, dict[str, float]]  # "e/d" (percent; e per stage joined by "-") -> task -> metric
    encoder_flops: dict[str, int]  # "e" (percent) -> FLOPs of the encoder unit
    decoder_flops: dict[str, dict[str, int]]  # "e/d" -> task -> FLOPs of that decoder
    split: str = "val"
    samples: int = 0
    latency: dict[str, Any] = field(default_factory=dict)  # {"source", "target", "a_ms", "b_ms_per_flop", "points"}
    stages: int = 1  # encoder stages with a width each

    def encoders(self, widths: Iterable[float] | None = None) -> list[tuple[float, ...]]:
        """Every encoder width assignment the table covers, widest first."""
        return encoder_assignments(widths or self.widths, self.stages)

    def metric(self, config: WidthConfig, task: str) -> float:
        return self.metrics[_key(config, config.decoder(task))][task]

    def config_metrics(self, config: WidthConfig) -> dict[str, float]:
        return {t: self.metric(config, t) for t in self.tasks}

    def flops(self, config: WidthConfig) -> int:
        return int(self.encoder_flops[config.encoder_key]
                   + sum(self.decoder_flops[_key(config, config.decoder(t))][t] for t in self.tasks))

    def latency_ms(self, config: WidthConfig) -> float | None:
        return float(self.latency["a_ms"] + self.latency["b_ms_per_flop"] * self.flops(config)) if self.latency else None

    @property
    def full_flops(self) -> int:
        return self.flops(WidthConfig.uniform(max(self.widths), self.tasks))

    def metric_ranges(self) -> dict[str, tuple[float, float]]:
        """task -> (lowest, highest) value over the table: the normalization range."""
        return {t: (min(m[t] for m in self.metrics.values()), max(m[t] for m in self.metrics.values()))
                for t in self.tasks}

    def normalized(self, config: WidthConfig, ranges: Mapping[str, tuple[float, float]] | None = None) -> dict[str, float]:
        """Each task's metric mapped to [0, 1] over the table (1 = best); `ranges` from
        :meth:`metric_ranges` when the caller normalizes many configurations."""
        ranges = ranges or self.metric_ranges()
        out = {}
        for t in self.tasks:
            lo, hi = ranges[t]
            n = (self.metric(config, t) - lo) / (hi - lo) if hi > lo else 1.0
            out[t] = n if self.higher_is_better[t] else 1.0 - n
        return out

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SlimTable":
        return cls(**d)


@torch.no_grad()
def _grid_point(state: tuple, point: tuple[tuple[float, ...], float]) -> tuple[dict[str, float], dict[str, int]]:
    """One (encoder widths, decoder width) pair: every task's metric on the data and FLOPs per unit.
    Module-level so Ray workers can run it on their own copy of the state."""
    slim, recipe, data, example, unit_of = state
    e, d = point
    cfg = WidthConfig.make(e, {t: d for t in slim.tasks})
    slim.set_config(cfg)
    metrics = evaluate(slim, recipe, data)
    per_unit: dict[str, int] = {}
    for layer, f in layer_flops(materialize(slim, cfg, example), example).items():
        u = unit_of.get(layer, ENCODER)
        per_unit[u] = per_unit.get(u, 0) + f
    return metrics, per_unit


@torch.no_grad()
def evaluate_grid(slim: SlimmableModel, recipe: Recipe, data: Sequence[Batch], example: torch.Tensor,
                  split: str = "val", evaluator: "Evaluator | None" = None) -> SlimTable:
    """Evaluate every (encoder widths, decoder width) pair on `data` and count FLOPs per unit.

    The pairs are independent: `evaluator` (toolchain.scale) spreads them over workers, each
    holding one copy of the model and the data; the table is the same in any order."""
    from toolchain.workers import SerialEvaluator

    widths = sorted(slim.spec.widths, reverse=True)
    tasks = slim.tasks
    unit_of = {layer: unit for unit, layers in slim.spec.unit_layers.items() for layer in layers}
    points = list(itertools.product(slim.spec.encoder_configs(), widths))
    prev = slim.config
    try:
        results = (evaluator or SerialEvaluator()).map(_grid_point, points, state=(slim, recipe, list(data), example, unit_of),
                                                       description="evaluating width grid")
    finally:
        slim.set_config(prev)
    metrics: dict[str, dict[str, float]] = {}
    enc_flops: dict[str, int] = {}
    dec_flops: dict[str, dict[str, int]] = {}
    for (e, d), (m, per_unit) in zip(points, results):
        cfg = WidthConfig.make(e, {t: d for t in tasks})
        metrics[_key(cfg, d)] = m
        enc_flops[cfg.encoder_key] = per_unit.get(ENCODER, 0)
        dec_flops[_key(cfg, d)] = {t: per_unit.get(t, 0) for t in tasks}
    hib = {t: higher_is_better(recipe, t) for t in tasks}
    n = sum(int(x.shape[0]) for x, _ in data)
    return SlimTable(widths, tasks, hib, metrics, enc_flops, dec_flops, split, n, stages=slim.spec.stages)


def fit_latency(table: SlimTable, slim: SlimmableModel, example: torch.Tensor, target: str | None = None,
                runs: int = 20) -> dict[str, Any]:
    """Fit ms = a + b * FLOPs over the uniform configurations: measured on the host with OpenVINO
    (target None or ``host-cpu``) or the roofline estimate of `target`'s profile. Stored in the table."""
    cfgs = slim.configs()
    points: list[tuple[int, float]] = []
    if target in (None, "host-cpu"):
        from toolchain.prune.cost import host_latency_ms

        lat = host_latency_ms({c.name: materialize(slim, c, example) for c in cfgs}, example, runs=runs, threads=1)
        points = [(table.flops(c), lat[c.name]) for c in cfgs]
        source = "measured: host OpenVINO CPU f32, 1 thread, whole model"
    else:
        import onnx

        from toolchain.torch_onnx import TaskSubset, onnx_bytes
        from toolchain.targets.latency import estimate_layer_ms, node_costs
        from toolchain.targets.profile import load_profile

        profile = load_profile(target)
        for c in cfgs:
            dense = materialize(slim, c, example)
            model = onnx.load_from_string(onnx_bytes(TaskSubset(dense, slim.tasks).eval(), (example,), ["input"], slim.tasks))
            ms = sum(estimate_layer_ms(profile, cost, "fp32") for cost in node_costs(model))
            points.append((table.flops(c), ms))
        source = f"estimate: roofline of target profile {target}, fp32"
    x, y = np.array(points, dtype=float).T
    b, a = np.polyfit(x, y, 1) if len(set(x)) > 1 else (0.0, float(y.mean()))
    table.latency = {"source": source, "target": target or "host-cpu", "a_ms": float(a), "b_ms_per_flop": float(b),
                     "points": [[int(f), float(ms)] for f, ms in points]}
    return table.latency


def parse_task_values(text: str | None, tasks: Sequence[str], what: str = "preference") -> dict[str, float]:
    """``"seg=2,depth=1"`` -> {task: value >= 0}; errors name the bad part and the tasks."""
    out: dict[str, float] = {}
    for part in (p for p in (text or "").split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in tasks:
            raise SpecError(f"{what} {part!r} must be TASK=NUMBER with a task of {', '.join(tasks)} (e.g. {tasks[0]}=2)")
        try:
            w = float(value)
        except ValueError:
            raise SpecError(f"{what} {value!r} for {name} is not a number") from None
        if w < 0:
            raise SpecError(f"{what} for {name} is {w}; it must be >= 0")
        out[name] = w
    return out


def parse_preferences(text: str | None, tasks: Sequence[str]) -> dict[str, float]:
    """``"seg=2,depth=1"`` -> {task: weight}; tasks not named weigh 1."""
    return {**{t: 1.0 for t in tasks}, **parse_task_values(text, tasks, "preference weight")}


@dataclass
class SearchResult:
    config: WidthConfig
    flops: int
    latency_ms: float | None
    metrics: dict[str, float]
    score: float
    budget: dict[str, Any]
    candidates: int  # configurations within the budget


def drop_from_full(table: SlimTable, config: WidthConfig, task: str, full: Mapping[str, float] | None = None) -> float:
    """How far `task` falls at `config` below the full-width configuration (metric units, positive
    = worse); `full`: the full-width metrics, when the caller already has them."""
    ref = (full or table.config_metrics(WidthConfig.uniform(max(table.widths), table.tasks)))[task]
    v = table.metric(config, task)
    return ref - v if table.higher_is_better[task] else v - ref


def search(table: SlimTable, preferences: Mapping[str, float], budget_flops: float | None = None,
           budget_latency_ms: float | None = None, widths: Iterable[float] | None = None,
           max_drop: Mapping[str, float] | None = None, flops_slack: float = 0.01) -> SearchResult:
    """The configuration maximizing sum_t pref[t] * normalized metric within the budget.

    `budget_flops` <= 1 is a fraction of the full model's FLOPs, otherwise absolute FLOPs.
    `max_drop` {task: d}: only configurations where each named task stays within d (metric units)
    of the full-width configuration are candidates. With `max_drop` and no budget the question
    turns around: the configuration with the fewest FLOPs that keeps every named task within its
    drop, i.e. the least compute an accuracy bound allows. Configurations within `flops_slack`
    (a fraction of the full model's FLOPs) of the fewest count as equally cheap, and the best
    preference score among them wins: a tiny head's width saves almost nothing and can cost points.
    Raises SpecError naming the smallest achievable cost when nothing fits, and the best drop
    reachable within the budget when the drop bounds exclude everything."""
    budgets = (budget_flops is not None) + (budget_latency_ms is not None)
    cheapest_mode = budgets == 0 and bool(max_drop)
    if budgets > 1 or not (budgets or cheapest_mode):
        raise SpecError("give one budget, --budget-flops F (absolute, or a fraction <= 1) or --budget-latency-ms L, "
                        "or only --max-drop for the cheapest configuration within those drops")
    if budget_latency_ms is not None and not table.latency:
        raise SpecError("the table has no latency model; run fit_latency (mtedge slim search fits it when asked for latency)")
    limit = budget_flops * table.full_flops if budget_flops is not None and budget_flops <= 1 else budget_flops
    max_drop = dict(max_drop or {})
    if unknown := [t for t in max_drop if t not in table.tasks]:
        raise SpecError(f"max drop for unknown task(s) {', '.join(unknown)}; tasks: {', '.join(table.tasks)}")
    ws = sorted(widths or table.widths, reverse=True)
    full = table.config_metrics(WidthConfig.uniform(max(table.widths), table.tasks))
    ranges = table.metric_ranges()
    candidates: list[tuple[int, float, WidthConfig]] = []  # (FLOPs, score, config) within the budget and drops
    cheapest, in_budget = float("inf"), 0
    least_drop = {t: float("inf") for t in max_drop}  # within the budget: how close each bound came
    for e in table.encoders(ws):
        for ds in itertools.product(ws, repeat=len(table.tasks)):
            cfg = WidthConfig.make(e, dict(zip(table.tasks, ds)))
            flops = table.flops(cfg)
            cost = table.latency_ms(cfg) if budget_latency_ms is not None else flops
            cheapest = min(cheapest, cost)
            if not cheapest_mode and cost > (limit if limit is not None else budget_latency_ms):
                continue
            in_budget += 1
            drops = {t: drop_from_full(table, cfg, t, full) for t in max_drop}
            for t, d in drops.items():
                least_drop[t] = min(least_drop[t], d)
            if any(d > max_drop[t] + 1e-12 for t, d in drops.items()):
                continue
            norm = table.normalized(cfg, ranges)
            candidates.append((flops, sum(preferences.get(t, 1.0) * norm[t] for t in table.tasks), cfg))
    count = len(candidates)
    if cheapest_mode and candidates:
        cutoff = min(f for f, _, _ in candidates) + flops_slack * table.full_flops
        candidates = [c for c in candidates if c[0] <= cutoff]
    if not candidates and in_budget:
        worst = ", ".join(f"{t} {least_drop[t]:.3g} > {max_drop[t]:.3g}" for t in max_drop if least_drop[t] > max_drop[t])
        where = "" if cheapest_mode else " within the budget"
        raise SpecError(f"none of the {in_budget} configurations{where} keeps every task within its max drop "
                        f"(closest drops from full width: {worst or 'no single task, only their combination'}); "
                        + ("loosen --max-drop" if cheapest_mode else "raise the budget or loosen --max-drop"))
    if not candidates:
        unit = "FLOPs" if limit is not None else "ms"
        raise SpecError(f"no width configuration fits the budget ({limit if limit is not None else budget_latency_ms:,.6g} "
                        f"{unit}); the narrowest costs {cheapest:,.6g} {unit}: raise the budget")
    flops, score, cfg = max(candidates, key=lambda c: (round(c[1], 12), -c[0]))
    return SearchResult(cfg, flops, table.latency_ms(cfg), table.config_metrics(cfg), score,
                        {"flops": limit, "latency_ms": budget_latency_ms, "preferences": dict(preferences),
                         **({"max_drop": max_drop} if max_drop else {})}, count)
