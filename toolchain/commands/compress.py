"""`mtedge compress`: prune (PAGCP or global L1), fine-tune / distill, report; optionally quantize a bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolchain.commands.common import evaluator_from, load_model_and_recipe, model_options, scale_options, torch_threads
from toolchain.errors import MtedgeError, SpecError


@click.command()
@model_options
@click.option("--prune", "method", type=click.Choice(["pagcp", "l1"]), default=None,
              help="pruning method: pagcp (performance-aware, per-task oracle) or l1 (global magnitude baseline)")
@click.option("--keep-flops", type=float, default=None, help="global goal: keep this fraction of the FLOPs (e.g. 0.35)")
@click.option("--target-latency-ms", type=float, default=None,
              help="global goal: host latency in ms (OpenVINO CPU, f32; measured)")
@click.option("--target", "target", default=None, help="target profile (`mtedge targets` lists them): its channel multiple is the default --round-to")
@click.option("--round-to", type=int, default=None, help="channel counts become multiples of N, never below N (default: target's, else 8)")
@click.option("--order", type=click.Choice(["flops", "latency", "latency-per-flop"]), default="flops", show_default=True,
              help="prune first the groups that save the most FLOPs, the most milliseconds, or the most milliseconds "
                   "per FLOP (best with --keep-flops: the FLOPs budget buys the most time); times from --latency-table, "
                   "else OpenVINO's per-layer counters on this host")
@click.option("--search", type=click.Choice(["joint", "sequential"]), default="joint", show_default=True,
              help="PAGCP's search: joint (one ranking of every channel, a handful of oracle evaluations a round) "
                   "or sequential (the paper's group-by-group greedy, a bisection per group)")
@click.option("--points-per-probe", type=int, default=None,
              help="prefixes the joint search judges per probe (default: --workers, else 1); the result depends on "
                   "this number, not on where the points are judged")
@click.option("--relax-tasks", type=click.Choice(["all", "binding"]), default="all", show_default=True,
              help="whose budgets grow between rounds of the joint search: every task's, or only those of the tasks "
                   "that refused the round's next step (the others keep their recipe's allowed drop)")
@click.option("--relax", is_flag=True,
              help="opt in to relaxed budgets: the search may accept drops past the recipe's bounds (x2 a round, "
                   "capped by each task's max_relax) hoping recovery wins them back; the report says which bounds "
                   "end up exceeded. Default: no step past any bound, stopping short of the goal if need be")
@click.option("--allow-exceed", is_flag=True,
              help="exit 0 even when a task ends past its bound on the held-out test split (the report still says so)")
@click.option("--max-step", type=float, default=0.5, show_default=True,
              help="at most this fraction of a group's channels is cut per round")
@click.option("--latency-table", type=click.Path(dir_okay=False, exists=True), default=None,
              help="latency table of this model from `mtedge profile`: orders groups by ms saved and judges --target-latency-ms")
@click.option("--finetune-epochs", type=float, default=0.0, show_default=True, help="recovery fine-tuning epochs after pruning")
@click.option("--finetune-limit", type=int, default=None, help="fine-tune on at most this many images (quick runs)")
@click.option("--distill", is_flag=True, help="fine-tune with the unpruned model as teacher (always, when label-free)")
@click.option("--label-free", is_flag=True, help="judge tasks by fidelity to the unpruned model (no labels needed)")
@click.option("--val-count", type=int, default=512, show_default=True, help="oracle subset of the val split")
@click.option("--screen-count", type=int, default=None,
              help="judge candidates on the first N oracle images; accepted steps are confirmed on all --val-count")
@click.option("--time-budget", "time_budget_min", type=float, default=None,
              help="minutes: stop PAGCP at the last confirmed step after this long (the report says so)")
@click.option("--ignore", "ignored", multiple=True, help="layer whose output channels must stay (repeatable)")
@click.option("--quantize", "quantize", type=click.Choice(["int8", "fp16"]), multiple=True,
              help="after pruning, export a bundle (-o NAME.mtb) and quantize it")
@click.option("-o", "--output", required=True, type=click.Path(), help="pruned checkpoint (.pt), or a bundle NAME.mtb with --quantize")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="write report.json, report.md and pruning_path.png here")
@click.option("--test-count", type=int, default=None, help="evaluate before/after on the first N test samples")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@scale_options
def compress(model, checkpoint, recipe, method, keep_flops, target_latency_ms, target, round_to, order, search,
             points_per_probe, relax_tasks, relax, allow_exceed, max_step, latency_table, finetune_epochs, finetune_limit, distill, label_free, val_count,
             screen_count, time_budget_min, ignored, quantize, output, report_dir, test_count, threads, workers,
             ray_address, worker_threads):
    """Prune MODEL to a FLOPs or latency goal while every task stays within its allowed drop."""
    from toolchain.pipeline import PipelineConfig, run_pipeline
    from toolchain.progress import console

    torch_threads(threads)
    if method is None and not quantize:
        raise SpecError("nothing to do: pass --prune pagcp|l1 and/or --quantize int8|fp16")
    if quantize and not str(output).endswith(".mtb"):
        raise SpecError(f"with --quantize, -o must be a bundle directory NAME.mtb, got {output}")
    if method is not None and keep_flops is None and target_latency_ms is None:
        raise SpecError("--prune needs a goal: --keep-flops F (e.g. 0.35) or --target-latency-ms X")
    if quantize:
        try:
            import toolchain.quantize  # noqa: F401
        except ImportError as e:
            raise MtedgeError(f"quantization is not available in this build ({e}); run compress without --quantize") from None
    loaded, rec = load_model_and_recipe(model, checkpoint, recipe)
    with evaluator_from(workers, ray_address, worker_threads) as ev:
        prune = None if method is None else dict(
            method=method, keep_flops=keep_flops, target_latency_ms=target_latency_ms,
            target=target, precision=quantize[0] if quantize else "fp32", round_to=round_to, order=order,
            search=search, points_per_probe=points_per_probe or workers or 1, relax_tasks=relax_tasks,
            evaluator=None if workers is None and ray_address is None else ev, max_step=max_step,
            latency_table=latency_table, finetune_epochs=finetune_epochs, finetune_limit=finetune_limit,
            distill=distill, label_free=label_free, val_count=val_count, screen_count=screen_count,
            ignored=tuple(ignored), time_budget_s=60 * time_budget_min if time_budget_min is not None else None,
            relax=relax, allow_exceed=allow_exceed, test_count=test_count,
            on_step=lambda line: console.print(line, highlight=False), log=console.print)
        done = run_pipeline(loaded.module, rec, PipelineConfig(prune, Path(output) if quantize else None,
                                                               tuple(quantize), label_free))
    result = done.compressed
    if result is not None:
        result.origin = loaded.origin
        if not quantize:
            result.save(output)
            click.echo(f"wrote {output}", err=True)
        if report_dir:
            paths = result.report(report_dir, test_count, {"model": model, "output": str(output),
                                                           "finetune_epochs": finetune_epochs, "distill": distill})
            click.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}", err=True)
        for line in result.lead():
            click.echo(line, err=True)
        result.check()  # a task past its bound: `error: ...` and a non-zero exit, after the files are written
    if done.quantized is not None:
        click.echo(f"wrote {output}", err=True)
        if not done.quantized.ok:
            # same contract as `mtedge quantize`: a requested variant that was not written fails
            for n in done.quantized.report.notes:
                click.echo(f"note: {n}", err=True)
            click.secho(f"compress --quantize: variant(s) {', '.join(done.quantized.missing) or '?'} not written to "
                        f"{output} (tasks out of bounds, see the notes); loosen allowed_drop or add calibration data",
                        fg="red", err=True)
            sys.exit(1)
