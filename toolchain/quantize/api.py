"""`quantize_bundle`: add int8 and/or fp16 variants to an fp32 bundle, with per-task accuracy control.

See docs/quantization.md for the method and toolchain/quantize/accuracy_control.py for the loop.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import nncf
import onnx

from toolchain.bundle.manifest import OPENVINO_AGREEMENT, Bundle, Variant, disagreement, openvino_advice
from toolchain.data.loaders import has_labels
from toolchain.errors import SpecError
from toolchain.progress import progress_bar
from toolchain.quantize.accuracy_control import Int8Quantizer, control
from toolchain.quantize.calibration import collect_calibration
from toolchain.bundle.executor import DatasetRunner, SegmentModel
from toolchain.quantize.data import load_split
from toolchain.quantize.evaluation import TaskEvaluator, max_abs_errors
from toolchain.quantize.fp16 import float16_ops, to_fp16
from toolchain.quantize.int8 import Int8Settings
from toolchain.quantize.report import DefaultRecommendation, QuantizeReport, TaskBound, VariantResult, write_report
from toolchain.quantize.variants import publish_variant, tolerances, write_segment_files
from toolchain.recipe import Recipe, parse_recipe

PRECISIONS = ("int8", "fp16")
DEFAULT_MARGIN = 0.2  # control to 80 % of each allowed drop on val: val and test differ


@dataclasses.dataclass(frozen=True)
class QuantizeOptions:
    """Knobs beyond the public signature (defaults are what `mtedge quantize` uses)."""

    margin: float = DEFAULT_MARGIN  # fraction of each allowed drop held back on val
    top_k: int = 3  # candidate layers re-quantized per accuracy-control round
    val_count: int | None = None  # default: recipe data.val_count
    test_count: int | None = None  # held-out check; default: same as val; 0 skips it
    latency_runs: int = 30  # OpenVINO CPU latency iterations per variant; 0 skips it
    threads: int = 1  # onnxruntime / OpenVINO threads
    int8: Int8Settings = Int8Settings()


def quantize_bundle(
    bundle_path: str | Path,
    recipe: Recipe | None = None,
    precisions: Sequence[str] = ("int8",),
    label_free: bool | None = None,
    calibration_count: int | None = None,
    report_dir: str | Path | None = None,
    options: QuantizeOptions | None = None,
    evaluator: Any = None,
) -> QuantizeReport:
    """Add variants named after `precisions` ("int8", "fp16") to the fp32 bundle at `bundle_path`.

    Every task of the bundle is scored on the recipe's `val` split (labels, or fidelity to the fp32
    chain with `label_free`; None picks label-free exactly when the data has no labels). An int8
    variant keeps layers in float until every task is within its `allowed_drop`; a variant with a
    task still out of bounds is *not* written (``report.variants[p].written`` is False and
    ``report.ok`` is False). Written files go under segments/, then the manifest is replaced
    atomically. Returns the report (also written as quant.json / quant.md under `report_dir`).
    The bundle's ``default_variant`` is never changed here: ``report.recommendation`` says which
    variant was fastest within every bound *on this host*; the caller applies it
    (:func:`toolchain.quantize.report.apply_default`, ``mtedge quantize --set-default``).
    `recipe` None: the recipe the bundle's provenance records (export writes it there).
    Raises SpecError for a bad precision, recipe/bundle mismatch or missing labels.
    """
    opts = options or QuantizeOptions()
    t_start = time.perf_counter()
    wanted = list(dict.fromkeys(precisions))
    bad = [p for p in wanted if p not in PRECISIONS]
    if bad or not wanted:
        raise SpecError(f"precision(s) {', '.join(bad) or '(none)'} not supported; choose from {', '.join(PRECISIONS)}")
    bundle = Bundle.open(bundle_path)
    m = bundle.manifest
    if recipe is None:
        if not m.provenance.recipe:
            raise SpecError(f"{bundle_path} records no recipe in its provenance; pass --recipe FILE")
        recipe = parse_recipe(m.provenance.recipe, f"{bundle_path}/manifest.json provenance")
    if "fp32" not in m.variants:
        raise SpecError(f"{bundle_path} has no fp32 variant to quantize; re-export it with `mtedge export`")
    tasks = list(m.tasks)
    if missing := [t for t in tasks if t not in recipe.tasks]:
        raise SpecError(f"recipe {recipe.name!r} has no bound for task(s) {', '.join(missing)} of {bundle_path}; "
                        "pass the recipe the bundle was exported with (--recipe)")
    if list(recipe.input.shape[1:]) != list(m.input.shape[1:]):
        raise SpecError(f"recipe input shape {list(recipe.input.shape)} does not match the bundle's {m.input.shape}")
    labels = has_labels(recipe)
    label_free = (not labels) if label_free is None else label_free
    if not label_free and not labels:
        raise SpecError(f"recipe {recipe.name!r} data ({recipe.data.kind}) has no labels; use --label-free")
    n_calib = calibration_count or recipe.data.calibration_count
    if n_calib < 1:
        raise SpecError(f"calibration count must be >= 1, got {n_calib}")
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, calibration_count=n_calib))
    batch = m.input.batch
    fp32 = {s: SegmentModel(onnx.load(str(bundle.path(e))), "fp32") for s, e in bundle.variant("fp32").segments.items()}
    float32_boundaries = {m.input.name, *(t.output for t in m.tasks.values())}

    report = QuantizeReport(str(bundle_path), m.name, recipe.name, "label-free" if label_free else "labels",
                            opts.margin)
    with progress_bar(transient=True) as progress:
        job = progress.add_task("loading data", total=None)

        def say(msg: str) -> None:
            progress.update(job, description=msg[:90])

        val = load_split(recipe, "val", opts.val_count or recipe.data.val_count, tasks, batch)
        test_n = opts.val_count or recipe.data.val_count if opts.test_count is None else opts.test_count
        test = load_split(recipe, "test", test_n, tasks, batch) if test_n else None
        splits = {k: d for k, d in (("val", val), ("test", test)) if d is not None}
        runners = {k: DatasetRunner(m, d.images, opts.threads) for k, d in splits.items()}
        say("fp32 reference on val/test")
        ref = {k: r.task_outputs(fp32, tasks) for k, r in runners.items()}
        evaluators = {k: TaskEvaluator(recipe, tasks, d.targets, ref[k], label_free) for k, d in splits.items()}
        baseline = {k: e.baseline(ref[k]) for k, e in evaluators.items()}
        bounds = {t: recipe.tasks[t].allowed_drop * (1.0 - opts.margin) for t in tasks}
        for t in tasks:
            report.tasks[t] = TaskBound(evaluators["val"].metric_name(t), recipe.tasks[t].allowed_drop, bounds[t],
                                        {k: b[t] for k, b in baseline.items()})
        golden_x, golden_y = bundle.golden()
        golden_runner = DatasetRunner(m, golden_x, opts.threads)

        for precision in wanted:
            t0 = time.perf_counter()
            calibration = None
            if precision == "int8":
                say("calibration: fp32 chain on calib images")
                calib_data = load_split(recipe, "calib", n_calib, None, batch)
                calib_runner = DatasetRunner(m, calib_data.images, opts.threads)
                calib = collect_calibration(calib_runner, fp32, calib_data, f"{recipe.data.kind} ({recipe.name})")
                del calib_runner
                quantizer = Int8Quantizer(fp32, calib.samples, opts.int8)
                result = control(runners["val"], evaluators["val"], baseline["val"], bounds, quantizer,
                                 top_k=opts.top_k, progress=say, pool=evaluator)
                models, float_layers = result.models, result.float_layers
                seg_precision = {s: ("fp32" if sm.key == "fp32" else "mixed" if float_layers.get(s) else "int8")
                                 for s, sm in models.items()}
                calibration = {**calib.provenance, "method": "nncf.quantize (post-training, ONNX backend)",
                               "nncf": nncf.__version__, **opts.int8.as_dict(),
                               "accuracy_control": {"split": "val", "samples": len(val), "margin": opts.margin,
                                                    "quantize_calls": quantizer.calls}}
                info: dict[str, Any] = {"float_layers": float_layers, "decisions": result.decisions,
                                        "unresolved": result.unresolved,
                                        "quantized_layers": {s: len(v) for s, v in result.quantized.items()}}
            else:
                say("fp16 conversion")
                models = {s: SegmentModel(to_fp16(sm.model, s, float32_boundaries), "fp16") for s, sm in fp32.items()}
                seg_precision = {s: "fp16" for s in models}
                float_layers = {}
                info = {"float16_ops": sorted({op for sm in models.values() for op in float16_ops(sm.model)}),
                        "boundaries": "float32 at the model input and task outputs, float16 between segments"}
            say(f"{precision}: scoring val/test")
            scores = {}
            for k, runner in runners.items():
                outs = runner.task_outputs(models, tasks)
                values = evaluators[k].score(outs)
                drops = evaluators[k].drops(baseline[k], values)
                limit = bounds if k == "val" else {t: recipe.tasks[t].allowed_drop for t in tasks}
                scores[k] = {t: {"value": values[t], "drop": drops[t], "within_bound": bool(drops[t] <= limit[t])}
                             for t in tasks}
                scores[k + "_max_abs_error"] = max_abs_errors(outs, ref[k])
            golden_err = max_abs_errors(golden_runner.task_outputs(models, tasks), golden_y)
            ok = all(v["within_bound"] for v in scores["val"].values())
            tolerance = tolerances(precision, golden_err, scores["val_max_abs_error"], golden_y)
            metrics = {"mode": report.mode, "val_samples": len(val),
                       "test_samples": len(test) if test is not None else 0,
                       "tasks": {t: {"metric": report.tasks[t].metric, "fp32_val": baseline["val"][t],
                                     "val": scores["val"][t]["value"], "val_drop": scores["val"][t]["drop"],
                                     **({"fp32_test": baseline["test"][t], "test": scores["test"][t]["value"],
                                         "test_drop": scores["test"][t]["drop"]} if "test" in scores else {}),
                                     "allowed_drop": recipe.tasks[t].allowed_drop,
                                     "within_bound": scores["val"][t]["within_bound"]} for t in tasks}}
            if ok:
                say(f"{precision}: writing files and manifest")
                segments = write_segment_files(bundle, precision, models, seg_precision, float_layers)
                report.notes += publish_variant(bundle, Variant(
                    name=precision, precision=precision, config=None, tolerance=tolerance, calibration=calibration,
                    metrics=metrics, segments=segments))
            else:
                report.notes.append(f"{precision}: task(s) {', '.join(t for t, v in scores['val'].items() if not v['within_bound'])} "
                                       "stay out of bounds; the variant was not written (loosen allowed_drop or add calibration data)")
            report.variants[precision] = VariantResult(
                ok, seg_precision, scores, seconds=time.perf_counter() - t0, golden_max_abs_error=golden_err,
                tolerance=tolerance, calibration=calibration, **info)

        report.variants["fp32"] = VariantResult(True, {s: "fp32" for s in fp32}, {
            k: {t: {"value": baseline[k][t], "drop": 0.0, "within_bound": True} for t in tasks} for k in baseline})
        bundle = Bundle.open(bundle_path)
        present = [v for v in ["fp32", *wanted] if v in bundle.manifest.variants and report.written(v)]
        for v in present:
            report.variants[v].bytes = _variant_bytes(bundle, v)
        say("OpenVINO CPU: golden agreement")
        from toolchain.quantize.latency import (BF16_ROW, bf16_native, compile_chains, fastest_within_bounds,
                                                measure)

        threads = max(opts.threads, 1)
        chains = compile_chains(bundle, present[1:], threads)
        for v in present[1:]:
            _check_openvino(bundle, chains[v], report)
        if present[1:]:
            bundle.save_manifest()  # each variant's metrics now record the host check
        if opts.latency_runs:
            say("OpenVINO CPU latency")
            lat = measure(bundle, present, runs=opts.latency_runs, threads=threads, bf16=True, compiled=chains)
            fp32_ms = lat["fp32"]["latency_ms"]
            for v in present:
                result = report.variants[v]
                result.latency = lat[v]
                result.speedup_vs_fp32 = fp32_ms / lat[v]["latency_ms"]
                # a variant that does not pay its way on this host is marked, never recommended
                result.slower_than_fp32 = lat[v]["latency_ms"] > fp32_ms
            if BF16_ROW in lat:
                report.bf16 = {"native": bf16_native(), "latency": lat[BF16_ROW],
                               "speedup_vs_fp32": fp32_ms / lat[BF16_ROW]["latency_ms"],
                               "note": "the fp32 files at INFERENCE_PRECISION_HINT=bf16 (the CPU plugin's default "
                                       "where bf16 is native); compare with the int8 row"}
            passed_over: dict[str, str] = {}
            best = fastest_within_bounds(lat, present, passed_over,
                                         {v: report.variants[v].openvino_agreement for v in present[1:]})
            report.recommendation = _recommend_default(bundle, best, passed_over)
            report.notes.append(report.recommendation.explain())
    report.ok = all(report.written(p) for p in wanted)
    report.seconds = time.perf_counter() - t_start
    if report_dir is not None:
        write_report(report, Path(report_dir))
    return report


def _check_openvino(bundle: Bundle, chain: Any, report: QuantizeReport) -> None:
    """Record whether OpenVINO's CPU plugin computes the chain's variant within its tolerance, in the
    report and in the variant's manifest metrics (``openvino_agreement``, read by CPU build plans);
    say so when not. The caller saves the manifest."""
    from toolchain.quantize.latency import openvino_agreement
    from toolchain.targets.openvino_builder import openvino_version

    variant = chain.variant
    result = report.variants[variant]
    result.openvino_agreement = openvino_agreement(bundle, chain)
    recorded = bundle.manifest.variants[variant]
    recorded.metrics = {**(recorded.metrics or {}),
                        OPENVINO_AGREEMENT: {"openvino": openvino_version(), "tasks": result.openvino_agreement}}
    if off := disagreement(result.openvino_agreement):
        advice = openvino_advice(recorded)
        hint = f" ({advice})" if advice else ""
        report.notes.append(f"{variant}: OpenVINO on this host does not reproduce the variant on its golden samples: "
                            f"{off}{hint}. The variant is kept (it is defined and measured in onnxruntime); "
                            "do not run it with the OpenVINO backend here")


def _recommend_default(bundle: Bundle, best: str, passed_over: dict[str, str]) -> DefaultRecommendation:
    """The default-variant recommendation for machines like this host; the manifest is not touched."""
    m = bundle.manifest
    blocked = tuple(k for k, e in m.engines.items() if e.variant == m.default_variant) if best != m.default_variant else ()
    return DefaultRecommendation(best, m.default_variant, "this host (OpenVINO CPU, median latency)", blocked,
                                 passed_over)


def _variant_bytes(bundle: Bundle, variant: str) -> int:
    return int(sum({seg.file: seg.bytes for seg in bundle.variant(variant).segments.values()}.values()))


