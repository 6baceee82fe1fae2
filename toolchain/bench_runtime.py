"""`mtedge bench`: what the resident multitask runtime buys, measured side by side in one run
(same machine, input and OpenVINO settings). The measurements and how to read them: docs/runtime.md,
"Measuring"; width-configuration switching: docs/slimmable.md, "Runtime".
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from toolchain.bundle import Bundle, Manifest
from toolchain.bundle.task_model import task_model
from toolchain.host_latency import openvino_latency_config
from toolchain.runtime import Runtime
from toolchain.timing import interleaved_ms, medians, repeated_and_alternating_ms, stats_ms


@dataclass
class TaskLatency:
    """One task's ``Runtime.run`` latency: repeated (median, p90, n), alternating, Python overhead."""

    median_ms: float
    p90_ms: float
    n: int
    alternating_median_ms: float
    python_overhead_us: float  # wall time of run() minus the C++-measured time of the same call


@dataclass
class BenchReport:
    """What :func:`bench_bundle` measured (the `mtedge bench --json` document). Timings are
    :func:`toolchain.timing.stats_ms` documents: median_ms, p90_ms, n."""

    bundle: str
    name: str
    backend: str
    variant: str
    precision: str
    threads: int | None
    iters: int
    tasks: dict[str, TaskLatency]
    raw_openvino_max_abs_diff: float
    all_tasks_one_call: dict[str, float]
    separate_models_per_frame: dict[str, float]
    alternating: dict[str, float]
    reload_per_switch: dict[str, float]
    raw_openvino_all_tasks: dict[str, float]
    switch_overhead_pct: float
    reload_speedup: float
    multitask_speedup: float
    runtime_overhead_pct: float
    # wall minus C++ time per call, for the task with the smallest output (per task: tasks.<t>.python_overhead_us);
    # mostly the interpreter on cold caches, not the binding (docs/runtime.md, "Reading python_call_overhead_us")
    python_call_overhead_us: float
    load_ms: float
    config_switch: dict[str, Any] | None = None  # slimmable bundles: bench_config_switch's document
    config_switch_overhead_pct: float | None = None
    rss_baseline_mb: float | None = None  # resident memory: None when not measured (rss=False)
    rss_all_tasks_mb: float | None = None
    rss_separate_models_mb: float | None = None
    rss_all_tasks_delta_mb: float | None = None
    rss_separate_models_delta_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document; what was not measured is left out."""
        unmeasured = {f.name for f in fields(self) if f.default is None and getattr(self, f.name) is None}
        return {k: v for k, v in asdict(self).items() if k not in unmeasured}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "BenchReport":
        """The report a JSON document holds (an unknown field is a TypeError naming it)."""
        def read(*, tasks: dict[str, dict], **rest: Any) -> BenchReport:
            return cls(**rest, tasks={t: TaskLatency(**v) for t, v in tasks.items()})

        return read(**doc)


@dataclass(frozen=True)
class RunTotals:
    """What the benches read of ``Runtime.stats()`` (a dict from the C++ binding), typed."""

    runs: int
    total_run_ms: float
    segment_ms: float  # C++-side time inside the compiled segments, all of them together

    @classmethod
    def of(cls, rt: Runtime) -> "RunTotals":
        def read(*, runs: int, total_run_ms: float, segments: dict[str, dict[str, float]], **_: Any) -> RunTotals:
            return cls(runs, total_run_ms, sum(seg["total_ms"] for seg in segments.values()))

        return read(**rt.stats())


def _timeit(fn: Callable[[], object], n: int, bar: Any, description: str) -> list[float]:
    job = bar.add_task(description, total=n)
    return interleaved_ms({0: fn}, n, after_round=lambda: bar.advance(job))[0]


def rss_mb() -> float:
    """This process's resident memory (VmRSS) in MB; NaN where /proc does not say."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_probe(mode: str, bundle: str, model_dir: str, threads: int, precision: str, variant: str) -> None:
    """Subprocess entry: prints {"baseline_mb", "loaded_mb"} for one deployment style."""
    import openvino as ov  # noqa: F401  imported in both modes so the baselines match

    from mtedge_runtime import _runtime  # noqa: F401

    b = Bundle.open(bundle)
    x = b.golden()[0][:1].astype(np.float32)
    base = rss_mb()
    if mode == "runtime":
        rt = Runtime(bundle, backend="openvino", threads=threads or None, variant=variant or None, precision=precision)
        rt.run(x)
    else:
        core = ov.Core()
        keep = [core]
        for t in b.tasks:
            cfg = openvino_latency_config(precision, threads)
            cm = core.compile_model(str(Path(model_dir) / f"{t}.onnx"), "CPU", cfg)
            req = cm.create_infer_request()
            req.infer({0: x})
            keep += [cm, req]
    print(json.dumps({"baseline_mb": base, "loaded_mb": rss_mb()}))


def _run_probe(mode: str, bundle: str, model_dir: str, threads: int | None, precision: str, variant: str) -> dict:
    code = ("import sys; from toolchain.bench_runtime import rss_probe; "
            "rss_probe(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])")
    # `python -c` puts the working directory first on sys.path: run from the model dir so a source
    # checkout in the caller's directory cannot shadow the installed package (and its extension)
    out = subprocess.run([sys.executable, "-c", code, mode, os.path.abspath(bundle), model_dir, str(threads or 0),
                          precision, variant or ""], capture_output=True, text=True, cwd=model_dir)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe ({mode}) failed with exit {out.returncode}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_openvino_frame(core, cfg: dict, bundle: str | os.PathLike, manifest: Manifest, variant: str,
                       plan: list[str], x: np.ndarray, tasks: list[str]) -> Callable[[], list[np.ndarray]]:
    """The baseline the runtime is measured against: `plan`'s segments of `variant` compiled with the
    OpenVINO Python API and wired like the runtime (one shared tensor per boundary, input wrapped
    without a copy); calling the result runs one frame and returns copies of `tasks`' outputs."""
    import openvino as ov

    segments = manifest.variant(variant).segments
    reqs, tensors = [], {manifest.input.name: ov.Tensor(x, shared_memory=True)}
    for seg in plan:
        spec = segments[seg]
        req = core.compile_model(str(Path(bundle) / spec.file), "CPU", cfg).create_infer_request()
        for o in spec.outputs:
            tensors[o.name] = ov.Tensor(ov.Type.f32 if o.dtype == "float32" else ov.Type.f16, o.shape)
        for name in manifest.segments[seg].inputs + manifest.segments[seg].outputs:
            req.set_tensor(name, tensors[name])
        reqs.append(req)
    outs = [manifest.tasks[t].output for t in tasks]

    def frame() -> list[np.ndarray]:
        for r in reqs:
            r.infer()
        return [tensors[o].data.copy() for o in outs]

    return frame


def bench_bundle(bundle: str | os.PathLike, iters: int = 200, warmup: int = 10, threads: int | None = None,
                 precision: str = "f32", variant: str | None = None, reload_iters: int | None = None,
                 rss: bool = True, progress: bool = True) -> BenchReport:
    """Runs every measurement and returns the report (the `mtedge bench --json` document)."""
    import openvino as ov

    from toolchain.progress import progress_bar

    bundle = str(bundle)
    rt = Runtime(bundle, backend="openvino", threads=threads, variant=variant, precision=precision)
    tasks = rt.tasks
    m = Bundle.open(bundle).manifest
    var = rt.variants[0]
    shape = tuple(rt.input_spec()["shape"])
    golden = np.load(Path(bundle) / m.golden.input.file).astype(np.float32)
    x = np.ascontiguousarray(golden[: shape[0]].reshape(shape)) if golden.size >= np.prod(shape) else \
        np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    cfg = openvino_latency_config(precision, threads)
    reload_iters = reload_iters or max(2 * len(tasks), min(40, iters // 2))
    bar = progress_bar(transient=True)
    bar.disable = bar.disable or not progress
    with tempfile.TemporaryDirectory(prefix="mtedge-bench-") as tmp, bar:
        # Per-task whole models for the baselines, written once like N deployed single-task models.
        for t in tasks:
            onnx.save(task_model(bundle, t, var), Path(tmp) / f"{t}.onnx")
        core = ov.Core()

        for _ in range(warmup):
            rt.run(x)
        # Repeated and alternating calls are measured in interleaved rounds, so that drift of the
        # machine (frequency, other processes) hits both alike.
        rounds = max(1, min(5, iters // 20))
        per_round = max(1, iters // rounds)
        job = bar.add_task("runtime: one task repeated / tasks alternating", total=len(tasks) * per_round * rounds)
        py_minus_cpp: dict[str, list[float]] = {t: [] for t in tasks}

        def python_overhead(t: str, wall_ms: float) -> None:
            py_minus_cpp[t].append(wall_ms * 1e3 - rt.stats()["last_run_us"])
            bar.advance(job)

        rep, alt = repeated_and_alternating_ms(lambda t: rt.run(x, task=t), tasks, per_round, rounds, python_overhead)
        per_task = {t: TaskLatency(**stats_ms(rep[t]), alternating_median_ms=float(np.median(alt[t])),
                                   python_overhead_us=float(np.median(py_minus_cpp[t]))) for t in tasks}
        repeat_sum = sum(per_task[t].median_ms for t in tasks)
        alt_sum = sum(float(np.median(alt[t])) for t in tasks)
        alt_all = [v for t in tasks for v in alt[t]]

        all_in_one = _timeit(lambda: rt.run(x), iters, bar, "runtime: all tasks per call")

        # Separate per-task whole models, each with its own copy of the trunk, all resident.
        whole = {t: core.compile_model(str(Path(tmp) / f"{t}.onnx"), "CPU", cfg).create_infer_request() for t in tasks}
        for req in whole.values():
            req.infer({0: x})
        separate = _timeit(lambda: [np.array(req.infer({0: x})[0]) for req in whole.values()], iters, bar,
                           "baseline: separate whole models")

        # Reload baseline: every switch compiles the next task's whole model from its file.
        switches = itertools.cycle(tasks)

        def reload_next() -> None:
            req = core.compile_model(str(Path(tmp) / f"{next(switches)}.onnx"), "CPU", cfg).create_infer_request()
            np.array(req.infer({0: x})[0])

        reload = _timeit(reload_next, reload_iters, bar, "baseline: reload on every switch")

        # Raw OpenVINO on the same segments, wired like the runtime (shared tensors, no copies).
        raw_frame = raw_openvino_frame(core, cfg, bundle, m, var, rt.plan(tasks), x, tasks)
        raw_frame()
        raw = _timeit(raw_frame, iters, bar, "baseline: raw OpenVINO segments")
        raw_check, ours = raw_frame(), rt.run(x)
        raw_diff = float(max(np.abs(a - ours[t]).max() for a, t in zip(raw_check, tasks)))

        if rss:
            job = bar.add_task("memory: subprocesses", total=2)
            r_rt = _run_probe("runtime", bundle, tmp, threads, precision, var)
            bar.advance(job)
            r_sep = _run_probe("separate", bundle, tmp, threads, precision, var)
            bar.advance(job)

    med = lambda v: float(np.median(v))  # noqa: E731
    report = BenchReport(
        bundle, rt.name, rt.backend, var, precision, threads, iters, per_task, raw_diff,
        all_tasks_one_call=stats_ms(all_in_one), separate_models_per_frame=stats_ms(separate),
        alternating=stats_ms(alt_all), reload_per_switch=stats_ms(reload), raw_openvino_all_tasks=stats_ms(raw),
        switch_overhead_pct=100.0 * (alt_sum / repeat_sum - 1.0), reload_speedup=med(reload) / med(alt_all),
        multitask_speedup=med(separate) / med(all_in_one), runtime_overhead_pct=100.0 * (med(all_in_one) / med(raw) - 1.0),
        python_call_overhead_us=per_task[min(tasks, key=lambda t: int(np.prod(rt.output_spec(t)["shape"])))].python_overhead_us,
        load_ms=rt.stats()["load_ms"])
    if len(width_config_variants(m)) >= 2:  # slimmable bundle: switching width configurations
        report.config_switch = bench_config_switch(bundle, iters=iters, threads=threads, precision=precision)
        report.config_switch_overhead_pct = report.config_switch["config_switch_overhead_pct"]
    if rss:
        report.rss_baseline_mb, report.rss_all_tasks_mb = r_rt["baseline_mb"], r_rt["loaded_mb"]
        report.rss_separate_models_mb = r_sep["loaded_mb"]
        report.rss_all_tasks_delta_mb = r_rt["loaded_mb"] - r_rt["baseline_mb"]
        report.rss_separate_models_delta_mb = r_sep["loaded_mb"] - r_sep["baseline_mb"]
    return report


def width_config_variants(manifest: Manifest) -> list[str]:
    """Variants that carry a width ``config`` (slimmable configurations), in manifest order."""
    return [n for n, v in manifest.variants.items() if v.config]


def bench_config_switch(bundle: str | os.PathLike, iters: int = 200, threads: int | None = None,
                        precision: str = "f32", variants: list[str] | None = None, rounds: int = 4,
                        warmup: int = 10, block: int = 1) -> dict:
    """Configuration switching, measured like task switching (``switch_overhead_pct``), for the runtime
    and raw OpenVINO in the same interleaved `rounds`; `block` > 1 switches every `block` calls.
    The figures and formulas: docs/slimmable.md, "Runtime"."""
    import openvino as ov

    m = Bundle.open(bundle).manifest
    names = variants or width_config_variants(m)
    if len(names) < 2:
        raise ValueError(f"{bundle}: configuration switching needs two width variants, found {names}")
    rt = Runtime(str(bundle), backend="openvino", threads=threads, variant=names, precision=precision)
    shape = tuple(rt.input_spec()["shape"])
    x = np.ascontiguousarray(np.load(Path(bundle) / m.golden.input.file).astype(np.float32)[: shape[0]].reshape(shape))
    tasks = rt.tasks
    core, cfg = ov.Core(), openvino_latency_config(precision, threads)
    raw_frames = {v: raw_openvino_frame(core, cfg, bundle, m, v, rt.plan(tasks), x, tasks) for v in names}
    styles: dict[str, Callable[[str], object]] = {"runtime": lambda v: rt.run(x, variant=v),
                                                  "raw_openvino": lambda v: raw_frames[v]()}
    for _ in range(warmup):
        for v in names:
            for call in styles.values():
                call(v)
    per = max(1, iters // rounds)
    rep = {k: {v: [] for v in names} for k in styles}
    # alternating calls by position in their block: [0] the call right after a switch, [1] the others
    alt = {k: ({v: [] for v in names}, {v: [] for v in names}) for k in styles}
    # C++-side split of each runtime phase: time inside segments vs the runtime's own work per call
    split = {"repeated": [0.0, 0.0, 0], "alternating": [0.0, 0.0, 0]}  # run ms, segment ms, calls

    def account(phase: str) -> None:
        st = RunTotals.of(rt)
        split[phase] = [a + b for a, b in zip(split[phase], (st.total_run_ms, st.segment_ms, st.runs))]
        rt.reset_stats()

    def timed(call: Callable[[str], object], v: str, into: dict[str, list[float]]) -> None:
        t0 = time.perf_counter()
        call(v)
        into[v].append((time.perf_counter() - t0) * 1e3)

    rt.reset_stats()
    for _ in range(rounds):
        for style, call in styles.items():
            for v in names:
                for _ in range(per):
                    timed(call, v, rep[style])
            if style == "runtime":
                account("repeated")
            for i in range(len(names) * per):
                timed(call, names[(i // block) % len(names)], alt[style][min(1, i % block)])
            if style == "runtime":
                account("alternating")

    def alternating_ms(style: str, v: str) -> float:
        """Median cost per call when switching every `block` calls: the first call after a switch
        and the block's other calls weighted by their share (a plain median would hide the first)."""
        first, rest = alt[style]
        m = float(np.median(first[v]))
        return m if block == 1 else (m + (block - 1) * float(np.median(rest[v]))) / block

    def overhead(style: str) -> float:
        repeat_sum = sum(float(np.median(rep[style][v])) for v in names)
        return 100.0 * (sum(alternating_ms(style, v) for v in names) / repeat_sum - 1.0)

    book = {p: 1e3 * (r - s) / max(n, 1) for p, (r, s, n) in split.items()}  # us per call outside segments
    seg = {p: 1e3 * s / max(n, 1) for p, (r, s, n) in split.items()}  # us per call inside segments
    mean_latency_us = 1e3 * sum(float(np.median(rep["runtime"][v])) for v in names) / len(names)
    ours, raw = overhead("runtime"), overhead("raw_openvino")
    return {"variants": names, "block": block,
            "configs": {v: {**stats_ms(rep["runtime"][v]), "alternating_median_ms": alternating_ms("runtime", v),
                            "after_switch_median_ms": float(np.median(alt["runtime"][0][v])),
                            **({"within_block_median_ms": float(np.median(alt["runtime"][1][v]))} if block > 1 else {}),
                            "raw_openvino_median_ms": float(np.median(rep["raw_openvino"][v])),
                            "raw_openvino_alternating_median_ms": alternating_ms("raw_openvino", v)}
                        for v in names},
            "config_switch_overhead_pct": ours,
            # what one switch costs: the first call after it over a repeated call (median, mean over
            # configurations); switching every N calls costs about switch_cost / (N * latency)
            "switch_cost_us": 1e3 * float(np.mean([np.median(alt["runtime"][0][v]) - np.median(rep["runtime"][v])
                                                  for v in names])),
            "raw_openvino_config_switch_overhead_pct": raw,
            "runtime_added_switch_overhead_pct": 100.0 * ((1 + ours / 100) / (1 + raw / 100) - 1.0),
            # the runtime's own work per call (plan, bindings, copies) repeated vs alternating, and the
            # difference as a share of the mean latency: what switching costs the runtime itself
            "runtime_bookkeeping_us": book,
            "runtime_switch_cost_pct": 100.0 * (book["alternating"] - book["repeated"]) / mean_latency_us,
            # time inside the compiled segments (OpenVINO), mean per call: where alternation costs
            "segment_time_us": seg,
            "segment_time_alternating_vs_repeated_pct": 100.0 * (seg["alternating"] / seg["repeated"] - 1.0)}


def render_report(r: BenchReport, iters: int) -> None:
    """Print the bench report as two rich tables (per task; side by side comparisons)."""
    from rich.console import Console
    from rich.table import Column, Table

    def right(*names: str) -> list[Column]:
        return [Column(n, justify="right") for n in names]

    console = Console()
    t = Table("task", *right("median ms", "p90 ms", "alternating median ms"),
              title=f"{r.name}: per-task latency ({r.backend}, {r.precision}, {iters} calls, medians)")
    for name, s in r.tasks.items():
        t.add_row(name, f"{s.median_ms:.3f}", f"{s.p90_ms:.3f}", f"{s.alternating_median_ms:.3f}")
    console.print(t)
    c = Table("measurement", *right("runtime", "baseline", "result"), title="side by side (medians)")
    c.add_row("task switch: alternating vs repeating", f"{r.alternating['median_ms']:.3f} ms", "",
              f"{r.switch_overhead_pct:+.1f}%")
    c.add_row("switch vs reload-per-switch model", f"{r.alternating['median_ms']:.3f} ms",
              f"{r.reload_per_switch['median_ms']:.2f} ms", f"{r.reload_speedup:.0f}x faster")
    c.add_row("all tasks: one call vs per-task whole models", f"{r.all_tasks_one_call['median_ms']:.3f} ms",
              f"{r.separate_models_per_frame['median_ms']:.3f} ms", f"{r.multitask_speedup:.2f}x faster")
    c.add_row("all tasks vs raw OpenVINO (Python) segments", f"{r.all_tasks_one_call['median_ms']:.3f} ms",
              f"{r.raw_openvino_all_tasks['median_ms']:.3f} ms", f"{r.runtime_overhead_pct:+.1f}%")
    c.add_row("Python call overhead per run()", "", "", f"{r.python_call_overhead_us:.1f} us")
    if r.config_switch is not None:
        cs = r.config_switch
        c.add_row("width config switch: alternating vs repeating", "", "", f"{r.config_switch_overhead_pct:+.1f}%")
        c.add_row("  the same switching in raw OpenVINO", "", "", f"{cs['raw_openvino_config_switch_overhead_pct']:+.1f}%")
        c.add_row("  added by the runtime (ratio of the two)", "", "", f"{cs['runtime_added_switch_overhead_pct']:+.1f}%")
        c.add_row("  first call after a switch, over a repeated call", "", "", f"+{cs['switch_cost_us']:.0f} us")
    if r.rss_all_tasks_mb is not None:
        c.add_row("resident memory (process RSS)", f"{r.rss_all_tasks_mb:.1f} MB",
                  f"{r.rss_separate_models_mb:.1f} MB",
                  f"+{r.rss_all_tasks_delta_mb:.1f} vs +{r.rss_separate_models_delta_mb:.1f} MB")
    console.print(c)


def measure_variant_latency(bundle: str | Path, variants: Sequence[str], x: np.ndarray, iters: int = 100,
                            threads: int | None = 1, warmup: int = 5) -> dict[str, float]:
    """Median ms of an all-task ``run`` per variant, every variant resident in one Runtime, the
    variants interleaved call by call (so load from other processes hits them alike)."""
    rt = Runtime(bundle, backend="openvino", threads=threads, variant=list(variants))
    x = np.ascontiguousarray(x, dtype=np.float32)
    return medians(interleaved_ms({v: (lambda v=v: rt.run(x, variant=v)) for v in variants}, iters, warmup))
