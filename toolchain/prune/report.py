"""The compression report: report.json, report.md and pruning_path.png (FLOPs vs each task's metric).

Contents: channels before/after per group, per-task metrics before/after (test split; fidelity to
the unpruned model when label-free) with drops against the allowed drops, FLOPs, parameters and
measured host latency (OpenVINO CPU, f32 hint, median of interleaved runs) before/after, the
pruning path, oracle evaluations, and groups the exactness check refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolchain.bundle.files import write_bytes_atomic, write_json_atomic
from toolchain.errors import SpecError
from toolchain.prune.pagcp import PruneResult
from toolchain.recipe import Recipe

FORMAT, FORMAT_VERSION = "mtedge-prune-report", 1


@dataclass
class TaskOutcome:
    """A task's metric before/after pruning (test split) against its allowed drop."""

    metric: str
    before: float
    after: float
    drop: float
    allowed_drop: float
    within_bound: bool


@dataclass
class GroupChannels:
    channels_before: int
    channels_after: int
    layers: list[str]


@dataclass
class PruneReport:
    """report.json: what pruning did. ``extra``: the caller's entries (the bounds contract, model,
    output, ...), written at the top level of the document beside these fields."""

    method: str
    label_free: bool
    flops: dict[str, float]  # before, after, removed_pct
    params: dict[str, float]
    latency_ms: dict[str, float] | None  # host latency before/after; None when not measured
    latency_speedup: float | None
    tasks: dict[str, TaskOutcome]
    groups: dict[str, GroupChannels]
    refused_groups: dict[str, str]  # groups the exactness check refused, and why
    oracle_evaluations: int
    # what the search cost: evaluations (screening + confirmation), images evaluated, wall time per phase
    oracle_cost: dict[str, Any]
    goal_reached: bool
    prune_seconds: float
    val_metrics: dict[str, Any]  # before, after_pruning
    path: list[dict[str, Any]]  # the accepted steps: group, channels, FLOPs, params, metrics, drops
    notes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        extra = doc.pop("extra")
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **doc, **extra}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "PruneReport":
        if doc.get("format") != FORMAT:
            raise SpecError(f"not a prune report: format {doc.get('format')!r}, expected {FORMAT!r}; "
                            "pass the report.json `mtedge compress --report` wrote")
        own = {f.name for f in fields(cls)} - {"extra"}

        def read(*, tasks: dict, groups: dict, **rest: Any) -> PruneReport:
            return cls(**{k: v for k, v in rest.items() if k in own}, tasks={t: TaskOutcome(**v) for t, v in tasks.items()},
                       groups={n: GroupChannels(**g) for n, g in groups.items()},
                       extra={k: v for k, v in rest.items() if k not in own | {"format", "format_version"}})

        return read(**doc)


def prune_report(result: PruneResult, recipe: Recipe, before: dict[str, float], after: dict[str, float],
                 latency_ms: dict[str, float] | None, extra: dict[str, Any] | None = None) -> PruneReport:
    from toolchain.evaluate import drops

    d = drops(before, after, recipe, result.label_free)
    return PruneReport(
        method=result.method, label_free=result.label_free,
        flops={"before": result.flops_before, "after": result.flops_after, "removed_pct": 100 * result.flops_removed},
        params={"before": result.params_before, "after": result.params_after,
                "removed_pct": 100 * (1 - result.params_after / result.params_before)},
        latency_ms=latency_ms, latency_speedup=(latency_ms["before"] / latency_ms["after"]) if latency_ms else None,
        tasks={t: TaskOutcome(recipe.tasks[t].metric, before[t], after[t], d[t], recipe.tasks[t].allowed_drop,
                              d[t] <= recipe.tasks[t].allowed_drop) for t in before},
        groups={n: GroupChannels(b, a, result.group_layers.get(n, [])) for n, (b, a) in result.channels.items()},
        refused_groups=result.refused, oracle_evaluations=result.oracle_evaluations, oracle_cost=result.cost,
        goal_reached=result.goal_reached, prune_seconds=result.seconds,
        val_metrics={"before": result.val_metrics_before, "after_pruning": result.val_metrics_after},
        path=[{"step": p.step, "round": p.round, "group": p.group, "channels": list(p.channels), "flops": p.flops,
               "params": p.params, "metrics": p.metrics, "drops": p.drops, "budget_scale": p.budget_scale}
              for p in result.path],
        notes=result.notes, extra=dict(extra or {}))


def markdown(doc: PruneReport) -> str:
    lines = [f"# Compression report ({doc.method})", ""]
    if doc.extra.get("lead"):  # the contract first: goal reached or not, recovery kept, bounds on held-out data
        lines += [*doc.extra["lead"], ""]
    f, p = doc.flops, doc.params
    lines += [f"- FLOPs: {f['before']:,} -> {f['after']:,} ({f['removed_pct']:.1f}% removed)",
              f"- parameters: {p['before']:,} -> {p['after']:,} ({p['removed_pct']:.1f}% removed)"]
    if doc.latency_ms:
        lat = doc.latency_ms
        lines.append(f"- host latency (OpenVINO CPU, f32, median): {lat['before']:.3f} ms -> {lat['after']:.3f} ms "
                     f"({doc.latency_speedup:.2f}x)")
    c = doc.oracle_cost or {}
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in (c.get("phase_seconds") or {}).items())
    lines += [f"- oracle evaluations: {doc.oracle_evaluations} ({c.get('confirmations', 0)} confirmations, "
              f"{c.get('images_evaluated', 0):,} images); goal reached: {doc.goal_reached}"
              + (f"; stopped by the {c['stopped_by']}" if c.get("stopped_by") else ""),
              f"- prune wall time {doc.prune_seconds:.1f} s: {phases}", "",
              "| task | metric | before | after | drop | allowed | within |", "|---|---|---|---|---|---|---|"]
    for t, v in doc.tasks.items():
        lines.append(f"| {t} | {v.metric}{' (fidelity)' if doc.label_free else ''} | {v.before:.3f} | "
                     f"{v.after:.3f} | {v.drop:.3f} | {v.allowed_drop:.2f} | {'yes' if v.within_bound else 'NO'} |")
    lines += ["", "| group (root layer) | channels before | after |", "|---|---|---|"]
    for n, g in doc.groups.items():
        lines.append(f"| {n} | {g.channels_before} | {g.channels_after} |")
    if doc.refused_groups:
        lines += ["", "Groups the exactness check refused (not pruned):", ""]
        lines += [f"- {n}: {why}" for n, why in doc.refused_groups.items()]
    if doc.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in doc.notes]
    return "\n".join(lines) + "\n"


def plot_path(doc: PruneReport, path: Path) -> None:
    """FLOPs (x, fraction kept) vs each task's val metric along the pruning path, one panel per task."""
    from toolchain.plots import save_png, subplots

    points = doc.path
    tasks = list(doc.tasks)
    f0 = doc.flops["before"]
    before = doc.val_metrics["before"]
    fig, axes = subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.0), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        xs = [1.0] + [p["flops"] / f0 for p in points]
        ys = [before.get(t, float("nan"))] + [p["metrics"].get(t, float("nan")) for p in points]
        ax.plot(xs, ys, marker="o", markersize=3)
        ax.invert_xaxis()
        ax.set_title(t)
        ax.set_xlabel("FLOPs kept")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val metric" + (" (fidelity)" if doc.label_free else ""))
    fig.tight_layout()
    save_png(fig, path)


def write_report(doc: PruneReport, directory: str | Path) -> dict[str, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / "report.json", "markdown": d / "report.md", "plot": d / "pruning_path.png"}
    write_json_atomic(paths["json"], doc.to_dict())
    write_bytes_atomic(paths["markdown"], markdown(doc).encode())
    plot_path(doc, paths["plot"])
    return paths
