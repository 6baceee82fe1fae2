"""`make bench-scale`: evaluation on Ray workers vs in-process, and `mtedge sweep` with its cache.

Parts (all by default, ratios measured side by side in this one run):

grid       the slimmable width grid of zoo:fashion-mt (one width per encoder stage, 4 widths:
           256 evaluations on `--val-count` val images): serial in-process with 2 torch threads vs
           2 local Ray workers with 1 torch thread each; identical table and search results?
oracle     a whole PAGCP run of fashion-mt (joint search, 2 prefixes per probe) the same two
           ways: the screening verdicts of each probe on 2 workers (docs/scale-out.md)
simulated  local Ray with 8 workers on an evaluation that sleeps a fixed time: measured speedup
           vs the schedule's ideal (items / ceil(items / workers))
sweep      `mtedge sweep` of the trained fashion-mt over 3 FLOPs goals x 2 targets (fp32; relaxed
           budgets, no recovery, the targets' channel multiples), then the same sweep
           again (served from the per-point cache); its table and plot are copied to
           bench/results/scale_sweep_pareto.{md,png}

    .venv/bin/python bench/scale.py [--parts grid,oracle,simulated,sweep] [--val-count 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from toolchain.bundle.files import write_json_atomic  # noqa: E402


def _sleep(seconds, item):
    time.sleep(seconds)
    return item


def _weights():
    """zoo:fashion-mt: the benches' trained checkpoint when it is cached, else seeded weights
    (the evaluations' cost does not depend on the weights). Returns (LoadedModel, description)."""
    from common import CACHE

    from toolchain.model import load

    ckpt = CACHE / "fashion-mt.pt"
    torch.manual_seed(0)
    if ckpt.exists():
        return load(str(ckpt)), f"trained {ckpt}"
    return load("zoo:fashion-mt"), "zoo:fashion-mt seeded weights (torch.manual_seed(0))"


def _slim_model(recipe, example):
    """fashion-mt made slimmable per encoder stage (4 widths) and recalibrated."""
    from toolchain.slim import convert
    from toolchain.slim.train import recalibrate

    loaded, weights = _weights()
    s = convert(loaded.module.eval(), list(recipe.tasks), example, widths=(1.0, 0.75, 0.5, 0.35), round_to=2,
                encoder_stages=True)
    recalibrate(s, recipe, images=256)
    return s, weights


def bench_grid(args, console) -> dict:
    from toolchain.data.loaders import batches, example_input
    from toolchain.model import load
    from toolchain.workers import RayEvaluator
    from toolchain.slim.convert import WidthConfig
    from toolchain.slim.search import evaluate_grid, search

    recipe = load("zoo:fashion-mt").recipe
    example = example_input(recipe)
    slim, weights = _slim_model(recipe, example)
    data = list(batches(recipe, "val", count=args.val_count, batch_size=500))
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    serial = evaluate_grid(slim, recipe, data, example)
    serial_s = time.perf_counter() - t0
    console.print(f"grid serial (2 torch threads): {serial_s:.1f} s for {len(serial.metrics)} evaluations")
    t0 = time.perf_counter()
    ev = RayEvaluator(workers=2, threads=1)
    startup_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        parallel = evaluate_grid(slim, recipe, data, example, evaluator=ev)
        parallel_s = time.perf_counter() - t0
    finally:
        ev.close()
    diffs = [abs(serial.metrics[k][t] - parallel.metrics[k][t]) for k in serial.metrics for t in serial.tasks]
    prefs = {t: 1.0 for t in recipe.tasks}
    searches = {}
    for b in (0.3, 0.5, 0.7):
        a, c = search(serial, prefs, budget_flops=b), search(parallel, prefs, budget_flops=b)
        searches[f"{b:.1f}"] = {"serial": a.config.name, "parallel": c.config.name, "same": a.config == c.config}
    full = WidthConfig.uniform(1.0, list(recipe.tasks))
    return {
        "evaluations": len(serial.metrics), "val_images": serial.samples, "weights": weights,
        "serial_2_threads_s": serial_s, "ray_2_workers_1_thread_s": parallel_s, "ray_startup_s": startup_s,
        "speedup": serial_s / parallel_s, "speedup_including_startup": serial_s / (parallel_s + startup_s),
        "identical_table": serial.to_dict() == parallel.to_dict(),
        "max_abs_metric_diff": max(diffs), "identical_flops": serial.encoder_flops == parallel.encoder_flops
        and serial.decoder_flops == parallel.decoder_flops,
        "search_budget_fraction": searches, "identical_search": all(s["same"] for s in searches.values()),
        "full_width_metrics": serial.config_metrics(full),
    }


def bench_oracle(args, console) -> dict:
    from scale_oracle import oracle_batch

    return oracle_batch(args.oracle_val_count)


def bench_simulated(args, console) -> dict:
    import math

    from toolchain.workers import RayEvaluator, SerialEvaluator

    items, seconds, workers = list(range(args.sim_items)), args.sim_seconds, 8
    t0 = time.perf_counter()
    SerialEvaluator().map(_sleep, items, state=seconds)
    serial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = RayEvaluator(workers=workers, threads=1, object_store_mb=128)
    ev.map(_sleep, list(range(workers)), state=0.0)  # every worker up and holding state
    startup_s = time.perf_counter() - t0
    runs = []
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            out = ev.map(_sleep, items, state=seconds)
            runs.append(time.perf_counter() - t0)
            assert out == items
    finally:
        ev.close()
    parallel_s = statistics.median(runs)
    ideal = len(items) / math.ceil(len(items) / workers)
    speedup = serial_s / parallel_s
    return {"workers": workers, "items": len(items), "sleep_s": seconds, "serial_s": serial_s,
            "parallel_s_median_of_3": parallel_s, "parallel_runs_s": runs, "ray_startup_s": startup_s,
            "speedup": speedup, "ideal_speedup": ideal, "fraction_of_ideal": speedup / ideal,
            "within_20pct_of_ideal": speedup >= 0.8 * ideal}


def bench_sweep(args, console) -> dict:
    from toolchain.cli import main as mtedge

    out = Path(args.work) / "sweep"
    if not args.keep_cache:
        shutil.rmtree(out, ignore_errors=True)
    argv = ["sweep", "zoo:fashion-mt", "--checkpoint", str(args.checkpoint), "--goals", args.sweep_goals,
            "--targets", "host-cpu,jetson-orin-nano-8gb", "--precisions", args.sweep_precisions, "-o", str(out),
            "--val-count", str(args.sweep_val_count), "--test-count", str(args.sweep_test_count),
            "--finetune-epochs", str(args.sweep_finetune_epochs)]
    if args.sweep_round_to:
        argv += ["--round-to", str(args.sweep_round_to)]
    if args.sweep_relax:
        argv += ["--relax"]
    if args.sweep_workers:
        argv += ["--workers", str(args.sweep_workers)]
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        rc = mtedge(argv)
        times.append(time.perf_counter() - t0)
        if rc:
            raise SystemExit(f"mtedge sweep failed (exit {rc})")
    import json

    doc = json.loads((out / "sweep.json").read_text())
    results = Path(args.out).parent  # the committed copies of the sweep's table and plot
    results.mkdir(parents=True, exist_ok=True)
    for name in ("pareto.md", "pareto.png"):
        shutil.copyfile(out / name, results / f"scale_sweep_{name}")
    return {"command": "mtedge " + " ".join(argv), "first_run_s": times[0], "second_run_s": times[1],
            "second_over_first": times[1] / times[0], "second_under_10pct": times[1] < 0.1 * times[0],
            "points": len(doc["points"]), "points_done_second_run": doc["run"]["done_now"],
            "pareto": {t: [p["id"] for p in v] for t, v in doc["pareto"].items()},
            "chosen": {t: (c or {}).get("id") for t, c in doc["chosen"].items()},
            "reference": doc["reference"], "bound": doc["bound"],
            "points_metrics": {p["id"]: p["metrics"] for p in doc["points"]},
            "files": {"table": str(results / "scale_sweep_pareto.md"), "plot": str(results / "scale_sweep_pareto.png"),
                      "json": str(out / "sweep.json")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="grid,oracle,simulated,sweep")
    ap.add_argument("--val-count", type=int, default=1000, help="val images per grid evaluation")
    ap.add_argument("--oracle-val-count", type=int, default=512, help="oracle subset (PAGCP's default)")
    ap.add_argument("--sim-items", type=int, default=64)
    ap.add_argument("--sim-seconds", type=float, default=0.25)
    ap.add_argument("--checkpoint", default=None, help="trained fashion-mt for the sweep (default: bench/common.py's)")
    ap.add_argument("--sweep-goals", default="0.9,0.7,0.5", help="FLOPs fractions to keep")
    ap.add_argument("--sweep-precisions", default="fp32",
                    help="fp32,int8 doubles the bundles: int8 accuracy control is most of a point's cost")
    ap.add_argument("--sweep-val-count", type=int, default=128,
                    help="oracle and quantization val images (128 moves accuracy in 0.8-point steps, near a 1-point bound)")
    ap.add_argument("--sweep-finetune-epochs", type=float, default=0.0,
                    help="distilled recovery per pruned model (0.25 took over 10 min a point on the loaded 2-core host)")
    ap.add_argument("--sweep-round-to", type=int, default=0,
                    help="one channel multiple for both precisions (one pruned model per goal; 0: per-precision lcm)")
    # within its bounds PAGCP stops near 10 % removed on fashion-mt, so every goal would give the same point;
    # relaxed, the goals give a front and each point says whether its bounds held
    ap.add_argument("--sweep-contract", dest="sweep_relax", action="store_false",
                    help="prune within the recipe's bounds (default: --relax)")
    ap.add_argument("--sweep-test-count", type=int, default=1000)
    ap.add_argument("--sweep-workers", type=int, default=None, help="run the sweep's points on N Ray workers")
    ap.add_argument("--keep-cache", action="store_true", help="do not clear the sweep cache before the first run")
    ap.add_argument("--work", default=str(ROOT / "bench" / ".cache" / "scale"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = ap.parse_args()
    # Ray workers import the oracle bench's evaluation function by module name
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))

    from common import trained_fashion
    from rich.table import Table

    from toolchain.progress import console

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if "sweep" in parts and args.checkpoint is None:
        args.checkpoint = trained_fashion()
    out = Path(args.out)
    doc = {"machine": {"cpus": os.cpu_count()}}
    if out.exists():  # parts not re-run keep their last figures
        import json

        doc = {**json.loads(out.read_text()), **doc}
    runners = {"grid": bench_grid, "oracle": bench_oracle, "simulated": bench_simulated, "sweep": bench_sweep}
    for part in parts:
        console.rule(part)
        t0 = time.perf_counter()
        load_before = os.getloadavg()
        doc[part] = runners[part](args, console)
        doc[part]["bench_part_s"] = time.perf_counter() - t0
        # other users' load on the cores: a parallel run cannot beat a serial one on saturated cores
        doc[part]["load_average_1min_before_after"] = [load_before[0], os.getloadavg()[0]]
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, doc)  # after each part: an interrupted bench keeps what it measured

    table = Table(title="scale-out (bench/results/scale.json)")
    for col in ("part", "serial", "parallel", "speedup", "check"):
        table.add_column(col)
    rows = {  # part -> its row (what ran, serial, parallel, speedup, check)
        "grid": lambda g: (f"slim grid ({g['evaluations']} evals)", f"{g['serial_2_threads_s']:.1f} s (2 threads)",
                           f"{g['ray_2_workers_1_thread_s']:.1f} s (2 workers)", f"{g['speedup']:.2f}x",
                           f"identical table {g['identical_table']}, search {g['identical_search']}"),
        "oracle": lambda o: (f"PAGCP oracle ({o['candidates']} evaluations)", f"{o['serial_2_threads_s']:.1f} s (2 threads)",
                             f"{o['ray_2_workers_1_thread_s']:.1f} s (2 workers)", f"{o['speedup']:.2f}x",
                             f"identical verdicts {o['identical_verdicts']}"),
        "simulated": lambda s: (f"simulated ({s['items']} x {s['sleep_s']} s)", f"{s['serial_s']:.1f} s",
                                f"{s['parallel_s_median_of_3']:.2f} s ({s['workers']} workers)", f"{s['speedup']:.2f}x",
                                f"ideal {s['ideal_speedup']:.1f}x: {s['fraction_of_ideal']:.0%}"),
        "sweep": lambda w: (f"mtedge sweep ({w['points']} points)", f"first {w['first_run_s']:.1f} s",
                            f"second {w['second_run_s']:.2f} s", "-", f"second/first {w['second_over_first']:.1%}"),
    }
    for part, row in rows.items():
        if part in doc:
            table.add_row(*row(doc[part]))
    console.print(table)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MTEDGE_NO_PROGRESS", "0")
    sys.exit(main())
