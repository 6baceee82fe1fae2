"""Reliability under load and faults (docs/reliability.md): runtimes shared and closed across
threads, hostile bundles from Python, output directories that cannot be written, exit codes."""

from __future__ import annotations

import errno
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.errors import OutputError
from toolchain.runtime import BundleFormatError, InputError, Runtime
from support.toy_bundle import make_toy_bundle, reference_outputs

TOL = 1e-4


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_toy_bundle(tmp_path_factory.mktemp("rel") / "toy.mtb", seed=3, samples=2)


@pytest.fixture(scope="module")
def inputs(bundle) -> np.ndarray:
    return np.load(bundle / "golden" / "input.npy")


def _run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(k: int) -> None:
        try:
            target(k)
        except BaseException as e:  # noqa: BLE001  surfaced to the test
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a runtime call hung"
    return errors


def test_several_runtimes_in_parallel_threads(bundle, inputs):
    ref = reference_outputs(bundle, inputs)
    runtimes = [Runtime(bundle, backend="openvino", threads=1) for _ in range(3)]

    def worker(k: int) -> None:
        rt = runtimes[k]
        for j in range(30):
            i = (k + j) % len(inputs)
            out = rt.run(inputs[i][None])
            for t in rt.tasks:
                np.testing.assert_allclose(out[t][0], ref[t][i], atol=TOL, rtol=0)

    errors = _run_threads(3, worker)
    assert not errors, errors[0]
    assert [rt.stats()["runs"] for rt in runtimes] == [30, 30, 30]


def test_closing_a_runtime_while_threads_call_it_gives_a_clean_error(bundle, inputs):
    rt = Runtime(bundle, backend="openvino", threads=1)
    started = threading.Barrier(4)
    outcome: dict[int, str] = {}

    def worker(k: int) -> None:
        started.wait()
        n = 0
        while True:
            try:
                rt.run(inputs[:1])
                n += 1
            except InputError as e:
                assert "closed" in str(e) and "create a new Runtime" in str(e)
                outcome[k] = f"closed after {n} calls"
                return

    def closer(k: int) -> None:
        if k == 3:
            started.wait()
            while rt.stats()["runs"] < 20:  # let the callers get going first
                pass
            rt.close()
        else:
            worker(k)

    errors = _run_threads(4, closer)
    assert not errors, errors[0]
    assert len(outcome) == 3  # every caller saw the clean error, none crashed or hung
    assert rt.closed and "closed" in repr(rt)
    rt.close()  # idempotent
    with pytest.raises(InputError, match="closed"):
        rt.run(inputs[:1])
    with pytest.raises(InputError, match="closed"):
        rt.input_spec()
    with Runtime(bundle, backend="openvino") as scoped:
        scoped.run(inputs[:1])
    assert scoped.closed


def _hostile(bundle: Path, tmp_path: Path, name: str, edit) -> Path:
    copy = tmp_path / name
    shutil.copytree(bundle, copy, symlinks=True)
    m = json.loads((copy / "manifest.json").read_text())
    edit(copy, m)
    (copy / "manifest.json").write_text(json.dumps(m))
    return copy


def test_hostile_bundles_are_named_errors_from_python(bundle, tmp_path):
    def rank9(_, m):
        m["input"]["shape"] = [1] * 9

    def huge(_, m):
        m["input"]["shape"] = [65536, 65536, 65536, 1]

    def escape(copy, m):
        ref = m["golden"]["input"]
        outside = tmp_path / "outside.npy"
        shutil.copy(copy / ref["file"], outside)
        (copy / ref["file"]).unlink()
        (copy / ref["file"]).symlink_to(outside)
        seg = next(iter(m["variants"][m["default_variant"]]["segments"].values()))
        shutil.copy(copy / seg["file"], tmp_path / "outside.onnx")
        (copy / seg["file"]).unlink()
        (copy / seg["file"]).symlink_to(tmp_path / "outside.onnx")

    cases = {"rank9": (rank9, "1 to 8"), "huge": (huge, "more than"), "escape": (escape, "outside the bundle")}
    for name, (edit, message) in cases.items():
        with pytest.raises(BundleFormatError, match=message):
            Runtime(_hostile(bundle, tmp_path, name + ".mtb", edit), backend="openvino")


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_unwritable_output_directory_is_a_named_error(code, tmp_path, monkeypatch, fashion_recipe):
    from toolchain.bundle import files
    from toolchain.export import export_bundle
    from toolchain.model import load, save_checkpoint

    loaded = load("zoo:fashion-mt")

    def refuse(*_a, **_k):
        raise OSError(code, "simulated")

    monkeypatch.setattr(files.os, "replace", refuse)  # the publishing rename of every artifact
    why = "read-only" if code == errno.EROFS else "disk is full"
    with pytest.raises(OutputError, match=f"cannot write .*out.mtb.*: .*{why}"):
        export_bundle(loaded, fashion_recipe, tmp_path / "out.mtb", golden_samples=1)
    assert not (tmp_path / "out.mtb").exists() and not list(tmp_path.glob("out.mtb.tmp-*"))
    monkeypatch.setattr("toolchain.model.os.replace", refuse)
    with pytest.raises(OutputError, match=f"cannot write .*c.pt: .*{why}"):
        save_checkpoint(tmp_path / "c.pt", loaded.module, "zoo:fashion-mt", fashion_recipe)
    assert list(tmp_path.iterdir()) == []


def test_compress_quantize_fails_when_a_variant_is_not_written(tmp_path, monkeypatch):
    from toolchain import export, quantize
    from toolchain.cli import cli

    monkeypatch.setattr(export, "export_bundle", lambda *a, **k: None)
    from toolchain.quantize.report import QuantizeReport, VariantResult

    monkeypatch.setattr(quantize, "quantize_bundle", lambda *a, **k: QuantizeReport(
        "q.mtb", "q", "r", "labels", 0.2, variants={"int8": VariantResult(False, {}, {})},
        notes=["int8: task(s) garment stay out of bounds"]))
    r = CliRunner().invoke(cli, ["compress", "zoo:fashion-mt", "--quantize", "int8", "--test-count", "8",
                                 "-o", str(tmp_path / "q.mtb")])
    assert r.exit_code == 1, r.output
    assert "variant(s) int8 not written" in r.output and "garment stay out of bounds" in r.output
