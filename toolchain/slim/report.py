"""Reports for slimmable models: per-task metric vs FLOPs plot, controllability, rich tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from toolchain.slim.convert import WidthConfig
from toolchain.slim.search import SlimTable, search


def plot_metric_vs_flops(points: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, float] | None,
                         out: str | Path, title: str = "slimmable widths: metric vs FLOPs") -> Path:
    """One panel per task: metric of each configuration (`points[name] = {"flops", "metrics"}`)
    against its FLOPs, the non-slimmable model as a dashed line. Written atomically as PNG."""
    from toolchain.plots import save_png, subplots

    names = list(points)
    tasks = list(next(iter(points.values()))["metrics"])
    uniform = sorted([n for n in names if n.startswith("c")], key=lambda n: points[n]["flops"])
    other = [n for n in names if not n.startswith("c")]
    fig, axes = subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        ax.plot([points[n]["flops"] / 1e6 for n in uniform], [points[n]["metrics"][t] for n in uniform], "o-",
                label="uniform widths")
        if other:
            ax.plot([points[n]["flops"] / 1e6 for n in other], [points[n]["metrics"][t] for n in other], "s",
                    label="searched")
        for n in names:
            ax.annotate(n if len(n) < 8 else n[:6] + "…", (points[n]["flops"] / 1e6, points[n]["metrics"][t]),
                        fontsize=7, textcoords="offset points", xytext=(3, 3))
        if baseline and t in baseline:
            ax.axhline(baseline[t], ls="--", color="gray", label="non-slimmable")
        ax.set_title(t)
        ax.set_xlabel("MFLOPs")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, out)


def preference_swap(table: SlimTable, task_a: str, task_b: str, budget_flops: float, high: float = 4.0,
                    low: float = 1.0) -> dict[str, Any]:
    """Controllability: search at a fixed budget with (a=high, b=low) and then (a=low, b=high).

    Returns both configurations, their table metrics, and whether the wider decoder and each
    task's metric moved the preferred way."""
    base = {t: 1.0 for t in table.tasks}
    ra = search(table, {**base, task_a: high, task_b: low}, budget_flops=budget_flops)
    rb = search(table, {**base, task_a: low, task_b: high}, budget_flops=budget_flops)
    wa = (ra.config.decoder(task_a), ra.config.decoder(task_b))
    wb = (rb.config.decoder(task_a), rb.config.decoder(task_b))
    return {
        "tasks": [task_a, task_b], "budget_flops": budget_flops, "weights": [high, low],
        "prefer_a": {"config": ra.config.to_dict(), "name": ra.config.name, "flops": ra.flops, "metrics": ra.metrics},
        "prefer_b": {"config": rb.config.to_dict(), "name": rb.config.name, "flops": rb.flops, "metrics": rb.metrics},
        "wider_decoder_swaps": bool(wa[0] > wa[1] and wb[1] > wb[0]),
        "a_metric_moves": bool(_better(table, task_a, ra.metrics[task_a], rb.metrics[task_a])),
        "b_metric_moves": bool(_better(table, task_b, rb.metrics[task_b], ra.metrics[task_b])),
    }


def _better(table: SlimTable, task: str, preferred: float, other: float) -> bool:
    return preferred > other if table.higher_is_better[task] else preferred < other


def table_render(rows: Sequence[Mapping[str, Any]], tasks: Sequence[str], title: str,
                 baseline: Mapping[str, float] | None = None, full_flops: int | None = None) -> None:
    """Print configurations (name, widths, FLOPs, latency, metrics) as a rich table; FLOPs % is
    relative to `full_flops` (default: the largest row)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ["config", "enc", "decoders " + "/".join(x[:3] for x in tasks), "MFLOPs", "FLOPs %", "ms", *tasks]:
        t.add_column(col, justify="left" if col.startswith(("config", "decoders")) else "right")
    full = full_flops or (max(r["flops"] for r in rows) if rows else 1)
    if baseline:
        t.add_row("non-slimmable", "", "", "", "", "", *[f"{baseline[x]:.2f}" for x in tasks])
    for r in rows:
        cfg = WidthConfig.from_dict(r["config"])
        lat = r.get("latency_ms")
        t.add_row(r["name"], "/".join(f"{w:g}" for w in cfg.encoder), "/".join(f"{cfg.decoder(x):g}" for x in tasks),
                  f"{r['flops'] / 1e6:.2f}", f"{100 * r['flops'] / full:.0f}", "" if lat is None else f"{lat:.3f}",
                  *[f"{r['metrics'][x]:.2f}" for x in tasks])
    Console(width=max(160, Console().width)).print(t)
