"""`mtedge export` and `mtedge verify`."""

from __future__ import annotations

import sys

import click

from toolchain.commands.common import load_model_and_recipe, model_options, write_json


@click.command()
@model_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="bundle directory, NAME.mtb")
@click.option("--tasks", default=None, help="comma-separated subset of tasks (default: all)")
@click.option("--dynamic-batch", is_flag=True, help="symbolic batch dimension in every ONNX file")
@click.option("--task-models", is_flag=True, help="also write one whole ONNX graph per task (tasks/*.onnx)")
@click.option("--golden-samples", default=4, show_default=True, help="real samples stored as golden I/O")
@click.option("--force", is_flag=True, help="replace an existing bundle")
def export(model, checkpoint, recipe, output, tasks, dynamic_batch, task_models, golden_samples, force):
    """Partition MODEL into task segments and write the bundle NAME.mtb."""
    from rich.console import Console
    from rich.table import Table

    from toolchain.export import export_bundle

    loaded, rec = load_model_and_recipe(model, checkpoint, recipe)
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    result = export_bundle(loaded, rec, output, tasks=task_list, dynamic_batch=dynamic_batch,
                           task_models=task_models, golden_samples=golden_samples, force=force)
    table = Table("segment", "tasks", "inputs", "outputs", "MFLOPs", title=f"exported {output}")
    for name, seg in result.partition.segments.items():
        table.add_row(name, ", ".join(sorted(seg.tasks)), ", ".join(seg.inputs), ", ".join(seg.outputs), f"{seg.flops / 1e6:.2f}")
    Console().print(table)
    click.echo("onnxruntime vs torch, max abs error: " + ", ".join(f"{t} {e:.2g}" for t, e in result.max_abs_error.items()))


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--variant", "variants", multiple=True, help="variant(s) to check (default: all)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="also write the report as JSON")
def verify(bundle, variants, json_path):
    """Check every file's checksum and run the golden I/O through onnxruntime.

    Exit status 1 when any task of any variant is out of its tolerance.
    """
    from rich.console import Console
    from rich.table import Table

    from toolchain.verify import verify_bundle

    report = verify_bundle(bundle, variants=list(variants) or None)
    table = Table("variant", "task", "max abs error", "tolerance", "status",
                  title=f"verify {bundle} ({report.files_checked} files, checksums ok)")
    for v, tasks in report.variants.items():
        for t, r in tasks.items():
            table.add_row(v, t, f"{r.max_abs_error:.3g}", f"{r.tolerance:.3g}", "[green]ok" if r.ok else "[red]FAIL")
    Console().print(table)
    write_json(json_path, report.to_dict())
    if not report.ok:
        sys.exit("verification failed: some tasks are out of tolerance (FAIL above)")  # the CLI prints error:, exit 1
