"""Reliability figures (`make bench-reliability`); writes bench/results/reliability.json atomically.

- fuzz: the mutation fuzzer (tests/cpp/fuzz/mtedge_fuzz.cpp) over a toy bundle and an exported
  zoo:fashion-mt bundle: cases run, findings, crashes (a signal ends the process);
- sanitizers: the summary `make test-sanitize` wrote (findings, pass/fail);
- soak: N calls on one Runtime, RSS after warm-up and at the end (growth must stay < 1 %);
- kill points: SIGKILL at random moments of export, compress, quantize, slim export and build;
  afterwards the output is absent, refused with a named error, or complete (loads and verifies);
  an output that loads but does not verify is "half-written and loaded" (must be 0); then the
  command is re-run and must succeed;
- bad inputs per kind (manifests, files, runtime inputs, checkpoints, recipes, output
  directories): the error type and message each gets (every one must be a named mtedge error).

Exit status 0 when every acceptance figure holds. docs/reliability.md explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MTEDGE = str(Path(sys.executable).with_name("mtedge"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from toolchain.bundle.files import write_json_atomic  # noqa: E402
from toolchain.errors import MtedgeError  # noqa: E402

console = Console()


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_mtedge(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "MTEDGE_NO_PROGRESS": "1"}
    return subprocess.run([MTEDGE, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


# ---- fuzz ---------------------------------------------------------------------------------------

def fuzz(binary: str, bundles: list[Path], cases: int, work: Path) -> dict[str, Any]:
    out = work / "fuzz.json"
    t0 = time.perf_counter()
    cmd = [binary, "--cases", str(cases), "--seed", "15", "--json", str(out)]
    for b in bundles:
        cmd += ["--bundle", str(b)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    doc = json.loads(out.read_text()) if out.exists() else {}
    return {"cases": doc.get("cases", 0), "seed": 15, "findings": doc.get("findings", ["no report: " + p.stderr[-500:]]),
            "crashes": int(p.returncode < 0), "exit_status": p.returncode, "seconds": time.perf_counter() - t0,
            "targets": doc.get("targets", {}), "slowest_case_s": doc.get("slowest_case_s"),
            "error_examples": doc.get("error_examples", {})}


# ---- soak ---------------------------------------------------------------------------------------

def soak(bundle: Path, calls: int) -> dict[str, Any]:
    from toolchain.runtime import Runtime

    rt = Runtime(bundle, backend="openvino", threads=1)
    x = np.ascontiguousarray(np.load(bundle / "golden" / "input.npy")[:1])
    task_sets = [["cls"], ["cls", "depth"], ["normals"], ["depth", "cls", "normals"]]
    warmup = max(1, calls // 20)
    for i in range(warmup):
        rt.run(x, tasks=task_sets[i % len(task_sets)])
    rss0, series = rss_kb(), []
    t0 = time.perf_counter()
    for i in range(calls):
        rt.run(x, tasks=task_sets[i % len(task_sets)])
        if (i + 1) % max(1, calls // 10) == 0:
            series.append(rss_kb())
    seconds = time.perf_counter() - t0
    rss1 = rss_kb()
    rt.close()
    growth = 100.0 * (rss1 - rss0) / rss0
    return {"calls": calls, "warmup_calls": warmup, "rss_after_warmup_kb": rss0, "rss_end_kb": rss1,
            "rss_growth_pct": growth, "rss_series_kb": series, "seconds": seconds,
            "calls_per_s": calls / seconds, "ok": growth < 1.0}


# ---- kill points --------------------------------------------------------------------------------

def bundle_state(path: Path) -> str:
    """absent | refused (named error on load) | complete (loads and verifies) | half-loaded."""
    from toolchain.verify import verify_bundle

    if not path.exists():
        return "absent"
    try:
        report = verify_bundle(path)
    except MtedgeError:
        return "refused"
    return "complete" if report.ok else "half-loaded"


def checkpoint_state(path: Path) -> str:
    from toolchain.model import load

    if not path.exists():
        return "absent"
    try:
        load(str(path))  # rebuilds from origin + plan and checks the saved output probe
    except MtedgeError:
        return "refused"
    return "complete"


def kill_points(work: Path, per_command: int, rng: random.Random) -> dict[str, Any]:
    base = work / "kill-base.mtb"
    r = run_mtedge(["export", "zoo:fashion-mt", "-o", base, "--golden-samples", "2", "--force"])
    assert r.returncode == 0, r.stderr
    slim_ckpt = work / "kill-slim.pt"
    r = run_mtedge(["slim", "convert", "zoo:fashion-mt", "-o", slim_ckpt, "--widths", "1.0,0.5", "--epochs", "0",
                    "--no-latency", "--val-count", "64", "--calib-images", "32", "--threads", "1"])
    assert r.returncode == 0, r.stderr

    def fresh_copy(name: str) -> Callable[[], None]:
        def prepare() -> None:
            shutil.rmtree(work / name, ignore_errors=True)
            shutil.copytree(base, work / name)
        return prepare

    commands = {
        "export": (["export", "zoo:fashion-mt", "-o", work / "k-export.mtb", "--golden-samples", "2", "--force"],
                   work / "k-export.mtb", bundle_state, lambda: None),
        # --allow-exceed: this measures what a kill leaves behind, not the bounds (untrained weights,
        # 64 test images: one image is 1.6 points, so the held-out check would fail some runs at random)
        "compress": (["compress", "zoo:fashion-mt", "--prune", "l1", "--keep-flops", "0.6", "--test-count", "64",
                      "--allow-exceed", "-o", work / "k-compress.pt"], work / "k-compress.pt", checkpoint_state,
                     lambda: None),
        "quantize": (["quantize", work / "k-quant.mtb", "--precision", "fp16", "--latency-runs", "0"],
                     work / "k-quant.mtb", bundle_state, fresh_copy("k-quant.mtb")),
        "slim_export": (["slim", "export", slim_ckpt, "-o", work / "k-slim.mtb", "--configs", "c100,c50",
                         "--metrics-split", "none", "--force"], work / "k-slim.mtb", bundle_state, lambda: None),
        "build": (["build", work / "k-build.mtb", "-t", "host-cpu"], work / "k-build.mtb", bundle_state,
                  fresh_copy("k-build.mtb")),
    }
    results: dict[str, Any] = {}
    for name, (args, out, state, prepare) in commands.items():
        prepare()
        t0 = time.perf_counter()
        full = run_mtedge(args)
        duration = time.perf_counter() - t0
        entry: dict[str, Any] = {"full_run_s": duration, "full_run_ok": full.returncode == 0 and state(out) == "complete",
                                 "trials": []}
        if full.returncode != 0:
            entry["full_run_error"] = (full.stderr or full.stdout)[-600:]
        for _ in range(per_command):
            if name in ("export", "compress", "slim_export"):
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            prepare()
            delay = rng.uniform(0.05, 0.98) * duration
            env = {**os.environ, "MTEDGE_NO_PROGRESS": "1"}
            proc = subprocess.Popen([MTEDGE, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            time.sleep(delay)
            killed = proc.poll() is None
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            after_kill = state(out)
            rerun = run_mtedge(args)
            entry["trials"].append({"kill_at_s": round(delay, 3), "killed": killed, "after_kill": after_kill,
                                    "rerun_ok": rerun.returncode == 0 and state(out) == "complete",
                                    **({"rerun_error": (rerun.stderr or rerun.stdout)[-400:]}
                                       if rerun.returncode else {})})
        results[name] = entry
    tried = sum(len(e["trials"]) for e in results.values())
    killed = sum(t["killed"] for e in results.values() for t in e["trials"])
    half = sum(t["after_kill"] == "half-loaded" for e in results.values() for t in e["trials"])
    reruns = all(t["rerun_ok"] for e in results.values() for t in e["trials"])
    return {"kill_points_tried": tried, "killed_mid_run": killed, "half_written_outputs_loaded": half,
            "reruns_succeeded": reruns, "full_runs_ok": all(e["full_run_ok"] for e in results.values()),
            "commands": results}


# ---- bad inputs ---------------------------------------------------------------------------------

def bad_inputs(toy: Path, work: Path) -> dict[str, list[dict[str, Any]]]:
    import torch

    from toolchain.export import export_bundle
    from toolchain.model import load, save_checkpoint
    from toolchain.recipe import parse_recipe
    from toolchain.runtime import Runtime

    out: dict[str, list[dict[str, Any]]] = {}

    def attempt(kind: str, case: str, fn: Callable[[], Any]) -> None:
        rec: dict[str, Any] = {"case": case}
        try:
            fn()
            rec.update(error=None, message="accepted", named=False)
        except MtedgeError as e:
            rec.update(error=type(e).__name__, message=str(e), named=True)
        except Exception as e:  # noqa: BLE001  recorded: an unnamed error is a finding
            rec.update(error=type(e).__name__, message=str(e), named=False)
        out.setdefault(kind, []).append(rec)

    def edited(name: str, edit: Callable[[Path, dict], None]) -> Path:
        d = work / "bad" / name
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(toy, d)
        m = json.loads((d / "manifest.json").read_text())
        if edit(d, m) is not False and (d / "manifest.json").exists():  # False: the edit wrote it
            (d / "manifest.json").write_text(json.dumps(m))
        return d

    seg_ref = lambda m: next(iter(m["variants"][m["default_variant"]]["segments"].values()))  # noqa: E731

    def set_(path: list, value: Any) -> Callable[[Path, dict], None]:
        def edit(_d: Path, m: dict) -> None:
            node = m
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        return edit

    def symlink_out(d: Path, m: dict) -> None:
        f = d / seg_ref(m)["file"]
        shutil.copy(f, work / "bad" / "outside.onnx")
        f.unlink()
        f.symlink_to(work / "bad" / "outside.onnx")

    def truncate(d: Path, m: dict) -> None:
        f = d / seg_ref(m)["file"]
        f.write_bytes(f.read_bytes()[:100])

    def flip(d: Path, m: dict) -> None:
        f = d / seg_ref(m)["file"]
        b = bytearray(f.read_bytes())
        b[len(b) // 2] ^= 1
        f.write_bytes(bytes(b))

    def not_json(d: Path, _m: dict) -> bool:
        (d / "manifest.json").write_text("{not json")
        return False

    def relpath(value: str) -> Callable[[Path, dict], None]:
        def edit(_d: Path, m: dict) -> None:
            seg_ref(m)["file"] = value
        return edit

    manifest_cases = {
        "rank 9 input shape": set_(["input", "shape"], [1] * 9),
        "element count overflow": set_(["input", "shape"], [1 << 32, 1 << 32, 1, 1]),
        "zero dimension": set_(["input", "shape"], [1, 0, 19, 23]),
        "unsupported format_version": set_(["format_version"], 2),
        "wrong type for tasks": set_(["tasks"], ["cls"]),
        "path with ..": relpath("../outside.onnx"),
        "absolute path": relpath("/etc/passwd"),
        "symlink out of the bundle": symlink_out,
        "truncated segment file": truncate,
        "one bit flipped in a segment": flip,
        "manifest is not JSON": not_json,
    }
    for case, edit in manifest_cases.items():
        attempt("bundle", case, lambda edit=edit, case=case: Runtime(edited(case.replace(" ", "_"), edit),
                                                                  backend="openvino"))
    attempt("bundle", "no manifest.json", lambda: Runtime(edited("nomanifest", lambda d, m: (d / "manifest.json").unlink()),
                                                          backend="openvino"))

    rt = Runtime(toy, backend="openvino")
    shape = tuple(rt.input_spec()["shape"])
    runtime_cases = {
        # float64 and strided inputs are converted (saying why); copy=False makes that an error.
        "float64 input, copy=False": lambda: rt.run(np.zeros(shape), copy=False),
        "wrong shape": lambda: rt.run(np.zeros((1, 3, 4, 4), np.float32)),
        "non-contiguous input, copy=False": lambda: rt.run(
            np.zeros(shape[:-1] + (shape[-1] * 2,), np.float32)[..., ::2], copy=False),
        "uint8 input": lambda: rt.run(np.zeros(shape, np.uint8)),
        "unknown task": lambda: rt.run(np.zeros(shape, np.float32), task="nope"),
        "unknown variant": lambda: rt.run(np.zeros(shape, np.float32), variant="int4"),
        "threads=-1": lambda: Runtime(toy, threads=-1),
        "bad precision": lambda: Runtime(toy, backend="openvino", precision="int3"),
    }
    for case, fn in runtime_cases.items():
        attempt("runtime_input", case, fn)
    rt.close()
    attempt("runtime_input", "call after close", lambda: rt.run(np.zeros(shape, np.float32)))

    model = load("zoo:fashion-mt")
    torch.save(model.module, work / "whole.pt")
    (work / "garbage.pt").write_bytes(b"\x80\x02not a checkpoint")
    torch.save({"conv.weight": torch.zeros(1)}, work / "misfit.pt")
    save_checkpoint(work / "good.pt", model.module, "zoo:fashion-mt", model.recipe)
    doc = torch.load(work / "good.pt", weights_only=True)
    doc["probe"]["outputs"]["garment"] += 1
    torch.save(doc, work / "changed.pt")
    checkpoint_cases = {
        "pickled whole module": lambda: load(str(work / "whole.pt")),
        "garbage bytes": lambda: load(str(work / "garbage.pt")),
        "state dict that does not fit": lambda: load("zoo:fashion-mt", work / "misfit.pt"),
        "plan that does not reproduce the model": lambda: load(str(work / "changed.pt")),
        "metadata that is code": lambda: save_checkpoint(work / "x.pt", model.module, "zoo:fashion-mt", None,
                                                         extra=print),
    }
    for case, fn in checkpoint_cases.items():
        attempt("checkpoint", case, fn)

    good = model.recipe.to_dict()
    recipe_cases = {
        "NaN allowed_drop": {**good, "tasks": {"garment": {**good["tasks"]["garment"], "allowed_drop": float("nan")}}},
        "normalization is a list": {**good, "input": {**good["input"], "normalization": [1, 2]}},
        "val_count is text": {**good, "data": {**good["data"], "val_count": "many"}},
        "metric is a list": {**good, "tasks": {"garment": {**good["tasks"]["garment"], "metric": ["accuracy"]}}},
        "top level is a list": [good],
    }
    for case, doc in recipe_cases.items():
        attempt("recipe", case, lambda doc=doc: parse_recipe(doc))

    (work / "a-file").write_text("x")
    attempt("output_dir", "output under a regular file",
            lambda: export_bundle(model, model.recipe, work / "a-file" / "x.mtb", golden_samples=1))
    attempt("output_dir", "checkpoint under a regular file",
            lambda: save_checkpoint(work / "a-file" / "c.pt", model.module, "zoo:fashion-mt", model.recipe))
    return out


# ---- main ---------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", required=True, help="the mtedge_fuzz binary (make bench-reliability builds it)")
    ap.add_argument("--fuzz-cases", type=int, default=20000)
    ap.add_argument("--soak-calls", type=int, default=100000)
    ap.add_argument("--kills-per-command", type=int, default=2)
    ap.add_argument("--sanitize-log", default=str(ROOT / "build" / "asan" / "sanitize-summary.json"),
                    help="summary written by `make test-sanitize`")
    ap.add_argument("--only", default="", help="comma-separated subset: fuzz,soak,kill,bad; the parts not run "
                                                 "keep their figures from --out (each part records when it ran)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reliability.json"))
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    want = lambda part: not only or part in only  # noqa: E731
    t0 = time.perf_counter()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results: dict[str, Any] = {"created": created}
    previous = json.loads(Path(args.out).read_text()) if only and Path(args.out).exists() else {}
    parts = {"fuzz": "fuzz", "soak": "soak", "kill": "kill", "bad": "bad_inputs"}
    ran = {}
    for part, key in parts.items():  # a part not run now keeps its last figures and their date
        if not want(part) and key in previous:
            results[key] = previous[key]
            ran[part] = previous.get("parts_created", {}).get(part, previous.get("created"))
        elif want(part):
            ran[part] = created
    results["parts_created"] = ran
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        work = Path(tmp)
        from toolchain.export import export_bundle
        from toolchain.model import load
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the toy bundle is a test fixture
        from support.toy_bundle import make_toy_bundle

        toy = make_toy_bundle(work / "toy.mtb", seed=15, samples=2)
        if want("fuzz"):
            fashion = load("zoo:fashion-mt")
            export_bundle(fashion, fashion.recipe, work / "fashion.mtb", golden_samples=2)
            results["fuzz"] = fuzz(args.fuzz, [toy, work / "fashion.mtb"], args.fuzz_cases, work)
            console.print(f"fuzz: {results['fuzz']['cases']} cases, {len(results['fuzz']['findings'])} findings, "
                          f"{results['fuzz']['crashes']} crashes")
        sanitize = Path(args.sanitize_log)
        results["sanitizers"] = json.loads(sanitize.read_text()) if sanitize.exists() else {
            "findings": None, "note": f"no {sanitize}: run `make test-sanitize` first"}
        if want("soak"):
            results["soak"] = soak(toy, args.soak_calls)
            s = results["soak"]
            console.print(f"soak: {s['calls']} calls, RSS {s['rss_after_warmup_kb']} -> {s['rss_end_kb']} kB "
                          f"({s['rss_growth_pct']:+.3f} %)")
        if want("bad"):
            results["bad_inputs"] = bad_inputs(toy, work)
        if want("kill"):
            results["kill"] = kill_points(work, args.kills_per_command, random.Random(15))
    bad = results.get("bad_inputs", {})
    results["seconds"] = time.perf_counter() - t0
    results["summary"] = {
        "fuzz_cases_run": results.get("fuzz", {}).get("cases"),
        "fuzz_crashes": results.get("fuzz", {}).get("crashes"),
        "fuzz_findings": len(results.get("fuzz", {}).get("findings", [])) if "fuzz" in results else None,
        "sanitizer_findings": results["sanitizers"].get("findings"),
        "soak_calls": results.get("soak", {}).get("calls"),
        "soak_rss_growth_pct": results.get("soak", {}).get("rss_growth_pct"),
        "kill_points_tried": results.get("kill", {}).get("kill_points_tried"),
        "half_written_outputs_loaded": results.get("kill", {}).get("half_written_outputs_loaded"),
        "kill_reruns_succeeded": results.get("kill", {}).get("reruns_succeeded"),
        "bad_inputs_tried": {k: len(v) for k, v in bad.items()},
        "bad_inputs_unnamed_errors": sum(not r["named"] for v in bad.values() for r in v),
    }
    s = results["summary"]
    checks = {
        "fuzz": "fuzz" not in results or (s["fuzz_crashes"] == 0 and s["fuzz_findings"] == 0 and s["fuzz_cases_run"] >= 10000),
        "sanitizers": s["sanitizer_findings"] == 0,
        "soak": "soak" not in results or results["soak"]["ok"],
        "kill": "kill" not in results or (s["half_written_outputs_loaded"] == 0 and s["kill_reruns_succeeded"]
                                          and results["kill"]["full_runs_ok"]),
        "bad_inputs": s["bad_inputs_unnamed_errors"] == 0,
    }
    results["acceptance"] = checks
    write_json_atomic(args.out, results)

    t = Table(title="reliability")
    t.add_column("figure")
    t.add_column("value")
    for k, v in s.items():
        t.add_row(k, json.dumps(v))
    for k, v in checks.items():
        t.add_row(f"acceptance: {k}", "ok" if v else "FAIL")
    console.print(t)
    for kind, cases in bad.items():
        for r in cases:
            console.print(f"[{kind}] {r['case']}: {r['error']}: {r['message'][:160]}")
    console.print(f"wrote {args.out} in {results['seconds']:.0f} s")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
