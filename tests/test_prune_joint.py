"""PAGCP's joint search: one ranking of every channel, a galloping search over how far down it the
cut goes, screening confirmed exactly; the sampled-Fisher saliency it ranks by when label-free;
parallel probes that give the serial result."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from toolchain.data.loaders import batches
from toolchain.prune.groups import channel_groups
from toolchain.prune.importance import joint_scores, taylor_per_task
from toolchain.errors import SpecError
from toolchain.prune.joint import Block, gallop, keeps_at, plan, pruned_copy, relax_binding
from toolchain.prune.oracle import Oracle, Verdict
from toolchain.prune.pagcp import PruneConfig, prune
from toolchain.prune.state import SearchState
from support.encoders import calibrated_resnet




@pytest.mark.parametrize("points", [1, 2, 3])
@pytest.mark.parametrize("limit", [0, 1, 5, 37, 64, 100])
def test_gallop_finds_the_largest_accepted_prefix_to_an_eighth(points, limit):
    judged: list[int] = []

    def judge(prefixes):
        judged.extend(prefixes)
        return [p <= limit for p in prefixes]

    found = gallop(judge, first=20, top=100, points=points)
    assert found <= limit  # never a refused prefix
    assert limit - found <= max(1, found // 8) or found == 100  # within 1/8 of the step
    assert len(judged) == len(set(judged))  # no prefix judged twice
    if limit == 0:
        assert found == 0


def test_gallop_stops_when_the_judge_runs_out_of_time():
    calls = []

    def judge(prefixes):
        calls.append(prefixes)
        return None if len(calls) > 1 else [True] * len(prefixes)

    assert gallop(judge, first=8, top=100) == 8  # the last accepted before the stop


def test_plan_orders_blocks_by_saliency_per_flop_and_keeps_each_groups_order():
    model, recipe, x = calibrated_resnet()
    groups = channel_groups(model, x)
    scores = {g.name: torch.rand(g.channels, generator=torch.Generator().manual_seed(i)) for i, g in enumerate(groups)}
    unit = {g.name: 1.0 + i for i, g in enumerate(groups)}
    blocks = plan(groups, scores, unit, unit, round_to=4, max_step=0.5)
    assert [b.ratio for b in blocks] == sorted(b.ratio for b in blocks)
    for g in groups:  # each group's keeps shrink along the order, never below half or round_to
        keeps = [b.keep for b in blocks if b.group == g.name]
        assert keeps == sorted(keeps, reverse=True)
        assert all(k % 4 == 0 and k >= max(4, g.channels // 2) for k in keeps)
    cut = keeps_at(blocks, len(blocks) // 2)
    cand = pruned_copy(model, {g.name: g for g in groups}, cut, scores, x)
    after = {g.name: g.channels for g in channel_groups(cand, x)}
    assert all(after[n] == k for n, k in cut.items())  # every group cut to its keep in one copy
    assert isinstance(blocks[0], Block) and set(cand(x)) == set(model(x))


def test_label_free_saliency_is_not_zero_at_the_unpruned_model():
    # a distillation loss has zero gradient where student == teacher: the Fisher sensitivity does not
    model, recipe, x = calibrated_resnet()
    groups = channel_groups(model, x)
    data = list(batches(recipe, "val", count=16, batch_size=8))
    fisher = taylor_per_task(model, groups, recipe, data, label_free=True)
    for task, per_group in fisher.items():
        assert sum(float(v.sum()) for v in per_group.values()) > 0, task
    scores = joint_scores(model, groups, recipe, data, label_free=True)
    assert all(len(scores[g.name]) == g.channels and bool((scores[g.name] >= 0).all()) for g in groups)
    # repeatable: the sampled labels and projections come from a seeded generator
    again = joint_scores(model, groups, recipe, data, label_free=True)
    assert all(torch.equal(scores[n], again[n]) for n in scores)


def test_joint_search_reaches_the_goal_with_fewer_evaluations_and_every_step_confirmed():
    model, recipe, x = calibrated_resnet(1)
    base = dict(keep_flops=0.5, round_to=4, val_count=16, batch_size=8, max_rounds=4, budget_fraction=2.0, relax_bounds=True,
                screen_count=8, exactness_fractions=(), label_free=True)
    joint = prune(model, recipe, PruneConfig(**base, search="joint"), example=x)
    sequential = prune(model, recipe, PruneConfig(**base, search="sequential"), example=x)
    assert joint.path and joint.cost["search"] == "joint"
    assert joint.oracle_evaluations < sequential.oracle_evaluations
    assert joint.cost["confirmations"] >= len(joint.path)
    data = list(batches(recipe, "val", count=16, batch_size=8))
    oracle = Oracle(model, recipe, data, {t: s.allowed_drop for t, s in recipe.tasks.items()}, True)
    final = oracle.drops(oracle.score(joint.model))  # recomputed from scratch on all 16 images
    assert final == pytest.approx(joint.path[-1].drops, abs=1e-6)
    assert all(d <= recipe.tasks[t].allowed_drop * joint.path[-1].budget_scale + 1e-6 for t, d in final.items())
    assert all(p.widths and p.group.startswith("joint") for p in joint.path)
    assert joint.channels == {n: (b, a) for n, (b, a) in joint.channels.items() if a <= b}


def test_points_per_probe_decides_the_result_not_where_points_are_judged():
    from toolchain.workers import SerialEvaluator

    model, recipe, x = calibrated_resnet(2)
    config = PruneConfig(keep_flops=0.6, round_to=4, val_count=8, batch_size=8, max_rounds=2, label_free=True,
                         exactness_fractions=(), points_per_probe=2)
    inline = prune(model, recipe, config, example=x)
    mapped = prune(model, recipe, dataclasses.replace(config, evaluator=SerialEvaluator()), example=x)
    assert mapped.channels == inline.channels
    assert mapped.oracle_evaluations == inline.oracle_evaluations
    assert [p.drops for p in mapped.path] == [p.drops for p in inline.path]


def test_relax_binding_grows_only_the_budgets_of_the_tasks_that_refused_the_step():
    oracle = Oracle.__new__(Oracle)  # the budget arithmetic only: no model or data needed
    oracle.budgets, oracle.max_scale = {"cls": 10.0, "seg": 5.0, "kp": 2.0}, {"kp": 4.0}
    st = SearchState(config=PruneConfig(keep_flops=0.5, relax=1.5, relax_tasks="binding"), oracle=oracle, model=None,
                     example=None, flops0=100, goal_flops=50, scale=1.0, phases={}, recipe=None, taylor_data=[],
                     label_free=True, task_scales={"cls": 1.0, "seg": 1.0, "kp": 1.0})
    drops = lambda cls, seg, kp: Verdict({}, {"cls": cls, "seg": seg, "kp": kp}, False)
    # step 8 was accepted; 12 (the first refused past it) failed on seg only; 20 failed on everything
    assert relax_binding(st, 0, {12: drops(1.0, 6.0, 0.5), 20: drops(50.0, 50.0, 50.0)}, accepted=8)
    assert st.task_scales == {"cls": 1.0, "seg": 1.5, "kp": 1.0} and st.scale == 1.5
    # nothing accepted: the binding task jumps to what the smallest refused step needed (kp: 3x)
    assert relax_binding(st, 1, {4: drops(1.0, 1.0, 6.0)}, accepted=0)
    assert st.task_scales == {"cls": 1.0, "seg": 1.5, "kp": 3.0}
    # past kp's max_relax (4x) no budget fits: the search stops, saying why
    assert not relax_binding(st, 2, {4: drops(1.0, 1.0, 9.0)}, accepted=0)
    assert "no step fits kp's budget" in st.notes[-1]
    # nothing refused (the round ran out of blocks): every budget grows
    assert relax_binding(st, 3, {}, accepted=8)
    assert st.task_scales == pytest.approx({"cls": 1.5, "seg": 2.25, "kp": 4.5})


def test_binding_relaxation_keeps_every_step_within_each_tasks_own_budget():
    model, recipe, x = calibrated_resnet(1)
    config = PruneConfig(keep_flops=0.5, round_to=4, val_count=16, batch_size=8, screen_count=8,
                         exactness_fractions=(), label_free=True, relax_tasks="binding",
                         relax_bounds=True)
    res = prune(model, recipe, config, example=x)
    assert res.path
    note = next(n for n in res.notes if n.startswith("final oracle budgets"))
    scales = {t: float(v) for t, v in (item.split() for item in note.split(": ", 1)[1].split(", "))}
    assert set(scales) == set(recipe.tasks)
    data = list(batches(recipe, "val", count=16, batch_size=8))
    oracle = Oracle(model, recipe, data, {t: s.allowed_drop for t, s in recipe.tasks.items()}, True)
    final = oracle.drops(oracle.score(res.model))  # recomputed from scratch on all 16 images
    assert all(d <= recipe.tasks[t].allowed_drop * scales[t] + 1e-6 for t, d in final.items())
    with pytest.raises(SpecError, match="needs search='joint'"):
        PruneConfig(relax_tasks="binding", search="sequential").check()


def test_a_group_whose_next_cut_breaks_a_bound_does_not_end_the_search(monkeypatch, fashion_recipe):
    """Bounds as the contract: the head of the global order (here: one group made the cheapest to
    lose) is refused whatever the budget, so the search sets that group aside and cuts the others,
    instead of stopping with nothing removed."""
    from toolchain.data.loaders import example_input
    from toolchain.graph.capture import multitask
    from toolchain.model import load
    from toolchain.prune import joint

    model = multitask(load("zoo:fashion-mt").module, fashion_recipe).eval()
    sensitive = channel_groups(model, example_input(fashion_recipe))[0]
    layer = sensitive.layers[0]
    width = dict(model.named_modules())[layer].weight.shape[0]

    def scores(m, groups, *args, **kwargs):  # the sensitive group first in the global order
        s = joint_scores(m, groups, *args, **kwargs)
        return {**s, sensitive.name: torch.zeros_like(s[sensitive.name])}

    def confirm(self, candidate, budget_scale=1.0):  # any cut of the sensitive group breaks every bound
        self.evaluations += 1
        ok = dict(candidate.named_modules())[layer].weight.shape[0] == width
        return Verdict(dict(self.before), {t: 0.0 if ok else 99.0 for t in self.tasks}, ok)

    monkeypatch.setattr(joint, "joint_scores", scores)
    monkeypatch.setattr(Oracle, "confirm", confirm)
    data = list(batches(fashion_recipe, "val", count=32, batch_size=32))
    res = prune(model, fashion_recipe, PruneConfig(keep_flops=0.5, round_to=4, val_count=32, max_rounds=3,
                                                   exactness_fractions=()), data=data)
    assert res.channels[sensitive.name][0] == res.channels[sensitive.name][1] == width  # never cut
    assert res.flops_removed > 0.2, res.notes  # the other groups were
    assert any(sensitive.name in n and "goes on without that group" in n for n in res.notes), res.notes
