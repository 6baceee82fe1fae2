"""`mtedge run` and `mtedge bench`: the C++ runtime from the command line."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from toolchain.commands.common import write_json
from toolchain.errors import SpecError


def load_input(path: str | Path, manifest: dict) -> np.ndarray:
    """An image (.png/.jpg) or array (.npy) as the bundle's normalized float32 input.

    Images are resized to the input's HxW, converted to its channel count and normalized with
    the manifest's ``input.normalization``; arrays are taken as already normalized ([C,H,W],
    [1,C,H,W], or [N,C,H,W] of which the first sample is used)."""
    spec = manifest.input
    shape = tuple(spec.shape)
    path = Path(path)
    if path.suffix.lower() == ".npy":
        a = np.load(path).astype(np.float32)
        if a.shape == shape[1:]:
            a = a[None]
        elif a.ndim == len(shape) and a.shape[1:] == shape[1:]:
            a = a[: shape[0]]
        if a.shape != shape:
            raise SpecError(f"{path}: array of shape {list(a.shape)} does not fit input {spec.name!r} "
                            f"of shape {list(shape)}; save it as [C,H,W] or [N,C,H,W]")
        return np.ascontiguousarray(a)
    from toolchain.data.images import normalize_for, read_image

    _, c, h, w = shape
    if c not in (1, 3):
        raise SpecError(f"input {spec.name!r} has {c} channels; pass a .npy array instead of an image")
    color = spec.color or ("gray" if c == 1 else "rgb")
    return normalize_for(read_image(path, color, (h, w))[None], spec.normalization)


def summarize(kind: str, out: np.ndarray) -> str:
    if kind == "classification":
        logits = out.reshape(-1)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:3]
        return "top: " + ", ".join(f"class {i} ({p[i]:.2f})" for i in top)
    if kind == "segmentation" and out.ndim == 4:
        labels, counts = np.unique(out[0].argmax(0), return_counts=True)
        order = np.argsort(-counts)[:3]
        return "pixels: " + ", ".join(f"class {labels[i]} {100 * counts[i] / counts.sum():.0f}%" for i in order)
    return f"min {out.min():.4g}  mean {out.mean():.4g}  max {out.max():.4g}"


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
    from toolchain.bundle import Bundle
    from toolchain.runtime import Runtime

    manifest = Bundle.open(bundle).manifest
    rt = Runtime(bundle, backend=backend, threads=threads, variant=variant, precision=precision)
    x = load_input(input_path, manifest)
    names = list(tasks) or rt.tasks
    out = rt.run(x, tasks=names)
    us = rt.stats()["last_run_us"]
    click.echo(f"{rt.name}: {', '.join(names)} on {Path(input_path).name} ({rt.backend}, "
               f"segments {' -> '.join(rt.plan(names))}, {us / 1e3:.3f} ms)")
    for t in names:
        a = out[t]
        click.echo(f"  {t:<14} {str(list(a.shape)):<18} {summarize(manifest.tasks[t].kind, a)}")
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
    write_json(json_path, r)
