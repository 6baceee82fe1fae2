"""`mtedge build`: plan, build (OpenVINO here; TensorRT on the device), verify, record in the manifest.

Files are built into ``NAME.mtb/engines/.staging-<pid>/``, verified from there, then renamed into
place; ``manifest.json`` is rewritten last (temp + os.replace). An interrupted or failed build
leaves the previous engines and manifest untouched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from toolchain.version import __version__
from toolchain.errors import BundleError, VerificationError
from toolchain.targets import openvino_builder, tensorrt_builder, trtexec as trtexec_mod
from toolchain.bundle.files import file_ref, read_document, write_bytes_atomic
from toolchain.bundle.manifest import Bundle, Manifest, disagreement, openvino_advice
from mtedge_runtime.manifest import EngineSet, FileRef
from toolchain.targets.plan import BuildOptions, BuildPlan, EngineBuildStep, VariantPlan, plan_build
from toolchain.targets.profile import TargetError, TargetProfile, tensorrt_major
from toolchain.bundle.executor import Runner
from toolchain.targets.verify import reference_kind, report, verify_variant

OnStep = Callable[[EngineBuildStep], None]


class DeviceBuildNeeded(TargetError):
    """TensorRT is not available here: the engines must be built on the device."""


@dataclass
class BuildResult:
    plan: BuildPlan
    via: str                           # "openvino", "python-api", "trtexec" or "import"
    entries: dict[str, dict[str, Any]]  # manifest engines key -> entry


def device_build_instructions(bundle: Path, target: str) -> str:
    name = bundle.name
    return (f"cannot build TensorRT engines for {target!r} on this machine: `import tensorrt` fails and trtexec is "
            f"not on PATH (TensorRT needs the device's GPU). Build on the Jetson instead:\n"
            f"  1. mtedge build {name} --target {target} --emit-script build-{target}.sh\n"
            f"  2. copy {name}/ and build-{target}.sh to the device, then run there: bash build-{target}.sh {name}\n"
            f"  3. copy {name}/engines/{target}/ back into the bundle here and run:\n"
            f"     mtedge build {name} --target {target} --import-engines\n"
            f"  (or install mtedge on the device and run `mtedge build {name} --target {target}` there)")


def _entry(plan: BuildPlan, vp: VariantPlan, bundle: Path, built_with: dict[str, Any],
           verification: dict[str, Any]) -> dict[str, Any]:
    first = vp.steps[0]
    device = first.device if first.dla_core is None else f"DLA:{first.dla_core}"
    return {"backend": plan.backend, "target": plan.target, "variant": vp.variant, "precision": vp.precision,
            "device": device, "built_with": built_with,
            "segments": {s.segment: file_ref(bundle, bundle / s.engine_path) for s in vp.steps},
            "verification": verification}


def _commit(bundle: Path, manifest: Manifest, staged: dict[str, Path], entries_fn: Callable[[], dict[str, dict]],
            extra_files: list[tuple[Path, str]] = ()) -> dict[str, dict]:
    """Move staged files into place, then rewrite the manifest with the new entries."""
    for rel, src in staged.items():
        dst = bundle / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    for src, rel in extra_files:
        if src.is_file():
            (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, bundle / rel)
    entries = entries_fn()
    _record(bundle, manifest, entries)
    return entries


def _record(bundle: Path, manifest: Manifest, entries: dict[str, dict[str, Any]]) -> None:
    """Add engine entries to the manifest (each checked as the typed model) and save it."""
    for key, entry in entries.items():
        manifest.engines[key] = EngineSet.parse(entry, f"engines.{key}", key)
    Bundle(bundle, manifest).save_manifest()


def _staging(bundle: Path) -> Path:
    d = bundle / "engines" / f".staging-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _verify_engines(bundle: Path, manifest: Manifest, plan: BuildPlan, not_run: str,
                    runners_of: Callable[[VariantPlan], dict[str, Runner] | None]) -> dict[str, dict[str, Any]]:
    """Each planned variant's engines against the golden I/O. ``runners_of`` gives None where they
    cannot run here (recorded as not run, for the reason `not_run`); a variant out of tolerance
    raises, so nothing is recorded."""
    verifications: dict[str, dict[str, Any]] = {}
    for vp in plan.variants:
        runners = runners_of(vp)
        if runners is None:
            verifications[vp.variant] = {"status": "not-run", "reason": not_run}
            continue
        checks = verify_variant(bundle, manifest, vp.variant, runners)
        rep = report(checks, manifest.golden.samples, reference_kind(manifest, vp.variant))
        if rep["status"] != "passed":
            advice = openvino_advice(manifest.variant(vp.variant)) if plan.backend == "openvino" else ""
            hint = f" {advice}." if advice else ""
            raise VerificationError(f"{plan.backend} engines of variant {vp.variant!r} for {plan.target!r} differ from "
                                    f"the golden outputs: {disagreement(rep['tasks'])}. Nothing was recorded.{hint}")
        verifications[vp.variant] = rep
    return verifications


def build_openvino(bundle: Path, manifest: Manifest, plan: BuildPlan, *, verify: bool = True,
                   on_step: OnStep = lambda s: None) -> BuildResult:
    staging = _staging(bundle)
    try:
        staged = openvino_builder.build_steps(plan.steps, bundle, manifest, staging, on_step)
        verifications = _verify_engines(bundle, manifest, plan, "--no-verify", lambda vp: (
            openvino_builder.runners_for(list(vp.steps), staged) if verify else None))
        version = openvino_builder.openvino_version()

        def entries() -> dict[str, dict]:
            return {vp.key: _entry(plan, vp, bundle, {"openvino": version, "mtedge": __version__, "device": "CPU",
                                                      "config": dict(vp.steps[0].ov_config)},
                                   verifications[vp.variant]) for vp in plan.variants}

        return BuildResult(plan, "openvino", _commit(bundle, manifest, staged, entries))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _trt_built_with(vp: VariantPlan, profile: TargetProfile, version: str, via: str) -> dict[str, Any]:
    s = vp.steps[0]
    return {"tensorrt": version, "via": via, "mtedge": __version__, "cuda": profile.software.get("cuda"),
            "jetpack": profile.software.get("jetpack"), "compute_capability": profile.data["gpu"]["compute_capability"],
            "strongly_typed": s.strongly_typed, "flags": list(s.builder_flags), "tf32": s.tf32,
            "workspace_mb": s.workspace_mb, "dla_core": s.dla_core}


def _trt_runners(trt: ModuleType, vp: VariantPlan, files: dict[str, Path]) -> dict[str, Runner] | None:
    """Runners over TensorRT engines using torch CUDA tensors as buffers; None without CUDA torch."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    runners: dict[str, Runner] = {}
    for step in vp.steps:
        engine = runtime.deserialize_cuda_engine(files[step.engine_path].read_bytes())
        context = engine.create_execution_context()

        def run(feeds: dict[str, Any], engine: Any = engine, context: Any = context) -> dict[str, Any]:
            import numpy as np

            keep, outs = [], {}
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
                    keep.append(t)
                else:
                    dt = torch.from_numpy(np.zeros(1, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
                    t = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dt, device="cuda")
                    outs[name] = t
                context.set_tensor_address(name, t.data_ptr())
            stream = torch.cuda.current_stream()
            if not context.execute_async_v3(stream.cuda_stream):
                raise TargetError(f"TensorRT failed to run engine {step.engine_path}")
            stream.synchronize()
            return {k: v.cpu().numpy() for k, v in outs.items()}

        runners[step.segment] = run
    return runners


def build_tensorrt(bundle: Path, manifest: Manifest, profile: TargetProfile, options: BuildOptions, *,
                   verify: bool = True, trtexec: str | None = None, trt: ModuleType | None = None,
                   on_plan: Callable[[BuildPlan], None] = lambda p: None,
                   on_step: OnStep = lambda s: None) -> BuildResult:
    """Build with the TensorRT Python API when importable, else trtexec, else DeviceBuildNeeded."""
    trt = trt if trt is not None else tensorrt_builder.import_tensorrt()
    exe = None if trt is not None else trtexec_mod.find_trtexec(trtexec)
    if trt is None and exe is None:
        if trtexec:
            raise TargetError(f"--trtexec {trtexec!r} does not exist")
        raise DeviceBuildNeeded(device_build_instructions(bundle, profile.name))
    if trt is not None:
        options = replace(options, tensorrt_version=options.tensorrt_version or trt.__version__)
    plan = plan_build(manifest, profile, options)
    on_plan(plan)
    for step in plan.steps:
        Bundle(bundle, manifest).path(manifest.variant(step.variant).segments[step.segment])
    staging = _staging(bundle)
    try:
        cache_rel = next((s.timing_cache for s in plan.steps if s.timing_cache), None)
        if trt is not None:
            staged = tensorrt_builder.build_plan_python_api(trt, plan, bundle, staging, on_step)
            version, via = trt.__version__, "python-api"
        else:
            if cache_rel and (bundle / cache_rel).is_file():
                (staging / cache_rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(bundle / cache_rel, staging / cache_rel)
            version, staged = trtexec_mod.run_trtexec_plan(plan, bundle, exe, staging, on_step)
            via = "trtexec"
        not_run = ("--no-verify" if not verify else
                   "no TensorRT runtime with CUDA buffers in this process (trtexec build, or torch without CUDA); "
                   "verify on the device with the mtedge runtime")
        verifications = _verify_engines(bundle, manifest, plan, not_run, lambda vp: (
            _trt_runners(trt, vp, staged) if (trt is not None and verify) else None))

        def entries() -> dict[str, dict]:
            return {vp.key: _entry(plan, vp, bundle, _trt_built_with(vp, profile, version, via),
                                   verifications[vp.variant]) for vp in plan.variants}

        extra = [(staging / cache_rel, cache_rel)] if cache_rel else []
        return BuildResult(plan, via, _commit(bundle, manifest, staged, entries, extra))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build(bundle_path: str | Path, profile: TargetProfile, options: BuildOptions = BuildOptions(), *,
          verify: bool = True, trtexec: str | None = None,
          on_plan: Callable[[BuildPlan], None] = lambda p: None, on_step: OnStep = lambda s: None) -> BuildResult:
    """Build, verify and record engines of every planned variant of a bundle for ``profile``."""
    ok, why = profile.buildable()
    opened = Bundle.open(bundle_path)
    bundle, manifest = opened.root, opened.manifest
    if not ok and options.tensorrt_version is None:
        plan_build(manifest, profile, options)  # raises the full explanation
    if profile.backend == "openvino":
        plan = plan_build(manifest, profile, options)
        on_plan(plan)
        return build_openvino(bundle, manifest, plan, verify=verify, on_step=on_step)
    return build_tensorrt(bundle, manifest, profile, options, verify=verify, trtexec=trtexec,
                          on_plan=on_plan, on_step=on_step)


def emit_script(bundle_path: str | Path, profile: TargetProfile, options: BuildOptions, out: str | Path) -> BuildPlan:
    """Write the device build script for ``profile`` to ``out`` (executable); returns the plan."""
    opened = Bundle.open(bundle_path)
    bundle, manifest = opened.root, opened.manifest
    plan = plan_build(manifest, profile, options)
    name = bundle.name[:-4] if bundle.name.endswith(".mtb") else bundle.name
    text = trtexec_mod.emit_build_script(plan, name)
    out = Path(out)
    write_bytes_atomic(out, text.encode())
    out.chmod(0o755)
    return plan


def import_engines(bundle_path: str | Path, profile: TargetProfile, record: str | Path | None = None) -> BuildResult:
    """Record engines built on the device by the emitted script (``engines/<target>/build-record.json``)."""
    opened = Bundle.open(bundle_path)
    bundle, manifest = opened.root, opened.manifest
    rec_path = Path(record) if record else bundle / "engines" / profile.name / trtexec_mod.RECORD_NAME
    rec = read_document(rec_path, BundleError, f"no build record at {rec_path}; run the emitted script on the device and "
                        f"copy engines/{profile.name}/ back into {bundle}",
                        lambda why: f"{rec_path}: not valid JSON ({why}); the build script was interrupted — run it again")
    if rec.get("format") != "mtedge-engine-record" or rec.get("target") != profile.name:
        raise BundleError(f"{rec_path} is not an engine record for target {profile.name!r} "
                          f"(format {rec.get('format')!r}, target {rec.get('target')!r})")
    version = str(rec["tensorrt"])
    if tensorrt_major(version) != tensorrt_major(profile.tensorrt_version or "0"):
        raise BundleError(f"{rec_path}: engines were built with TensorRT {version}, target {profile.name!r} expects "
                          f"TensorRT {profile.tensorrt_version}")
    digest, built = _record_parts(rec, rec_path)
    by_variant: dict[str, list[dict]] = {}
    for e in built:
        by_variant.setdefault(e["variant"], []).append(e)
    entries: dict[str, dict] = {}
    for variant, engines in by_variant.items():
        if variant not in manifest.variants:
            raise BundleError(f"{rec_path}: variant {variant!r} is not in this bundle; wrong bundle?")
        vsegs = manifest.variant(variant).segments
        missing = set(manifest.segments) - {e["segment"] for e in engines}
        if missing:
            raise BundleError(f"{rec_path}: variant {variant!r} has no engine for segment(s) {', '.join(sorted(missing))}")
        for e in engines:
            if e["onnx_sha256"] != vsegs[e["segment"]].sha256:
                raise BundleError(f"engine {e['file']} was built from a different {vsegs[e['segment']].file} than "
                                  "this bundle's; emit the script again and rebuild on the device")
            Bundle(bundle, manifest).path(FileRef(e["file"], e["sha256"], e["bytes"]))
        d = digest[variant]
        built_with = {"tensorrt": version, "via": "trtexec", "mtedge": __version__,
                      "cuda": profile.software.get("cuda"), "jetpack": profile.software.get("jetpack"),
                      "compute_capability": profile.data["gpu"]["compute_capability"],
                      "strongly_typed": d["strongly_typed"], "flags": d["flags"], "tf32": False,
                      "workspace_mb": d["workspace_mb"], "dla_core": d["dla_core"],
                      "device_model": rec.get("device_model", "")}
        entries[d["key"]] = {
            "backend": "tensorrt", "target": profile.name, "variant": variant, "precision": d["precision"],
            "device": d["device"] if d["dla_core"] is None else f"DLA:{d['dla_core']}", "built_with": built_with,
            "segments": {e["segment"]: {"file": e["file"], "sha256": e["sha256"], "bytes": e["bytes"]} for e in engines},
            "verification": {"status": "not-run",
                             "reason": "built on the device by trtexec; verify there with the mtedge runtime"}}
    _record(bundle, manifest, entries)
    plan = BuildPlan(target=profile.name, backend="tensorrt", tensorrt_version=version, variants=())
    return BuildResult(plan, "import", entries)


def _record_parts(rec: dict[str, Any], path: Path) -> tuple[dict[str, dict], list[dict]]:
    """The plan digest per variant and the engine rows of a device build record, or a named error
    (the record is written by a shell script on the device: a truncated one must not KeyError)."""
    digest = (rec.get("plan") or {}).get("variants")
    built = rec.get("engines")
    if not isinstance(digest, dict) or not isinstance(built, list):
        raise BundleError(f"{path}: the build record has no plan.variants object or engines list; "
                          "run the emitted build script again on the device")
    return digest, built
