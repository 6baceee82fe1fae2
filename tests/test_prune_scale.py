"""PAGCP at scale: screening with exact confirmation, carried brackets, the time budget, the cost
report, and label-free recovery on any recipe's train split. Tiny models; the acceptance-sized run
(trained EfficientNet-Lite0 at 224x224) is bench/prune.py."""

from __future__ import annotations

import copy
import dataclasses
import re
import time

import pytest
import torch

from toolchain.data.loaders import batches, has_labels
from toolchain.errors import SpecError
from toolchain.model import load
from toolchain.prune.groups import channel_groups
from toolchain.prune.importance import lowest
from toolchain.prune.oracle import Oracle
from toolchain.prune.pagcp import PruneConfig, prune
from toolchain.prune.recovery import distill_loss, finetune
from toolchain.prune.state import SearchState
from support.encoders import calibrated_resnet


def test_screening_judges_a_prefix_and_confirmation_is_the_exact_full_verdict(fashion_recipe):
    torch.manual_seed(0)
    model = load("zoo:fashion-mt").module.eval()
    data = list(batches(fashion_recipe, "val", count=96, batch_size=32))
    budgets = {t: 1.0 for t in fashion_recipe.tasks}
    oracle = Oracle(model, fashion_recipe, data, budgets, label_free=False, screen_count=40)
    exact = Oracle(model, fashion_recipe, data, budgets, label_free=False)
    assert oracle.screening and sum(len(x) for x, _ in oracle.screen) == 40
    oracle.set_current(model)
    x = data[0][0][:1]
    g = channel_groups(model, x)[0]
    cand = copy.deepcopy(model)
    g.prune(cand, lowest(torch.arange(g.channels, dtype=torch.float), g.channels // 2), example=x)
    screened = oracle.judge(cand, oracle.prepare(model, g))
    assert screened.metrics == pytest.approx(oracle.score(cand, data=oracle.screen))
    confirmed = oracle.confirm(cand)
    assert confirmed.metrics == pytest.approx(exact.score(cand))  # the whole subset, no estimate
    assert confirmed.drops == pytest.approx(exact.drops(exact.score(cand)))
    assert (oracle.evaluations, oracle.confirmations, oracle.images_evaluated) == (2, 1, 40 + 96)


def test_needed_scale_is_the_smallest_budget_that_accepts_and_respects_max_relax(fashion_recipe):
    model = load("zoo:fashion-mt").module.eval()
    data = list(batches(fashion_recipe, "val", count=8, batch_size=8))
    oracle = Oracle(model, fashion_recipe, data, {"garment": 1.0, "denoise": 0.5}, label_free=False,
                    max_scale={"denoise": 4.0})
    drops = {"garment": 3.0, "denoise": 1.0}
    need = oracle.needed_scale(drops)
    assert need == pytest.approx(3.0)
    assert oracle.within(drops, need) and not oracle.within(drops, need * 0.99)
    assert oracle.needed_scale({"garment": 0.0, "denoise": 2.5}) == float("inf")  # beyond 4 x 0.5 dB




def test_carried_brackets_cut_evaluations_and_every_step_stays_within_its_budget():
    model, recipe, x = calibrated_resnet()
    base = dict(keep_flops=0.3, round_to=4, val_count=16, batch_size=16, max_rounds=4, budget_fraction=0.5, relax_bounds=True,
                exactness_fractions=(0.5,), search="sequential")
    plain = prune(model, recipe, PruneConfig(**base, carry_brackets=False), example=x)
    carried = prune(model, recipe, PruneConfig(**base), example=x)
    assert carried.oracle_evaluations < plain.oracle_evaluations
    assert carried.cost["bracket_skips"] > 0
    for p in carried.path:
        assert all(d <= recipe.tasks[t].allowed_drop * p.budget_scale + 1e-6 for t, d in p.drops.items())


def test_screened_search_confirms_every_accepted_step_on_all_images():
    model, recipe, x = calibrated_resnet(1)
    config = PruneConfig(keep_flops=0.5, round_to=4, val_count=24, batch_size=8, max_rounds=2, budget_fraction=2.0, relax_bounds=True,
                         screen_count=8, exactness_fractions=(0.5,))
    result = prune(model, recipe, config, example=x)
    assert result.path and result.cost["confirmations"] >= len(result.path)
    data = list(batches(recipe, "val", count=24, batch_size=8))
    oracle = Oracle(model, recipe, data, {t: s.allowed_drop for t, s in recipe.tasks.items()}, result.label_free)
    final = oracle.drops(oracle.score(result.model))  # recomputed from scratch on all 24 images
    assert final == pytest.approx(result.path[-1].drops)
    assert all(d <= recipe.tasks[t].allowed_drop * result.path[-1].budget_scale + 1e-6 for t, d in final.items())
    phases = result.cost["phase_seconds"]
    assert {"setup", "saliency", "cache", "screen", "confirm", "regroup", "search"} <= set(phases)
    assert sum(phases.values()) == pytest.approx(result.seconds, rel=0.05)
    assert result.cost["images_evaluated"] >= 8 * result.oracle_evaluations - 16 * result.cost["confirmations"]


def test_time_budget_stops_cleanly_at_the_last_confirmed_step():
    model, recipe, x = calibrated_resnet(2)
    lines = []
    config = PruneConfig(keep_flops=0.2, round_to=4, val_count=8, batch_size=8, max_rounds=6, budget_fraction=50.0, relax_bounds=True,
                         time_budget_s=1e-3, on_step=lines.append, exactness_fractions=(0.5,))
    result = prune(model, recipe, config, example=x)
    assert result.cost["stopped_by"] == "time budget" and not result.goal_reached
    assert any("time budget" in n for n in result.notes)
    assert result.flops_after == result.flops_before and not result.path and not lines
    with pytest.raises(SpecError, match="time budget"):
        prune(model, recipe, dataclasses.replace(config, time_budget_s=0.0), example=x)


def test_eta_extrapolates_flops_but_never_past_the_rounds_or_time_left():
    st = SearchState(config=PruneConfig(keep_flops=0.5, max_rounds=10), oracle=None, model=None, example=None,
                     flops0=100, goal_flops=50, scale=1.0, phases={}, recipe=None, taylor_data=[], label_free=True)
    st.t_search = time.perf_counter() - 10.0  # 10 s spent in round 1
    # 1 % of the goal in 10 s extrapolates to ~990 s; 9 rounds left at 10 s a round cap it at ~90 s
    assert re.fullmatch(r"ETA <= (89|90) s \(rounds/time budget left\)", st.eta(rnd=0, done=0.01))
    st.t_search = time.perf_counter() - 50.0  # 5 rounds, 10 s each, 80 % done: 12.5 s by extrapolation
    assert re.fullmatch(r"ETA 1[23] s", st.eta(rnd=4, done=0.8))
    st.config = PruneConfig(keep_flops=0.5, max_rounds=10, time_budget_s=55.0)
    st.t0 = st.t_search
    assert re.fullmatch(r"ETA <= [45] s \(rounds/time budget left\)", st.eta(rnd=0, done=0.01))
    assert st.eta(rnd=9, done=1.2) == "ETA 0 s"


def test_distill_loss_is_zero_at_the_teacher_and_scale_free_for_regression():
    torch.manual_seed(0)
    s, t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    assert distill_loss("depth", t, t).item() == 0.0
    assert distill_loss("depth", 100 * s, 100 * t).item() == pytest.approx(distill_loss("depth", s, t).item(), rel=1e-5)
    logits = torch.randn(4, 10)
    assert distill_loss("classification", logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    seg = torch.randn(2, 5, 6, 6)
    assert distill_loss("segmentation", seg, seg).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss("segmentation", seg, torch.randn(2, 5, 6, 6)).item() > 0
    with pytest.raises(SpecError, match="no distillation loss for task kind 'bogus'"):
        distill_loss("bogus", s, t)


def test_label_free_finetune_distills_on_the_train_split():
    model, recipe, x = calibrated_resnet(3)
    assert not has_labels(recipe)
    teacher, student = model, copy.deepcopy(model)
    with torch.no_grad():  # a damaged copy stands in for a pruned model: same recovery problem, no search
        for p in student.parameters():
            p.mul_(1 + 0.3 * torch.randn_like(p))
    val = list(batches(recipe, "val", count=16, batch_size=16))

    def gap(m):
        with torch.no_grad():
            return sum(distill_loss(recipe.tasks[t].kind, m(v)[t], teacher(v)[t]).item()
                       for v, _ in val for t in recipe.tasks)

    before = gap(student)
    finetune(student, recipe, 3, teacher=teacher, limit=32, batch_size=16, lr=3e-3)
    assert gap(student) < before
    with pytest.raises(SpecError, match="--distill"):
        finetune(student, recipe, 1, teacher=None)


def test_photos_train_split_is_distinct_from_val_and_test():
    from pathlib import Path

    import toolchain.zoo
    from toolchain.recipe import load_recipe

    recipe = load_recipe(Path(toolchain.zoo.__file__).parent / "recipes" / "mobilenetv2-mt.yaml")
    train = next(batches(recipe, "train", count=4, batch_size=4))[0]
    again = next(batches(recipe, "train", count=4, batch_size=4, seed=1))[0]
    for split in ("val", "test"):
        other = next(batches(recipe, split, count=4, batch_size=4))[0]
        assert not any(torch.equal(a, b) for a in train for b in other)
    assert not torch.equal(train, again)  # each fine-tuning epoch sees new crops
