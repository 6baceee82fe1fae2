"""`mtedge build`: OpenVINO builds verified on golden I/O, TensorRT through test doubles, device scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from doubles import tensorrt_double
from doubles.fake_engine import parse_engine
from doubles.fake_tensorrt import make_fake_tensorrt
from doubles.fixtures import DOUBLES, _toy_master, toy_bundle, trtexec_on_path  # noqa: F401 (fixtures)
from toolchain.bundle.manifest import Bundle
from toolchain.cli import main
from toolchain.errors import BundleError, VerificationError
from toolchain.targets import build as b
from toolchain.bundle.manifest import schema as manifest_schema
from toolchain.targets.plan import BuildOptions
from toolchain.targets.profile import list_profiles, load_profile

JETSON10 = [n for n, p in list_profiles().items() if n.startswith("jetson") and p.buildable()[0]]


def _manifest(bundle: Path) -> dict:
    m = json.loads((bundle / "manifest.json").read_text())
    jsonschema.validate(m, manifest_schema())
    return m


def _check_engine_files(bundle: Path, entry: dict) -> None:
    import hashlib

    for ref in entry["segments"].values():
        data = (bundle / ref["file"]).read_bytes()
        assert len(data) == ref["bytes"] and hashlib.sha256(data).hexdigest() == ref["sha256"]


def test_host_cpu_build_verifies_and_records(toy_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(toy_bundle), "--target", "host-cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("verified") == 3
    m = _manifest(toy_bundle)
    assert set(m["engines"]) == {"host-cpu", "host-cpu@fp16", "host-cpu@int8"}
    for key, entry in m["engines"].items():
        assert entry["backend"] == "openvino" and entry["verification"]["status"] == "passed"
        assert set(entry["segments"]) == {"trunk", "seg", "cls"}
        _check_engine_files(toy_bundle, entry)
    fp32 = m["engines"]["host-cpu"]["verification"]["tasks"]
    assert all(t["max_abs_err"] <= 1e-4 for t in fp32.values())
    assert m["engines"]["host-cpu@int8"]["verification"]["tasks"]["cls"]["tolerance"] == 0.15
    assert not list((toy_bundle / "engines").glob(".staging-*"))  # staging cleaned up
    assert not list(toy_bundle.glob(".manifest.json.tmp-*"))


def test_blobs_chain_through_the_dag(toy_bundle: Path) -> None:
    """The recorded blobs alone (imported as a reader would) reproduce the golden outputs."""
    import openvino as ov

    from toolchain.bundle.executor import run_dag

    b.build(toy_bundle, load_profile("host-cpu"), BuildOptions(variants=("fp32",)))
    m = _manifest(toy_bundle)
    entry, core = m["engines"]["host-cpu"], ov.Core()
    from toolchain.targets.openvino_builder import blob_runner

    runners = {s: blob_runner(core, toy_bundle / r["file"], entry["built_with"]["config"])
               for s, r in entry["segments"].items()}
    x = np.load(toy_bundle / "golden/input.npy")
    env = run_dag(Bundle.open(toy_bundle).manifest, "fp32", runners, x[:1])  # the typed manifest
    np.testing.assert_allclose(env["cls"], np.load(toy_bundle / "golden/cls.npy")[:1], atol=1e-4)


def test_failed_verification_records_nothing(toy_bundle: Path) -> None:
    golden = toy_bundle / "golden/cls.npy"
    arr = np.load(golden) + 1.0
    np.save(golden, arr)
    m = json.loads((toy_bundle / "manifest.json").read_text())
    import hashlib

    m["golden"]["outputs"]["cls"].update(sha256=hashlib.sha256(golden.read_bytes()).hexdigest(),
                                         bytes=golden.stat().st_size)
    (toy_bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(VerificationError, match="task|cls"):
        b.build(toy_bundle, load_profile("host-cpu"), BuildOptions(variants=("fp32",)))
    assert _manifest(toy_bundle)["engines"] == {}
    assert not (toy_bundle / "engines/host-cpu").exists()


def test_tampered_segment_is_named(toy_bundle: Path) -> None:
    with open(toy_bundle / "segments/seg.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"segments/seg.onnx (does not match|has \d+ bytes)"):
        b.build(toy_bundle, load_profile("host-cpu"), BuildOptions(variants=("fp32",)))


def test_no_tensorrt_here_says_how_to_build_on_device(toy_bundle: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert main(["build", str(toy_bundle), "--target", "jetson-orin-nano-8gb"]) == 2
    err = capsys.readouterr().err
    assert "--emit-script" in err and "--import-engines" in err and "copy" in err
    assert main(["build", str(toy_bundle), "--target", "jetson-agx-xavier", "--emit-script", "x.sh"]) == 2
    assert "TensorRT 10 API" in capsys.readouterr().err


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_python_api_build_with_fake_tensorrt(toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    trt = make_fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    result = b.build(toy_bundle, load_profile("jetson-agx-orin-64gb"), BuildOptions(variants=("fp16", "int8")))
    assert result.via == "python-api"
    names = [c[0] for c in trt.calls]
    # per segment: Builder -> network -> parser.parse -> config -> workspace -> flags -> timing cache -> build
    first = names[names.index("Builder"):names.index("build_serialized_network") + 1]
    assert first[:4] == ["Builder", "create_network", "OnnxParser", "parse_from_file"]
    assert first.index("create_builder_config") < first.index("set_memory_pool_limit") < first.index("set_timing_cache")
    assert names.count("build_serialized_network") == 6
    assert ("set_memory_pool_limit", ("WORKSPACE", 4096 << 20)) in trt.calls
    flags = [c[1] for c in trt.calls if c[0] == "set_flag"]
    nets = {c[1] for c in trt.calls if c[0] == "create_network"}
    if version.startswith("10"):
        assert flags == ["FP16"] * 3 + ["INT8"] * 3 and nets == {0}
        assert ("clear_flag", "TF32") in trt.calls
    else:
        assert flags == [] and nets == {0}  # strongly typed implicitly; no precision flags exist
    assert ("clear_flag", "TF32") in trt.calls
    caches = [c[1] for c in trt.calls if c[0] == "create_timing_cache"]
    assert caches[0] == 0 and caches[1] > 0  # the cache is carried from one segment to the next
    m = _manifest(toy_bundle)
    entry = m["engines"]["jetson-agx-orin-64gb@fp16"]
    assert entry["built_with"]["tensorrt"] == version and entry["built_with"]["via"] == "python-api"
    assert entry["built_with"]["strongly_typed"] is version.startswith("11")
    assert entry["verification"]["status"] == "not-run"  # no CUDA here
    assert (toy_bundle / "engines/jetson-agx-orin-64gb/timing.cache").read_bytes().startswith(b"tactic;")
    _check_engine_files(toy_bundle, entry)


def test_python_api_dla_and_parse_failure(toy_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = make_fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    b.build(toy_bundle, load_profile("jetson-orin-nx-16gb"), BuildOptions(variants=("int8",), dla=True, dla_core=1))
    assert ("default_device_type", "DLA") in trt.calls and ("DLA_core", 1) in trt.calls
    assert ("set_flag", "GPU_FALLBACK") in trt.calls
    assert _manifest(toy_bundle)["engines"]["jetson-orin-nx-16gb@int8"]["device"] == "DLA:1"
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.3.0", parse_ok=False))
    with pytest.raises(Exception, match="could not parse segments/trunk.onnx: fake parser error 0"):
        b.build(toy_bundle, load_profile("jetson-orin-nx-16gb"), BuildOptions(variants=("fp32",)))


def test_trtexec_build_with_double(toy_bundle: Path, trtexec_on_path: Path) -> None:
    result = b.build(toy_bundle, load_profile("jetson-orin-nano-4gb"), BuildOptions(variants=("fp16",)))
    assert result.via == "trtexec"
    calls = [json.loads(line) for line in trtexec_on_path.read_text().splitlines()]
    assert calls[0]["argv"] == ["--help"] and len(calls) == 4
    assert all("--memPoolSize=workspace:1024M" in c["argv"] and "--fp16" in c["argv"] for c in calls[1:])
    entry = _manifest(toy_bundle)["engines"]["jetson-orin-nano-4gb@fp16"]
    assert entry["built_with"]["via"] == "trtexec" and entry["built_with"]["tensorrt"] == "10.3.0"
    _check_engine_files(toy_bundle, entry)


def test_trtexec_wrong_major_refused(toy_bundle: Path, trtexec_on_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRTEXEC_VERSION", "8502")
    with pytest.raises(Exception, match="is TensorRT 8.5.2 but target 'jetson-orin-nano-4gb' expects TensorRT 10.3"):
        b.build(toy_bundle, load_profile("jetson-orin-nano-4gb"))


def test_trtexec_double_rejects_bad_usage(tmp_path: Path) -> None:
    exe = str(DOUBLES / "trtexec")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    for args, err in [(["--onnx=" + str(onnx), "--bogus"], "Unknown option: --bogus"),
                      (["--onnx=/nope.onnx"], "Cannot read ONNX"),
                      (["--onnx=" + str(onnx), "--stronglyTyped", "--fp16"], "strongly typed"),
                      (["--onnx=" + str(onnx), "--allowGPUFallback"], "requires --useDLACore"),
                      (["--onnx=" + str(onnx), "--saveEngine=/no/such/dir/x.plan"], "Cannot open engine")]:
        p = subprocess.run([exe, *args], capture_output=True, text=True)
        assert p.returncode == 1 and err in p.stderr, (args, p.stderr)


@pytest.mark.parametrize("target", JETSON10)
def test_emitted_script_runs_with_trtexec_double(toy_bundle: Path, trtexec_on_path: Path, tmp_path: Path,
                                                 target: str) -> None:
    script = tmp_path / f"build-{target}.sh"
    dla = load_profile(target).dla_cores > 0
    args = ["build", str(toy_bundle), "--target", target, "--emit-script", str(script)] + (["--dla"] if dla else [])
    assert main(args) == 0
    assert os.access(script, os.X_OK)
    p = subprocess.run(["bash", str(script), str(toy_bundle)], capture_output=True, text=True,
                       env={**os.environ, "TRTEXEC": ""})
    assert p.returncode == 0, p.stderr + p.stdout
    calls = [json.loads(line)["argv"] for line in trtexec_on_path.read_text().splitlines()]
    n_variants = 2 if dla else 3
    assert len(calls) == 1 + 3 * n_variants  # version probe + one command per segment
    if dla:
        assert all("--useDLACore=0" in c and "--allowGPUFallback" in c for c in calls[1:])
    record = json.loads((toy_bundle / f"engines/{target}/build-record.json").read_text())
    assert record["tensorrt"] == "10.3.0" and len(record["engines"]) == 3 * n_variants
    assert main(["build", str(toy_bundle), "--target", target, "--import-engines"]) == 0
    m = _manifest(toy_bundle)
    keys = {k for k in m["engines"] if k.startswith(target)}
    assert len(keys) == n_variants
    for k in keys:
        assert m["engines"][k]["verification"]["status"] == "not-run"
        _check_engine_files(toy_bundle, m["engines"][k])


def test_script_refuses_wrong_trtexec_and_changed_onnx(toy_bundle: Path, trtexec_on_path: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "s.sh"
    b.emit_script(toy_bundle, load_profile("jetson-orin-nano-8gb"), BuildOptions(variants=("fp32",)), script)
    env = {**os.environ, "FAKE_TRTEXEC_VERSION": "110100"}
    p = subprocess.run(["bash", str(script), str(toy_bundle)], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "TensorRT 11.1.0" in p.stderr
    with open(toy_bundle / "segments/cls.onnx", "ab") as f:
        f.write(b"\0")
    p = subprocess.run(["bash", str(script), str(toy_bundle)], capture_output=True, text=True)
    assert p.returncode != 0 and "cls.onnx" in p.stdout + p.stderr
    env = {**os.environ, "PATH": "/usr/bin:/bin", "TRTEXEC": ""}
    p = subprocess.run(["bash", str(script), str(toy_bundle)], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "trtexec not found" in p.stderr


def test_import_rejects_engine_from_other_onnx(toy_bundle: Path, trtexec_on_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    b.emit_script(toy_bundle, load_profile("jetson-orin-nano-8gb"), BuildOptions(variants=("fp32",)), script)
    assert subprocess.run(["bash", str(script), str(toy_bundle)], capture_output=True).returncode == 0
    rec = toy_bundle / "engines/jetson-orin-nano-8gb/build-record.json"
    data = json.loads(rec.read_text())
    data["engines"][0]["onnx_sha256"] = "0" * 64
    rec.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="built from a different segments/trunk.onnx"):
        b.import_engines(toy_bundle, load_profile("jetson-orin-nano-8gb"))


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_host_cpu_engines_run_in_runtime(toy_bundle: Path, variant: str) -> None:
    """Acceptance: the recorded OpenVINO blobs load in the C++ runtime and reproduce the golden outputs."""
    from toolchain.runtime import Runtime

    result = b.build(toy_bundle, load_profile("host-cpu"), BuildOptions(variants=(variant,)))
    key = next(iter(result.entries))
    rt = Runtime(toy_bundle, backend="openvino", variant=variant, engine_target=key)
    x = np.load(toy_bundle / "golden/input.npy")
    m = _manifest(toy_bundle)
    for task in ("cls", "seg"):
        got = np.concatenate([rt.run(np.ascontiguousarray(x[i:i + 1]), task=task)[task] for i in range(len(x))])
        tol = m["engines"][key]["verification"]["tasks"][task]["tolerance"]
        assert np.abs(got - np.load(toy_bundle / f"golden/{task}.npy")).max() <= tol


def test_exporter_toy_bundle_builds_for_host_cpu(tmp_path: Path) -> None:
    """The exporter's own toy bundle (shared segment 'neck', two variants) builds and verifies too."""
    from support.toy_bundle import make_toy_bundle

    bundle = make_toy_bundle(tmp_path / "exp.mtb")
    result = b.build(bundle, load_profile("host-cpu"))
    m = _manifest(bundle)
    assert set(result.entries) <= set(m["engines"]) and len(result.entries) == len(m["variants"])
    assert all(e["verification"]["status"] == "passed" for e in result.entries.values())
    refs = {e["variant"]: e["verification"]["reference"] for e in result.entries.values()}
    assert refs == {v: ("onnxruntime" if d.get("config") else "golden") for v, d in m["variants"].items()}


@pytest.mark.parametrize("via", ["python-api", "trtexec"])
def test_built_engines_run_in_the_runtime_through_the_double(toy_bundle: Path, trtexec_on_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    """Both build paths write the one engine format the fake libnvinfer reads: the engines they
    record for every variant (fp32, fp16, int8 Q/DQ) load in the C++ TensorRT backend and give
    OpenVINO's numbers on the same variant."""
    if via == "python-api":
        monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(tensorrt_double.TENSORRT_VERSION))
    target = "jetson-orin-nano-8gb"
    result = b.build(toy_bundle, load_profile(target), BuildOptions())
    assert result.via == via
    engines = _manifest(toy_bundle)["engines"]
    assert {e["variant"] for e in engines.values()} == {"fp32", "fp16", "int8"}
    for entry in engines.values():
        for segment, ref in entry["segments"].items():
            engine = parse_engine((toy_bundle / ref["file"]).read_bytes())
            assert engine.version == (10, 3, 0) and engine.name.split(".")[0] == segment  # ONNX file stem
            assert engine.activation_bytes % 256 == 0
    if tensorrt_double.double_module() is None:
        pytest.skip(tensorrt_double.skip_reason())
    x = np.load(toy_bundle / "golden" / "input.npy")
    for key, entry in engines.items():
        variant = entry["variant"]
        trt = tensorrt_double.open_runtime(toy_bundle, "tensorrt", engine_target=key, variant=variant)
        ov = tensorrt_double.open_runtime(toy_bundle, "openvino", variant=variant)
        for task in trt.tasks:
            got = np.concatenate([trt.run(s[None], task=task, variant=variant)[task] for s in x])
            want = np.concatenate([ov.run(s[None], task=task, variant=variant)[task] for s in x])
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=f"{key}/{task}")
        if variant == "fp32":
            np.testing.assert_allclose(got, np.load(toy_bundle / "golden" / f"{task}.npy"), atol=1e-4, rtol=0)
