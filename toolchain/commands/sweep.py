"""`mtedge sweep`: FLOPs/latency goals x targets x precisions from one recipe; Pareto front per target."""

from __future__ import annotations

import click

from toolchain.commands.common import evaluator_from, model_options, scale_options


@click.command()
@model_options
@click.option("--goals", required=True, help="FLOPs fractions and/or host latencies, e.g. 0.7,0.5,0.35 or 2.5ms,1.8ms")
@click.option("--targets", default="host-cpu", show_default=True, help="target profiles, e.g. host-cpu,jetson-orin-nano-8gb")
@click.option("--precisions", default="fp32,int8", show_default=True, help="some of fp32, fp16, int8")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="sweep directory: cache/, sweep.json, pareto.md, pareto.png, chosen/<target>.json")
@click.option("--val-count", type=int, default=256, show_default=True, help="pruning oracle subset and quantization val images")
@click.option("--test-count", type=int, default=2000, show_default=True, help="test images each point is scored on")
@click.option("--finetune-epochs", type=float, default=0.0, show_default=True, help="distilled recovery after pruning")
@click.option("--round-to", type=int, default=None,
              help="channel multiple of every pruned model (default: lcm of the targets' multiples per precision)")
@click.option("--relax", is_flag=True,
              help="prune with relaxed budgets (past the recipe's bounds, see `mtedge compress --relax`); "
                   "each point still says whether its bounds held")
@click.option("--runs", type=int, default=20, show_default=True, help="host latency runs per segment (median)")
@scale_options
def sweep(model, checkpoint, recipe, goals, targets, precisions, output, val_count, test_count, finetune_epochs, round_to,
          runs, relax, workers, ray_address, worker_threads):
    """Compress, export, build and profile every (goal, target, precision); cached per point, so a
    re-run redoes nothing done and an interrupted sweep resumes. Writes the Pareto front per target."""
    from toolchain.progress import console
    from toolchain.scale.sweep import SweepConfig, parse_goals, run_sweep

    cfg = SweepConfig(model=model, checkpoint=checkpoint, recipe=recipe, goals=parse_goals(goals),
                      targets=[t.strip() for t in targets.split(",") if t.strip()],
                      precisions=[p.strip() for p in precisions.split(",") if p.strip()], out=output,
                      val_count=val_count, test_count=test_count, finetune_epochs=finetune_epochs, round_to=round_to,
                      runs=runs, relax=relax)
    with evaluator_from(workers, ray_address, worker_threads) as ev:
        result = run_sweep(cfg, ev)
    from rich.markdown import Markdown

    with open(result.files["table"]) as f:
        console.print(Markdown(f.read()))
    for target, c in result.chosen.items():
        console.print(f"chosen for {target}: " + (f"{c['id']} ({c['latency_ms']:.3f} ms, {c['latency_source']})"
                                                  if c else "none keeps every task within its allowed drop"))
    console.print(f"{result.done_now} unit(s) computed, {result.cached} from the cache; wrote {result.files['json']}, "
                  f"{result.files['table']}, {result.files['plot']}")
