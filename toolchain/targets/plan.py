"""Build planning: (manifest, profile, options) -> plain data, no I/O.

``plan_build`` decides everything a build needs (files, precision flags, DLA, workspace,
strong typing) so that the TensorRT Python-API builder, the trtexec runner, the emitted shell
script and the OpenVINO builder all execute the same plan, and so the decisions are unit-testable
per target without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtedge_runtime.manifest import Manifest

from toolchain.bundle.manifest import openvino_disagreement, signed_activations
from toolchain.host_latency import openvino_latency_config
from toolchain.targets.profile import MIN_TENSORRT_MAJOR, TargetError, TargetProfile, tensorrt_major

ENGINE_SUFFIX = {"tensorrt": ".plan", "openvino": ".blob"}
_PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",), "mixed": ("FP16", "INT8")}  # TensorRT BuilderFlag


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked for on the command line.

    ``variants``: variant names to build; empty = every variant whose precision the target supports.
    ``dla``: put engines on DLA core ``dla_core`` with GPU fallback (TensorRT targets with DLA only).
    ``strongly_typed``: None = automatic (TensorRT >= 11 always; TensorRT 10 only when asked).
    ``tensorrt_version``: the TensorRT actually used (e.g. ``tensorrt.__version__``); None = the profile's.
    """

    variants: tuple[str, ...] = ()
    dla: bool = False
    dla_core: int = 0
    strongly_typed: bool | None = None
    workspace_mb: int | None = None
    tensorrt_version: str | None = None


@dataclass(frozen=True)
class EngineBuildStep:
    """One engine: one segment of one variant for one target. Paths are bundle-relative."""

    segment: str
    variant: str
    precision: str
    onnx: str
    onnx_sha256: str
    engine_path: str
    backend: str
    device: str                          # "GPU", "DLA" or "CPU"
    dla_core: int | None = None
    workspace_mb: int | None = None
    strongly_typed: bool = False
    builder_flags: tuple[str, ...] = ()  # TensorRT BuilderFlag names to set (FP16, INT8, GPU_FALLBACK)
    tf32: bool = False                   # TensorRT: keep TF32 (off: fp32 parity at 1e-4)
    timing_cache: str | None = None
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    ov_config: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class VariantPlan:
    """All steps for one variant, and where the manifest records them (``engines[key]``)."""

    key: str
    variant: str
    precision: str
    steps: tuple[EngineBuildStep, ...]


@dataclass(frozen=True)
class BuildPlan:
    target: str
    backend: str
    tensorrt_version: str | None
    variants: tuple[VariantPlan, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> list[EngineBuildStep]:
        return [s for v in self.variants for s in v.steps]


def engines_key(target: str, variant: str, default_variant: str) -> str:
    """``engines`` key in the manifest: ``<target>`` for the default variant, else ``<target>@<variant>``."""
    return target if variant == default_variant else f"{target}@{variant}"


def _trt_flags(precision: str, strongly_typed: bool, dla: bool) -> tuple[str, ...]:
    # strongly typed: precision comes from the ONNX (fp16 tensors, Q/DQ); no precision flags allowed
    flags = () if strongly_typed else _PRECISION_FLAGS[precision]
    return (*flags, "GPU_FALLBACK") if dla else flags


def _without(chosen: list[str], unwanted: list[str], named: bool, notes: list[str], *, refuse: str, skip: str,
             none_left: str) -> list[str]:
    """`chosen` less `unwanted`: a TargetError (`refuse`, ``{v}`` = the first) when the user named the
    variants, else skipped with a note (`skip`, ``{vs}`` = all of them); a TargetError (`none_left`)
    when nothing is left."""
    if not unwanted:
        return chosen
    if named:
        raise TargetError(refuse.format(v=unwanted[0]))
    notes.append(skip.replace("{vs}", ", ".join(unwanted)))
    if not (left := [v for v in chosen if v not in unwanted]):
        raise TargetError(none_left)
    return left


def plan_build(manifest: Manifest, profile: TargetProfile, options: BuildOptions = BuildOptions()) -> BuildPlan:
    """The engines to build for ``manifest`` on ``profile``; raises TargetError when impossible.

    Pure: reads only its arguments. One step per (variant, segment), segments in manifest
    (topological) order.
    """
    target, backend = profile.name, profile.backend
    variants = manifest.variants
    default_variant = manifest.default_variant
    notes: list[str] = []

    if options.variants:
        if unknown := [v for v in options.variants if v not in variants]:
            raise TargetError(f"variant {unknown[0]!r} is not in bundle {manifest.name!r}; "
                              f"variants: {', '.join(variants)}")
        chosen = list(dict.fromkeys(options.variants))
        for v in chosen:
            if variants[v].precision not in profile.precisions:
                raise TargetError(f"target {target!r} does not support precision {variants[v].precision!r} "
                                  f"of variant {v!r}; it supports {', '.join(profile.precisions)}")
    else:
        chosen = [v for v in variants if variants[v].precision in profile.precisions]
        if skipped := [v for v in variants if v not in chosen]:
            notes.append(f"skipped variants with precisions {target} does not support: {', '.join(skipped)}")
        if not chosen:
            raise TargetError(f"no variant of bundle {manifest.name!r} has a precision {target!r} supports "
                              f"({', '.join(profile.precisions)})")

    trt_version: str | None = None
    strongly_typed = False
    if backend == "tensorrt":
        trt_version = options.tensorrt_version or profile.tensorrt_version
        major = tensorrt_major(trt_version or "0")
        if major < MIN_TENSORRT_MAJOR:
            raise TargetError(
                f"target {target!r} has TensorRT {trt_version} (JetPack {profile.software.get('jetpack')}); "
                f"mtedge's TensorRT backend needs the TensorRT {MIN_TENSORRT_MAJOR} API and TensorRT engines only "
                f"load in the TensorRT version that built them, so engines for this target cannot run in mtedge. "
                f"JetPack 5.1 is the last release for Xavier. Options: `mtedge profile --target {target}` "
                f"for latency estimates, or run the bundle on the device's CPU with the OpenVINO backend "
                f"(see docs/targets.md, 'TensorRT versions')")
        chosen = _without(chosen, [v for v in chosen if signed_activations(variants[v]) is False],
                          bool(options.variants), notes,
                          refuse=("variant {v!r} stores uint8 activations (mtedge quantize --activations uint8, for "
                                  "OpenVINO CPUs); TensorRT's explicit quantization takes int8 Q/DQ only. "
                                  f"Re-quantize with --activations int8 for {target!r}"),
                          skip="skipped variants with uint8 activations (TensorRT takes int8 only): {vs}",
                          none_left=(f"every variant of bundle {manifest.name!r} that {target!r} could build stores "
                                     "uint8 activations; re-quantize with --activations int8"))
        strongly_typed = major >= 11 or bool(options.strongly_typed)
        if major >= 11 and options.strongly_typed is False:
            raise TargetError(f"TensorRT {trt_version} builds strongly typed networks only; drop --no-strongly-typed "
                              "(precision comes from the ONNX: fp16 tensors, Q/DQ nodes)")
        if options.dla:
            if profile.dla_cores == 0:
                raise TargetError(f"target {target!r} has no DLA cores; drop --dla "
                                  f"(DLA exists on Orin NX, AGX Orin and Xavier modules)")
            if not 0 <= options.dla_core < profile.dla_cores:
                raise TargetError(f"--dla-core {options.dla_core} does not exist on {target!r}; "
                                  f"it has DLA cores 0..{profile.dla_cores - 1}")
            if major >= 11:
                raise TargetError(f"TensorRT {trt_version} has no DLA support (absent in TensorRT 11.0-11.3); "
                                  "drop --dla or build with TensorRT 10 (JetPack 6)")
            chosen = _without(chosen, [v for v in chosen if variants[v].precision == "fp32"], bool(options.variants),
                              notes, refuse=("DLA runs fp16/int8 only; variant {v!r} is fp32. Pick an fp16 or int8 "
                                             "variant (--variant), or drop --dla"),
                              skip="--dla: skipped fp32 variants {vs} (DLA runs fp16/int8 only)",
                              none_left="DLA runs fp16/int8 only and this bundle has only fp32 variants; drop --dla")
    elif options.dla:
        raise TargetError(f"--dla applies to TensorRT targets; {target!r} uses {backend}")
    else:
        # a variant quantize saw OpenVINO compute off its tolerance is left out unless named: named,
        # it is built and the golden check after the build decides (another OpenVINO may be right)
        off = {v: openvino_disagreement(variants[v]) for v in chosen if v not in options.variants}
        chosen = _without(chosen, [v for v in chosen if off.get(v)], False, notes, refuse="",
                          skip=("skipped variants {vs}: OpenVINO computed them off their tolerance when quantized ("
                                + "; ".join(f"{v}: {why}" for v, why in off.items() if why)
                                + "). `mtedge quantize --activations uint8` makes int8 variants for OpenVINO CPUs; "
                                  "--variant builds one anyway, checked against the golden outputs"),
                          none_left=f"OpenVINO computed every variant of bundle {manifest.name!r} off its tolerance "
                                    "when quantized; re-quantize with --activations uint8")

    workspace = options.workspace_mb or profile.default_workspace_mb
    if workspace > profile.memory_mb // 2:
        raise TargetError(f"workspace {workspace} MB is more than half of {target!r}'s {profile.memory_mb} MB "
                          f"(memory is shared with the CPU); use --workspace-mb <= {profile.memory_mb // 2}")
    suffix = ENGINE_SUFFIX[backend]
    if manifest.input.dynamic_batch:
        notes.append("dynamic_batch bundle: engines are built for batch 1 (the manifest's shapes)")
    if backend == "tensorrt":
        settings: dict[str, Any] = dict(device="DLA" if options.dla else "GPU", workspace_mb=workspace, tf32=False,
                                        dla_core=options.dla_core if options.dla else None,
                                        strongly_typed=strongly_typed, timing_cache=f"engines/{target}/timing.cache")
    else:
        ov_precision = profile.data.get("build", {}).get("inference_precision", "f32")
        settings = dict(device="CPU", ov_config=tuple(openvino_latency_config(ov_precision).items()))

    vplans: list[VariantPlan] = []
    for v in chosen:
        vdata = variants[v]
        flags = _trt_flags(vdata.precision, strongly_typed, options.dla) if backend == "tensorrt" else ()
        steps = []
        for seg in manifest.segments:  # a parsed manifest has a file for every segment in every variant
            sd = vdata.segments[seg]
            steps.append(EngineBuildStep(segment=seg, variant=v, precision=vdata.precision, onnx=sd.file,
                                         onnx_sha256=sd.sha256, engine_path=f"engines/{target}/{v}/{seg}{suffix}",
                                         backend=backend, inputs=tuple((t.name, tuple(t.shape)) for t in sd.inputs),
                                         builder_flags=flags, **settings))
        vplans.append(VariantPlan(key=engines_key(target, v, default_variant), variant=v, precision=vdata.precision,
                                  steps=tuple(steps)))
    return BuildPlan(target=target, backend=backend, tensorrt_version=trt_version, variants=tuple(vplans),
                     notes=tuple(notes))
