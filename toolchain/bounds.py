"""The recipe's bounds as a contract: each task's drop against its allowed drop, measured on held-out data.

One table shared by `toolchain.compress` (the final model on the test split), recovery (which epoch
to keep, judged on the val split) and the sweep: what a task lost, what it was allowed, and by how
much it is past its bound. Drops are in the task's metric unit, positive = worse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from torch import nn

from toolchain.data.loaders import Batch
from toolchain.evaluate import drops, evaluate, task_metric_name
from toolchain.recipe import Recipe

# float noise allowed on a drop before a task counts as past its bound
TOLERANCE = 1e-9


@dataclass(frozen=True)
class TaskBound:
    task: str
    metric: str  # the metric the drop is measured in ("(fidelity)" appended when label-free)
    before: float
    after: float
    drop: float  # positive = worse
    allowed: float

    @property
    def within(self) -> bool:
        return self.drop <= self.allowed + TOLERANCE

    @property
    def exceeded_by(self) -> float:
        return max(0.0, self.drop - self.allowed)

    @property
    def used(self) -> float:
        """The share of the allowed drop spent (1.0 = at the bound; inf for a zero bound exceeded)."""
        if self.allowed > 0:
            return self.drop / self.allowed
        return 0.0 if self.drop <= TOLERANCE else float("inf")


@dataclass(frozen=True)
class BoundsCheck:
    """Every task's drop against its bound on one split (``split``, ``images`` images)."""

    split: str
    images: int
    label_free: bool
    tasks: dict[str, TaskBound]

    @property
    def exceeded(self) -> list[TaskBound]:
        return [b for b in self.tasks.values() if not b.within]

    @property
    def within(self) -> bool:
        return not self.exceeded

    def severity(self) -> tuple[int, float, float]:
        """Smaller is better: tasks past their bound, then the largest and the summed share of the
        allowed drop spent. Orders candidate models (recovery epochs) by how well they keep the contract."""
        used = [min(b.used, 1e9) for b in self.tasks.values()]
        return len(self.exceeded), max(used, default=0.0), sum(used)

    def describe_exceeded(self) -> str:
        return "; ".join(f"{b.task} dropped {b.drop:.3f} {b.metric} (allowed {b.allowed:g}, "
                         f"{b.exceeded_by:.3f} past)" for b in self.exceeded)

    def markdown(self) -> list[str]:
        """The table a report leads with."""
        kind = "fidelity to the original" if self.label_free else "against labels"
        lines = [f"Bounds on the held-out {self.split} split ({self.images} images, {kind}):", "",
                 "| task | metric | original | result | drop | allowed | within |", "|---|---|---|---|---|---|---|"]
        for b in self.tasks.values():
            verdict = "yes" if b.within else f"NO ({b.exceeded_by:.3f} past)"
            lines.append(f"| {b.task} | {b.metric} | {b.before:.3f} | {b.after:.3f} | {b.drop:.3f} | {b.allowed:g} | {verdict} |")
        return lines

    def as_dict(self) -> dict:
        return {"split": self.split, "images": self.images, "label_free": self.label_free, "within": self.within,
                "tasks": {t: {**asdict(b), "within": b.within, "exceeded_by": b.exceeded_by} for t, b in self.tasks.items()}}


def bounds_from_metrics(before: dict[str, float], after: dict[str, float], recipe: Recipe, label_free: bool,
                        split: str, images: int) -> BoundsCheck:
    """The table from metrics already measured (`before`: the original, `after`: the result)."""
    d = drops(before, after, recipe, label_free)
    tasks = {t: TaskBound(t, task_metric_name(recipe, t, label_free) + (" (fidelity)" if label_free else ""),
                          before[t], after[t], d[t], recipe.task(t).allowed_drop) for t in after}
    return BoundsCheck(split, images, label_free, tasks)


def check_bounds(original: nn.Module, result: nn.Module, recipe: Recipe, data: Iterable[Batch], label_free: bool,
                 split: str) -> BoundsCheck:
    """Measure `original` and `result` on `data` (labels, or fidelity to `original` when label-free)."""
    data = list(data)
    reference = original if label_free else None
    before = evaluate(original, recipe, data, reference=reference)
    after = evaluate(result, recipe, data, reference=reference)
    return bounds_from_metrics(before, after, recipe, label_free, split, sum(len(x) for x, _ in data))


__all__ = ["BoundsCheck", "TaskBound", "bounds_from_metrics", "check_bounds"]
