"""The recipe's bounds are the contract (issue 25): the search stops within them unless told to relax,
recovery never returns a state worse than the one it was given, the result is judged on the held-out
test split, and a sweep refuses a reference that performs at chance."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from toolchain.bounds import bounds_from_metrics
from toolchain.errors import SpecError
from toolchain.prune.pagcp import PruneConfig
from toolchain.prune.report import PruneReport

TIGHT = {"garment": 0.5, "group": 0.5, "silhouette": 0.5, "denoise": 0.1}


def tight(recipe):
    """fashion-mt with bounds no 10 %-of-the-FLOPs model can hold."""
    tasks = {t: dataclasses.replace(s, allowed_drop=TIGHT[t], max_relax=None) for t, s in recipe.tasks.items()}
    return dataclasses.replace(recipe, tasks=tasks)


def test_compress_stops_within_bounds_when_the_goal_needs_more(tiny_trained_fashion, fashion_recipe):
    from toolchain.compression import compress

    _, loaded = tiny_trained_fashion
    recipe = tight(fashion_recipe)
    # 2,000 test images: at 500, garment's 0.5-point bound is 2.5 images and the check is noisier than the
    # bound (one fresh host ended 4 images down there, 0.8 points, where CI had passed; within at 2,000)
    result = compress(loaded.module, recipe, keep_flops=0.1, round_to=4, val_count=256, test_count=2000, max_rounds=3)
    assert not result.goal_reached
    assert 0.0 < result.prune.flops_removed < 0.9  # something was cut, far from the goal
    for p in result.prune.path:  # no accepted step went past a bound on the oracle's val images
        assert all(d <= TIGHT[t] + 1e-6 for t, d in p.drops.items()), p
    assert result.bounds.split == "test" and result.bounds.images == 2000
    assert result.bounds.within and result.ok, result.bounds.describe_exceeded()
    assert result.lead()[0].startswith(f"goal not reached: {100 * result.prune.flops_removed:.1f} % removed within bounds")
    assert any("goal not reached" in n and "within bounds" in n for n in result.prune.notes)


def test_pruning_on_from_a_pruned_model_spends_what_is_left_of_the_original_bounds(tiny_trained_fashion, fashion_recipe):
    """prune -> recover -> prune on: with `reference` the second search measures drops against the
    original network, so the two passes together stay within the bounds (not each within its own)."""
    from toolchain.data.loaders import batches
    from toolchain.prune.oracle import Oracle
    from toolchain.prune.pagcp import prune

    _, loaded = tiny_trained_fashion
    recipe = tight(fashion_recipe)
    val = list(batches(recipe, "val", count=256, batch_size=128))
    config = PruneConfig(keep_flops=0.1, round_to=4, val_count=256, max_rounds=2)
    first = prune(loaded.module, recipe, config, data=val)
    second = prune(first.model, recipe, config, data=val, reference=loaded.module)
    # the second search's "before" is the original network, not the model it started from
    assert second.val_metrics_before == pytest.approx(first.val_metrics_before)
    assert second.flops_after <= first.flops_after
    drops = Oracle(loaded.module, recipe, val, TIGHT, False).drops(second.val_metrics_after)
    assert all(d <= TIGHT[t] + 1e-6 for t, d in drops.items()), drops


def test_a_task_near_its_bound_does_not_refuse_steps_that_leave_it_unchanged(tiny_trained_fashion, fashion_recipe):
    """Pruning on from a recovered model: denoise starts within its bound but not a confidence margin
    inside it. A step that only touches the garment head leaves denoise as it was, so it is judged on
    garment alone; a step that changes denoise is judged with denoise's margin and refused. (Charging
    every task's margin at every step refused every step of the second pass on the fashion-mt bench.)"""
    from toolchain.data.loaders import batches
    from toolchain.prune.oracle import Oracle

    _, loaded = tiny_trained_fashion
    val = list(batches(fashion_recipe, "val", count=256, batch_size=128))
    original = loaded.module.eval()
    start = copy.deepcopy(original)
    with torch.no_grad():
        start.dn_out.weight.mul_(0.9)  # denoise a little worse: the recovered model's state
    oracle = Oracle(original, fashion_recipe, val, {t: 5.0 for t in fashion_recipe.tasks}, False)
    oracle.margin_z = 1.645
    oracle.set_current(original)
    first = oracle.confirm(start)  # the step original -> start, judged with denoise's margin
    assert first.drops["denoise"] > 0 and first.margins["denoise"] > 0
    oracle.budgets["denoise"] = first.drops["denoise"] + first.margins["denoise"] / 2  # within, margin not
    oracle.set_current(start)  # where the second pass starts

    garment_only = copy.deepcopy(start)
    with torch.no_grad():
        garment_only.garment_fc[2].weight.mul_(0.999)
    v = oracle.confirm(garment_only)
    assert v.metrics["denoise"] == first.metrics["denoise"] and v.margins["denoise"] == 0.0
    assert v.ok, v.judged

    denoise_too = copy.deepcopy(garment_only)
    with torch.no_grad():
        denoise_too.dn_out.weight.mul_(0.999)
    v = oracle.confirm(denoise_too)
    assert v.margins["denoise"] > 0 and not v.ok and oracle.over(v.judged, 1.0) == ["denoise"]


def test_relaxed_compress_names_the_exceeded_bounds_and_exits_non_zero(tiny_trained_fashion, tmp_path, capsys):
    from toolchain import zoo
    from toolchain.cli import main

    ckpt, _ = tiny_trained_fashion
    recipe = tmp_path / "tight.yaml"
    text = zoo.get("fashion-mt").recipe_path.read_text()
    for t, v in TIGHT.items():
        text = text.replace(f"allowed_drop: {'0.3' if t == 'denoise' else '1.0'}", f"allowed_drop: {v}", 1)
    recipe.write_text(text.replace(", max_relax: 8", ""))
    args = ["compress", str(ckpt), "--recipe", str(recipe), "--prune", "pagcp", "--keep-flops", "0.75", "--relax",
            "--round-to", "4", "--val-count", "64", "--test-count", "300"]
    assert main([*args, "-o", str(tmp_path / "a.pt"), "--report", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "error: task(s) past their bound on the held-out test split" in err and "--allow-exceed" in err
    assert (tmp_path / "a.pt").exists()  # the result is still written, for the user to inspect
    doc = PruneReport.from_dict(json.loads((tmp_path / "rep" / "report.json").read_text())).extra
    exceeded = [t for t, b in doc["bounds"]["tasks"].items() if not b["within"]]
    assert exceeded and doc["ok"] is False and doc["relaxed"] is True
    assert all(f"{t} dropped" in err for t in exceeded)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.index("Bounds on the held-out test split") < md.index("- FLOPs:")  # the report leads with the table
    assert main([*args, "--allow-exceed", "-o", str(tmp_path / "b.pt")]) == 0
    assert "allowed by the caller (allow_exceed)" in capsys.readouterr().err


def test_relaxed_budgets_are_an_opt_in():
    with pytest.raises(SpecError, match="relax_bounds=True"):
        PruneConfig(budget_fraction=2.0).check()
    PruneConfig(budget_fraction=2.0, relax_bounds=True).check()


def test_recovery_that_diverges_returns_the_unrecovered_model(tiny_trained_fashion, fashion_recipe):
    from toolchain.bounds import check_bounds
    from toolchain.data.loaders import batches, example_input
    from toolchain.prune import cost
    from toolchain.prune.baseline import l1_prune
    from toolchain.prune.recovery import recover

    _, loaded = tiny_trained_fashion
    original = loaded.module.eval()
    x = example_input(fashion_recipe)
    pruned = l1_prune(original, x, int(0.8 * cost.model_flops(original, x)), round_to=4, iterations=8).model
    before = copy.deepcopy(pruned.state_dict())
    val = list(batches(fashion_recipe, "val", count=256, batch_size=128))
    judge = lambda m: check_bounds(original, m, fashion_recipe, val, False, "val")  # noqa: E731
    # reestimate_bn off: the candidates are the unrecovered model and the two diverging epochs
    got = recover(pruned, fashion_recipe, 2, judge, teacher=original, limit=512, lr=50.0, reestimate_bn=False)
    assert got.kept == "unrecovered" and got.model is pruned
    assert all(torch.equal(v, pruned.state_dict()[k]) for k, v in before.items())
    assert len(got.checks) == 3 and all(c.severity() > got.checks[0].severity() for c in got.checks[1:])
    assert "kept the unrecovered model of 3 candidates" in got.note()


def test_bounds_table_names_what_is_past_and_by_how_much(fashion_recipe):
    before = {"garment": 90.0, "group": 95.0, "silhouette": 80.0, "denoise": 20.0}
    after = {"garment": 88.5, "group": 95.5, "silhouette": 79.5, "denoise": 19.9}
    check = bounds_from_metrics(before, after, fashion_recipe, False, "test", 100)
    assert [b.task for b in check.exceeded] == ["garment"] and check.exceeded[0].exceeded_by == pytest.approx(0.5)
    assert check.severity()[0] == 1 and "garment dropped 1.500" in check.describe_exceeded()
    assert "| garment | accuracy | 90.000 | 88.500 | 1.500 | 1 | NO (0.500 past) |" in check.markdown()


def test_chance_level_of_constant_predictors(fashion_recipe):
    from toolchain.chance import chance_metrics
    from toolchain.data.loaders import batches
    from toolchain.model import load

    data = list(batches(fashion_recipe, "test", count=500, batch_size=250))
    chance = chance_metrics(load("zoo:fashion-mt").module, fashion_recipe, data)
    labels = torch.cat([y["garment"] for _, y in data])
    assert chance["garment"] == pytest.approx(100 * torch.bincount(labels).max().item() / len(labels))
    assert 5.0 < chance["garment"] < 20.0 and chance["group"] >= 100 / 3 - 1e-6  # majority of 10 / 3 classes
    assert 0.0 < chance["denoise"] < 40.0  # the mean image: a few dB, not a trained denoiser


def test_sweep_refuses_a_reference_at_chance(tmp_path):
    from toolchain.chance import ChanceLevel
    from toolchain.scale.sweep import SweepConfig, parse_goals, run_sweep

    torch.manual_seed(0)
    cfg = SweepConfig(model="zoo:fashion-mt", goals=parse_goals("0.5"), targets=["host-cpu"], precisions=["fp32"],
                      out=str(tmp_path / "sw"), val_count=32, test_count=500)
    with pytest.raises(ChanceLevel, match=r"performs at chance on its test split: garment accuracy [\d.]+ vs chance") as e:
        run_sweep(cfg)
    assert "zoo:fashion-mt (no --checkpoint)" in str(e.value)  # names the reference
    assert "mtedge train" in str(e.value) and "--checkpoint trained.pt" in str(e.value)  # and the fix
    assert "allowed drop 1" in str(e.value)
    assert not list((tmp_path / "sw" / "cache").glob("prune-*"))  # refused before any pruning
