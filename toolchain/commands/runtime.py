"""`mtedge run` and `mtedge bench`: the C++ runtime from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.commands.common import write_json
from toolchain.errors import SpecError


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--task", "tasks", multiple=True, help="task to run (repeatable; default: all)")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="image (.png/.jpg, normalized with the manifest) or .npy array (already normalized)")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="write the output: .npy for one task, .npz (one array per task) for several")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(["auto", "openvino", "tensorrt"]))
@click.option("--variant", default=None, help="bundle variant (default: the manifest's default_variant)")
@click.option("--threads", type=int, default=None, help="inference threads (default: backend's choice)")
@click.option("--precision", default="f32", show_default=True, type=click.Choice(["f32", "bf16"]))
def run(bundle, tasks, input_path, output, backend, variant, threads, precision):
    """Run BUNDLE's tasks on one input with the C++ runtime and summarize each output."""
    import numpy as np

    from toolchain.bundle import Bundle
    from toolchain.data.images import read_input
    from toolchain.output_summary import summarize_output
    from toolchain.runtime import Runtime

    manifest = Bundle.open(bundle).manifest
    rt = Runtime(bundle, backend=backend, threads=threads, variant=variant, precision=precision)
    x = read_input(input_path, manifest.input)
    names = list(tasks) or rt.tasks
    out = rt.run(x, tasks=names)
    click.echo(f"{rt.name}: {', '.join(names)} on {Path(input_path).name} ({rt.backend}, "
               f"segments {' -> '.join(rt.plan(names))}, {rt.stats()['last_run_us'] / 1e3:.3f} ms)")
    for t in names:
        click.echo(f"  {t:<14} {str(list(out[t].shape)):<18} {summarize_output(manifest.tasks[t].kind, out[t])}")
    if output:
        if len(names) == 1:
            np.save(output, out[names[0]])
        else:
            np.savez(output, **out)
        click.echo(f"wrote {output}", err=True)


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--iters", default=200, show_default=True, help="timed calls per measurement")
@click.option("--threads", type=int, default=None, help="inference threads (default: OpenVINO's choice)")
@click.option("--precision", default="f32", show_default=True, type=click.Choice(["f32", "bf16"]))
@click.option("--variant", default=None, help="bundle variant (default: the manifest's default_variant)")
@click.option("--no-memory", is_flag=True, help="skip the resident-memory subprocesses")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="write the report as JSON")
def bench(bundle, iters, threads, precision, variant, no_memory, json_path):
    """Measure task switching, multitask sharing and runtime overhead on BUNDLE (OpenVINO, CPU)."""
    from toolchain.bench_runtime import bench_bundle, render_report

    if iters < 5:
        raise SpecError(f"--iters {iters} is too few for a median; use 5 or more")
    r = bench_bundle(bundle, iters=iters, threads=threads, precision=precision, variant=variant, rss=not no_memory)
    render_report(r, iters)
    write_json(json_path, r.to_dict())
