"""`mtedge run` / `mtedge bench` and the runtime on a bundle written by the real exporter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolchain.bench_runtime import BenchReport, bench_bundle
from toolchain.bundle.task_model import task_model
from toolchain.cli import main
from toolchain.runtime import Runtime
from support.toy_bundle import make_toy_bundle, reference_outputs

BENCH_KEYS = {"switch_overhead_pct", "reload_speedup", "multitask_speedup", "runtime_overhead_pct",
              "python_call_overhead_us", "rss_all_tasks_mb", "rss_separate_models_mb", "tasks"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_toy_bundle(tmp_path_factory.mktemp("cli") / "toy.mtb", seed=3, samples=2)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MTEDGE_NO_PROGRESS", "1")


def test_run_npy_and_png(bundle, tmp_path, capsys):
    out = tmp_path / "seg.npy"
    assert main(["run", str(bundle), "--task", "seg", "--input", str(bundle / "golden" / "input.npy"),
                 "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "seg" in text and "[1, 4, 19, 23]" in text and "trunk -> neck -> seg" in text
    x = np.load(bundle / "golden" / "input.npy")[:1]
    np.testing.assert_allclose(np.load(out), reference_outputs(bundle, x, ["seg"])["seg"], atol=1e-4)

    from PIL import Image
    png = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (31, 17, 3), dtype=np.uint8)).save(png)
    assert main(["run", str(bundle), "--task", "cls", "--task", "depth", "--input", str(png),
                 "--output", str(tmp_path / "o.npz")]) == 0
    assert "top: class" in capsys.readouterr().out
    assert sorted(np.load(tmp_path / "o.npz").files) == ["cls", "depth"]


def test_run_unknown_task_exits_2_with_the_choices(bundle, capsys):
    assert main(["run", str(bundle), "--task", "sgm", "--input", str(bundle / "golden" / "input.npy")]) == 2
    assert "unknown task 'sgm'; this bundle has tasks: cls, seg, depth, normals" in capsys.readouterr().err


def test_task_model_merges_segments_exactly(bundle):
    import onnxruntime as ort

    x = np.load(bundle / "golden" / "input.npy")[:1]
    for t in ("seg", "cls"):
        sess = ort.InferenceSession(task_model(bundle, t).SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"image": x})[0], reference_outputs(bundle, x, [t])[t], atol=1e-5)


def test_bench_writes_json_with_the_contracted_keys(bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(bundle), "--iters", "10", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert BENCH_KEYS <= set(doc)
    r = BenchReport.from_dict(doc)
    assert set(r.tasks) == {"cls", "seg", "depth", "normals"}
    assert all(v.median_ms > 0 and v.p90_ms >= v.median_ms for v in r.tasks.values())
    assert r.reload_speedup > 1 and r.rss_all_tasks_mb > 0
    assert r.raw_openvino_max_abs_diff < 1e-5  # the raw baseline computes the same thing
    assert "side by side" in capsys.readouterr().out


def test_real_exporter_bundle(tmp_path):
    from toolchain import export
    from toolchain.model import load

    loaded = load("zoo:fashion-mt")
    path = tmp_path / "fashion-mt.mtb"
    export.export_bundle(loaded, loaded.recipe, path, golden_samples=2)
    rt = Runtime(path, backend="openvino")
    x = np.load(path / "golden" / "input.npy")
    ref = reference_outputs(path, x)
    for i in range(len(x)):
        out = rt.run(x[i:i + 1])
        for t in rt.tasks:
            np.testing.assert_allclose(out[t][0], ref[t][i], atol=1e-4, rtol=0, err_msg=t)
    trunk_runs = rt.stats()["segments"][f"{rt.variants[0]}/{rt.plan(rt.tasks)[0]}"]["runs"]
    assert trunk_runs == len(x)  # once per frame for all tasks together
    r = bench_bundle(path, iters=5, warmup=1, rss=False, progress=False)
    assert set(r.tasks) == set(rt.tasks)
    # the report's ratio is the ratio of its own medians (a figure that is wired up, not a timing claim)
    assert r.multitask_speedup == pytest.approx(
        r.separate_models_per_frame["median_ms"] / r.all_tasks_one_call["median_ms"])
    assert BenchReport.from_dict(json.loads(json.dumps(r.to_dict()))) == r  # the JSON document reads back whole
