"""`toolchain.compress`: prune a model to a FLOPs or latency goal, recover, report (docs/pruning.md).

The bounds contract (no step past a bound by default, recovery never worse, the result measured on
the test split): docs/pruning.md, "The recipe's bounds are the contract". The policy around the
search is here too: the default channel rounding (the target's multiple, else 8), the L1 baseline's
FLOPs goal, how a latency table or the host's per-layer counters become a per-channel cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from toolchain.bounds import BoundsCheck, check_bounds
from toolchain.data.loaders import batches, example_input, has_labels
from toolchain.errors import MtedgeError, SpecError
from toolchain.recipe import Recipe, load_recipe

DEFAULT_ROUND_TO = 8


class BoundsExceeded(MtedgeError):
    """A compressed model is past a task's bound on held-out data and the caller did not allow it."""


@dataclass
class CompressResult:
    model: nn.Module  # the pruned (and recovered) model; the unpruned one when nothing was pruned
    unpruned: nn.Module
    recipe: Recipe
    origin: str  # how the model was loaded (recorded in checkpoints)
    round_to: int
    label_free: bool
    prune: Any = None  # toolchain.prune.pagcp.PruneResult, None without pruning
    notes: list[str] = field(default_factory=list)
    bounds: BoundsCheck | None = None  # every task's drop on the held-out test split
    recovery: Any = None  # toolchain.prune.recovery.Recovery: the state kept and why
    relaxed: bool = False  # the search was allowed past the recipe's bounds (relax=True)
    allow_exceed: bool = False  # a task past its bound does not make the result fail

    @property
    def goal_reached(self) -> bool:
        return self.prune is not None and self.prune.goal_reached

    @property
    def ok(self) -> bool:
        """Every task within its bound on the held-out split, or the caller allowed otherwise."""
        return self.allow_exceed or self.bounds is None or self.bounds.within

    def check(self) -> None:
        """Raise BoundsExceeded (naming each task, its drop and its bound) unless `ok`."""
        if not self.ok:
            raise BoundsExceeded(
                f"task(s) past their bound on the held-out {self.bounds.split} split: {self.bounds.describe_exceeded()}; "
                "keep more FLOPs (--keep-flops), recover longer (--finetune-epochs), drop --relax, or pass "
                "--allow-exceed to accept the result as it is")

    def lead(self) -> list[str]:
        """What a user reads first: the goal's outcome and the bounds table."""
        lines = []
        if self.prune is not None:
            removed = 100 * self.prune.flops_removed
            lines.append(f"goal reached: {removed:.1f} % of the FLOPs removed" if self.goal_reached else
                         f"goal not reached: {removed:.1f} % removed within bounds" if not self.relaxed else
                         f"goal not reached: {removed:.1f} % removed with relaxed budgets")
        if self.recovery is not None:
            lines.append(self.recovery.note())
        if self.bounds is not None:
            lines += self.bounds.markdown()
            if self.bounds.exceeded:
                lines.append(("allowed by the caller (allow_exceed): " if self.allow_exceed else "BOUNDS EXCEEDED: ")
                             + self.bounds.describe_exceeded())
        return lines

    def summary(self) -> dict | None:
        """What the checkpoint records about the pruning (``pruning`` entry)."""
        r = self.prune
        if r is None:
            return None
        return {"method": r.method, "flops_before": r.flops_before, "flops_after": r.flops_after,
                "params_before": r.params_before, "params_after": r.params_after,
                "channels": {k: list(v) for k, v in r.channels.items()}, "oracle_evaluations": r.oracle_evaluations}

    def save(self, path: str | Path) -> Path:
        """An mtedge checkpoint of the compressed model (replayable pruning plan, no pickled code)."""
        from toolchain.model import save_checkpoint

        save_checkpoint(path, self.model, self.origin, self.recipe, pruning=self.summary())
        return Path(path)

    def report(self, directory: str | Path, test_count: int | None = None, extra: dict | None = None) -> dict[str, Path]:
        """report.json, report.md and pruning_path.png: metrics before/after on the test split (fidelity
        to the unpruned model when label-free), FLOPs, params and host latency."""
        from toolchain.prune import cost
        from toolchain.prune.report import prune_report, write_report

        if self.prune is None:
            raise SpecError("nothing was pruned, so there is no pruning report; pass method='pagcp' or 'l1'")
        bounds = self.bounds
        if bounds is None or test_count not in (None, bounds.images):  # not measured on this split yet
            bounds = held_out_bounds(self.unpruned, self.model, self.recipe, self.label_free, test_count)
        before = {t: b.before for t, b in bounds.tasks.items()}
        after = {t: b.after for t, b in bounds.tasks.items()}
        lat = cost.host_latency_ms({"before": self.unpruned, "after": self.model}, example_input(self.recipe))
        contract = {"lead": self.lead(), "relaxed": self.relaxed, "allow_exceed": self.allow_exceed, "ok": self.ok,
                    "bounds": self.bounds.as_dict() if self.bounds else None,
                    "recovery": ({"kept": self.recovery.kept, "candidates": [c.as_dict() for c in self.recovery.checks]}
                                 if self.recovery is not None else None)}
        doc = prune_report(self.prune, self.recipe, before, after, lat,
                         {"round_to": self.round_to, **contract, **(extra or {})})
        return write_report(doc, directory)


def default_round_to(target: str | None = None, precision: str = "fp32") -> int:
    """Channel counts become multiples of the target's channel multiple at that precision, else 8."""
    if target is None:
        return DEFAULT_ROUND_TO
    from toolchain.targets.profile import load_profile

    return load_profile(target).channel_multiple(precision)


def compress(model: str | nn.Module, recipe: str | Path | Recipe | None = None, *, checkpoint: str | None = None,
             method: str = "pagcp", keep_flops: float | None = None, target_latency_ms: float | None = None,
             target: str | None = None, precision: str = "fp32", round_to: int | None = None, order: str = "flops",
             search: str = "joint", points_per_probe: int = 1, evaluator: Any = None, relax_tasks: str = "all",
             max_step: float = 0.5, latency_table: str | Path | None = None, finetune_epochs: float = 0.0,
             finetune_limit: int | None = None, distill: bool = False, label_free: bool = False, val_count: int = 512,
             screen_count: int | None = None, time_budget_s: float | None = None, ignored: tuple[str, ...] = (),
             trust_pickle: bool = False, relax: bool = False, allow_exceed: bool = False,
             test_count: int | None = None, max_rounds: int | None = None, on_step: Callable[[str], None] | None = None,
             log: Callable[[str], None] = lambda line: None) -> CompressResult:
    """Prune ``model`` (a spec such as ``zoo:fashion-mt`` / ``pkg.mod:factory`` / a checkpoint, or a
    module with ``recipe``) with PAGCP or the global L1 baseline to one goal, then fine-tune.

    ``round_to`` defaults to ``target``'s channel multiple at ``precision`` (else 8); without labels in
    the recipe, tasks are judged label-free and fine-tuning distills from the unpruned model.
    ``search``/``points_per_probe``/``evaluator``: PAGCP's search and where its probes are judged
    (``toolchain.workers``; the result depends on ``points_per_probe`` only); ``relax_tasks``:
    whose budgets grow between rounds ("all", or "binding": only the tasks that stopped a step).

    Bounds (``relax``, ``allow_exceed``, ``test_count``; ``result.bounds``, ``result.ok``,
    ``result.check()``): docs/pruning.md, "The recipe's bounds are the contract"."""
    from toolchain.graph.capture import multitask
    from toolchain.model import load_with_recipe
    from toolchain.prune import cost
    from toolchain.prune.pagcp import PruneConfig, prune

    if method not in ("pagcp", "l1"):
        raise SpecError(f"unknown pruning method {method!r}; use 'pagcp' (performance-aware) or 'l1' (magnitude baseline)")
    if keep_flops is None and target_latency_ms is None:
        raise SpecError("pruning needs a goal: keep_flops (e.g. 0.35) or target_latency_ms")
    if isinstance(model, nn.Module):
        if recipe is None:
            raise SpecError("a module needs its recipe: compress(module, recipe=...)")
        rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        unpruned, origin = multitask(model, rec), type(model).__name__
    else:
        loaded, rec = load_with_recipe(model, checkpoint, recipe, trust_pickle=trust_pickle)
        unpruned, origin = loaded.module, loaded.origin
    unpruned = unpruned.eval()
    label_free = label_free or not has_labels(rec)
    round_to = round_to if round_to is not None else default_round_to(target, precision)
    example = example_input(rec)
    config = PruneConfig(keep_flops=keep_flops, target_latency_ms=target_latency_ms, round_to=round_to, order=order,
                         search=search, points_per_probe=points_per_probe, evaluator=evaluator,
                         relax_tasks=relax_tasks, max_step=max_step, val_count=val_count, label_free=label_free, ignored=tuple(ignored),
                         screen_count=screen_count, time_budget_s=time_budget_s, on_step=on_step,
                         relax_bounds=relax, max_rounds=max_rounds)
    notes = []
    if latency_table:
        from toolchain.targets.latency import load_table

        table = cost.TableLatency.from_table(load_table(latency_table), unpruned, example)
        config.latency_cost, config.latency_of = table.cost_per_channel, table.estimate_ms
        config.order = order if order != "flops" else "latency"  # a table is given to be used
        notes.append(f"latency table {latency_table} ({table.table.source}, {table.table.target}): "
                     f"{table.total_ms:.3f} ms, {len(table.names)} prunable layers matched by name")
    elif order != "flops":
        table = cost.TableLatency.measured_on_host(unpruned, example, runs=100)
        config.latency_cost = table.cost_per_channel
        notes.append(f"host per-layer latency (OpenVINO CPU counters): {table.total_ms:.3f} ms, "
                     f"{len(table.names)} prunable layers timed")
    for n in notes:
        log(n)
    if method == "pagcp":
        result = prune(unpruned, rec, config, example=example)
    else:
        from toolchain.prune.baseline import l1_prune

        config.check()
        # L1 has no latency judge: a latency goal prunes to half the FLOPs
        goal = cost.model_flops(unpruned, example) * (keep_flops if keep_flops is not None else 0.5)
        result = l1_prune(unpruned, example, int(goal), round_to=round_to, ignored=tuple(ignored))
    recovery = None
    if finetune_epochs > 0:
        from toolchain.prune.recovery import recover

        val = list(batches(rec, "val", count=val_count, batch_size=128))
        # label-free: the unpruned model is the only teacher there is (distillation is implied)
        recovery = recover(result.model, rec, finetune_epochs,
                           judge=lambda m: check_bounds(unpruned, m, rec, val, label_free, "val"),
                           teacher=unpruned if (distill or label_free) else None, limit=finetune_limit)
        result.model = recovery.model
        notes.append(recovery.note())
    log(f"pruned: FLOPs {result.flops_before:,} -> {result.flops_after:,} "
        f"({100 * result.flops_removed:.1f}% removed), oracle evaluations {result.oracle_evaluations}")
    out = CompressResult(result.model, unpruned, rec, origin, round_to, label_free, result, notes,
                         relaxed=relax, allow_exceed=allow_exceed, recovery=recovery)
    out.bounds = held_out_bounds(unpruned, result.model, rec, label_free, test_count)
    return out


def held_out_bounds(original: nn.Module, result: nn.Module, recipe: Recipe, label_free: bool,
                    test_count: int | None = None) -> BoundsCheck:
    """Every task's drop on the test split: data neither the search nor recovery chose anything on."""
    return check_bounds(original, result, recipe, batches(recipe, "test", count=test_count, batch_size=256),
                        label_free, "test")


__all__ = ["BoundsExceeded", "CompressResult", "compress", "default_round_to", "held_out_bounds"]
