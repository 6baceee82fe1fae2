"""The demo pipeline (`mtedge demo`): the main job end to end on the built-in default, zoo:fashion-mt.

train on real Fashion-MNIST -> inspect -> export a bundle -> verify -> run every task in the
C++ runtime on real test images, switching tasks -> bench -> prune (PAGCP) -> int8 bundle of the
pruned model, verified and run -> engines for host-cpu and a TensorRT build script for a Jetson
-> a slimmable network, preference-driven search, a multi-configuration bundle switched at run time.
Steps 6-9 call the library API the `mtedge` subcommands call (toolchain.pipeline: compress, export,
quantize; verify_bundle, build, toolchain.slim). Orchestration: it uses the runtime and the
compression mechanisms alike, and prints as it goes.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from toolchain.errors import VerificationError


def _step(console, title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def run_demo(out: str | Path = "out", *, epochs: float = 4.0, limit: int | None = None, bench_iters: int = 200,
             reuse: bool = False, keep_flops: float = 0.5, val_count: int = 512, finetune_epochs: float = 0.5,
             slim_epochs: float = 0.5, console: Console | None = None) -> None:
    """Train, inspect, export, verify, run and bench zoo:fashion-mt, then compress, quantize, build and
    slim it; artifacts go to `out`. Raises VerificationError when a bundle fails its golden check."""
    from toolchain.bench_runtime import bench_bundle, measure_variant_latency, render_report
    from toolchain.data import fashion
    from toolchain.data.loaders import example_input
    from toolchain.export import export_bundle
    from toolchain.graph.capture import multitask
    from toolchain.inspection import inspect_model, render
    from toolchain.metrics import PSNR, MeanIoU, metrics_table
    from toolchain.model import load, save_checkpoint
    from toolchain.pipeline import PipelineConfig, run_pipeline
    from toolchain.runtime import Runtime
    from toolchain.slim import make_slimmable, parse_config_name, save_slimmable
    from toolchain.slim.export import export_slim_bundle, variant_metrics
    from toolchain.slim.search import parse_preferences, parse_task_values, search
    from toolchain.targets.build import build, emit_script
    from toolchain.targets.plan import BuildOptions
    from toolchain.targets.profile import load_profile
    from toolchain.train import TrainConfig, evaluate_on_test, train

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "fashion-mt.pt"
    t_start = time.perf_counter()

    _step(console, "1. train zoo:fashion-mt on Fashion-MNIST (real images, Debian's dataset-fashion-mnist)")
    if reuse and ckpt.exists():
        model = load(str(ckpt))
        console.print(f"reusing {ckpt}")
    else:
        model = load("zoo:fashion-mt")
        torch.manual_seed(0)
        t0 = time.perf_counter()
        train(model.module, model.recipe, TrainConfig(epochs=epochs, limit=limit), description="training fashion-mt")
        metrics = evaluate_on_test(model.module, model.recipe)
        save_checkpoint(ckpt, model.module, "zoo:fashion-mt", model.recipe, metrics=metrics,
                        train_seconds=time.perf_counter() - t0)
        model = load(str(ckpt))
    metrics = model.meta.get("metrics") or evaluate_on_test(model.module, model.recipe)
    recipe = model.recipe
    console.print(metrics_table(recipe, metrics, title="fashion-mt test metrics (10,000 test images)"))

    _step(console, "2. inspect: the task tree")
    report, _ = inspect_model(model.module, torch.zeros(1, *recipe.input.shape[1:]))
    render(report)

    _step(console, "3. export task segments to a bundle, then verify it")
    bundle = out / "fashion-mt.mtb"
    result = export_bundle(model, recipe, bundle, task_models=True, force=True)
    console.print(f"wrote {bundle}: segments {', '.join(result.partition.segments)}")
    _verified(console, bundle)

    _step(console, "4. run every task in the C++ runtime on real test images, switching tasks")
    rt = Runtime(bundle, backend="openvino")
    test = fashion.load_split("test").subset(8)
    x_all, targets = fashion.make_batch(test.images, test.labels, seed=3)
    frame = np.ascontiguousarray(x_all[:1].numpy())
    table = Table("image", "true garment", "task", "segments run", "result",
                  title=f"runtime ({rt.backend}): one image at a time, tasks switched every call")
    order = ["garment", "silhouette", "group", "denoise"]
    for i in range(len(test)):
        x = np.ascontiguousarray(x_all[i : i + 1].numpy())
        task = order[i % len(order)]
        y = rt.run(x, task=task)[task]
        if task == "garment":
            res = f"predicted {fashion.GARMENTS[int(y.argmax())]}"
        elif task == "group":
            res = f"predicted {fashion.GROUPS[int(y.argmax())]} (true {fashion.GROUPS[int(targets['group'][i])]})"
        elif task == "silhouette":
            res = f"garment IoU {100 * _score(MeanIoU(), y, targets['silhouette'][i : i + 1]).class_iou(1):.1f}%"
        else:
            res = f"PSNR {_score(PSNR(), y[:, :1], targets['denoise'][i : i + 1, :1]).value():.2f} dB"
        table.add_row(str(i), fashion.GARMENTS[int(test.labels[i])], task, " -> ".join(rt.plan(task)), res)
    console.print(table)
    both = rt.run(frame, tasks=["garment", "silhouette"])
    console.print(f"garment + silhouette in one call runs {' -> '.join(rt.plan(['garment', 'silhouette']))} "
                  f"(trunk once): shapes {[list(a.shape) for a in both.values()]}")

    _step(console, "5. bench: task switching, sharing, overheads (OpenVINO CPU, f32)")
    r = bench_bundle(bundle, iters=bench_iters)
    render_report(r, bench_iters)

    _step(console, f"6. compress: PAGCP pruning to {keep_flops:.0%} of the FLOPs, every task within its allowed drop, "
                           "then an int8 bundle of the pruned model")
    pruned, int8 = out / "fashion-mt-pruned.pt", out / "fashion-mt-pruned.mtb"
    # allow_exceed: the demo shows the outcome (the report says which bounds are exceeded) and goes on
    done = run_pipeline(str(ckpt), None, PipelineConfig(dict(
        method="pagcp", keep_flops=keep_flops, val_count=val_count, distill=True, finetune_epochs=finetune_epochs,
        finetune_limit=limit, allow_exceed=True, on_step=lambda line: console.print(line, highlight=False),
        log=console.print), bundle=int8, precisions=("int8",)))
    done.compressed.save(pruned)
    done.compressed.report(out / "prune-report", extra={"model": str(ckpt), "output": str(pruned)})
    console.print((out / "prune-report" / "report.md").read_text())

    _step(console, "7. quantize: the int8 bundle of the pruned model (per-task bounds), verified, run in the runtime")
    _verified(console, int8)
    if done.quantized.missing:
        raise VerificationError(f"the int8 variant of {int8} was not written: {'; '.join(done.quantized.report.notes)}; "
                                "allow larger drops in the recipe or quantize with more calibration images")
    rt8 = Runtime(int8, backend="openvino", variant="int8")
    y = rt8.run(frame)
    console.print(f"int8 runtime: {rt8.variants[0]} variant, garment -> "
                  f"{fashion.GARMENTS[int(y['garment'].argmax())]} (true {fashion.GARMENTS[int(test.labels[0])]})")

    _step(console, "8. build: OpenVINO engines for host-cpu; a TensorRT build script for Jetson Orin Nano 8GB")
    built = build(bundle, load_profile("host-cpu"))
    console.print(f"host-cpu engines ({built.via}): {', '.join(built.entries)} verified against the golden I/O")
    same = Runtime(bundle, backend="openvino", engine_target="host-cpu").run(frame)
    ref = rt.run(frame)
    console.print("host-cpu engines in the runtime, max abs diff vs ONNX segments: "
                  + ", ".join(f"{t} {np.abs(same[t] - ref[t]).max():.1e}" for t in ref))
    script = out / "build-orin-nano-8gb.sh"
    plan = emit_script(bundle, load_profile("jetson-orin-nano-8gb"), BuildOptions(), script)
    console.print(f"wrote {script}: {len(plan.steps)} trtexec build(s) (TensorRT {plan.tensorrt_version}), "
                  f"to run on the device")

    _step(console, "9. slimmable widths: one network, the compute budget and task preference chosen at run time")
    slim, table = make_slimmable(multitask(model.module, recipe), recipe, epochs=slim_epochs, limit=limit,
                                 val_count=min(val_count, 1000))
    slim_ckpt = out / "fashion-mt-slim.pt"
    save_slimmable(slim_ckpt, slim, model.origin, recipe, table)
    for prefer in ("silhouette=4,denoise=1", "silhouette=1,denoise=4"):
        r = search(table, parse_preferences(prefer, slim.tasks), budget_flops=0.6)
        console.print(f"within 60% of the FLOPs, preferring {prefer}: {r.config.name} "
                      f"({r.flops / table.full_flops:.0%} of the FLOPs)")
    # the other question: the least compute that keeps every task within an accuracy bound
    bound = "garment=2,group=2,silhouette=2,denoise=0.6"
    r = search(table, parse_preferences(None, slim.tasks), max_drop=parse_task_values(bound, slim.tasks, "max drop"))
    console.print(f"fewest FLOPs within drops {bound}: {r.config.name} ({r.flops / table.full_flops:.0%} of the FLOPs)")
    slim_bundle = out / "fashion-mt-slim.mtb"
    configs = [parse_config_name(n, slim.tasks) for n in ("c100", "c75", "c50")]
    export_slim_bundle(slim, recipe, slim_bundle, configs, example_input(recipe), force=True, spec=str(slim_ckpt),
                       metrics=variant_metrics(slim, recipe, configs, table),
                       latency=functools.partial(measure_variant_latency, threads=1))
    _verified(console, slim_bundle)
    rts = Runtime(slim_bundle, backend="openvino", variant=["c100", "c75", "c50"])
    for cfg in ("c100", "c50", "c75", "c100"):  # every configuration resident: switching reloads nothing
        y = rts.run(frame, tasks=["garment", "silhouette"], variant=cfg)
        console.print(f"config {cfg}: garment -> {fashion.GARMENTS[int(y['garment'].argmax())]}, "
                      f"{rts.stats()['last_run_us']:.0f} us")
    console.rule(f"[bold green]demo done in {time.perf_counter() - t_start:.0f} s; artifacts in {out}/")


def _verified(console, bundle: Path) -> None:
    """verify_bundle (checksums, then each variant's max abs error vs the golden outputs), printed
    per variant; stops the demo when a variant is out of tolerance."""
    from toolchain.verify import verify_bundle

    v = verify_bundle(bundle)
    for name, tasks in v.variants.items():
        console.print(f"verify {bundle.name} {name} ({v.files_checked} files ok): "
                      + ", ".join(f"{t} {r.max_abs_error:.1e}" for t, r in tasks.items())
                      + (" [green]PASS" if all(r.ok for r in tasks.values()) else " [red]FAIL"))
    if not v.ok:
        raise VerificationError(f"{bundle} is out of tolerance against its golden outputs (FAIL above); "
                                "export it again, and report the model if it keeps failing")


def _score(metric, output: np.ndarray, target: torch.Tensor):
    """`metric` updated with one runtime output against its target."""
    metric.update(torch.from_numpy(output), target)
    return metric
