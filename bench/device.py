"""Several callers on one set of weights (`make bench-device`); writes bench/results/device.json.

For k = 1, 2, 4 caller threads, each thread running frames back to back:

- throughput (frames/s, all threads together) of ONE ``Runtime(callers=k)`` shared by the k threads
  versus k separate ``Runtime(callers=1)`` objects, one per thread. Both are loaded in this process
  and measured side by side: each round times the shared setup then the separate one (the order
  alternating between rounds), and the figures are medians over the rounds.
- resident memory (VmRSS) of each setup in a fresh subprocess: after imports, after load, and after
  every thread ran its frames (activations touched).

Threads: the same CPU budget for both. The shared runtime gets ``threads=T`` (OpenVINO splits them
over its k CPU streams); each separate runtime gets ``threads=max(1, T // k)``. Precision f32.
Goal (issue 24): shared >= 0.9x the separate runtimes' throughput, with the weights resident once.
docs/runtime.md ("Several callers") discusses the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mtedge_runtime import Runtime
from toolchain.bench_runtime import rss_mb
from toolchain.bundle.files import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "build" / "bench" / "mobilenetv2-mt.mtb"
GOAL = 0.9


def _frames(shape, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def _open(bundle: str, k: int, threads: int, shared: bool) -> list[Runtime]:
    """The runtime each of the k threads calls (the same object k times when shared)."""
    if shared:
        rt = Runtime(bundle, backend="openvino", threads=threads, precision="f32", callers=k)
        return [rt] * k
    return [Runtime(bundle, backend="openvino", threads=max(1, threads // k), precision="f32")
            for _ in range(k)]


def _run_threads(runtimes: list[Runtime], frames: list[np.ndarray]) -> float:
    """Every thread runs all `frames` (all tasks) on its runtime; returns the wall seconds."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(runtimes) + 1)

    def work(rt: Runtime) -> None:
        try:
            start.wait()
            for x in frames:
                rt.run(x)
        except BaseException as e:  # noqa: BLE001  surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(rt,)) for rt in runtimes]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall


def rss_probe(bundle: str, k: int, threads: int, shared: bool, frames: int) -> None:
    """Subprocess entry: prints {"baseline_mb", "loaded_mb", "after_run_mb"} for one setup."""
    base = rss_mb()
    runtimes = _open(bundle, k, threads, shared)
    loaded = rss_mb()
    shape = tuple(runtimes[0].input_spec()["shape"])
    _run_threads(runtimes, _frames(shape, frames, seed=3))
    print(json.dumps({"baseline_mb": base, "loaded_mb": loaded, "after_run_mb": rss_mb()}))


def _rss(bundle: str, k: int, threads: int, shared: bool, frames: int) -> dict:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from device import rss_probe; "
            "rss_probe(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == '1', int(sys.argv[6]))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), bundle, str(k), str(threads),
                          "1" if shared else "0", str(frames)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(bundle: str, callers: list[int], threads: int, frames: int, rounds: int) -> list[dict]:
    rows = []
    for k in callers:
        setups = {"shared": _open(bundle, k, threads, True), "separate": _open(bundle, k, threads, False)}
        shape = tuple(setups["shared"][0].input_spec()["shape"])
        xs = _frames(shape, frames, seed=k)
        for rts in setups.values():  # warm-up: first calls allocate inside OpenVINO
            _run_threads(rts, xs[:2])
        fps: dict[str, list[float]] = {"shared": [], "separate": []}
        for r in range(rounds):
            order = ["shared", "separate"] if r % 2 == 0 else ["separate", "shared"]
            for name in order:
                fps[name].append(k * frames / _run_threads(setups[name], xs))
        stats = setups["shared"][0].stats()
        shared_fps, separate_fps = float(np.median(fps["shared"])), float(np.median(fps["separate"]))
        rows.append({
            "callers": k,
            "shared_fps": shared_fps,
            "separate_fps": separate_fps,
            "ratio": shared_fps / separate_fps,
            "shared_fps_rounds": fps["shared"],
            "separate_fps_rounds": fps["separate"],
            "shared_threads": threads,
            "separate_threads_each": max(1, threads // k),
            "openvino_streams_shared": stats["parallel_lanes"],
            "compiled_segments_shared": stats["compiled_segments"],
            "compiled_segments_separate": sum(rt.stats()["compiled_segments"] for rt in setups["separate"]),
            "rss_shared": _rss(bundle, k, threads, True, frames),
            "rss_separate": _rss(bundle, k, threads, False, frames),
        })
        for rts in setups.values():
            for rt in set(rts):
                rt.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    ap.add_argument("--callers", default="1,2,4")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in total")
    ap.add_argument("--frames", type=int, default=12, help="frames per thread per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "device.json"))
    args = ap.parse_args()
    callers = [int(c) for c in args.callers.split(",")]
    probe = Runtime(args.bundle, backend="openvino", threads=1)
    shape, tasks = probe.input_spec()["shape"], probe.tasks
    probe.close()
    rows = measure(args.bundle, callers, args.threads, args.frames, args.rounds)
    report = {
        "bundle": os.path.relpath(args.bundle, ROOT), "input_shape": list(shape), "tasks": tasks,
        "backend": "openvino", "precision": "f32", "threads_total": args.threads,
        "cpu_count": os.cpu_count(), "frames_per_thread": args.frames, "rounds": args.rounds,
        "goal": f"shared >= {GOAL}x separate throughput, weights once",
        "goal_met": all(r["ratio"] >= GOAL for r in rows), "rows": rows,
    }
    table = Table(title=f"one Runtime(callers=k) vs k Runtimes: {report['bundle']} {shape}, all tasks, "
                        f"f32, {args.threads} threads in total")
    for col in ("callers", "shared f/s", "separate f/s", "shared/separate", "OV streams",
                "RSS shared MB (load/run)", "RSS separate MB (load/run)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["callers"]), f"{r['shared_fps']:.1f}", f"{r['separate_fps']:.1f}",
                      f"{r['ratio']:.2f}", str(r["openvino_streams_shared"]),
                      f"{r['rss_shared']['loaded_mb']:.0f} / {r['rss_shared']['after_run_mb']:.0f}",
                      f"{r['rss_separate']['loaded_mb']:.0f} / {r['rss_separate']['after_run_mb']:.0f}")
    Console(width=150).print(table)
    write_json_atomic(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
