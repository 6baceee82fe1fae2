"""The C++ runtime through its Python binding, checked against onnxruntime on the same bundle.

Tests that take ``backend`` run twice: on OpenVINO, and on the TensorRT backend linked against
the TensorRT/CUDA test double (tests/doubles/tensorrt_double.py; engines built by the fake
``tensorrt`` module, executed by the fake libnvinfer)."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from toolchain.errors import BundleError, MtedgeError
from toolchain.runtime import BundleFileNotFoundError, BundleIntegrityError, InputError, Runtime
from support.toy_bundle import make_toy_bundle, reference_outputs

from doubles import tensorrt_double
from doubles.tensorrt_double import native, open_runtime

TOL = 1e-4
SCHEMA = Path(__file__).resolve().parent.parent / "toolchain" / "bundle" / "manifest.schema.json"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = make_toy_bundle(tmp_path_factory.mktemp("rt") / "toy.mtb", seed=7, samples=2)
    tensorrt_double.add_engines(out)  # engines.<jetson target>: what backend="tensorrt" loads
    return out


@pytest.fixture(scope="module", params=["openvino", "tensorrt"])
def backend(request) -> str:
    if request.param == "tensorrt" and tensorrt_double.double_module() is None:
        pytest.skip(tensorrt_double.skip_reason())
    return request.param


@pytest.fixture(scope="module")
def rt(bundle, backend) -> Runtime:
    return open_runtime(bundle, backend, precision="f32")


@pytest.fixture(scope="module")
def inputs(bundle) -> np.ndarray:
    golden = np.load(bundle / "golden" / "input.npy")
    rand = np.random.default_rng(123).uniform(-3, 3, size=(2, *golden.shape[1:])).astype(np.float32)
    return np.concatenate([golden, rand])


def test_toy_manifest_matches_schema(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(manifest)


def test_every_task_subset_matches_onnxruntime(rt, bundle, inputs):
    ref = reference_outputs(bundle, inputs)
    subsets = [list(c) for r in range(1, 5) for c in itertools.combinations(rt.tasks, r)]
    assert len(subsets) == 15
    for i, x in enumerate(inputs):
        for subset in subsets:
            out = rt.run(x[None], tasks=subset)
            assert sorted(out) == sorted(subset)
            for t in subset:
                assert out[t].shape == ref[t][i].shape[:0] + tuple(rt.output_spec(t)["shape"])
                np.testing.assert_allclose(out[t][0], ref[t][i], atol=TOL, rtol=0,
                                           err_msg=f"task {t} in {subset}, sample {i}")


def test_golden_outputs_match(rt, bundle):
    x = np.load(bundle / "golden" / "input.npy")
    for t in rt.tasks:
        golden = np.load(bundle / "golden" / f"{t}.npy")
        got = np.concatenate([rt.run(s[None], task=t)[t] for s in x])
        np.testing.assert_allclose(got, golden, atol=TOL, rtol=0)


def test_shared_segments_run_once_per_call(bundle, backend):
    rt = open_runtime(bundle, backend)
    assert rt.backend == backend
    x = np.zeros(rt.input_spec()["shape"], np.float32)
    assert rt.plan(["normals", "seg"]) == ["trunk", "neck", "seg", "normals"]
    rt.run(x, tasks=["seg", "normals", "cls"])
    rt.run(x, task="depth")
    runs = {k.split("/")[1]: v["runs"] for k, v in rt.stats()["segments"].items()}
    assert runs == {"trunk": 2, "neck": 1, "cls": 1, "seg": 1, "depth": 1, "normals": 1}
    s = rt.stats()
    assert s["runs"] == 2 and s["compile_ms"] > 0 and s["load_ms"] >= s["compile_ms"]


def test_variants_stay_resident_and_match_onnxruntime(bundle, inputs, backend):
    rt = open_runtime(bundle, backend, variant=["fp32", "c50"])
    assert rt.variants == ["fp32", "c50"]
    for v in ("c50", "fp32", "c50"):  # switching back and forth: no reload, right numbers
        ref = reference_outputs(bundle, inputs[:1], variant=v)
        out = rt.run(inputs[:1], variant=v)
        for t in rt.tasks:
            np.testing.assert_allclose(out[t], ref[t], atol=TOL, rtol=0, err_msg=f"{v}/{t}")
    with pytest.raises(native(backend).UnknownNameError, match="was not loaded"):
        open_runtime(bundle, backend).run(inputs[:1], variant="c50")


def test_input_is_zero_copy_and_never_converted(rt, backend):
    shape = tuple(rt.input_spec()["shape"])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    x.setflags(write=False)  # read-only memory is fine: inputs are only read
    rt.run(x, task="cls")
    s = rt.stats()
    assert s["zero_copy_input"] is (backend == "openvino")  # TensorRT copies it to the device
    assert s["last_input_address"] == x.ctypes.data
    big = np.zeros((1, 3, 38, 23), np.float32)
    with pytest.raises(ValueError, match=r"non-contiguous array of shape \[1, 3, 19, 23\]"):
        rt.run(big[:, :, ::2], task="cls")
    with pytest.raises(native(backend).InputError, match=r"input 'image'.*float32.*\[1, 3, 19, 23\]; got float64"):
        rt.run(x.astype(np.float64), task="cls")
    with pytest.raises(ValueError, match=r"got float32 array of shape \[3, 19, 23\]"):
        rt.run(x[0], task="cls")


def test_reused_and_alternating_input_buffers_are_read_every_call(rt, bundle, inputs):
    """The backend re-wraps the caller's input only when the pointer changes: a buffer refilled in
    place, and two buffers taking turns, must both give each frame's own outputs."""
    shape = tuple(rt.input_spec()["shape"])
    want = [reference_outputs(bundle, inputs[i:i + 1].reshape(shape)) for i in range(2)]
    frame = np.empty(shape, np.float32)
    for i in (0, 1, 0):
        frame[...] = inputs[i:i + 1].reshape(shape)  # same address, new content
        np.testing.assert_allclose(rt.run(frame, task="cls")["cls"], want[i]["cls"], atol=TOL)
    a, b = (np.ascontiguousarray(inputs[i:i + 1].reshape(shape)) for i in range(2))
    for x, w in ((a, want[0]), (b, want[1]), (a, want[0])):
        np.testing.assert_allclose(rt.run(x, task="cls")["cls"], w["cls"], atol=TOL)
        assert rt.stats()["last_input_address"] == x.ctypes.data


def test_outputs_belong_to_the_caller(rt):
    shape = tuple(rt.input_spec()["shape"])
    a = rt.run(np.ones(shape, np.float32), task="seg")["seg"]
    keep = a.copy()
    b = rt.run(np.full(shape, -2.0, np.float32), task="seg")["seg"]
    np.testing.assert_array_equal(a, keep)  # a later call does not overwrite an earlier result
    assert not np.shares_memory(a, b) and a.flags.writeable and a.dtype == np.float32


def test_run_reads_no_files_after_load(bundle, tmp_path, inputs, backend):
    copy = tmp_path / "gone.mtb"
    shutil.copytree(bundle, copy)
    rt = open_runtime(copy, backend)
    shutil.rmtree(copy)
    out = rt.run(inputs[:1])
    ref = reference_outputs(bundle, inputs[:1])
    for t in rt.tasks:
        np.testing.assert_allclose(out[t], ref[t], atol=TOL, rtol=0)


def test_unknown_task_and_variant_name_the_choices(rt, backend):
    x = np.zeros(rt.input_spec()["shape"], np.float32)
    with pytest.raises(KeyError) as e:
        rt.run(x, task="sgm")
    assert str(e.value) == "unknown task 'sgm'; this bundle has tasks: cls, seg, depth, normals"
    assert isinstance(e.value, MtedgeError)
    with pytest.raises(native(backend).UnknownNameError,
                       match="unknown variant 'int8'; this bundle has variants: c50, fp32"):
        rt.run(x, task="seg", variant="int8")
    with pytest.raises(InputError, match="not both"):
        rt.run(x, task="seg", tasks=["cls"])


def test_bad_bundles_and_options(bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        Runtime(tmp_path / "nope.mtb", backend="openvino")
    empty = tmp_path / "empty.mtb"
    empty.mkdir()
    with pytest.raises(BundleFileNotFoundError, match="no manifest.json"):
        Runtime(empty, backend="openvino")
    bad = tmp_path / "bad.mtb"
    shutil.copytree(bundle, bad)
    seg = bad / "segments" / "fp32" / "seg.onnx"
    data = bytearray(seg.read_bytes())
    data[-5] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="'segments/fp32/seg.onnx' has sha256") as e:
        Runtime(bad, backend="openvino")
    assert isinstance(e.value, ValueError) and isinstance(e.value, BundleError)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["format_version"] = 9
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 1, got 9"):
        Runtime(bad, backend="openvino")
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        Runtime(bundle, backend="cuda")
    with pytest.raises(ValueError, match="precision 'int4'"):
        Runtime(bundle, backend="openvino", precision="int4")
    with pytest.raises(ValueError, match="threads=0"):
        Runtime(bundle, backend="openvino", threads=0)


def test_backend_choice(bundle):
    from mtedge_runtime import _runtime

    assert Runtime(bundle, backend="auto", threads=1).backend == (
        "tensorrt" if _runtime.tensorrt_available() else "openvino")
    if not _runtime.tensorrt_compiled():
        with pytest.raises(ValueError, match="not compiled into this build"):
            Runtime(bundle, backend="tensorrt")


def test_bf16_precision_loads_and_runs_close(bundle, inputs):
    rt = Runtime(bundle, backend="openvino", precision="bf16")
    ref = reference_outputs(bundle, inputs[:1], tasks=["depth"])
    np.testing.assert_allclose(rt.run(inputs[:1], task="depth")["depth"], ref["depth"], atol=0.1)


def test_one_runtime_shared_by_threads(rt, bundle, inputs):
    ref = reference_outputs(bundle, inputs)
    combos = [["cls"], ["seg", "depth"], ["normals", "seg"], rt.tasks]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for j in range(40):
                i, tasks = (k + j) % len(inputs), combos[(k * 3 + j) % len(combos)]
                out = rt.run(inputs[i][None], tasks=tasks)
                for t in tasks:
                    np.testing.assert_allclose(out[t][0], ref[t][i], atol=TOL, rtol=0)
        except BaseException as e:  # noqa: BLE001  surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    before = rt.stats()["runs"]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    assert rt.stats()["runs"] - before == 160


def test_tensorrt_backend_copies_input_and_matches_openvino(bundle, inputs):
    """The TensorRT backend (through the double) is really the one running: device buffers, an
    H2D copy of the input, and the same numbers as OpenVINO on random input."""
    if tensorrt_double.double_module() is None:
        pytest.skip(tensorrt_double.skip_reason())
    trt = open_runtime(bundle, "tensorrt")
    ov = open_runtime(bundle, "openvino")
    x = np.ascontiguousarray(inputs[3:4])
    a, b = trt.run(x), ov.run(x)
    s = trt.stats()
    assert s["backend"] == "tensorrt" and s["zero_copy_input"] is False
    for t in trt.tasks:
        np.testing.assert_allclose(a[t], b[t], atol=TOL, rtol=0, err_msg=t)
    x[...] = 0  # the input was copied at run time: changing it now changes nothing already returned
    np.testing.assert_allclose(a["cls"], b["cls"], atol=TOL, rtol=0)
    with pytest.raises(native("tensorrt").UnknownNameError, match="unknown engine target 'host-cpu'"):
        open_runtime(bundle, "tensorrt", engine_target="host-cpu")
