"""The one training loop (toolchain.fit) and the recovery options it carries: batch-norm
re-estimation, frozen batch norm, trunk-feature distillation, the re-estimated candidate in recover()."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from toolchain.fit import FeatureTap, feature_distance, fit, reestimate_bn
from toolchain.recipe import RecoverySpec


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))


def test_fit_runs_the_fractional_epochs_steps_and_calls_back_per_epoch():
    model = nn.Linear(3, 1)
    data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    steps, epochs = [], []

    def step(x, y):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss.item()

    fit(model, step, lambda epoch: iter(data), 4, 2.5, lr=1e-2, on_step=lambda i, loss: steps.append(loss),
        on_epoch=lambda e, m: epochs.append((e, m.training)))
    assert len(steps) == 10  # 2.5 epochs of 4 batches
    assert epochs == [(1, False), (2, False), (3, False)]  # eval mode in the callback; the last epoch is partial
    assert not model.training


def test_reestimate_bn_sets_running_stats_to_the_datas_batch_statistics():
    model = _bn_model()
    data = [(torch.randn(16, 1, 8, 8) * 3 + 2, None) for _ in range(3)]
    before = [p.clone() for p in model.parameters()]
    reestimate_bn(model, data)
    bn, conv = model[1], model[0]
    with torch.no_grad():
        outs = [conv(x) for x, _ in data]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    variances = torch.stack([o.transpose(0, 1).reshape(4, -1).var(1, unbiased=True) for o in outs]).mean(0)
    assert torch.allclose(bn.running_mean, means, atol=1e-5)
    assert torch.allclose(bn.running_var, variances, rtol=1e-4)
    assert bn.momentum == 0.1 and not model.training  # momentum restored; eval mode
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # weights untouched


def _fashion(recipe, **recovery):
    from toolchain.model import load

    torch.manual_seed(0)
    return load("zoo:fashion-mt").module.eval(), dataclasses.replace(recipe, recovery=RecoverySpec(**recovery))


def test_finetune_reestimates_bn_from_the_recipe_and_frozen_bn_keeps_statistics(fashion_recipe):
    from toolchain.data.loaders import batches
    from toolchain.prune.recovery import finetune

    model, recipe = _fashion(fashion_recipe, reestimate_bn=True)
    expected = reestimate_bn(copy.deepcopy(model), batches(recipe, "train", count=64, batch_size=32, seed=0,
                                                           shuffle=True, augment=True))
    finetune(model, recipe, 0, limit=64, batch_size=32)  # no epochs: re-estimation only
    for a, b in zip(model.modules(), expected.modules()):
        if isinstance(a, nn.BatchNorm2d):
            assert torch.allclose(a.running_mean, b.running_mean) and torch.allclose(a.running_var, b.running_var)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    finetune(model, dataclasses.replace(recipe, recovery=RecoverySpec(False, freeze_bn="true")), 1, limit=64, batch_size=32)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    finetune(model, dataclasses.replace(recipe, recovery=RecoverySpec(False, freeze_bn="false")), 1, limit=64, batch_size=32)
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())


def test_feature_distance_is_zero_at_the_teacher_and_needs_no_channel_correspondence():
    t = {"a": torch.randn(6, 8, 5, 5)}
    assert feature_distance(t, t).item() == 0.0
    assert feature_distance({"a": t["a"][:, :3]}, t, {"a": 3}).item() == 0.0  # a slimmable width's prefix
    pruned = {"a": t["a"][:, [0, 2, 5]]}  # fewer channels, none recorded: batch similarity
    assert feature_distance(pruned, t).item() > 0
    assert feature_distance({"a": 2 * t["a"]}, t).item() > 0


def test_feature_distillation_brings_the_pruned_trunk_closer_to_the_teacher(fashion_recipe):
    from toolchain.data.loaders import batches, example_input
    from toolchain.prune import cost
    from toolchain.prune.baseline import l1_prune
    from toolchain.prune.recovery import finetune, trunk_features

    teacher, recipe = _fashion(fashion_recipe)
    x = example_input(recipe)
    pruned = l1_prune(teacher, x, int(0.7 * cost.model_flops(teacher, x)), round_to=4, iterations=4).model
    points = trunk_features(teacher, recipe)
    assert points and all(p.startswith(("encoder", "pool")) for p in points)  # fashion-mt's shared trunk
    probe = next(iter(batches(recipe, "val", count=64, batch_size=64)))[0]

    def distance(m):
        with torch.no_grad(), FeatureTap(m, points) as s, FeatureTap(teacher, points) as t:
            m(probe), teacher(probe)
            return feature_distance(s.values, t.values).item()

    runs = {w: finetune(copy.deepcopy(pruned), recipe, 2, teacher=teacher, limit=128, batch_size=32, feature_weight=w,
                        reestimate_bn=False) for w in (0.0, 10.0)}
    assert distance(runs[10.0]) < distance(runs[0.0])
    assert distance(runs[10.0]) < distance(pruned.eval())


class _Check:
    def __init__(self, severity):
        self.value = severity

    def severity(self):
        return self.value


def test_recover_judges_the_reestimated_model_as_a_candidate(fashion_recipe):
    from toolchain.prune.recovery import recover

    model, recipe = _fashion(fashion_recipe)
    order = iter([(1, 5.0, 5.0), (0, 0.5, 0.5), (0, 0.9, 0.9), (1, 2.0, 2.0)])  # re-estimated best
    seen = []
    judge = lambda m: seen.append(copy.deepcopy(m.state_dict())) or _Check(next(order))  # noqa: E731
    got = recover(model, recipe, 2, judge, limit=64, batch_size=32, reestimate_bn=True)
    assert got.kept == "bn re-estimated" and got.kept_index == 1 and len(got.checks) == 4
    assert all(torch.equal(v, got.model.state_dict()[k]) for k, v in seen[1].items())


def test_feature_distillation_without_a_shared_trunk_says_how_to_turn_it_off(fashion_recipe):
    from toolchain.errors import SpecError
    from toolchain.prune.recovery import finetune

    class Heads(nn.Module):  # two tasks, nothing shared
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 10, 28), nn.Conv2d(1, 2, 28)

        def forward(self, x):
            return {"garment": self.a(x).flatten(1), "group": self.b(x).flatten(1)}

    tasks = {t: fashion_recipe.tasks[t] for t in ("garment", "group")}
    recipe = dataclasses.replace(fashion_recipe, tasks=tasks, outputs=None)
    with pytest.raises(SpecError, match="recovery.feature_weight: 0"):
        finetune(Heads(), recipe, 1, teacher=Heads(), limit=32, feature_weight=1.0)


def test_recover_fine_tunes_from_the_pruned_state_when_reestimation_hurts(fashion_recipe):
    from toolchain.prune.recovery import recover

    model, recipe = _fashion(fashion_recipe)
    before = copy.deepcopy(model.state_dict())
    order = iter([(0, 0.5, 0.5), (1, 5.0, 5.0)])  # the re-estimated model is worse
    got = recover(model, recipe, 0, lambda m: _Check(next(order)), limit=64, batch_size=32, reestimate_bn=True)
    assert got.kept == "unrecovered" and len(got.checks) == 2
    assert all(torch.equal(v, got.model.state_dict()[k]) for k, v in before.items())
