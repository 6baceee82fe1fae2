"""`mtedge inspect`: the task tree and its costs, checked against independent counters."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cli_helpers import mtedge
from toolchain.inspection import inspect_model
from toolchain.model import load


@pytest.mark.parametrize("spec, shape", [("zoo:mobilenetv2-mt", (1, 3, 224, 224)), ("zoo:fashion-mt", (1, 1, 28, 28))])
def test_total_flops_within_2pct_of_torch_flop_counter(spec, shape):
    module = load(spec).module
    x = torch.zeros(shape)
    report, _ = inspect_model(module, x)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    independent = counter.get_total_flops()
    assert abs(report.total_flops - independent) / independent < 0.02
    assert report.total_params == sum(p.numel() for p in module.parameters())


def test_mobilenet_task_tree_shows_both_skip_taps():
    report, part = inspect_model(load("zoo:mobilenetv2-mt").module, torch.zeros(1, 3, 224, 224))
    assert list(report.segments) == ["trunk", "cls", "seg", "depth"]
    assert len(report.tasks["seg"].taps) == 2 and len(report.tasks["depth"].taps) == 2
    assert report.tasks["seg"].taps != report.tasks["depth"].taps  # stride-8 vs stride-16 skip
    assert report.segments["trunk"].shared and not report.segments["cls"].shared


def test_cli_inspect_json_and_table():
    doc = json.loads(mtedge("inspect", "zoo:fashion-mt", "--json").stdout)
    assert set(doc["tasks"]) == {"garment", "group", "silhouette", "denoise"}
    assert doc["segments"]["trunk"]["tasks"] == ["garment", "group", "silhouette", "denoise"]
    # heads branch at different depths: denoise leaves after stage1, silhouette after stage2
    assert "trunk" in doc["segments"]["denoise"]["branches_from"]
    assert "shared_garment_group_silhouette" in doc["segments"]["silhouette"]["branches_from"]
    table = mtedge("inspect", "zoo:fashion-mt").stdout
    assert "shared by garment, group, silhouette, denoise" in table and "MFLOPs" in table
