"""PAGCP pruning: channel groups, the oracle, the pruner on many encoder families, the L1 baseline,
recovery hooks and `mtedge compress`. Tiny models and subsets; acceptance-sized runs are in bench/prune.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from cli_helpers import mtedge
from toolchain.data.loaders import batches, example_input
from toolchain.errors import SpecError
from toolchain.export import export_bundle
from toolchain.model import load
from toolchain.prune import cost
from toolchain.prune.baseline import l1_prune
from toolchain.prune.groups import channel_groups, output_layers
from toolchain.prune.importance import channel_scores, lowest
from toolchain.prune.oracle import Oracle
from toolchain.prune.pagcp import PruneConfig, prune
from toolchain.prune.report import PruneReport
from toolchain.prune.sequential import keep_candidates
from support.architectures import recipe_for
from support.encoders import ENCODERS


def test_output_layers_are_never_in_a_group():
    model = load("zoo:mobilenetv2-mt").module
    x = torch.randn(1, 3, 224, 224)
    outs = output_layers(model, x)
    assert outs == {"cls": ["cls_head.3"], "seg": ["seg_head.out"], "depth": ["depth_head.out"]}
    groups = channel_groups(model, x)
    protected = {n for names in outs.values() for n in names}
    assert groups and not any(protected & set(g.out_layers) for g in groups)
    # residual streams are one group: every producer feeding the adds of stage16's 64-channel stream
    stream = next(g for g in groups if "encoder.stage16.0.block.2.0" in g.out_layers)
    assert {"encoder.stage16.1.block.2.0", "encoder.stage16.3.block.2.0"} <= set(stream.out_layers)


def test_ignored_layer_must_exist():
    model = load("zoo:fashion-mt").module
    with pytest.raises(SpecError, match="not_a_layer"):
        channel_groups(model, torch.randn(1, 1, 28, 28), ignored=["not_a_layer"])


def test_keep_candidates_are_rounded_and_never_below_the_multiple():
    assert keep_candidates(64, 8, 0.5, 0, 0) == [64, 56, 48, 40, 32]
    assert keep_candidates(24, 16, 1.0, 0, 0) == [24, 16]
    assert keep_candidates(8, 8, 1.0, 0, 0) == [8]  # at the multiple: nothing to prune
    # the goal needs 10 channels' worth of FLOPs: no deeper than the multiple that reaches it
    assert keep_candidates(64, 8, 1.0, 10 * 100.0, 100.0) == [64, 56, 48]


def test_oracle_suffix_reexecution_equals_full_forward(fashion_recipe):
    torch.manual_seed(0)
    model = load("zoo:fashion-mt").module
    data = list(batches(fashion_recipe, "val", count=64, batch_size=32))
    oracle = Oracle(model, fashion_recipe, data, {t: 1.0 for t in fashion_recipe.tasks}, label_free=False)
    oracle.set_current(model)
    x = example_input(fashion_recipe)
    for g in channel_groups(model, x):
        cand = copy.deepcopy(model)
        g.prune(cand, list(range(g.channels // 2)), example=x)
        suffix = oracle.prepare(model, g)
        assert suffix is not None, g.name
        cached, full = oracle.judge(cand, suffix), oracle.judge(cand, None)
        for t in fashion_recipe.tasks:
            assert cached.metrics[t] == pytest.approx(full.metrics[t], rel=1e-5, abs=1e-5), (g.name, t)
    # a head-only group re-runs only its task: the others keep the current metric without running
    head = next(g for g in channel_groups(model, x) if g.name == "dn_fuse.0")
    assert oracle.prepare(model, head).tasks == ["denoise"]
    assert oracle.evaluations == 2 * len(channel_groups(model, x))


def test_oracle_never_relaxes_a_capped_task_past_its_cap(fashion_recipe):
    model = load("zoo:fashion-mt").module
    data = list(batches(fashion_recipe, "val", count=8, batch_size=8))
    oracle = Oracle(model, fashion_recipe, data, {"garment": 1.0, "denoise": 0.3}, label_free=False,
                    max_scale={"denoise": 8.0})
    assert oracle.within({"garment": 30.0, "denoise": 2.4}, scale=64.0)
    assert not oracle.within({"garment": 30.0, "denoise": 2.5}, scale=64.0)  # 8 x 0.3 dB, not 64 x
    assert not oracle.within({"garment": 65.0, "denoise": 0.0}, scale=64.0)
    assert oracle.within({"garment": 0.5, "denoise": 0.15}, scale=0.5)  # below the cap the scale rules


def test_importance_keeps_a_channel_one_task_needs(fashion_recipe):
    model = load("zoo:fashion-mt").module
    x = example_input(fashion_recipe)
    groups = channel_groups(model, x)
    g = next(g for g in groups if g.name == "encoder.stage2.1.0")
    with torch.no_grad():  # make channel 5 decisive for the garment head only
        model.garment_fc[0].weight[:, 5] *= 50.0
    data = list(batches(fashion_recipe, "val", count=64, batch_size=64))
    scores = channel_scores(model, groups, fashion_recipe, data)
    assert 5 not in lowest(scores[g.name], g.channels - 8)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_pagcp_prunes_every_encoder_family_to_a_valid_exportable_model(name, tmp_path):
    torch.manual_seed(0)
    model = ENCODERS[name]().eval()
    recipe = recipe_for(model)
    x = torch.randn(recipe.input.shape)
    shapes = {t: v.shape for t, v in model(x).items()}
    config = PruneConfig(keep_flops=0.6, round_to=4, val_count=8, batch_size=8, max_rounds=3, budget_fraction=50.0,
                         relax_bounds=True)  # exercises every encoder family, not the bounds
    result = prune(model, recipe, config, example=x)
    pruned = result.model
    assert result.flops_after < result.flops_before
    assert result.params_after < result.params_before
    assert all(a <= b and (a % 4 == 0 or a == b) for b, a in result.channels.values())
    assert {t: v.shape for t, v in pruned(x).items()} == shapes
    assert result.oracle_evaluations > 0
    export_bundle(pruned, recipe, tmp_path / f"{name}.mtb")  # raises unless onnxruntime matches torch to 1e-4


def test_l1_baseline_reaches_the_flops_goal():
    torch.manual_seed(0)
    model = ENCODERS["resnet"]().eval()
    x = torch.randn(1, 3, 37, 45)
    f0 = cost.model_flops(model, x)
    result = l1_prune(model, x, int(0.5 * f0), round_to=4, iterations=12)
    assert result.flops_after <= 0.5 * f0
    assert result.flops_after > 0.3 * f0  # the least pruning that meets the goal, not everything
    assert cost.model_flops(model, x) == f0  # the input model is untouched


def test_pagcp_on_trained_fashion_stays_within_budget(tiny_trained_fashion, fashion_recipe):
    _, loaded = tiny_trained_fashion
    model = loaded.module
    config = PruneConfig(keep_flops=0.7, val_count=256, batch_size=256, max_rounds=2, budget_fraction=2.0, relax_bounds=True, relax=1.5)
    result = prune(model, fashion_recipe, config)
    assert result.path, "nothing was pruned"
    for p in result.path:  # every accepted step was within the budget of its round
        assert p.budget_scale == pytest.approx(2.0 * 1.5 ** (p.round - 1)) or p.budget_scale > 2.0 * 1.5 ** (p.round - 1)
        assert all(d <= fashion_recipe.tasks[t].allowed_drop * p.budget_scale + 1e-6 for t, d in p.drops.items())
    flops = [p.flops for p in result.path]
    assert flops == sorted(flops, reverse=True) and flops[-1] == result.flops_after


def test_finetune_hook_from_recipe_is_called(monkeypatch, fashion_recipe):
    import dataclasses
    import sys
    import types

    from toolchain.prune.recovery import finetune

    calls = []
    mod = types.ModuleType("user_loop")
    mod.tune = lambda model, recipe, teacher: calls.append((model, recipe.name, teacher))
    monkeypatch.setitem(sys.modules, "user_loop", mod)
    recipe = dataclasses.replace(fashion_recipe, hooks={"finetune": "user_loop:tune"})
    model, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert finetune(model, recipe, 1.0, teacher=teacher) is model
    assert calls == [(model, "fashion-mt", teacher)]
    bad = dataclasses.replace(fashion_recipe, hooks={"finetune": "user_loop:missing"})
    with pytest.raises(SpecError, match="user_loop:missing"):
        finetune(model, bad, 1.0)


def test_compress_cli_prunes_finetunes_and_reports(tiny_trained_fashion, tmp_path):
    ckpt, loaded = tiny_trained_fashion
    out, rep = tmp_path / "pruned.pt", tmp_path / "report"
    mtedge("compress", ckpt, "--prune", "pagcp", "--keep-flops", "0.7", "--val-count", "128", "--finetune-epochs", "0.05",
           "--finetune-limit", "2000", "--distill", "--test-count", "256", "-o", out, "--report", rep,
           "--relax", "--allow-exceed")  # the pipeline at a goal; the bounds contract is tests/test_prune_bounds.py
    pruned = load(str(out))
    x = torch.randn(1, 1, 28, 28)
    assert cost.model_flops(pruned.module, x) <= 0.7 * cost.model_flops(loaded.module, x)
    doc = json.loads((rep / "report.json").read_text())
    report = PruneReport.from_dict(doc)
    assert report.to_dict() == doc  # one typed definition reads back the document it wrote
    assert set(report.tasks) == {"garment", "group", "silhouette", "denoise"}
    assert report.latency_ms["before"] > 0 and report.oracle_evaluations > 0
    assert any(g.channels_after < g.channels_before for g in report.groups.values())
    assert (rep / "pruning_path.png").read_bytes()[:4] == b"\x89PNG" and "| garment |" in (rep / "report.md").read_text()


def test_prune_report_reads_back_its_document_and_refuses_another():
    from toolchain.prune.report import GroupChannels, TaskOutcome

    report = PruneReport("pagcp", False, {"before": 10, "after": 5, "removed_pct": 50.0}, {"before": 4, "after": 2,
                         "removed_pct": 50.0}, None, None, {"a": TaskOutcome("accuracy", 90.0, 89.0, 1.0, 2.0, True)},
                         {"g": GroupChannels(8, 4, ["conv"])}, {}, 3, {}, True, 1.5, {"before": {}, "after_pruning": {}},
                         [], [], extra={"ok": True, "lead": ["goal reached"]})
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["ok"] is True and "extra" not in doc  # the caller's entries sit at the top level
    assert PruneReport.from_dict(doc) == report
    with pytest.raises(SpecError, match="not a prune report"):
        PruneReport.from_dict({**doc, "format": "mtedge-quant-report"})


def test_compress_cli_names_bad_options(tmp_path):
    proc = mtedge("compress", "zoo:fashion-mt", "--prune", "pagcp", "-o", tmp_path / "x.pt", check=False)
    assert proc.returncode == 2 and "--keep-flops" in proc.stderr
    proc = mtedge("compress", "zoo:fashion-mt", "--quantize", "int8", "-o", tmp_path / "x.pt", check=False)
    assert proc.returncode == 2 and ".mtb" in proc.stderr
