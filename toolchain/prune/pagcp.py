"""PAGCP: performance-aware global channel pruning for multitask networks (Ye et al., TPAMI 2023),
as built here (docs/pruning.md says what differs from the paper and why).

Sequentially greedy over channel groups, in rounds::

    budget scale s = budget_fraction
    repeat (at most max_rounds, or until the time budget is spent):
        groups  <- Torch-Pruning channel groups of the current model, exactness-checked
        scores  <- channel saliency (group magnitude + per-task-normalized Taylor, max over tasks)
        for each group, in config.order (most FLOPs saved, most ms saved, or most ms per FLOP first):
            keep counts: multiples of round_to, >= round_to, >= (1 - max_step) x channels,
                         no fewer than the global goal still needs
            carried bracket: keeps whose last verdict needed a budget > s are taken as infeasible
                         without evaluating them (all of them: the group is skipped this round)
            bisection over the keep count: the fewest channels for which the oracle says every
                         task's drop (screening images, against the unpruned model) <= s x allowed_drop
                         (never more than max_relax x allowed_drop for a task whose recipe caps it)
            confirmation: the chosen keep is judged exactly on every oracle image; a failure makes
                         it the upper bracket and the bisection goes on below it
            prune the lowest-scoring channels; stop when the global goal is reached
        s <- s x relax      (the cumulative budget grows slowly, so pruning spreads over layers
                             instead of the first group taking the whole budget); after a round
                             with no step, s jumps to the least budget any group's next step needs

The result is a dense, smaller ``nn.Module`` of the same class (Torch-Pruning edits layers in place).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from toolchain.data.loaders import Batch, batches, example_input, has_labels
from toolchain.errors import SpecError
from toolchain.graph.capture import multitask
from toolchain.progress import progress_bar
from toolchain.prune import cost
from toolchain.prune.exactness import check_groups
from toolchain.prune.groups import ChannelGroup, channel_groups
from toolchain.prune.importance import channel_scores, lowest
from toolchain.prune.oracle import Oracle
from toolchain.recipe import Recipe


ORDERS = ("flops", "latency", "latency-per-flop")


@dataclass
class PruneConfig:
    keep_flops: float | None = 0.35  # global goal: keep this fraction of the FLOPs ...
    target_latency_ms: float | None = None  # ... or reach this host latency (OpenVINO CPU, f32)
    round_to: int = 8  # channel counts are multiples of this (and never below it)
    # "flops": most FLOPs saved first; "latency": most ms saved first; "latency-per-flop": most ms
    # saved per FLOP saved first (for a FLOPs goal: the budget buys the most time, cutting layers
    # that are slow for their FLOPs -- memory-bound 1x1/depthwise at high resolution -- first)
    order: str = "flops"
    val_count: int = 512  # oracle subset of the val split (fixed for the whole run)
    batch_size: int = 128
    taylor_batches: int = 2  # val batches for the Taylor saliency
    budget_fraction: float = 1.0  # the oracle's first budget, as a multiple of each allowed drop
    relax: float = 2.0  # budget growth per round (fine-tuning recovers what pruning costs beyond 1x)
    max_rounds: int = 6
    max_step: float = 0.5  # at most this fraction of a group's channels per round
    label_free: bool = False  # fidelity to the unpruned model instead of labels
    ignored: tuple[str, ...] = ()  # layers whose output channels must stay
    use_taylor: bool = True
    latency_cost: Callable[[nn.Module, ChannelGroup], float] | None = None  # ms per channel, for the latency orders
    # how target_latency_ms is judged: None measures the host (OpenVINO CPU); a latency table's
    # estimate (cost.TableLatency.estimate_ms) judges it for the table's target instead
    latency_of: Callable[[nn.Module], float] | None = None
    # screening: judge candidates on the first screen_count oracle images, confirm the accepted step
    # exactly on all val_count (None: every judgement on all of them)
    screen_count: int | None = None
    carry_brackets: bool = True  # skip keeps whose last verdict needed more budget than this round has
    # dead-set sizes the exactness check proves per group (None: its default, one channel, half, all
    # but one); each size costs a copy, a dependency-graph trace and two forwards per group; ()
    # skips the check (noted in the result) for an architecture already proven
    exactness_fractions: tuple[float, ...] | None = None
    time_budget_s: float | None = None  # stop cleanly at the last confirmed step after this long
    on_step: Callable[[str], None] | None = None  # one line per accepted step (rounds, FLOPs, evaluations, ETA)

    def check(self) -> None:
        if (self.keep_flops is None) == (self.target_latency_ms is None):
            raise SpecError("give exactly one global goal: keep_flops (e.g. 0.35) or target_latency_ms")
        if self.keep_flops is not None and not 0.0 < self.keep_flops < 1.0:
            raise SpecError(f"keep_flops must be in (0, 1), got {self.keep_flops}; e.g. 0.35 keeps 35% of the FLOPs")
        if self.target_latency_ms is not None and self.target_latency_ms <= 0:
            raise SpecError(f"target latency must be > 0 ms, got {self.target_latency_ms}")
        if not 0.0 < self.max_step <= 1.0:
            raise SpecError(f"max_step must be in (0, 1], got {self.max_step}; e.g. 0.5 cuts at most half a group per round")
        if self.round_to < 1:
            raise SpecError(f"round_to must be >= 1, got {self.round_to}")
        if self.screen_count is not None and self.screen_count < 1:
            raise SpecError(f"screen_count must be >= 1 image, got {self.screen_count}; or None to judge on all val images")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise SpecError(f"time budget must be > 0, got {self.time_budget_s} s; e.g. --time-budget 15 (minutes)")
        if self.order not in ORDERS:
            raise SpecError(f"order must be one of {', '.join(ORDERS)}; got {self.order!r}")


@dataclass
class PathPoint:
    """The model after one accepted pruning step."""

    step: int
    round: int
    group: str
    channels: tuple[int, int]  # before, after
    flops: int
    params: int
    metrics: dict[str, float]  # on the oracle's val subset
    drops: dict[str, float]
    budget_scale: float = 1.0  # the round's budget, as a multiple of each allowed drop


@dataclass
class PruneResult:
    model: nn.Module
    method: str
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    channels: dict[str, tuple[int, int]]  # group root -> channels before, after
    group_layers: dict[str, list[str]]
    path: list[PathPoint]
    oracle_evaluations: int
    refused: dict[str, str]  # group root -> why the exactness check refused it
    goal_reached: bool
    label_free: bool
    val_metrics_before: dict[str, float]
    val_metrics_after: dict[str, float]
    seconds: float
    notes: list[str] = field(default_factory=list)
    # evaluations, confirmations, images_evaluated, bracket_skips, stopped_by, phase_seconds
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def flops_removed(self) -> float:
        return 1.0 - self.flops_after / self.flops_before


def oracle_data(recipe: Recipe, config: PruneConfig) -> list[Batch]:
    return list(batches(recipe, "val", count=config.val_count, batch_size=config.batch_size))


def exactness_refusals(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup],
                       fractions: tuple[float, ...] | None = None) -> dict[str, str]:
    """group root -> reason, for the groups toolchain.prune.exactness refuses."""
    if fractions is not None and not fractions:
        return {}
    kw = {"dead_fractions": fractions} if fractions else {}
    return {name: str(reason) for name, reason in check_groups(model, example, groups, **kw).refused.items()}


def _latency(config: PruneConfig, model: nn.Module, example: torch.Tensor) -> float:
    if config.latency_of is not None:
        return config.latency_of(model)
    return cost.host_latency_ms({"model": model}, example)["model"]


def _keep_candidates(channels: int, m: int, max_step: float, need_flops: float, per_channel: float) -> list[int]:
    """Keep counts to try for a group, most kept first (the first is `channels`: no pruning)."""
    if channels <= m:
        return [channels]
    floor_keep = max(m, m * math.ceil((1.0 - max_step) * channels / m))
    if per_channel > 0 and need_flops > 0:
        # no more than the goal still needs: the most channels kept that still reach it
        goal_keep = max(m, m * math.floor(max(channels - need_flops / per_channel, 0.0) / m))
        floor_keep = max(floor_keep, min(goal_keep, channels))
    keeps = [k for k in range(m * ((channels - 1) // m), floor_keep - 1, -m) if k >= m]
    return [channels, *keeps]


def _priority(config: PruneConfig, group: ChannelGroup, flops_per_channel: float,
              latency_per_channel: dict[str, float]) -> float:
    """How early `group` is visited in a round (highest first), by config.order."""
    prunable = max(group.channels - config.round_to, 0)
    if config.order == "flops":
        return flops_per_channel * prunable
    ms = latency_per_channel.get(group.name, 0.0)
    if config.order == "latency":
        return ms * prunable
    return ms / flops_per_channel if flops_per_channel > 0 and prunable else 0.0


def prune(model: nn.Module, recipe: Recipe, config: PruneConfig | None = None,
          example: torch.Tensor | None = None, data: list[Batch] | None = None) -> PruneResult:
    """Prune a copy of `model` with PAGCP until the global goal (`model` itself is left as it was);
    the pruned model is `result.model`.

    Raises SpecError for a bad goal. The goal may be missed (``goal_reached=False``) when every
    round's budget is exhausted; the result is still valid, just larger."""
    config = config or PruneConfig()
    config.check()
    t0, cpu0 = time.perf_counter(), time.process_time()
    model = multitask(model, recipe).eval()
    example = example if example is not None else example_input(recipe)
    label_free = config.label_free or not has_labels(recipe)
    unpruned = copy.deepcopy(model)
    data = data if data is not None else oracle_data(recipe, config)
    phases = {"setup": 0.0, "exactness": 0.0, "saliency": 0.0, "cache": 0.0, "screen": 0.0, "confirm": 0.0, "regroup": 0.0}
    oracle = Oracle(unpruned, recipe, data, {t: s.allowed_drop for t, s in recipe.tasks.items()}, label_free,
                    {t: s.max_relax for t, s in recipe.tasks.items() if s.max_relax is not None}, config.screen_count)
    taylor_data = data[: config.taylor_batches]
    flops0, params0 = cost.model_flops(model, example), cost.model_params(model)
    notes: list[str] = []

    goal_flops = flops0 * config.keep_flops if config.keep_flops is not None else None
    latency = None
    if config.target_latency_ms is not None:
        latency = _latency(config, model, example)
        goal_flops = flops0 * min(1.0, config.target_latency_ms / latency)
        notes.append(f"host latency before: {latency:.3f} ms; first FLOPs goal {goal_flops / flops0:.1%}")

    groups = channel_groups(model, example, ignored=config.ignored)
    start_channels = {g.name: g.channels for g in groups}
    layers_of = {g.name: g.layers for g in groups}
    tp = time.perf_counter()
    refused = exactness_refusals(model, example, groups, config.exactness_fractions)
    phases["exactness"] = time.perf_counter() - tp
    if config.exactness_fractions is not None and not config.exactness_fractions:
        notes.append("exactness check skipped (exactness_fractions=()): groups were not proven exact before pruning")
    for name, reason in refused.items():
        warnings.warn(f"pruning group {name} skipped: the exactness check refused it ({reason})", stacklevel=2)
    latency_per_channel: dict[str, float] = {}
    if config.order != "flops":
        if config.latency_cost is None:
            raise SpecError(f"order={config.order!r} needs a latency cost (a measured or target latency table)")
        latency_per_channel = {g.name: config.latency_cost(model, g) for g in groups if g.name not in refused}

    oracle.set_current(model, oracle.before, oracle.before_screen)
    phases["setup"] += time.perf_counter() - t0 - phases["exactness"]
    path: list[PathPoint] = []
    scale = config.budget_fraction
    flops_now = flops0
    step = 0
    reached = False
    stopped = ""  # why the search ended early ("time budget")
    skipped = 0  # group visits decided without an evaluation (carried brackets)
    # carried brackets: group -> keep count -> the budget scale the last verdict at that keep needed.
    # Drops are cumulative against the unpruned model and grow as other groups are pruned, so a keep
    # that needed more than the current scale is taken as infeasible without evaluating it again (a
    # ranking estimate only: every accepted step is still judged, and confirmed, exactly)
    known: dict[str, dict[int, float]] = {}
    goal_total = (flops0 - goal_flops) if goal_flops is not None else float(flops0)
    t_search = time.perf_counter()

    def out_of_time() -> bool:
        return config.time_budget_s is not None and time.perf_counter() - t0 > config.time_budget_s

    with progress_bar(transient=True) as progress:
        job = progress.add_task("pagcp", total=max(int(goal_total / 1e6), 1))
        for rnd in range(config.max_rounds):
            if out_of_time():
                stopped = "time budget"
                break
            tp = time.perf_counter()
            groups = [g for g in channel_groups(model, example, ignored=config.ignored) if g.name not in refused]
            scores = channel_scores(model, groups, recipe, taylor_data, unpruned if label_free else None,
                                    config.use_taylor)
            flops = cost.layer_flops(model, example)
            per_channel = {g.name: cost.flops_per_channel(model, g, flops) for g in groups}
            order = [g.name for g in sorted(groups, key=lambda g: -_priority(config, g, per_channel[g.name],
                                                                             latency_per_channel))]
            current = {g.name: g for g in groups}
            phases["saliency"] += time.perf_counter() - tp
            first_need: dict[str, float] = {}  # group -> scale its smallest step needs (blocked groups)
            shrinkable = 0  # groups visited that had a step to try
            steps_before = step
            for i, name in enumerate(order):
                removed = flops0 - flops_now
                progress.update(job, completed=int(removed / 1e6),
                                description=f"pagcp round {rnd + 1} budget x{scale:.2f} group {i + 1}/{len(order)} "
                                f"steps {step} FLOPs -{removed / flops0:.1%} evals {oracle.evaluations}")
                if goal_flops is not None and flops_now <= goal_flops:
                    break
                if out_of_time():
                    stopped = "time budget"
                    break
                g = current.get(name)
                if g is None:
                    continue
                need = flops_now - goal_flops if goal_flops is not None else 0.0
                keeps = _keep_candidates(g.channels, config.round_to, config.max_step, need, per_channel[name])
                if len(keeps) < 2:
                    continue
                shrinkable += 1
                rec = known.setdefault(name, {})
                bracket = (next((j for j in range(1, len(keeps)) if rec.get(keeps[j], 0.0) > scale), None)
                           if config.carry_brackets else None)
                if bracket == 1:
                    skipped += 1
                    first_need[name] = rec[keeps[1]]
                    continue
                s = scores[name] if len(scores[name]) == g.channels else torch.arange(g.channels, dtype=torch.float)
                tp = time.perf_counter()
                suffix = oracle.prepare(model, g)
                phases["cache"] += time.perf_counter() - tp
                verdicts: dict[int, Any] = {}
                candidates: dict[int, nn.Module] = {}

                def feasible(keep: int) -> bool:
                    tq = time.perf_counter()
                    cand = copy.deepcopy(model)
                    g.prune(cand, lowest(s, g.channels - keep), example=example)
                    v = oracle.judge_all([(cand, suffix)], scale)[0]
                    rec[keep] = oracle.needed_scale(v.drops)
                    verdicts[keep] = v
                    if v.ok:
                        candidates.clear()
                        candidates[keep] = cand
                    phases["screen"] += time.perf_counter() - tq
                    return v.ok

                confirmed = None
                while True:  # a keep that fails confirmation becomes the new upper bracket
                    lo = 0  # keeps[lo] feasible (keeps[0]: no pruning); find the last feasible index
                    if bracket is None:
                        hi = len(keeps) - 1
                        if feasible(keeps[hi]):
                            lo = hi
                    else:
                        hi = bracket
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if feasible(keeps[mid]):
                            lo = mid
                        else:
                            hi = mid
                    if lo == 0:
                        break
                    if keeps[lo] not in candidates:  # cannot happen: the last feasible keep is always kept
                        raise RuntimeError(f"pagcp lost the candidate for {name} keep {keeps[lo]}")
                    if not oracle.screening:
                        confirmed = verdicts[keeps[lo]]
                        break
                    tq = time.perf_counter()
                    full = oracle.confirm(candidates[keeps[lo]], scale)
                    phases["confirm"] += time.perf_counter() - tq
                    if full.ok:
                        confirmed = full
                        break
                    rec[keeps[lo]] = max(oracle.needed_scale(full.drops), scale * (1 + 1e-6))
                    candidates.clear()
                    bracket = lo
                if 1 in range(len(keeps)) and rec.get(keeps[1], 0.0) > scale:
                    first_need[name] = rec[keeps[1]]
                if confirmed is None:
                    continue
                keep = keeps[lo]
                model = candidates[keep]
                step += 1
                tp = time.perf_counter()
                flops_now = cost.model_flops(model, example)
                oracle.set_current(model, confirmed.metrics, verdicts[keep].metrics)
                # the groups are bound to the pruned model's dependency graph: rebuild them
                current = {g.name: g for g in channel_groups(model, example, ignored=config.ignored)}
                phases["regroup"] += time.perf_counter() - tp
                path.append(PathPoint(step, rnd + 1, name, (g.channels, keep), flops_now, cost.model_params(model),
                                      confirmed.metrics, oracle.drops(confirmed.metrics), scale))
                if config.on_step is not None:
                    elapsed = time.perf_counter() - t_search
                    done = (flops0 - flops_now) / goal_total
                    eta = elapsed * (1 - done) / done if done > 0 else math.inf
                    config.on_step(f"pagcp step {step} (round {rnd + 1}, budget x{scale:.2f}): {name} "
                                   f"{g.channels}->{keep}, FLOPs -{1 - flops_now / flops0:.1%} "
                                   f"({min(done, 1):.0%} of the goal), evaluations {oracle.evaluations}, "
                                   f"{time.perf_counter() - t0:.0f} s, ETA {eta:.0f} s")
            if stopped:
                break
            if goal_flops is not None and flops_now <= goal_flops:
                if config.target_latency_ms is not None:
                    latency = _latency(config, model, example)
                    if latency > config.target_latency_ms:  # FLOPs were a proxy: tighten from the measurement
                        goal_flops = flops_now * config.target_latency_ms / latency
                        goal_total = flops0 - goal_flops
                        notes.append(f"round {rnd + 1}: {latency:.3f} ms measured; FLOPs goal now {goal_flops / flops0:.1%}")
                        continue
                reached = True
                break
            scale *= config.relax
            if step == steps_before and first_need and len(first_need) == shrinkable:
                # every group's smallest step is known to need more: jump over the empty rounds
                jump = min(first_need.values())
                if math.isinf(jump):
                    notes.append(f"round {rnd + 1}: no group can shrink within any budget (max_relax caps)")
                    break
                scale = max(scale, jump)
    final = {g.name: g.channels for g in channel_groups(model, example, ignored=config.ignored)}
    channels = {n: (c, final.get(n, c)) for n, c in start_channels.items()}
    notes.append(f"final oracle budget: {scale:.2f} x allowed drop")
    if stopped:
        notes.append(f"stopped by the {stopped} ({config.time_budget_s:.0f} s) at the last confirmed step: "
                     "every task within its oracle budget, goal not reached")
    elif not reached:
        notes.append("global goal not reached within max_rounds: every task's budget was exhausted first")
    model.eval()
    seconds = time.perf_counter() - t0
    phases["search"] = seconds - sum(phases.values())  # bisection bookkeeping, copies, progress
    oracle_cost = {"evaluations": oracle.evaluations, "confirmations": oracle.confirmations,
                   "images_evaluated": oracle.images_evaluated, "bracket_skips": skipped,
                   "screen_images": sum(len(x) for x, _ in oracle.screen),
                   "val_images": sum(len(x) for x, _ in oracle.data), "stopped_by": stopped or None,
                   # CPU seconds of this process (all threads): the load-independent cost on a shared host
                   "cpu_seconds": round(time.process_time() - cpu0, 3),
                   "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}
    return PruneResult(model, "pagcp", flops0, cost.model_flops(model, example), params0, cost.model_params(model),
                       channels, layers_of, path, oracle.evaluations, refused, reached, label_free, oracle.before,
                       oracle.current, seconds, notes, oracle_cost)
