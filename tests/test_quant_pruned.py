"""Pruning and quantization compose: a Torch-Pruning-narrowed model exports, quantizes, verifies
and (when the C++ runtime is built) runs its int8 variant."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from toolchain.bundle import Bundle
from toolchain.bundle.manifest import openvino_disagreement
from mtedge_runtime.tolerance import compare
from toolchain.export import export_bundle
from toolchain.model import load, save_checkpoint
from toolchain.quantize import QuantizeOptions, quantize_bundle
from toolchain.quantize.int8 import Int8Settings
from support.architectures import HeadConcatenatesTwoStages, recipe_for
from support.magnitude_prune import magnitude_prune, output_layers
from toolchain.verify import verify_bundle

os.environ["MTEDGE_NO_PROGRESS"] = "1"


def quantized_pruned_bundle(tmp: Path, int8: Int8Settings) -> tuple[Path, object]:
    """HeadConcatenatesTwoStages narrowed by Torch-Pruning, saved as `mtedge compress` writes it,
    exported and quantized to int8; returns the bundle and the quantize report."""
    torch.manual_seed(1)
    model = HeadConcatenatesTwoStages().eval()
    example = torch.randn(1, 3, 37, 45)
    before = sum(p.numel() for p in model.parameters())
    magnitude_prune(model, example, 0.5, output_layers(model, example))
    assert sum(p.numel() for p in model.parameters()) < 0.6 * before
    ckpt = tmp / "pruned.pt"
    # an mtedge checkpoint as `mtedge compress` writes it: the pruning replays from its plan on load
    save_checkpoint(ckpt, model, "support.architectures:HeadConcatenatesTwoStages", recipe_for(model))
    loaded = load(str(ckpt))
    recipe = recipe_for(loaded.module)
    path = tmp / "pruned.mtb"
    export_bundle(loaded, recipe, path, golden_samples=2)
    report = quantize_bundle(path, recipe, ("int8",), calibration_count=8,
                             options=QuantizeOptions(latency_runs=0, test_count=0, int8=int8))
    assert report.ok, report.notes
    return path, report


@pytest.fixture(scope="module")
def pruned_bundle(tmp_path_factory) -> Path:
    # uint8 activations: the bundle runs on this CPU with OpenVINO (see the test after the next)
    path, report = quantized_pruned_bundle(tmp_path_factory.mktemp("pruned"), Int8Settings(signed_activations=False))
    assert all(c["passed"] for c in report.variants["int8"].openvino_agreement.values())
    return path


def test_pruned_int8_bundle_verifies(pruned_bundle):
    result = verify_bundle(pruned_bundle)
    assert result.ok and "int8" in result.variants
    widths = [s.shape[1] for e in Bundle.open(pruned_bundle).variant("int8").segments.values()
              for s in e.outputs if len(s.shape) == 4]
    assert widths and min(widths) < 16  # really the narrow model


def test_pruned_int8_bundle_runs_in_the_runtime(pruned_bundle):
    from toolchain.runtime import Runtime

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # quantize recorded agreement: nothing to warn about
        rt = Runtime(pruned_bundle, backend="openvino", variant="int8")
    b = Bundle.open(pruned_bundle)
    x, golden = b.golden()
    tol = b.variant("int8").tolerance
    out = rt.run(x[:1])
    for t, y in out.items():
        assert compare(t, y, golden[t][:1], tol[t]).passed, t


def test_the_report_says_when_openvino_computes_int8_activations_through_a_concat_wrongly(tmp_path, pruned_bundle):
    # OpenVINO 2026.4's CPU plugin runs a Conv fed by a Concat of int8 (signed) Q/DQ tensors off
    # onnxruntime's result (the seg head concatenates two stages); the same model at uint8 agrees.
    # When OpenVINO fixes this, the first assertion fails: then drop the uint8 advice from the docs.
    path, report = quantized_pruned_bundle(tmp_path, Int8Settings(signed_activations=True))
    signed = report.variants["int8"].openvino_agreement
    assert not signed["seg"]["passed"] and signed["seg"]["max_abs_err"] > signed["seg"]["tolerance"]
    assert signed["cls"]["passed"]  # no Concat on the classifier's path
    assert any("int8: OpenVINO on this host does not reproduce" in n and "--activations uint8" in n
               for n in report.notes), report.notes
    unsigned = Bundle.open(pruned_bundle).variant("int8")
    assert unsigned.calibration["signed_activations"] is False
    # the manifest keeps the check: a CPU build leaves the variant out, and built by name it is refused
    from toolchain.errors import VerificationError
    from toolchain.targets.build import build
    from toolchain.targets.plan import BuildOptions
    from toolchain.targets.profile import load_profile

    assert "seg off by" in openvino_disagreement(Bundle.open(path).variant("int8"))
    assert openvino_disagreement(unsigned) == ""
    result = build(path, load_profile("host-cpu"))
    assert [vp.variant for vp in result.plan.variants] == ["fp32"]
    assert any("skipped variants int8" in n for n in result.plan.notes)
    with pytest.raises(VerificationError, match=r"variant 'int8'.*seg off by .*--activations uint8"):
        build(path, load_profile("host-cpu"), BuildOptions(variants=("int8",)))
    # and the runtime, loading it on OpenVINO by name, warns with the same record and advice
    from toolchain.runtime import Runtime

    with pytest.warns(RuntimeWarning, match=r"variant 'int8' .*seg off by .*OpenVINO 20.*--verify.*--activations uint8"):
        Runtime(path, backend="openvino", variant="int8").close()
