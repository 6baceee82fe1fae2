"""``mtedge-run``: the device's command line (numpy + the C++ runtime; no torch, no host toolchain).

    mtedge-run BUNDLE --verify                     # golden parity of every task: a table, exit 0/1
    mtedge-run BUNDLE --backend tensorrt --verify  # through the TensorRT engines the bundle records
    mtedge-run BUNDLE --tasks seg,depth --input frame.npy   # output shapes and a summary
    mtedge-run BUNDLE --iters 200                  # median latency of one call

Without --verify, --input or --iters it loads the bundle and prints what it holds. Exit status:
0 ok, 1 a task is outside its tolerance, 2 usage or bundle/input error (printed as ``error: ...``,
without a traceback). Python 3.8 compatible, like the rest of mtedge_runtime.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

from mtedge_runtime import __version__
from mtedge_runtime.errors import MtedgeError
from mtedge_runtime.golden import check_golden, engine_variant, read_golden, read_manifest
from mtedge_runtime.runtime import InputError, Runtime


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtedge-run", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("bundle", help="the NAME.mtb directory")
    p.add_argument("--verify", action="store_true",
                   help="run every golden sample and compare each task with its golden output (exit 1 on a failure)")
    p.add_argument("--task", action="append", default=[], metavar="T", help="a task to run (repeatable)")
    p.add_argument("--tasks", default="", metavar="T1,T2", help="comma-separated tasks (default: all)")
    p.add_argument("--backend", default="auto", choices=["auto", "openvino", "tensorrt"],
                   help="auto: TensorRT when compiled in and a GPU is visible, else OpenVINO")
    p.add_argument("--engine-target", default=None, metavar="TARGET",
                   help="load the engines built for TARGET (engines.<TARGET> in the manifest) and their variant")
    p.add_argument("--variant", default=None, help="variant to load (default: the bundle's default_variant)")
    p.add_argument("--threads", type=int, default=None, help="OpenVINO inference threads (default: OpenVINO chooses)")
    p.add_argument("--input", default=None, metavar="X.npy",
                   help="run this array (the model input's shape, with or without the batch axis) and summarize the outputs")
    p.add_argument("--iters", type=int, default=0, metavar="N", help="time N calls and print the median latency")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 check of segment files at load (faster)")
    p.add_argument("--version", action="version", version=f"mtedge-run (mtedge-runtime) {__version__}")
    return p


def _tasks(args: argparse.Namespace) -> Optional[List[str]]:
    names = list(args.task) + [t.strip() for t in args.tasks.split(",") if t.strip()]
    return names or None


def _load_input(path: str, shape: Sequence[int]) -> np.ndarray:
    """An .npy file as the model input: the exact shape, or that shape without the batch axis."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--input {path}: cannot read it as a .npy array ({e}); save it with numpy.save") from None
    want = tuple(int(d) for d in shape)
    if x.shape == want[1:] and want[0] == 1:
        x = x[None]
    if x.shape != want:
        raise InputError(f"--input {path}: shape {list(x.shape)}; the model input is {list(want)} "
                         f"(or {list(want[1:])} for one sample): resize/normalize it as on the host")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"--input {path}: dtype {x.dtype}; expected float32 (already normalized, as the "
                         "bundle's golden/input.npy): convert it on the host")
    if x.dtype != np.float32:
        print(f"note: --input {path} is {x.dtype}; converted to float32")
    return np.ascontiguousarray(x, dtype=np.float32)


def _verify(rt: Runtime, bundle: str, tasks: Optional[List[str]]) -> bool:
    checks = check_golden(rt, bundle, tasks)
    print(f"golden parity, variant {rt.variants[0]}, backend {rt.backend}:")
    print(f"  {'task':<16} {'max abs err':>12} {'tolerance':>12}  result")
    for c in checks:
        print(f"  {c.task:<16} {c.max_abs_err:>12.3g} {c.tolerance:>12.3g}  {'ok' if c.passed else 'FAIL'}")
    failed = [c.task for c in checks if not c.passed]
    print(f"{len(checks) - len(failed)}/{len(checks)} tasks within tolerance"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return not failed


def _summarize(outputs: dict) -> None:
    print(f"  {'task':<16} {'shape':<20} {'min':>10} {'max':>10} {'mean':>10}")
    for task, y in outputs.items():
        print(f"  {task:<16} {str(list(y.shape)):<20} {float(y.min()):>10.4g} {float(y.max()):>10.4g} "
              f"{float(y.mean()):>10.4g}")


def _time(rt: Runtime, x: np.ndarray, tasks: Optional[List[str]], iters: int) -> None:
    rt.run(x, tasks=tasks)  # warm-up: first-call allocations and lazy initialization stay out
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        rt.run(x, tasks=tasks)
        ms.append((time.perf_counter() - t0) * 1e3)
    print(f"latency ({', '.join(tasks or rt.tasks)}): median {float(np.median(ms)):.3f} ms, "
          f"p90 {float(np.percentile(ms, 90)):.3f} ms over {iters} calls")


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.iters < 0:
        raise InputError(f"--iters {args.iters}: expected a count >= 0")
    tasks = _tasks(args)
    variant = args.variant
    if args.engine_target and not variant:
        variant = engine_variant(read_manifest(args.bundle), args.engine_target)
    rt = Runtime(args.bundle, backend=args.backend, threads=args.threads, variant=variant,
                 engine_target=args.engine_target, verify=not args.no_hash)
    with rt:
        if tasks:
            unknown = [t for t in tasks if t not in rt.tasks]
            if unknown:
                raise InputError(f"unknown task(s) {', '.join(map(repr, unknown))}; this bundle has tasks: "
                                 f"{', '.join(rt.tasks)}")
        load_ms = rt.stats().get("load_ms", float("nan"))
        spec = rt.input_spec()
        print(f"{rt.name}: backend {rt.backend}, variant {rt.variants[0]}"
              + (f", engines {args.engine_target}" if args.engine_target else "")
              + f", input {spec['name']} {list(spec['shape'])} {spec['dtype']}, load {load_ms:.1f} ms")
        ok = True
        if args.verify:
            ok = _verify(rt, args.bundle, tasks)
        x = None
        if args.input:
            x = _load_input(args.input, spec["shape"])
            print(f"outputs for {args.input}:")
            _summarize(rt.run(x, tasks=tasks))
        if args.iters:
            if x is None:
                x = np.ascontiguousarray(read_golden(args.bundle, rt.variants[0]).inputs[:int(spec["shape"][0])],
                                         dtype=np.float32)
            _time(rt, x, tasks, args.iters)
        if not (args.verify or args.input or args.iters):
            print(f"tasks: {', '.join(rt.tasks)}; variants loaded: {', '.join(rt.variants)}")
            print("next: mtedge-run BUNDLE --verify (golden parity), --input X.npy, --iters N")
    return 0 if ok else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point: ``error: ...`` and exit 2 for every mtedge error, no traceback."""
    try:
        return run(argv)
    except MtedgeError as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
