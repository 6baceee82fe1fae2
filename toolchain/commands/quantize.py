"""`mtedge quantize`: add int8 / fp16 variants to a bundle, each task within its allowed drop."""

from __future__ import annotations

import sys

import click

from toolchain.commands.common import evaluator_from, scale_options
from toolchain.quantize.int8 import ACTIVATIONS, OVERFLOW_FIX, Int8Settings


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--recipe", type=click.Path(dir_okay=False), default=None,
              help="recipe YAML (default: the recipe recorded in the bundle's provenance)")
@click.option("--precision", default="int8", show_default=True, help="comma-separated: int8, fp16")
@click.option("--label-free", is_flag=True, default=None,
              help="score tasks by fidelity to the fp32 bundle instead of labels (default: only when the data has no labels)")
@click.option("--calibration", "calibration", type=int, default=None,
              help="calibration samples (default: the recipe's data.calibration_count)")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="write quant.json and quant.md into this directory")
@click.option("--margin", type=float, default=None, help="fraction of each allowed drop held back on val (default 0.2)")
@click.option("--latency-runs", type=int, default=30, show_default=True, help="OpenVINO CPU latency iterations (0: skip)")
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime / OpenVINO threads")
@click.option("--overflow-fix", type=click.Choice(OVERFLOW_FIX), default=Int8Settings.overflow_fix, show_default=True,
              help="int8 weights at half range on every Conv/MatMul (enable), the input layers only, or none: "
                   "x86 CPUs without VNNI saturate full-range weights in OpenVINO (docs/quantization.md)")
@click.option("--activations", type=click.Choice(list(ACTIVATIONS)), default="int8", show_default=True,
              help="int8 activations run on TensorRT (Jetson); uint8 (NNCF's choice after ReLU) for a bundle that runs "
                   "on CPUs with OpenVINO, whose CPU plugin computes int8 activations through a Concat wrongly "
                   "(docs/quantization.md); TensorRT refuses uint8 variants")
@click.option("--set-default", is_flag=True,
              help="make the variant that was fastest within every bound on THIS host the bundle's default_variant "
                   "(only for a bundle that will run on a machine like this one; never for a Jetson bundle)")
@scale_options
def quantize(bundle, recipe, precision, label_free, calibration, report_dir, margin, latency_runs, threads, overflow_fix,
             activations, set_default, workers, ray_address, worker_threads):
    """Quantize BUNDLE (NAME.mtb) in place: int8 (NNCF Q/DQ, per-task accuracy control) and/or fp16.

    Exit status 1 when a requested variant could not keep every task within its bound (it is
    then not written).
    """
    from rich.console import Console
    from rich.table import Table

    from toolchain.quantize import QuantizeOptions, quantize_bundle
    from toolchain.recipe import load_recipe

    rec = load_recipe(recipe) if recipe is not None else None  # None: the bundle's own recipe
    precisions = [p.strip() for p in precision.split(",") if p.strip()]
    int8 = Int8Settings(overflow_fix=overflow_fix, signed_activations=ACTIVATIONS[activations])
    opts = QuantizeOptions(latency_runs=latency_runs, threads=threads, int8=int8,
                           **({"margin": margin} if margin is not None else {}))
    with evaluator_from(workers, ray_address, worker_threads) as ev:
        report = quantize_bundle(bundle, rec, precisions, label_free=label_free, calibration_count=calibration,
                                 report_dir=report_dir, options=opts, evaluator=ev)
    variants = ["fp32"] + [p for p in precisions if p in report.variants]
    table = Table("task", "metric", "allowed drop", *variants, title=f"quantize {bundle} ({report.mode}, test split)")
    split = "test" if "test" in report.variants["fp32"].scores else "val"
    for t, info in report.tasks.items():
        cells = []
        for v in variants:
            s = report.variants[v].scores[split][t]
            color = "" if s["within_bound"] else "[red]"
            cells.append(f"{color}{s['value']:.2f}" + (f" ({-s['drop']:+.2f})" if v != "fp32" else ""))
        table.add_row(t, info.metric, f"{info.allowed_drop:g}", *cells)
    Console().print(table)
    for v in variants:
        r = report.variants[v]
        extra = f", {r.latency['latency_ms']:.3f} ms ({r.speedup_vs_fp32:.2f}x)" if r.latency else ""
        click.echo(f"{v}: {'written' if r.written else 'NOT written'}, {r.bytes or 0} bytes{extra}")
    int8 = report.variants.get("int8")
    for d in int8.decisions if int8 else []:
        click.echo(f"kept in float: {d['segment']}:{d['layer']} -- {d['reason']}")
    for n in report.notes:
        click.echo(f"note: {n}", err=True)
    if report_dir:
        click.echo(f"wrote {report_dir}/quant.json and quant.md", err=True)
    if set_default:
        _apply_recommendation(bundle, report)
    if not report.ok:
        sys.exit("quantization failed: some tasks are out of bounds (see the notes)")  # the CLI prints error:, exit 1


def _apply_recommendation(bundle, report) -> None:
    """--set-default: apply the report's recommendation, saying what happened and why."""
    from toolchain.quantize.report import apply_default

    rec = report.recommendation
    if rec is None:
        click.echo("--set-default: no latency was measured (--latency-runs 0); default_variant unchanged", err=True)
    elif apply_default(bundle, rec):
        click.echo(f"default_variant is now {rec.variant} (fastest within every bound on {rec.measured_on})", err=True)
    else:
        click.echo(f"--set-default: {rec.explain()}; default_variant unchanged", err=True)
