"""The C++ runtime through its Python binding, checked against onnxruntime on the same bundle.

Tests that take ``backend`` run twice: on OpenVINO, and on the TensorRT backend linked against
the TensorRT/CUDA test double (tests/doubles/tensorrt_double.py; engines built by the fake
``tensorrt`` module, executed by the fake libnvinfer)."""

from __future__ import annotations

import itertools
import json
import os
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


def test_fitting_input_is_read_in_place(rt, bundle, backend):
    """float32, C-contiguous, the input's shape: OpenVINO reads the caller's memory itself (numpy
    array, numpy view into a batch, torch CPU tensor, DLPack capsule, bare __array_interface__);
    TensorRT copies host memory to the device and says so."""
    import torch

    shape = tuple(rt.input_spec()["shape"])
    rng = np.random.default_rng(1)
    batch = rng.standard_normal((3, *shape[1:])).astype(np.float32)
    batch.setflags(write=False)  # read-only memory is fine: inputs are only read
    view = batch[1:2]  # a view at an offset, still C-contiguous
    t = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    class Bare:  # only the numpy protocol, no numpy type
        def __init__(self, a):
            self.__array_interface__ = a.__array_interface__

    cases = [(view, view.ctypes.data, view), (t, t.data_ptr(), t.numpy()),
             (t.__dlpack__(), t.data_ptr(), t.numpy()), (Bare(view), view.ctypes.data, view)]
    for x, address, data in cases:
        out = rt.run(x, task="cls")
        np.testing.assert_allclose(out["cls"], reference_outputs(bundle, data, tasks=["cls"])["cls"],
                                   atol=TOL, rtol=0)
        s = rt.stats()
        assert s["last_input_address"] == address, type(x)
        if backend == "openvino":
            assert s["zero_copy_input"] is True and s["last_input_copy"] == ""
            rt.run(x, task="cls", copy=False)  # nothing to copy: allowed
        else:
            assert s["last_input_copy"] == "host -> device (the tensorrt backend reads device memory)"
            with pytest.raises(native(backend).InputError, match=r"would be copied \(host -> device"):
                rt.run(x, task="cls", copy=False)


def test_input_that_does_not_fit_is_copied_and_says_why(rt, bundle, backend):
    import torch

    shape = tuple(rt.input_spec()["shape"])
    x = np.random.default_rng(2).uniform(-2, 2, shape).astype(np.float32)
    nchw_from_nhwc = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).permute(0, 3, 1, 2)
    big = np.zeros((1, 3, 38, 23), np.float32)
    big[:, :, ::2] = x
    cases = [  # (input, why it is copied, the values the model sees)
        (x.astype(np.float64), "float64 -> float32", x),
        (torch.from_numpy(x).half(), "float16 -> float32", x.astype(np.float16).astype(np.float32)),
        (torch.from_numpy(x).bfloat16(), "bfloat16 -> float32", torch.from_numpy(x).bfloat16().float().numpy()),
        (nchw_from_nhwc, "non-contiguous strides (5244, 4, 276, 12) bytes; C-contiguous float32 "
                         "[1, 3, 19, 23] has (5244, 1748, 92, 4)", x),
        (big[:, :, ::2], "non-contiguous strides (10488, 3496, 184, 4) bytes", x),
    ]
    err = native(backend).InputError
    for data, why, seen in cases:
        out = rt.run(data, tasks=["seg", "cls"])
        ref = reference_outputs(bundle, seen, tasks=["seg", "cls"])
        for t in ("seg", "cls"):
            np.testing.assert_allclose(out[t], ref[t], atol=TOL, rtol=0, err_msg=why)
        assert rt.stats()["last_input_copy"].startswith(why)
        with pytest.raises(err, match=r"input 'image' would be copied \(" + why.split(" ")[0]):
            rt.run(data, task="cls", copy=False)
    # What no copy fixes: the current errors stay.
    with pytest.raises(ValueError, match=r"got float32 array of shape \[3, 19, 23\]"):
        rt.run(x[0], task="cls")
    with pytest.raises(err, match=r"input 'image' has dtype uint8; expected float32"):
        rt.run(x.astype(np.uint8), task="cls")
    with pytest.raises(err, match=r"must be a tensor.*got list"):
        rt.run(x.tolist(), task="cls")
    with pytest.raises(err, match=r"__dlpack__\(\) failed.*detach"):
        rt.run(torch.from_numpy(x).requires_grad_(), task="cls")


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


def _frames(n: int, shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, size=(n, *shape)).astype(np.float32)


def test_concurrent_callers_match_serial_runs(bundle, backend):
    """callers=3 contexts, 5 threads (so some wait for a context), 24 frames each with varying
    task sets: every output equals what one serial call on the same frame gives (onnxruntime)."""
    rt = open_runtime(bundle, backend, callers=3)
    shape = tuple(rt.input_spec()["shape"])
    frames = _frames(24, shape[1:], seed=11)
    ref = reference_outputs(bundle, frames)
    combos = [["cls"], ["seg", "depth"], ["normals", "seg"], rt.tasks, ["depth"]]
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def worker(k: int) -> None:
        try:
            start.wait()
            for j in range(24):
                i, tasks = (k * 7 + j) % len(frames), combos[(k + j) % len(combos)]
                out = rt.run(frames[i][None], tasks=tasks)
                for t in tasks:
                    np.testing.assert_allclose(out[t][0], ref[t][i], atol=TOL, rtol=0, err_msg=f"{t} frame {i}")
        except BaseException as e:  # noqa: BLE001  surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    s = rt.stats()
    assert s["runs"] == 120 and s["contexts"] == 3 and len(s["per_context"]) == 3
    assert sum(c["runs"] for c in s["per_context"]) == 120
    # A context returns to the pool as soon as its run ends and the last one freed is handed out
    # first: a second context only ever runs when two calls overlapped.
    assert sum(c["runs"] > 0 for c in s["per_context"]) >= 2, s["per_context"]


def test_weights_are_compiled_once_whatever_the_callers(bundle, backend):
    one = open_runtime(bundle, backend, callers=1).stats()
    four = open_runtime(bundle, backend, callers=4).stats()
    two_variants = open_runtime(bundle, backend, callers=4, variant=["fp32", "c50"]).stats()
    assert one["compiled_segments"] == four["compiled_segments"] == 6  # trunk, neck, 4 heads
    assert two_variants["compiled_segments"] == 12
    # Activations are per context: exactly four times the boundary tensors of one.
    assert four["intermediate_bytes"] == 4 * one["intermediate_bytes"]
    assert (one["contexts"], four["contexts"]) == (1, 4)
    if backend == "openvino":  # CPU streams, one per caller as far as the cores go (2 on 2 cores)
        assert one["parallel_lanes"] == 1
        assert min(2, os.cpu_count()) <= four["parallel_lanes"] <= 4
    with pytest.raises(native(backend).InputError, match="callers=0 must be between 1 and 64"):
        native(backend).Runtime(str(bundle), backend=backend, callers=0)
    with pytest.raises(InputError, match="callers=0 must be a positive integer"):
        Runtime(bundle, callers=0)


def test_a_context_serves_every_loaded_variant(bundle, backend, inputs):
    rt = open_runtime(bundle, backend, callers=2, variant=["fp32", "c50"])
    refs = {v: reference_outputs(bundle, inputs, variant=v, tasks=["seg"]) for v in rt.variants}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for j in range(12):
                v, i = rt.variants[(k + j) % 2], j % len(inputs)
                got = rt.run(inputs[i][None], task="seg", variant=v)["seg"][0]
                np.testing.assert_allclose(got, refs[v]["seg"][i], atol=TOL, rtol=0, err_msg=f"{v} {i}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]


def test_close_while_runs_are_in_flight(bundle, backend):
    """close() waits for the runs holding a context, callers waiting for one give up, and every
    call either returns right numbers or raises InputError("... closed ...")."""
    rt = open_runtime(bundle, backend, callers=2)
    shape = tuple(rt.input_spec()["shape"])
    frames = _frames(4, shape[1:], seed=5)
    ref = reference_outputs(bundle, frames, tasks=["seg"])
    done: list[int] = []
    errors: list[BaseException] = []
    closed = native(backend).InputError
    started = threading.Barrier(5)

    def worker(k: int) -> None:
        n = 0
        started.wait()
        try:
            while True:
                i = (k + n) % len(frames)
                out = rt.run(frames[i][None], task="seg")
                np.testing.assert_allclose(out["seg"][0], ref["seg"][i], atol=TOL, rtol=0)
                n += 1
        except closed as e:
            if "closed" not in str(e):
                errors.append(e)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        done.append(n)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    started.wait()
    while rt.stats()["runs"] < 8:
        threading.Event().wait(0.002)
    rt.close()
    assert rt.closed
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors[0]
    assert len(done) == 4 and sum(done) >= 8
    with pytest.raises(closed, match="closed"):
        rt.run(frames[:1], task="seg")


def test_tensorrt_backend_copies_host_input_and_matches_openvino(bundle, inputs):
    """The TensorRT backend (through the double) is really the one running: device buffers, an
    H2D copy of a host input, and the same numbers as OpenVINO on random input."""
    if tensorrt_double.double_module() is None:
        pytest.skip(tensorrt_double.skip_reason())
    trt = open_runtime(bundle, "tensorrt")
    ov = open_runtime(bundle, "openvino")
    x = np.ascontiguousarray(inputs[3:4])
    a, b = trt.run(x), ov.run(x)
    s = trt.stats()
    assert s["backend"] == "tensorrt" and s["zero_copy_input"] is False
    assert s["last_input_copy"].startswith("host -> device")
    for t in trt.tasks:
        np.testing.assert_allclose(a[t], b[t], atol=TOL, rtol=0, err_msg=t)
    x[...] = 0  # the input was copied at run time: changing it now changes nothing already returned
    np.testing.assert_allclose(a["cls"], b["cls"], atol=TOL, rtol=0)
    with pytest.raises(native("tensorrt").UnknownNameError, match="unknown engine target 'host-cpu'"):
        open_runtime(bundle, "tensorrt", engine_target="host-cpu")


class _FakeDevice:
    """Device memory of the TensorRT double: its libcudart (the one the double's binding links)
    through ctypes, with the real CUDA API names."""

    def __init__(self):
        import ctypes

        self.ct = ctypes
        self.lib = ctypes.CDLL(str(tensorrt_double.module_dir().parent / "libcudart.so"))
        self.stream = ctypes.c_void_p()
        assert self.lib.cudaStreamCreateWithFlags(ctypes.byref(self.stream), 1) == 0
        self.blocks: list[int] = []

    def upload(self, host: np.ndarray, offset: int = 0) -> int:
        """Copies `host` into a fresh allocation at `offset` bytes; returns the device address."""
        ct = self.ct
        ptr = ct.c_void_p()
        assert self.lib.cudaMalloc(ct.byref(ptr), ct.c_size_t(host.nbytes + offset)) == 0
        self.blocks.append(ptr.value)
        dst = ct.c_void_p(ptr.value + offset)
        src = np.ascontiguousarray(host)
        assert self.lib.cudaMemcpyAsync(dst, ct.c_void_p(src.ctypes.data), ct.c_size_t(src.nbytes), 1,
                                        self.stream) == 0
        assert self.lib.cudaStreamSynchronize(self.stream) == 0
        return ptr.value + offset

    def close(self):
        for p in self.blocks:
            self.lib.cudaFree(self.ct.c_void_p(p))
        self.lib.cudaStreamDestroy(self.stream)


class _CudaTensor:
    """The __cuda_array_interface__ (v3) of a device tensor, as torch/cupy/numba give it."""

    def __init__(self, ptr: int, shape, typestr: str = "<f4", strides=None, stream=None):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3, "stream": stream}


def test_tensorrt_binds_device_input_directly(bundle, inputs):
    if tensorrt_double.double_module() is None:
        pytest.skip(tensorrt_double.skip_reason())
    rt = open_runtime(bundle, "tensorrt", callers=2)
    err = native("tensorrt").InputError
    shape = tuple(rt.input_spec()["shape"])
    frames = _frames(3, shape[1:], seed=21)
    ref = reference_outputs(bundle, frames)
    dev = _FakeDevice()
    try:
        ptrs = [dev.upload(f[None]) for f in frames]
        for i in (0, 1, 2, 0):  # several device tensors taking turns, then back to a host array
            out = rt.run(_CudaTensor(ptrs[i], shape, stream=1), tasks=["cls", "seg"], copy=False)
            s = rt.stats()
            assert s["last_input_address"] == ptrs[i] and s["last_input_copy"] == ""  # no H2D copy
            for t in ("cls", "seg"):
                np.testing.assert_allclose(out[t][0], ref[t][i], atol=TOL, rtol=0, err_msg=f"{t} {i}")
        host = rt.run(frames[2][None], task="seg")["seg"][0]  # the context reads its own buffer again
        np.testing.assert_allclose(host, ref["seg"][2], atol=TOL, rtol=0)
        # A device tensor at an address TensorRT cannot bind (not 256-byte aligned): one D2D copy.
        odd = dev.upload(frames[1][None], offset=4)
        out = rt.run(_CudaTensor(odd, shape), task="seg")
        assert rt.stats()["last_input_copy"].startswith(f"address {odd:#x} is not 256-byte aligned")
        np.testing.assert_allclose(out["seg"][0], ref["seg"][1], atol=TOL, rtol=0)
        with pytest.raises(err, match="would be copied \\(address"):
            rt.run(_CudaTensor(odd, shape), task="seg", copy=False)
        # What the runtime does not do on the device: convert dtypes, gather strides.
        with pytest.raises(err, match=r"float64 device tensor.*x.contiguous\(\).float\(\)"):
            rt.run(_CudaTensor(ptrs[0], shape, typestr="<f8"), task="seg")
        with pytest.raises(err, match=r"non-contiguous device tensor"):
            rt.run(_CudaTensor(ptrs[0], shape, strides=(5244, 4, 276, 12)), task="seg")
        host_mem = np.zeros(shape, np.float32)
        with pytest.raises(err, match=r"is not a CUDA device allocation"):
            rt.run(_CudaTensor(host_mem.ctypes.data, shape), task="seg")
    finally:
        dev.close()
    with pytest.raises(InputError, match=r"CUDA device memory but the openvino backend reads host memory"):
        open_runtime(bundle, "openvino").run(_CudaTensor(ptrs[0], shape), task="seg")
