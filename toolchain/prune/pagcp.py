"""PAGCP: performance-aware global channel pruning for multitask networks (Ye et al., TPAMI 2023),
as built here: docs/pruning.md, "Algorithm as built" (and "What differs from the paper, and why").

In rounds: exactness-checked channel groups of the current model, task-aware saliency, then the
largest step every task's drop (judged by toolchain/prune/oracle.py) allows within the budget scale,
which grows each round so pruning spreads over layers. The step search is ``joint`` (default,
toolchain/prune/joint.py) or ``sequential`` (the paper's greedy, toolchain/prune/sequential.py);
both stop at the global goal (``keep_flops`` or ``target_latency_ms``). The result is a dense,
smaller ``nn.Module`` of the same class (Torch-Pruning edits layers in place).
"""
from __future__ import annotations

import copy
import dataclasses
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
from toolchain.prune.joint import joint_search
from toolchain.prune.oracle import Oracle
from toolchain.prune.sequential import sequential_search
from toolchain.prune.state import PathPoint, SearchState
from toolchain.recipe import Recipe


ORDERS = ("flops", "latency", "latency-per-flop")
SEARCHES = ("joint", "sequential")

__all__ = ["PathPoint", "PruneConfig", "PruneResult", "prune"]


@dataclass
class PruneConfig:
    keep_flops: float | None = 0.35  # global goal: keep this fraction of the FLOPs ...
    target_latency_ms: float | None = None  # ... or reach this host latency (OpenVINO CPU, f32)
    round_to: int = 8  # channel counts are multiples of this (and never below it)
    # most FLOPs, most ms, or most ms per FLOP saved first; "latency-per-flop" spends a FLOPs goal on the
    # layers slow for their FLOPs (memory-bound 1x1/depthwise at high resolution) first
    order: str = "flops"
    val_count: int = 512  # oracle subset of the val split (fixed for the whole run)
    batch_size: int = 128
    taylor_batches: int = 2  # val batches for the Taylor saliency
    budget_fraction: float = 1.0  # the oracle's first budget, as a multiple of each allowed drop
    # the recipe's bounds are the contract: no step past any task's allowed drop, the search stops at
    # the largest cut they allow (goal_reached=False). relax_bounds=True opts in to grow the budget by
    # `relax` a round (capped by max_relax), hoping fine-tuning wins it back; the final check says
    relax_bounds: bool = False
    # bounds as the contract: a confirmed step keeps this many standard errors of each drop (on the
    # oracle subset) inside the bound, so it holds on other images too (oracle.py)
    confidence_z: float = 1.645
    relax: float = 2.0  # budget growth per round when relax_bounds (fine-tuning recovers what pruning costs beyond 1x)
    # budgets grown between rounds (joint search): "all" tasks', or only the "binding" ones the round's
    # first rejected step failed on, so a task that never stops the search keeps its recipe's budget
    relax_tasks: str = "all"
    # None: 6 for the sequential search (a bisection per group a round), 20 for the joint one (a handful
    # of evaluations a round, so it can afford small steps)
    max_rounds: int | None = None
    max_step: float = 0.5  # at most this fraction of a group's channels per round
    search: str = "joint"  # "joint" or "sequential" (see the module docstring)
    # prefixes the joint search judges per probe, in parallel with an evaluator; the result depends on
    # this number only, not on where they run (--workers N sets it to N)
    points_per_probe: int = 1
    evaluator: Any = None  # toolchain.workers.Evaluator for the screening judgements (None: in-process)
    label_free: bool = False  # fidelity to the unpruned model instead of labels
    ignored: tuple[str, ...] = ()  # layers whose output channels must stay
    use_taylor: bool = True
    latency_cost: Callable[[nn.Module, ChannelGroup], float] | None = None  # ms per channel, for the latency orders
    # judges target_latency_ms: None measures the host (OpenVINO CPU); cost.TableLatency.estimate_ms a target's
    latency_of: Callable[[nn.Module], float] | None = None
    # judge candidates on screen_count oracle images, confirm the accepted step on all (None: all, always)
    screen_count: int | None = None
    carry_brackets: bool = True  # skip keeps whose last verdict needed more budget than this round has
    # dead-set sizes the exactness check proves per group (None: one channel, half, all but one), each a
    # copy, a trace and two forwards per group; () skips it (noted) for an architecture already proven
    exactness_fractions: tuple[float, ...] | None = None
    time_budget_s: float | None = None  # stop cleanly at the last confirmed step after this long
    on_step: Callable[[str], None] | None = None  # one line per accepted step (rounds, FLOPs, evaluations, ETA)

    @property
    def rounds(self) -> int:
        return self.max_rounds if self.max_rounds is not None else (20 if self.search == "joint" else 6)

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
        if self.points_per_probe < 1:
            raise SpecError(f"points_per_probe must be >= 1, got {self.points_per_probe}")
        if self.budget_fraction > 1.0 and not self.relax_bounds:
            raise SpecError(f"budget_fraction {self.budget_fraction:g} accepts drops past the recipe's bounds; pass "
                            "relax_bounds=True (mtedge compress --relax) to opt in, or keep budget_fraction <= 1")
        if self.relax_tasks not in ("all", "binding"):
            raise SpecError(f"relax_tasks must be 'all' or 'binding'; got {self.relax_tasks!r}")
        if self.relax_tasks == "binding" and self.search != "joint":
            raise SpecError("relax_tasks='binding' needs search='joint' (the sequential search has one budget)")
        if self.search not in SEARCHES:
            raise SpecError(f"search must be one of {', '.join(SEARCHES)}; got {self.search!r}")
        if self.order not in ORDERS:
            raise SpecError(f"order must be one of {', '.join(ORDERS)}; got {self.order!r}")


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


def oracle_caps(recipe: Recipe, config: PruneConfig) -> dict[str, float]:
    """task -> the largest budget scale its drop may reach: the recipe's max_relax when the bounds may be
    relaxed, else 1 for every task (the bound itself)."""
    if not config.relax_bounds:
        return {t: 1.0 for t in recipe.tasks}
    return {t: s.max_relax for t, s in recipe.tasks.items() if s.max_relax is not None}


def exactness_refusals(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup],
                       fractions: tuple[float, ...] | None = None) -> dict[str, str]:
    """group root -> reason, for the groups toolchain.prune.exactness refuses."""
    if fractions is not None and not fractions:
        return {}
    kw = {"dead_fractions": fractions} if fractions else {}
    return {name: str(reason) for name, reason in check_groups(model, example, groups, **kw).refused.items()}


def goal_not_reached(flops_before: int, flops_after: int, relaxed: bool) -> str:
    removed = 100 * (1 - flops_after / flops_before)
    if relaxed:
        return f"goal not reached: {removed:.1f} % removed; every task's relaxed budget was exhausted first"
    return (f"goal not reached: {removed:.1f} % removed within bounds (the largest cut found with every task within "
            "its allowed drop on the val split); --relax trades bounds for FLOPs")


def _latency(config: PruneConfig, model: nn.Module, example: torch.Tensor) -> float:
    if config.latency_of is not None:
        return config.latency_of(model)
    return cost.host_latency_ms({"model": model}, example)["model"]


def prune(model: nn.Module, recipe: Recipe, config: PruneConfig | None = None,
          example: torch.Tensor | None = None, data: list[Batch] | None = None,
          reference: nn.Module | None = None) -> PruneResult:
    """Prune a copy of `model` with PAGCP until the global goal (`model` is left as it was); the pruned
    model is `result.model`. `reference`: the model every task's drop is measured against (default:
    `model`); pass the original network when `model` is already pruned and recovered, so pruning on
    spends what is left of the bounds, not a fresh allowance. Raises SpecError for a bad goal. The goal
    may be missed (``goal_reached=False``) when every budget is exhausted; the result is still valid."""
    config = config or PruneConfig()
    config.check()
    t0, cpu0 = time.perf_counter(), time.process_time()
    model = multitask(model, recipe).eval()
    example = example if example is not None else example_input(recipe)
    label_free = config.label_free or not has_labels(recipe)
    unpruned = copy.deepcopy(multitask(reference, recipe).eval() if reference is not None else model)
    if data is None:
        data = list(batches(recipe, "val", count=config.val_count, batch_size=config.batch_size))
    phases = {"setup": 0.0, "exactness": 0.0, "saliency": 0.0, "cache": 0.0, "screen": 0.0, "confirm": 0.0, "regroup": 0.0}
    oracle = Oracle(unpruned, recipe, data, {t: s.allowed_drop for t, s in recipe.tasks.items()}, label_free,
                    oracle_caps(recipe, config), config.screen_count)
    if not config.relax_bounds:  # every budget stays at the recipe's bound: nothing to grow between rounds
        config = dataclasses.replace(config, relax=1.0)
        oracle.margin_z = config.confidence_z
    flops0, params0 = cost.model_flops(model, example), cost.model_params(model)
    notes: list[str] = []

    goal_flops = flops0 * config.keep_flops if config.keep_flops is not None else None
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

    if reference is None:
        oracle.set_current(model, oracle.before, oracle.before_screen)
    else:  # the starting model differs from the reference: measure where it stands
        oracle.set_current(model)
    phases["setup"] += time.perf_counter() - t0 - phases["exactness"]
    with progress_bar(transient=True) as progress:
        job = progress.add_task("pagcp", total=max(int((flops0 - (goal_flops or 0)) / 1e6), 1))
        st = SearchState(config, oracle, model, example, flops0, goal_flops, config.budget_fraction, phases,
                         recipe, data[: config.taylor_batches], label_free, refused, latency_per_channel, t0=t0,
                         notes=notes)
        if config.relax_tasks == "binding":
            st.task_scales = {t: config.budget_fraction for t in recipe.tasks}
        st.show = lambda text, removed: progress.update(
            job, completed=int(removed / 1e6),
            description=f"pagcp {text} steps {st.step} FLOPs -{removed / flops0:.1%} evals {oracle.evaluations}")
        search = joint_search if config.search == "joint" else sequential_search
        search(st, lambda m: _latency(config, m, example))
    model, stopped = st.model.eval(), st.stopped
    flops1 = cost.model_flops(model, example)
    final = {g.name: g.channels for g in channel_groups(model, example, ignored=config.ignored)}
    channels = {n: (c, final.get(n, c)) for n, c in start_channels.items()}
    if st.task_scales is not None:
        notes.append("final oracle budgets (x allowed drop): " + ", ".join(f"{t} {v:.2f}" for t, v in st.task_scales.items()))
    else:
        notes.append(f"final oracle budget: {st.scale:.2f} x allowed drop")
    if stopped:
        notes.append(f"stopped by the {stopped} ({config.time_budget_s:.0f} s) at the last confirmed step: "
                     "every task within its oracle budget, goal not reached")
    elif not st.reached:
        notes.append(goal_not_reached(flops0, flops1, config.relax_bounds))
    seconds = time.perf_counter() - t0
    phases["search"] = seconds - sum(phases.values())  # bisection bookkeeping, copies, progress
    oracle_cost = {"evaluations": oracle.evaluations, "confirmations": oracle.confirmations,
                   "images_evaluated": oracle.images_evaluated, "bracket_skips": st.skipped, "search": config.search,
                   "screen_images": sum(len(x) for x, _ in oracle.screen),
                   "val_images": sum(len(x) for x, _ in oracle.data), "stopped_by": stopped or None,
                   # CPU seconds of this process (all threads): the load-independent cost on a shared host
                   "cpu_seconds": round(time.process_time() - cpu0, 3),
                   "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}
    return PruneResult(model, "pagcp", flops0, flops1, params0, cost.model_params(model),
                       channels, layers_of, st.path, oracle.evaluations, refused, st.reached, label_free, oracle.before,
                       oracle.current, seconds, notes, oracle_cost)
