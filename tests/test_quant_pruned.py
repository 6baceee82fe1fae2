"""Pruning and quantization compose: a Torch-Pruning-narrowed model exports, quantizes, verifies
and (when the C++ runtime is built) runs its int8 variant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from toolchain.bundle import Bundle
from mtedge_runtime.tolerance import compare
from toolchain.export import export_bundle
from toolchain.model import load, save_checkpoint
from toolchain.quantize import QuantizeOptions, quantize_bundle
from support.architectures import HeadConcatenatesTwoStages, recipe_for
from support.magnitude_prune import magnitude_prune, output_layers
from toolchain.verify import verify_bundle

os.environ["MTEDGE_NO_PROGRESS"] = "1"


@pytest.fixture(scope="module")
def pruned_bundle(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    tmp = tmp_path_factory.mktemp("pruned")
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
                             options=QuantizeOptions(latency_runs=0, test_count=0))
    assert report.ok, report.notes
    return path


def test_pruned_int8_bundle_verifies(pruned_bundle):
    result = verify_bundle(pruned_bundle)
    assert result.ok and "int8" in result.variants
    widths = [s.shape[1] for e in Bundle.open(pruned_bundle).variant("int8").segments.values()
              for s in e.outputs if len(s.shape) == 4]
    assert widths and min(widths) < 16  # really the narrow model


def test_pruned_int8_bundle_runs_in_the_runtime(pruned_bundle):
    from toolchain.runtime import Runtime

    rt = Runtime(pruned_bundle, backend="openvino", variant="int8")
    b = Bundle.open(pruned_bundle)
    x, golden = b.golden()
    tol = b.variant("int8").tolerance
    out = rt.run(x[:1])
    for t, y in out.items():
        assert compare(t, y, golden[t][:1], tol[t]).passed, t
