"""What a PAGCP search (sequential or joint) carries from step to step: the current model, the goal,
the oracle budget scale, the accepted path, the clock and the progress line. Every accepted step goes
through :meth:`SearchState.accept`, so both searches report, count and re-prepare the oracle alike."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from toolchain.prune import cost
from toolchain.prune.groups import ChannelGroup, channel_groups
from toolchain.prune.oracle import Oracle, Verdict


@dataclass
class PathPoint:
    """The model after one accepted pruning step."""

    step: int
    round: int
    group: str  # the group's root layer (sequential search) or "joint: N groups"
    channels: tuple[int, int]  # before, after (summed over the step's groups)
    flops: int
    params: int
    metrics: dict[str, float]  # on the oracle's val subset
    drops: dict[str, float]
    budget_scale: float = 1.0  # the round's budget, as a multiple of each allowed drop
    widths: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> before, after (joint steps)


@dataclass
class SearchState:
    config: Any  # PruneConfig
    oracle: Oracle
    model: nn.Module
    example: torch.Tensor
    flops0: int
    goal_flops: float | None
    scale: float
    phases: dict[str, float]
    recipe: Any  # Recipe
    taylor_data: list  # val batches for the Taylor saliency
    label_free: bool  # tasks judged by fidelity to the unpruned model
    refused: dict[str, str] = field(default_factory=dict)  # groups the exactness check refused
    latency_per_channel: dict[str, float] = field(default_factory=dict)  # ms per channel (latency orders)
    t0: float = field(default_factory=time.perf_counter)
    flops_now: int = 0
    step: int = 0
    path: list[PathPoint] = field(default_factory=list)
    stopped: str = ""  # why the search ended early ("time budget")
    reached: bool = False
    skipped: int = 0  # decisions taken without an evaluation (carried brackets)
    notes: list[str] = field(default_factory=list)
    show: Callable[[str, float], None] = lambda text, removed: None  # progress line, FLOPs removed so far
    task_scales: dict[str, float] | None = None  # per-task budgets (relax_tasks="binding"); scale is their max

    def __post_init__(self) -> None:
        self.flops_now = self.flops_now or self.flops0
        self.t_search = time.perf_counter()

    @property
    def budget(self) -> float | dict[str, float]:
        """What the oracle judges against: the one scale, or the per-task scales."""
        return self.task_scales if self.task_scales is not None else self.scale

    def goal_met(self) -> bool:
        return self.goal_flops is not None and self.flops_now <= self.goal_flops

    def need(self) -> float:
        """FLOPs still to remove (0 without a FLOPs goal)."""
        return max(self.flops_now - self.goal_flops, 0.0) if self.goal_flops is not None else 0.0

    def out_of_time(self) -> bool:
        budget = self.config.time_budget_s
        if budget is not None and time.perf_counter() - self.t0 > budget:
            self.stopped = "time budget"
        return bool(self.stopped)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Adds the wall time of a `with` block to one phase of the cost report."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start

    def saliency(self, scores_of: Callable) -> tuple[list[ChannelGroup], dict[str, torch.Tensor], dict[str, float]]:
        """A round's start in either search: the current model's groups the search may prune, their
        channel scores by `scores_of` (importance.channel_scores or joint_scores) and each group's
        FLOPs per channel."""
        groups = [g for g in channel_groups(self.model, self.example, ignored=self.config.ignored)
                  if g.name not in self.refused]
        scores = scores_of(self.model, groups, self.recipe, self.taylor_data, self.label_free, self.config.use_taylor)
        flops = cost.layer_flops(self.model, self.example)
        return groups, scores, {g.name: cost.flops_per_channel(self.model, g, flops) for g in groups}

    def accept(self, model: nn.Module, rnd: int, label: str, channels: tuple[int, int], confirmed: Verdict,
               screen_metrics: dict[str, float] | None, widths: dict[str, tuple[int, int]] | None = None) -> None:
        """Make `model` (confirmed within every budget) the current model and record the step."""
        with self.timed("regroup"):
            self.model = model
            self.step += 1
            self.flops_now = cost.model_flops(model, self.example)
            self.oracle.set_current(model, confirmed.metrics, screen_metrics)
        self.path.append(PathPoint(self.step, rnd + 1, label, channels, self.flops_now, cost.model_params(model),
                                   confirmed.metrics, self.oracle.drops(confirmed.metrics), self.scale, widths or {}))
        if self.config.on_step is not None:
            done = (self.flops0 - self.flops_now) / (self.flops0 - (self.goal_flops or 0))
            self.config.on_step(f"pagcp step {self.step} (round {rnd + 1}, budget x{self.scale:.2f}): {label} "
                                f"{channels[0]}->{channels[1]}, FLOPs -{1 - self.flops_now / self.flops0:.1%} "
                                f"({min(done, 1):.0%} of the goal), evaluations {self.oracle.evaluations}, "
                                f"{time.perf_counter() - self.t0:.0f} s, {self.eta(rnd, done)}")

    def eta(self, rnd: int, done: float) -> str:
        """Time left: the FLOPs removed so far extrapolated, capped by the rounds left (at the mean round
        time) and the time budget: early rounds remove little, so extrapolation alone overstates 10-100x."""
        if done >= 1:
            return "ETA 0 s"
        now = time.perf_counter()
        elapsed = now - self.t_search
        linear = elapsed * (1 - done) / done if done > 0 else math.inf
        cap = (self.config.rounds - rnd - 1) * elapsed / (rnd + 1)
        if self.config.time_budget_s is not None:
            cap = min(cap, self.config.time_budget_s - (now - self.t0))
        cap = max(cap, 0.0)
        return f"ETA {linear:.0f} s" if linear <= cap else f"ETA <= {cap:.0f} s (rounds/time budget left)"

    def round_done(self, rnd: int, latency_of: Callable[[nn.Module], float]) -> bool:
        """After a round: True when the global goal is reached (a latency goal is re-measured and,
        when FLOPs were too weak a proxy, tightened: the search goes on)."""
        if not self.goal_met():
            return False
        target = self.config.target_latency_ms
        if target is not None:
            latency = latency_of(self.model)
            if latency > target:
                self.goal_flops = self.flops_now * target / latency
                self.notes.append(f"round {rnd + 1}: {latency:.3f} ms measured; FLOPs goal now {self.goal_flops / self.flops0:.1%}")
                return False
        self.reached = True
        return True
