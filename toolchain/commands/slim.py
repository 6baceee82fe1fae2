"""`mtedge slim`: slimmable widths (convert + train, search, export, report). See docs/slimmable.md."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from toolchain.commands.common import evaluator_from, load_model_and_recipe, model_options, scale_options, torch_threads
from toolchain.errors import SpecError


@click.group()
def slim() -> None:
    """Slimmable widths: one network, compute budget and task preference chosen at run time."""


@slim.command("convert")
@model_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="slimmable checkpoint (.pt)")
@click.option("--widths", default="1.0,0.75,0.5,0.35", show_default=True, help="width multipliers (must include 1.0)")
@click.option("--round-to", type=int, default=4, show_default=True, help="kept channels are multiples of N")
@click.option("--encoder-stages", is_flag=True,
              help="one width per encoder stage (layers of one output resolution) instead of one for the whole encoder")
@click.option("--epochs", type=float, default=0.5, show_default=True, help="sandwich-rule training epochs (0: convert only)")
@click.option("--limit", type=int, default=None, help="train on at most this many images (quick runs)")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--random-configs", type=int, default=1, show_default=True, help="random configurations per step")
@click.option("--teacher/--no-teacher", default=True, show_default=True,
              help="distill the original model into the widest configuration (keeps full width close to it)")
@click.option("--calib-images", type=int, default=512, show_default=True, help="BN recalibration images per width")
@click.option("--val-count", type=int, default=1000, show_default=True, help="val images for the width grid table")
@click.option("--latency/--no-latency", default=True, show_default=True, help="fit the host latency model (OpenVINO)")
@click.option("--taylor/--magnitude", default=True, show_default=True,
              help="order channels by the pruner's task-aware score, or by group magnitude only")
@click.option("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on busy cores)")
@scale_options
def convert_cmd(model, checkpoint, recipe, output, widths, round_to, encoder_stages, epochs, limit, lr, random_configs,
                teacher, calib_images, val_count, latency, taylor, threads, workers, ray_address, worker_threads):
    """Make MODEL slimmable: order channels, train (sandwich rule + distillation), recalibrate, tabulate."""
    from toolchain.progress import console
    from toolchain.slim import make_slimmable, save_slimmable
    from toolchain.slim.report import table_render

    torch_threads(threads)
    loaded, rec = load_model_and_recipe(model, checkpoint, recipe)
    try:
        ws = [float(w) for w in widths.split(",")]
    except ValueError:
        raise SpecError(f"--widths {widths!r} must be comma-separated numbers, e.g. 1.0,0.75,0.5,0.35") from None
    with evaluator_from(workers, ray_address, worker_threads) as ev:
        s, table = make_slimmable(loaded.module, rec, widths=ws, round_to=round_to, encoder_stages=encoder_stages,
                                  epochs=epochs, limit=limit, lr=lr, random_configs=random_configs, teacher=teacher,
                                  calib_images=calib_images, val_count=val_count, latency=latency, taylor=taylor,
                                  evaluator=ev)
    save_slimmable(output, s, loaded.origin, rec, table)
    rows = [{"name": c.name, "config": c.to_dict(), "flops": table.flops(c), "latency_ms": table.latency_ms(c),
             "metrics": table.config_metrics(c)} for c in s.configs()]
    table_render(rows, s.tasks, f"{Path(output).name}: uniform configurations (val, {table.samples} images)")
    console.print(f"wrote {output}")


@slim.command("search")
@click.argument("model", metavar="SLIM_CHECKPOINT")
@click.option("--budget-flops", type=float, default=None, help="FLOPs budget: absolute, or a fraction of the full model if <= 1")
@click.option("--budget-latency-ms", type=float, default=None, help="latency budget (predicted, see --target)")
@click.option("--target", default=None, help="target profile for the latency model (default: host-cpu, measured)")
@click.option("--prefer", default=None, help="task preference weights, e.g. silhouette=2,denoise=1 (others weigh 1)")
@click.option("--max-drop", default=None,
              help="keep tasks within this much of full width (metric units), e.g. garment=2,denoise=0.6; "
                   "without a budget: the configuration with the fewest FLOPs that does")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="write the result as JSON")
def search_cmd(model, budget_flops, budget_latency_ms, target, prefer, max_drop, json_path):
    """Pick the width configuration that best serves the task preferences within a budget, or
    (--max-drop alone) the cheapest one that keeps each named task within its drop."""
    from toolchain.commands.common import write_json
    from toolchain.data.loaders import example_input
    from toolchain.slim import load_slimmable
    from toolchain.slim.report import table_render
    from toolchain.slim.search import fit_latency, parse_preferences, parse_task_values, search

    s, rec, table, _ = load_slimmable(model)
    if table is None:
        raise SpecError(f"{model} has no evaluated table; re-run `mtedge slim convert` (it evaluates the width grid)")
    if budget_latency_ms is not None and (not table.latency or (target and table.latency.get("target") != target)):
        fit_latency(table, s, example_input(rec), target=target)
    prefs = parse_preferences(prefer, s.tasks)
    r = search(table, prefs, budget_flops=budget_flops, budget_latency_ms=budget_latency_ms,
               max_drop=parse_task_values(max_drop, s.tasks, "max drop"))
    table_render([{"name": r.config.name, "config": r.config.to_dict(), "flops": r.flops, "latency_ms": r.latency_ms,
                   "metrics": r.metrics}], s.tasks,
                 (f"fewest FLOPs of {r.candidates} configurations within --max-drop (val metrics)"
                  if r.budget["flops"] is None and r.budget["latency_ms"] is None else
                  f"best of {r.candidates} configurations within budget (val metrics, preferences {prefs})"),
                 full_flops=table.full_flops)
    click.echo(f"--configs {r.config.name}")
    write_json(json_path, {"name": r.config.name, "config": r.config.to_dict(), "flops": r.flops,
                           "full_flops": table.full_flops, "latency_ms": r.latency_ms, "metrics": r.metrics,
                           "score": r.score, "budget": r.budget, "candidates": r.candidates})


@slim.command("export")
@click.argument("model", metavar="SLIM_CHECKPOINT")
@click.option("-o", "--output", required=True, type=click.Path(), help="bundle directory NAME.mtb")
@click.option("--configs", default="c100,c75,c50,c35", show_default=True,
              help="configuration names: cNN (every width NN%) or eNN_TASKNN_... (see `mtedge slim search`)")
@click.option("--metrics-split", type=click.Choice(["val", "test", "none"]), default="val", show_default=True,
              help="per-variant metrics recorded in the manifest (val: from the table)")
@click.option("--force", is_flag=True, help="replace an existing bundle")
@click.option("--threads", type=int, default=1, show_default=True, help="threads for the latency measurement")
def export_cmd(model, output, configs, metrics_split, force, threads):
    """Export width configurations of a slimmable checkpoint into one bundle (one variant each)."""
    from toolchain.bench_runtime import measure_variant_latency
    from toolchain.data.loaders import example_input
    from toolchain.slim import load_slimmable, parse_config_name
    from toolchain.slim.export import export_slim_bundle, variant_metrics
    from toolchain.slim.report import table_render

    torch_threads(threads)
    s, rec, table, _ = load_slimmable(model)
    cfgs = [parse_config_name(n.strip(), s.tasks) for n in configs.split(",") if n.strip()]
    res = export_slim_bundle(s, rec, output, cfgs, example_input(rec), force=force, spec=model,
                             metrics=variant_metrics(s, rec, cfgs, table, metrics_split),
                             latency=functools.partial(measure_variant_latency, threads=threads))
    table_render([{"name": n, **d, "metrics": d.get("metrics") or {t: float("nan") for t in s.tasks}}
                  for n, d in res.variants.items()], s.tasks, f"{output}: {res.files} segment files for {res.segment_refs} references")
    click.echo(f"wrote {output}", err=True)


@slim.command("report")
@click.argument("model", metavar="SLIM_CHECKPOINT")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="directory for report.json and the plot")
@click.option("--swap", default=None, help="TASK_A,TASK_B: check that swapping their preferences swaps the wider decoder")
@click.option("--budget-flops", type=float, default=0.5, show_default=True, help="budget for the preference swap")
def report_cmd(model, output, swap, budget_flops):
    """Metric-vs-FLOPs plot of the uniform configurations (val table) and the preference swap check."""
    from toolchain.bundle.files import write_json_atomic
    from toolchain.slim import load_slimmable
    from toolchain.slim.report import plot_metric_vs_flops, preference_swap

    s, rec, table, _ = load_slimmable(model)
    if table is None:
        raise SpecError(f"{model} has no evaluated table; re-run `mtedge slim convert`")
    out = Path(output)
    points = {c.name: {"flops": table.flops(c), "metrics": table.config_metrics(c)} for c in s.configs()}
    doc = {"model": model, "configs": points}
    if swap:
        a, _, b = swap.partition(",")
        if a not in s.tasks or b not in s.tasks:
            raise SpecError(f"--swap {swap!r} must name two tasks of {', '.join(s.tasks)}, e.g. --swap {s.tasks[0]},{s.tasks[-1]}")
        doc["preference_swap"] = preference_swap(table, a, b, budget_flops)
    plot = plot_metric_vs_flops(points, None, out / "metric_vs_flops.png")
    write_json_atomic(out / "report.json", doc)
    click.echo(f"wrote {out / 'report.json'} and {plot}", err=True)
