"""Export: partition -> ONNX segments -> bundle; verify; atomicity; tamper detection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import numpy as np
import onnx
import pytest
import torch

from cli_helpers import MTEDGE, mtedge
from toolchain.bundle import Bundle
from toolchain.bundle.manifest import schema
from toolchain.bundle.executor import ReferenceExecutor
from toolchain.errors import BundleError, SpecError
from toolchain.export import export_bundle
from support.architectures import EXPORT_SHAPES, recipe_for
from toolchain.verify import verify_bundle


def _manifest(path):
    return json.loads((path / "manifest.json").read_text())


def test_fashion_bundle_layout_schema_and_verify(fashion_bundle):
    doc = _manifest(fashion_bundle)
    jsonschema.validate(doc, schema())
    assert doc["input"]["shape"] == [1, 1, 28, 28] and doc["input"]["normalization"]["std"] == [0.353]
    assert doc["tasks"]["denoise"]["segments"] == ["trunk", "denoise"]
    assert doc["segments"]["trunk"]["shared"] and doc["segments"]["trunk"]["tasks"] == ["garment", "group", "silhouette", "denoise"]
    for seg in doc["variants"]["fp32"]["segments"].values():
        model = onnx.load(fashion_bundle / seg["file"])
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version >= 17
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        assert [i.name for i in model.graph.input] == [s["name"] for s in seg["inputs"]]
    assert set(doc["task_models"]) == set(doc["tasks"])
    assert doc["provenance"]["model_sha256"] and doc["provenance"]["tools"]["torch"].startswith("2.13.0")
    report = verify_bundle(fashion_bundle)
    assert report.ok and all(r.max_abs_error <= 1e-4 for r in report.variants["fp32"].values())


def test_mobilenet_bundle_verifies(mobilenet_bundle):
    doc = _manifest(mobilenet_bundle)
    assert list(doc["segments"]) == ["trunk", "cls", "seg", "depth"]
    assert len(doc["segments"]["seg"]["inputs"]) == 2  # skip connection + deep features
    assert mtedge("verify", mobilenet_bundle).returncode == 0


@pytest.mark.parametrize("shape_name", sorted(EXPORT_SHAPES))
def test_export_shapes_match_torch(shape_name, tmp_path):
    torch.manual_seed(0)
    model = EXPORT_SHAPES[shape_name]().eval()
    recipe = recipe_for(model)
    result = export_bundle(model, recipe, tmp_path / "b.mtb", golden_samples=2)
    assert max(result.max_abs_error.values()) <= 1e-4
    bundle = Bundle.open(tmp_path / "b.mtb")
    # any subset of tasks runs the union of their paths, each segment once
    for task in bundle.tasks:
        assert bundle.segments_for([task]) == bundle.manifest.tasks[task].segments
    everything = bundle.segments_for(bundle.tasks)
    assert everything == list(bundle.manifest.segments) and len(set(everything)) == len(everything)
    x, expected = bundle.golden()
    ref = ReferenceExecutor(bundle)
    with torch.no_grad():
        out = model(torch.from_numpy(x[:1].copy()))
    got = ref.run(x[:1])
    for t in bundle.tasks:
        np.testing.assert_allclose(got[t], out[t].numpy(), atol=1e-4)


def test_branches_at_different_depths_has_a_segment_per_branch_point(tmp_path):
    model = EXPORT_SHAPES["branches_at_different_depths"]().eval()
    part = export_bundle(model, recipe_for(model), tmp_path / "b.mtb", golden_samples=1).partition
    assert part.segments["early"].inputs != part.segments["middle"].inputs
    assert part.segments_for(["middle", "late"]) == ["trunk", "shared_middle_late", "late", "middle"]


def test_single_layer_branch_is_its_own_segment(tmp_path):
    model = EXPORT_SHAPES["single_layer_branch"]().eval()
    export_bundle(model, recipe_for(model), tmp_path / "b.mtb", golden_samples=1)
    seg = onnx.load(tmp_path / "b.mtb" / "segments" / "edge.onnx")
    assert [n.op_type for n in seg.graph.node] == ["Conv"]


def test_task_subset_and_dynamic_batch(tmp_path, tiny_trained_fashion, fashion_recipe):
    out = tmp_path / "sub.mtb"
    export_bundle(tiny_trained_fashion[1], fashion_recipe, out, tasks=["garment", "denoise"], dynamic_batch=True,
                  golden_samples=3)
    doc = _manifest(out)
    assert list(doc["tasks"]) == ["garment", "denoise"]
    assert "silhouette" not in doc["segments"] and doc["input"]["dynamic_batch"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "segments" / "trunk.onnx"))
    x = np.load(out / "golden" / "input.npy")
    assert sess.run(None, {"image": x})[0].shape[0] == 3  # batch of 3 through a dynamic-batch file
    with pytest.raises(SpecError, match=r"unknown task\(s\) shoes; recipe 'fashion-mt' has tasks: garment, group, silhouette, denoise"):
        export_bundle(tiny_trained_fashion[1], fashion_recipe, tmp_path / "x.mtb", tasks=["shoes"])


def test_existing_bundle_is_kept_without_force(fashion_bundle, tmp_path, tiny_trained_fashion, fashion_recipe):
    out = tmp_path / "b.mtb"
    export_bundle(tiny_trained_fashion[1], fashion_recipe, out, tasks=["group"], golden_samples=1)
    with pytest.raises(FileExistsError, match="--force"):
        export_bundle(tiny_trained_fashion[1], fashion_recipe, out, tasks=["garment"], golden_samples=1)
    assert list(_manifest(out)["tasks"]) == ["group"]
    export_bundle(tiny_trained_fashion[1], fashion_recipe, out, tasks=["garment"], golden_samples=1, force=True)
    assert list(_manifest(out)["tasks"]) == ["garment"]
    assert [p.name for p in tmp_path.iterdir()] == ["b.mtb"]  # no temp or old directories left


def test_failure_midway_leaves_no_bundle(tmp_path, monkeypatch, tiny_trained_fashion, fashion_recipe):
    import toolchain.export as ex

    calls = {"n": 0}
    real = ex.onnx_bytes

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C looks like in the middle of an export
        return real(*a, **k)

    monkeypatch.setattr(ex, "onnx_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        ex.export_bundle(tiny_trained_fashion[1], fashion_recipe, tmp_path / "b.mtb")
    assert list(tmp_path.iterdir()) == []


def test_killed_export_process_leaves_nothing_that_loads(tmp_path):
    out = tmp_path / "mbv2.mtb"
    env = {**os.environ, "MTEDGE_NO_PROGRESS": "1"}
    proc = subprocess.Popen([MTEDGE, "export", "zoo:mobilenetv2-mt", "-o", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    staged = None
    while time.time() < deadline and proc.poll() is None:
        staged = next(iter(tmp_path.glob("mbv2.mtb.tmp-*/segments/*.onnx")), None)
        if staged is not None:
            break
        time.sleep(0.05)
    assert staged is not None, "export never started writing segments"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    leftovers = list(tmp_path.glob("mbv2.mtb.tmp-*"))
    for d in leftovers:  # a SIGKILLed writer cannot clean up; what it left is not a bundle
        with pytest.raises(BundleError, match="manifest.json is missing"):
            Bundle.open(d)
    with pytest.raises(BundleError, match="not found"):
        Bundle.open(out)


def test_verify_names_tampered_truncated_and_missing_files(fashion_bundle, tmp_path):
    import shutil

    for case in ("tamper", "truncate", "delete", "manifest"):
        b = tmp_path / f"{case}.mtb"
        shutil.copytree(fashion_bundle, b)
        target = b / "segments" / "silhouette.onnx"
        if case == "tamper":
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0xFF
            target.write_bytes(bytes(data))
            expected = "segments/silhouette.onnx does not match its sha256"
        elif case == "truncate":
            target.write_bytes(target.read_bytes()[:100])
            expected = "segments/silhouette.onnx has 100 bytes"
        elif case == "delete":
            target.unlink()
            expected = "segments/silhouette.onnx is missing"
        else:
            (b / "manifest.json").write_text((b / "manifest.json").read_text()[:200])
            expected = "manifest.json is not valid JSON"
        proc = mtedge("verify", b, check=False)
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr


def test_verify_fails_when_outputs_drift(fashion_bundle, tmp_path):
    import shutil

    from toolchain.bundle.files import file_ref

    b = tmp_path / "drift.mtb"
    shutil.copytree(fashion_bundle, b)
    g = b / "golden" / "garment.npy"
    np.save(g, np.load(g) + 1e-2)  # golden no longer matches what the segments compute
    doc = _manifest(b)
    doc["golden"]["outputs"]["garment"] = file_ref(b, g)
    (b / "manifest.json").write_text(json.dumps(doc))
    proc = mtedge("verify", b, check=False)
    assert proc.returncode == 1 and "error: verification failed" in proc.stderr
    assert "FAIL" in proc.stdout and "garment" in proc.stdout


def test_manifest_of_an_unknown_format_version(fashion_bundle, tmp_path):
    import shutil

    b = tmp_path / "v9.mtb"
    shutil.copytree(fashion_bundle, b)
    doc = _manifest(b)
    doc["format_version"] = 9
    (b / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="format_version: this mtedge reads format_version 1, got 9"):
        Bundle.open(b)


def test_cli_export_then_verify(tmp_path, tiny_trained_fashion):
    out = tmp_path / "f.mtb"
    proc = mtedge("export", tiny_trained_fashion[0], "-o", out, "--tasks", "silhouette,denoise")
    assert "max abs error" in proc.stdout
    assert mtedge("verify", out).returncode == 0
    bad = mtedge("export", "zoo:fashion-mt", "-o", tmp_path / "g.mtb", "--tasks", "sil", check=False)
    assert bad.returncode == 2 and "unknown task(s) sil" in bad.stderr
