"""Build planning is plain data from (manifest, profile, options): one test per rule, every target."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, asdict
from pathlib import Path

import pytest

from doubles.fixtures import _toy_master  # noqa: F401 (fixture)
from toolchain.bundle.manifest import Bundle, Manifest
from toolchain.targets.plan import BuildOptions, EngineBuildStep, engines_key, plan_build
from toolchain.targets.profile import TargetError, list_profiles, load_profile
from toolchain.targets.trtexec import emit_build_script, parse_trtexec_version, trtexec_args

PROFILES = list_profiles()
BUILDABLE = [n for n, p in PROFILES.items() if p.buildable()[0]]
JETSON10 = [n for n in BUILDABLE if n.startswith("jetson")]


@pytest.fixture(scope="module")
def manifest(_toy_master: Path) -> Manifest:  # noqa: F811
    return Bundle.open(_toy_master).manifest


@pytest.mark.parametrize("target", BUILDABLE)
def test_plan_per_target_is_plain_data(manifest: dict, target: str) -> None:
    prof = PROFILES[target]
    plan = plan_build(manifest, prof, BuildOptions())
    assert [vp.variant for vp in plan.variants] == ["fp32", "fp16", "int8"]
    assert [vp.key for vp in plan.variants] == [target, f"{target}@fp16", f"{target}@int8"]
    assert len(plan.steps) == 9 and all(isinstance(s, EngineBuildStep) for s in plan.steps)
    assert [s.segment for s in plan.variants[0].steps] == ["trunk", "seg", "cls"]  # manifest (topological) order
    json.dumps([asdict(s) for s in plan.steps])  # plain data, serializable
    with pytest.raises(FrozenInstanceError):
        plan.steps[0].segment = "x"  # type: ignore[misc]
    assert plan_build(manifest, prof, BuildOptions()) == plan  # pure: same inputs, same plan
    step = plan.variants[0].steps[0]
    assert step.onnx == "segments/trunk.onnx" and step.onnx_sha256 == manifest.variants["fp32"].segments["trunk"].sha256
    if prof.backend == "tensorrt":
        assert step.engine_path == f"engines/{target}/fp32/trunk.plan"
        assert step.workspace_mb == prof.default_workspace_mb <= prof.memory_mb // 2
        assert step.device == "GPU" and step.dla_core is None and step.strongly_typed is False
        flags = {vp.precision: vp.steps[0].builder_flags for vp in plan.variants}
        assert flags == {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}
        assert step.timing_cache == f"engines/{target}/timing.cache" and step.tf32 is False
    else:
        assert step.engine_path == f"engines/{target}/fp32/trunk.blob" and step.device == "CPU"
        assert dict(step.ov_config)["INFERENCE_PRECISION_HINT"] == "f32"


def test_workspace_scales_with_memory(manifest: dict) -> None:
    ws = {n: plan_build(manifest, PROFILES[n]).steps[0].workspace_mb for n in JETSON10}
    assert ws["jetson-orin-nano-4gb"] < ws["jetson-orin-nano-8gb"] < ws["jetson-agx-orin-64gb"]
    assert plan_build(manifest, PROFILES["jetson-orin-nano-8gb"], BuildOptions(workspace_mb=512)).steps[0].workspace_mb == 512
    with pytest.raises(TargetError, match="more than half"):
        plan_build(manifest, PROFILES["jetson-orin-nano-4gb"], BuildOptions(workspace_mb=3000))


@pytest.mark.parametrize("target", ["jetson-xavier-nx", "jetson-agx-xavier"])
def test_xavier_refused_with_reason(manifest: dict, target: str) -> None:
    with pytest.raises(TargetError) as e:
        plan_build(manifest, PROFILES[target])
    msg = str(e.value)
    assert "TensorRT 8.5.2" in msg and "TensorRT 10 API" in msg and f"mtedge profile --target {target}" in msg


def test_variant_selection_and_errors(manifest: dict) -> None:
    prof = PROFILES["jetson-orin-nx-16gb"]
    plan = plan_build(manifest, prof, BuildOptions(variants=("int8",)))
    assert [vp.key for vp in plan.variants] == ["jetson-orin-nx-16gb@int8"]
    with pytest.raises(TargetError, match="variant 'int4' is not in bundle 'toy'; variants: fp32, fp16, int8"):
        plan_build(manifest, prof, BuildOptions(variants=("int4",)))
    assert engines_key("t", "fp32", "fp32") == "t" and engines_key("t", "fp16", "fp32") == "t@fp16"


def test_dla_rules(manifest: dict) -> None:
    nx = PROFILES["jetson-orin-nx-16gb"]
    plan = plan_build(manifest, nx, BuildOptions(dla=True, dla_core=1))
    assert [vp.variant for vp in plan.variants] == ["fp16", "int8"] and any("fp32" in n for n in plan.notes)
    s = plan.steps[0]
    assert (s.device, s.dla_core, s.builder_flags) == ("DLA", 1, ("FP16", "GPU_FALLBACK"))
    with pytest.raises(TargetError, match="has no DLA cores"):
        plan_build(manifest, PROFILES["jetson-orin-nano-8gb"], BuildOptions(dla=True))
    with pytest.raises(TargetError, match="DLA cores 0..0"):
        plan_build(manifest, PROFILES["jetson-orin-nx-8gb"], BuildOptions(dla=True, dla_core=1))
    with pytest.raises(TargetError, match="variant 'fp32' is fp32"):
        plan_build(manifest, nx, BuildOptions(dla=True, variants=("fp32",)))
    with pytest.raises(TargetError, match="applies to TensorRT targets"):
        plan_build(manifest, PROFILES["host-cpu"], BuildOptions(dla=True))


def test_strong_typing(manifest: dict) -> None:
    orin = PROFILES["jetson-agx-orin-64gb"]
    typed = plan_build(manifest, orin, BuildOptions(strongly_typed=True))
    assert all(s.strongly_typed and s.builder_flags == () for s in typed.steps)
    trt11 = plan_build(manifest, orin, BuildOptions(tensorrt_version="11.1.0"))
    assert all(s.strongly_typed and s.builder_flags == () for s in trt11.steps)
    with pytest.raises(TargetError, match="strongly typed networks only"):
        plan_build(manifest, orin, BuildOptions(tensorrt_version="11.1.0", strongly_typed=False))
    with pytest.raises(TargetError, match="no DLA support"):
        plan_build(manifest, orin, BuildOptions(tensorrt_version="11.1.0", dla=True))


def test_trtexec_args(manifest: dict) -> None:
    prof = PROFILES["jetson-agx-orin-32gb"]
    fp16 = plan_build(manifest, prof, BuildOptions(variants=("fp16",), dla=True)).steps[0]
    args = trtexec_args(fp16)
    assert args[:2] == ["--onnx=segments/trunk.fp16.onnx", "--saveEngine=engines/jetson-agx-orin-32gb/fp16/trunk.plan"]
    assert "--memPoolSize=workspace:4096M" in args and "--fp16" in args and "--noTF32" in args
    assert "--useDLACore=0" in args and "--allowGPUFallback" in args and "--skipInference" in args
    typed = plan_build(manifest, prof, BuildOptions(variants=("int8",), strongly_typed=True)).steps[0]
    t_args = trtexec_args(typed)
    assert "--stronglyTyped" in t_args and "--noTF32" in t_args and not {"--int8", "--fp16"} & set(t_args)
    fp32 = plan_build(manifest, prof, BuildOptions(variants=("fp32",))).steps[0]
    assert "--noTF32" in trtexec_args(fp32) and "--fp16" not in trtexec_args(fp32)


def test_trtexec_version_banner() -> None:
    assert parse_trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec") == (10, 3, 0)
    assert parse_trtexec_version("[TensorRT v8502]") == (8, 5, 2)
    assert parse_trtexec_version("[TensorRT v110100]") == (11, 1, 0)
    with pytest.raises(TargetError, match="could not read the TensorRT version"):
        parse_trtexec_version("command not found")


def test_emit_script_text(manifest: dict) -> None:
    plan = plan_build(manifest, PROFILES["jetson-orin-nano-8gb"], BuildOptions(variants=("fp16",)))
    text = emit_build_script(plan, "toy")
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert text.count("\nbuild ") == 3 and "sha256sum -c" in text and "/usr/src/tensorrt/bin/trtexec" in text
    assert '"$MAJOR" -ne 10' in text and "build-record.json" in text and "--import-engines" in text
    with pytest.raises(TargetError, match="builds here directly"):
        emit_build_script(plan_build(manifest, load_profile("host-cpu")), "toy")


def test_tensorrt_skips_or_refuses_uint8_activations(manifest: Manifest) -> None:
    import copy

    unsigned = copy.deepcopy(manifest)
    v = unsigned.variants["int8"]
    v.calibration = {**(v.calibration or {}), "signed_activations": False}  # mtedge quantize --activations uint8
    jetson = PROFILES[JETSON10[0]]
    plan = plan_build(unsigned, jetson)
    assert [vp.variant for vp in plan.variants] == ["fp32", "fp16"]
    assert any("uint8 activations" in n and "int8" in n for n in plan.notes)
    with pytest.raises(TargetError, match=r"variant 'int8' stores uint8 activations.*--activations int8"):
        plan_build(unsigned, jetson, BuildOptions(variants=("int8",)))
    cpu = next(n for n in BUILDABLE if PROFILES[n].backend == "openvino")
    assert "int8" in [vp.variant for vp in plan_build(unsigned, PROFILES[cpu]).variants]  # OpenVINO takes uint8
    assert [vp.variant for vp in plan_build(manifest, jetson).variants] == ["fp32", "fp16", "int8"]


def test_cpu_plans_skip_a_variant_quantize_saw_openvino_compute_wrongly(manifest: Manifest) -> None:
    import copy

    from toolchain.bundle.manifest import OPENVINO_AGREEMENT

    off = copy.deepcopy(manifest)
    v = off.variants["int8"]
    v.metrics = {**(v.metrics or {}), OPENVINO_AGREEMENT: {"openvino": "2026.4.1", "tasks": {
        "seg": {"max_abs_err": 0.0465, "tolerance": 0.01, "passed": False},
        "cls": {"max_abs_err": 1e-5, "tolerance": 0.01, "passed": True}}}}
    cpu = PROFILES[next(n for n in BUILDABLE if PROFILES[n].backend == "openvino")]
    plan = plan_build(off, cpu)
    assert "int8" not in [vp.variant for vp in plan.variants] and "fp32" in [vp.variant for vp in plan.variants]
    note = next(n for n in plan.notes if "skipped variants int8" in n)
    assert "seg off by 0.0465 > tolerance 0.01 (OpenVINO 2026.4.1" in note and "--activations uint8" in note
    # named, it is built (the golden check after the build decides); TensorRT plans never read it
    assert [vp.variant for vp in plan_build(off, cpu, BuildOptions(variants=("int8",))).variants] == ["int8"]
    assert "int8" in [vp.variant for vp in plan_build(off, PROFILES[JETSON10[0]]).variants]
    v.metrics[OPENVINO_AGREEMENT]["tasks"]["seg"]["passed"] = True
    assert "int8" in [vp.variant for vp in plan_build(off, cpu).variants]


@pytest.mark.parametrize("record", [None, "off", {"tasks": ["seg"]}, {"tasks": {"seg": "off"}},
                                    {"tasks": {"seg": {"passed": False, "max_abs_err": "big", "tolerance": 0.01}}},
                                    {"tasks": {"seg": {"passed": True, "max_abs_err": 0.0, "tolerance": 0.01}}}])
def test_a_recorded_agreement_of_another_shape_reads_as_no_disagreement(manifest: Manifest, record) -> None:
    # metrics are free-form in the format: the runtime reads this record at load, so it never raises on it
    import copy

    from toolchain.bundle.manifest import OPENVINO_AGREEMENT, openvino_disagreement

    v = copy.deepcopy(manifest).variants["int8"]
    v.metrics = {OPENVINO_AGREEMENT: record}
    assert openvino_disagreement(v) == ""
