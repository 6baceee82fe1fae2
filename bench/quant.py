"""Quantization benchmark (`make bench-quant`): per-task accuracy and OpenVINO CPU latency of the
fp32 / int8 / fp16 variants, written atomically to bench/results/quant.json.

1. zoo:fashion-mt, trained (--checkpoint, else bench/common.py's cached checkpoint), bounds tightened to garment/group
   accuracy -0.5 point, silhouette mIoU -0.5 point, denoise PSNR -0.2 dB; int8 + fp16; the
   within-bound figures are on the full 10,000-image test split (control ran on val); the int8
   variant run through the C++ runtime, and quantized again at NNCF's default overflow fix and with
   uint8 activations to compare what OpenVINO's int8 kernels make of each (``overflow_fix``,
   ``activations``).
2. the same model magnitude-pruned by 30 % (Torch-Pruning), briefly fine-tuned, exported, int8-quantized with
   uint8 activations (a bundle for this CPU), verified with verify_bundle and run through
   toolchain.runtime.Runtime(variant="int8").
3. zoo:mobilenetv2-mt at 224x224 (untrained: a latency model; its label-free fidelity figures
   are degenerate because its outputs barely depend on the input), int8 + fp16, latency side by
   side in one run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the magnitude pruner that narrows the model is test support code

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from toolchain.bundle.files import write_json_atomic  # noqa: E402
from toolchain.data.loaders import batches  # noqa: E402
from toolchain.export import export_bundle  # noqa: E402
from toolchain.model import load, save_checkpoint  # noqa: E402
from toolchain.quantize import QuantizeOptions, quantize_bundle  # noqa: E402
from toolchain.quantize.int8 import Int8Settings  # noqa: E402
from toolchain.quantize.report import QuantizeReport, executes  # noqa: E402
from toolchain.recipe import parse_recipe  # noqa: E402
from toolchain.verify import verify_bundle  # noqa: E402
from support.magnitude_prune import magnitude_prune, output_layers  # noqa: E402

TIGHT = {"garment": 0.5, "group": 0.5, "silhouette": 0.5, "denoise": 0.2}
console = Console()


def tight_recipe(recipe):
    doc = copy.deepcopy(recipe.to_dict())
    for t, b in TIGHT.items():
        doc["tasks"][t]["allowed_drop"] = b
    return parse_recipe(doc)


def summarize(report: QuantizeReport, split: str) -> dict[str, Any]:
    rec = report.recommendation
    out: dict[str, Any] = {"mode": report.mode, "split": split, "variants": {},
                           # fastest within bounds on this host: a recommendation, not applied to the bundle
                           "recommended_default": rec.variant if rec else "fp32", "bf16": report.bf16,
                           "recommendation": rec.explain() if rec else None}
    for v, r in report.variants.items():
        if not r.written:
            out["variants"][v] = {"written": False}
            continue
        sc = r.scores.get(split) or r.scores["val"]
        out["variants"][v] = {
            "written": True,
            "tasks": {t: {"metric": report.tasks[t].metric, "value": s["value"], "drop": s["drop"],
                          "allowed_drop": report.tasks[t].allowed_drop, "within_bound": s["within_bound"]}
                      for t, s in sc.items()},
            "within_bound": all(s["within_bound"] for s in sc.values()),
            "latency_ms": (r.latency or {}).get("latency_ms"),
            "p90_ms": (r.latency or {}).get("p90_ms"),
            # what the files hold, the hint they were compiled with, and what the CPU plugin then ran
            "stores": (r.latency or {}).get("stores"), "hint": (r.latency or {}).get("hint"),
            "executes": (r.latency or {}).get("executes"),
            "speedup_vs_fp32": r.speedup_vs_fp32,
            # the same rounds, paired: median of fp32/variant per round, and how often the variant won
            "paired_speedup_vs_fp32": (r.latency or {}).get("paired_speedup_vs_fp32"),
            "faster_than_fp32_in_rounds": (r.latency or {}).get("faster_than_fp32_in_rounds"),
            "slower_than_fp32": r.slower_than_fp32,
            "bytes": r.bytes,
            "float_layers": r.float_layers,
        }
    best = out["variants"].get(out["recommended_default"], {})
    # the policy's promise, checked on the figures it was made from (one interleaved run)
    out["recommended_not_slower_than_fp32"] = bool((best.get("speedup_vs_fp32") or 0) >= 1.0)
    int8 = out["variants"].get("int8", {})
    if report.bf16 and int8.get("latency_ms"):
        bf = report.bf16["latency"]
        out["int8_vs_bf16"] = {"int8_ms": int8["latency_ms"], "bf16_hint_ms": bf["latency_ms"],
                               "bf16_hint_over_int8": bf["latency_ms"] / int8["latency_ms"],
                               "bf16_hint_executes": bf["executes"], "int8_executes": int8["executes"]}
    return out


def table(name: str, summary: dict[str, Any]) -> None:
    t = Table(title=f"{name} ({summary['mode']}, {summary['split']} split)")
    for c in ("variant", "task", "metric", "value", "drop", "allowed", "ok", "latency ms", "speedup", "bytes",
              "hint: executes"):
        t.add_column(c)
    for v, r in summary["variants"].items():
        if not r["written"]:
            t.add_row(v, "[red]not written")
            continue
        for i, (task, s) in enumerate(r["tasks"].items()):
            first = i == 0
            t.add_row(v if first else "", task, s["metric"], f"{s['value']:.2f}", f"{s['drop']:+.2f}",
                      f"{s['allowed_drop']:g}", "[green]yes" if s["within_bound"] else "[red]NO",
                      f"{r['latency_ms']:.3f}" if first and r["latency_ms"] else "",
                      (f"{r['speedup_vs_fp32']:.2f}x" + (" [red]SLOWER" if r.get("slower_than_fp32") else ""))
                      if first and r["speedup_vs_fp32"] else "",
                      str(r["bytes"]) if first else "",
                      f"{r['hint']}: {executes(r)}" if first and r.get("hint") else "")
    console.print(t)
    bf = summary.get("bf16")
    console.print(f"recommended default variant (this host): {summary['recommended_default']} "
                  f"(not slower than fp32: {summary['recommended_not_slower_than_fp32']})"
                  + (f"; fp32 at the bf16 hint: {bf['latency']['latency_ms']:.3f} ms = {bf['speedup_vs_fp32']:.2f}x fp32, "
                     f"executes {executes(bf['latency'])} (bf16 native on this CPU: {bf['native']})" if bf else ""))


def fashion(work: Path, checkpoint: str | None, args) -> tuple[dict, dict]:
    from toolchain.train import TrainConfig, train

    from common import trained_fashion

    loaded = load(str(checkpoint or trained_fashion()))
    recipe = tight_recipe(loaded.recipe)
    opts = QuantizeOptions(test_count=args.test_count, latency_runs=args.runs, threads=args.threads)
    path = work / "fashion.mtb"
    export_bundle(loaded, recipe, path, force=True)
    rep = quantize_bundle(path, recipe, ("int8", "fp16"), report_dir=work / "fashion-report", options=opts)
    result = summarize(rep, "test")
    result["decisions"] = rep.variants["int8"].decisions
    result["verify_ok"] = verify_bundle(path).ok
    result["runtime"] = runtime_check(path)
    result["overflow_fix"] = setting_comparison(loaded, recipe, work, rep, opts, overflow_fix="first_layer_only")
    result["activations"] = setting_comparison(loaded, recipe, work, rep, opts, signed_activations=False)

    # pruned + int8
    pruned = copy.deepcopy(loaded.module)
    example = next(batches(recipe, "test", count=1, batch_size=1))[0]
    params_before = sum(p.numel() for p in pruned.parameters())
    magnitude_prune(pruned, example, 0.3, output_layers(pruned, example))
    train(pruned, loaded.recipe, TrainConfig(epochs=args.recover_epochs), description="recovering pruned model")
    pruned.eval()
    ckpt = work / "fashion-pruned.pt"
    save_checkpoint(ckpt, pruned, "zoo:fashion-mt", loaded.recipe)  # plain data, reloads without pickled code
    pruned_loaded = load(str(ckpt))
    ppath = work / "fashion-pruned.mtb"
    export_bundle(pruned_loaded, loaded.recipe, ppath, force=True)
    prep = quantize_bundle(ppath, loaded.recipe, ("int8",), report_dir=work / "pruned-report",
                           options=QuantizeOptions(test_count=2000, latency_runs=args.runs, threads=args.threads,
                                                   int8=Int8Settings(signed_activations=False)))
    presult = summarize(prep, "test")
    presult["params"] = {"before": params_before, "after": sum(p.numel() for p in pruned.parameters())}
    presult["verify_ok"] = verify_bundle(ppath).ok
    presult["runtime"] = runtime_check(ppath)
    return result, presult


def runtime_check(path: Path) -> dict[str, Any]:
    """The int8 variant through the C++ runtime (OpenVINO's int8 kernels on this CPU) against the
    fp32 golden outputs, every golden sample. A runtime that cannot load or run the bundle is a
    failure of this bench (status "failed"), never a skip."""
    import numpy as np

    from toolchain.bundle import Bundle
    from mtedge_runtime.tolerance import compare

    try:
        from toolchain.runtime import Runtime
        rt = Runtime(path, backend="openvino", variant="int8")
        x, golden = Bundle.open(path).golden()
        runs = [rt.run(np.ascontiguousarray(x[i : i + 1])) for i in range(len(x))]
        out = {t: np.concatenate([r[t] for r in runs]) for t in runs[0]}
    except Exception as e:
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}", "within_tolerance": False}
    tol = Bundle.open(path).variant("int8").tolerance
    checks = {t: compare(t, out[t], golden[t], tol[t]) for t in out}
    return {"status": "ran", "samples": len(x), "max_abs_error_vs_fp32_golden": {t: c.max_abs_err for t, c in checks.items()},
            "tolerance": tol, "within_tolerance": all(c.passed for c in checks.values())}


def setting_comparison(loaded, recipe, work: Path, rep: QuantizeReport, opts: QuantizeOptions,
                       **change: Any) -> dict[str, Any]:
    """The same model quantized with one int8 setting changed (``change``: an Int8Settings field)
    next to mtedge's defaults: what OpenVINO's int8 kernels (the runtime) and onnxruntime (the verify
    reference) each make of the fp32 golden outputs, and the test-split drops. Keys: the setting's
    value in each row (``overflow_fix``: enable / first_layer_only; ``signed_activations``:
    int8 / uint8)."""
    import dataclasses

    (name, value), = change.items()

    def label(v: Any) -> str:
        return ("int8" if v else "uint8") if name == "signed_activations" else str(v)

    def row(r: QuantizeReport, path: Path) -> dict[str, Any]:
        v = r.variants["int8"]
        return {"written": v.written, "runtime": runtime_check(path) if v.written else None,
                "onnxruntime_golden_max_abs_error": v.golden_max_abs_error,
                "openvino_agreement": v.openvino_agreement,
                "test_drops": {t: s["drop"] for t, s in (v.scores.get("test") or v.scores["val"]).items()}}

    path = work / f"fashion-{name}-{label(value)}.mtb"
    export_bundle(loaded, recipe, path, force=True)
    other = dataclasses.replace(opts, latency_runs=0, int8=dataclasses.replace(opts.int8, **change))
    return {label(getattr(opts.int8, name)): row(rep, work / "fashion.mtb"),
            label(value): row(quantize_bundle(path, recipe, ("int8",), options=other), path)}


def mobilenet(work: Path, args) -> dict:
    loaded = load("zoo:mobilenetv2-mt")
    recipe = loaded.recipe
    m = loaded.module
    if args.bn_reestimate:
        # re-estimate batch-norm statistics on photos: the untrained network's activations
        # otherwise nearly vanish and its outputs barely depend on the input
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
        m.train()
        with torch.no_grad():
            for x, _ in batches(recipe, "train", count=64, batch_size=16):
                m(x)
        m.eval()
    # untrained: its outputs barely depend on the input, so a fidelity argmax flips for every
    # sample at once (0 or 100 %); this model is measured for speed, with bounds switched off
    doc = copy.deepcopy(recipe.to_dict())
    for t in doc["tasks"].values():
        t["allowed_drop"] = 100.0
    recipe = parse_recipe(doc)
    path = work / "mobilenetv2.mtb"
    export_bundle(loaded, recipe, path, force=True)
    rep = quantize_bundle(path, recipe, ("int8", "fp16"), report_dir=work / "mobilenetv2-report",
                          options=QuantizeOptions(latency_runs=args.runs, threads=args.threads))
    result = summarize(rep, "test")
    result["verify_ok"] = verify_bundle(path).ok
    result["bounds"] = "off (untrained latency model; fidelity figures are degenerate)"
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="trained zoo:fashion-mt checkpoint (default: bench/common.py's cached one)")
    ap.add_argument("--bn-reestimate", action="store_true",
                    help="re-estimate mobilenetv2-mt batch-norm statistics on photos before export")
    ap.add_argument("--recover-epochs", type=float, default=0.25, help="fine-tuning after pruning")
    ap.add_argument("--test-count", type=int, default=10000, help="fashion test images for the final check")
    ap.add_argument("--runs", type=int, default=200, help="latency rounds (every variant once per round, interleaved)")
    ap.add_argument("--threads", type=int, default=2, help="threads for onnxruntime/OpenVINO, same for every variant")
    ap.add_argument("--only-mobilenet", action="store_true",
                    help="re-run only zoo:mobilenetv2-mt and update it in an existing --out file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quant.json"))
    ap.add_argument("--work", default=None, help="keep bundles and reports here (default: a temporary directory)")
    args = ap.parse_args()
    os.environ.setdefault("MTEDGE_NO_PROGRESS", "0")
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.only_mobilenet:
            old = json.loads(Path(args.out).read_text())["models"]
            fash, pruned = old["fashion-mt"], old["fashion-mt-pruned"]
        else:
            fash, pruned = fashion(work, args.checkpoint, args)
        table("zoo:fashion-mt (trained, tight bounds)", fash)
        table("zoo:fashion-mt pruned 30 % + int8", pruned)
        mob = mobilenet(work, args)
        table("zoo:mobilenetv2-mt 224x224", mob)
    int8 = mob["variants"].get("int8", {})
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": _cpu(), "threads": args.threads, "latency_runs": args.runs, "seconds": time.perf_counter() - t0,
        "host": _host(),
        # other processes on the same cores: the variants share it alike (interleaved rounds), absolute figures do not
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "models": {"fashion-mt": fash, "fashion-mt-pruned": pruned, "mobilenetv2-mt": mob},
        "acceptance": {
            "fashion_int8_within_tight_bounds": bool(fash["variants"].get("int8", {}).get("within_bound")),
            "mobilenetv2_int8_speedup": int8.get("speedup_vs_fp32"),
            "mobilenetv2_int8_speedup_ok": bool((int8.get("speedup_vs_fp32") or 0) >= 1.8),
            "pruned_int8_verifies": bool(pruned["verify_ok"]),
            "pruned_int8_runtime": pruned["runtime"]["status"],
            "pruned_int8_runtime_ok": bool(pruned["runtime"].get("within_tolerance")),
            "fashion_int8_runtime_ok": bool(fash.get("runtime", {}).get("within_tolerance")),
            # the same model with uint8 activations (mtedge quantize --activations uint8): a bundle for CPUs
            "fashion_uint8_activations_runtime_ok": bool(
                ((fash.get("activations", {}).get("uint8") or {}).get("runtime") or {}).get("within_tolerance")),
            "recommended_default_not_slower_than_fp32_ok": all(
                m.get("recommended_not_slower_than_fp32", False) for m in (fash, pruned, mob)),
        },
    }
    write_json_atomic(args.out, results)
    console.print(results["acceptance"])
    console.print(f"wrote {args.out} in {results['seconds']:.0f} s")
    return 0 if all(v for k, v in results["acceptance"].items() if k.endswith(("_ok", "_bounds", "_verifies"))) else 1


def _host() -> dict[str, Any]:
    """What decides int8/bf16/fp16 speed on this CPU: its low-precision instruction sets (from
    /proc/cpuinfo) and what OpenVINO's CPU plugin says it can run."""
    import openvino as ov

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16")
    return {"cpus": os.cpu_count(), "flags": {f: f in flags for f in wanted}, "openvino": ov.__version__,
            "openvino_cpu_capabilities": list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
