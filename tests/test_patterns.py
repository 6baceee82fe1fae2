"""Every model pattern users write goes through all five stages: inspect, export + verify,
compress (pagcp and l1, then export of the pruned model), and runtime parity with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from patterns import PATTERNS, SHAPE, recipe_doc
from toolchain.bundle.manifest import Bundle
from toolchain.bundle.executor import ReferenceExecutor
from toolchain.errors import SpecError
from toolchain.export import export_bundle
from toolchain.graph.capture import capture, multitask
from toolchain.inspection import inspect_model
from toolchain.prune import cost
from toolchain.prune.baseline import l1_prune
from toolchain.prune.pagcp import PruneConfig, prune
from toolchain.recipe import parse_recipe
from toolchain.runtime import Runtime
from toolchain.verify import verify_bundle


def _model(name: str) -> nn.Module:
    torch.manual_seed(sum(map(ord, name)))
    m = PATTERNS[name][0]()
    with torch.no_grad():  # non-trivial batch-norm statistics, so pruning has something to tell apart
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.mark.parametrize("name", list(PATTERNS))
def test_pattern_through_every_stage(name, tmp_path):
    model, recipe = _model(name), parse_recipe(recipe_doc(name))
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    gm = multitask(model, recipe)

    # the captured graph computes what the user's model computes, under the recipe's task names
    out = gm(x)
    assert set(recipe.tasks) <= set(out)
    ref = model(x)
    flat = [v for v in _leaves(ref)]
    for t, v in out.items():  # (a folded channels-last flatten reorders a sum: float rounding only)
        assert any(v.shape == r.shape and torch.allclose(v, r, rtol=1e-5, atol=1e-6) for r in flat), t
    # layers keep the user's module paths, so pruning and checkpoints name real layers
    user_layers = {n for n, _ in model.named_modules()}
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    assert called and called <= user_layers
    assert not any(n.target in (torch.conv2d, torch.nn.functional.conv2d, torch.nn.functional.linear)
                   for n in gm.graph.nodes), "every weighted layer is a call_module node"

    # evaluation takes the user's model as it is (the recipe names its outputs)
    from toolchain.data.loaders import batches
    from toolchain.evaluate import evaluate

    data = list(batches(recipe, "val", count=4))
    assert evaluate(model, recipe, data, reference=model) == evaluate(gm, recipe, data, reference=gm)

    # 1. inspect
    report, part = inspect_model(gm, x)
    assert set(report.tasks) == set(recipe.tasks)
    assert sum(s.flops for s in report.segments.values()) > 0

    # 2. export + verify
    bundle = tmp_path / f"{name}.mtb"
    export_bundle(gm, recipe, bundle, force=True)
    assert verify_bundle(bundle).ok

    # 3. compress: both methods reach their goal on the captured graph; the pruned model exports
    goal = 0.7
    flops0 = cost.model_flops(gm, x)
    res = prune(gm, recipe, PruneConfig(keep_flops=goal, round_to=2, val_count=8, label_free=True, max_rounds=1),
                example=x)
    l1 = l1_prune(gm, x, int(flops0 * goal), round_to=2)
    assert l1.flops_after < flops0 and res.flops_after <= flops0
    assert cost.model_flops(l1.model, x) == l1.flops_after
    pruned_bundle = tmp_path / f"{name}-l1.mtb"
    export_bundle(l1.model, recipe, pruned_bundle, force=True)
    assert verify_bundle(pruned_bundle).ok

    # 4. runtime parity: the C++ runtime and onnxruntime agree on every task, on fresh inputs
    rt = Runtime(pruned_bundle, backend="openvino", precision="f32")
    reference = ReferenceExecutor(Bundle.open(pruned_bundle))
    probe = np.random.default_rng(2).normal(size=SHAPE).astype(np.float32)
    want = reference.run(probe)
    got = rt.run(probe, tasks=list(recipe.tasks))
    for t in recipe.tasks:
        assert got[t].shape == want[t].shape
        np.testing.assert_allclose(got[t], want[t], rtol=1e-4, atol=1e-4, err_msg=t)
    with torch.no_grad():
        torch_out = l1.model(torch.from_numpy(probe))
    for t in recipe.tasks:
        np.testing.assert_allclose(want[t], torch_out[t].numpy(), rtol=1e-4, atol=1e-4, err_msg=t)


def _leaves(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)


def test_positional_outputs_without_names_ask_for_recipe_outputs():
    with pytest.raises(SpecError, match=r"positional outputs \(out0, out1\).*outputs: \[task0, task1\]"):
        capture(PATTERNS["sequential_slicing"][0]())


def test_recipe_outputs_must_match_the_number_of_outputs_and_name_every_task():
    model = PATTERNS["sequential_slicing"][0]()
    with pytest.raises(SpecError, match=r"names 3 output\(s\) but SequentialSlicing.forward returns 2"):
        capture(model, ["a", "b", "c"])
    doc = recipe_doc("sequential_slicing")
    doc["outputs"] = ["cls", None]
    with pytest.raises(SpecError, match="task\\(s\\) seg are not among 'outputs'"):
        parse_recipe(doc)


def test_null_in_outputs_drops_that_output():
    gm = capture(PATTERNS["namedtuple_heads"][0](), ["score", None, "pts"])
    assert list(gm(torch.randn(SHAPE))) == ["score", "pts"]


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.mean() > 0:  # a decision on a tensor's value: cannot be captured
            y = y * 2
        return {"out": y}


def test_capture_failure_names_the_construct_and_the_source_line():
    with pytest.raises(SpecError) as e:
        capture(_DataDependent())
    msg = str(e.value)
    assert "test_patterns.py" in msg and "if y.mean() > 0" in msg
    assert "configuration flag" in msg


class _WeightsMadeInForward(nn.Module):
    def forward(self, x):
        return {"out": nn.Conv2d(3, 2, 1)(x)}


def test_a_layer_built_inside_forward_is_named():
    with pytest.raises(SpecError, match="Conv2d with weights that is not an attribute.*create it in __init__"):
        capture(_WeightsMadeInForward())


def test_forward_flags_are_specialized_to_their_defaults_and_required_arguments_are_refused():
    gm = capture(PATTERNS["nested_dict_flags"][0](with_aux=True))
    assert set(gm(torch.randn(SHAPE))) == {"heads.cls", "heads.seg", "aux"}
    assert sum(n.op == "placeholder" for n in gm.graph.nodes) == 1

    class Needs(nn.Module):
        def forward(self, x, scale):
            return {"o": x * scale}

    with pytest.raises(SpecError, match="needs argument 'scale'.*give it a default"):
        capture(Needs())


def test_capture_is_idempotent_and_keeps_its_names_through_deepcopy():
    import copy

    gm = capture(PATTERNS["sequential_slicing"][0](), ["cls", "seg"])
    assert capture(gm) is gm
    assert capture(copy.deepcopy(gm)) is not gm
    assert list(capture(copy.deepcopy(gm))(torch.randn(SHAPE))) == ["cls", "seg"]


class _ChannelsLastFlatten(nn.Module):
    def __init__(self, dims, flatten: str) -> None:
        super().__init__()
        self.dims, self.flatten = dims, flatten
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 6, 3, 2, 1), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(6 * 5 * 6, 4))

    def forward(self, x):
        f = self.enc(x).permute(*self.dims)
        f = f.contiguous().reshape(f.shape[0], -1) if self.flatten == "reshape" else f.flatten(1)
        return {"cls": self.head(f)}


@pytest.mark.parametrize("dims, flatten", [((0, 3, 2, 1), "reshape"), ((0, 2, 3, 1), "flatten"), ((0, 2, 1, 3), "reshape")])
def test_a_channels_last_flatten_into_a_linear_is_followed_exactly(dims, flatten):
    from toolchain.prune.exactness import check_groups
    from toolchain.prune.groups import channel_groups

    model = _ChannelsLastFlatten(dims, flatten).eval()
    recipe = parse_recipe({"name": "cl", "input": {"shape": list(SHAPE)}, "data": {"kind": "random"},
                           "tasks": {"cls": {"kind": "classification", "allowed_drop": 1.0}}})
    before = model.head[0].weight.clone()
    gm = multitask(model, recipe)
    x = torch.randn(4, *SHAPE[1:])
    torch.testing.assert_close(gm(x)["cls"], model(x)["cls"], rtol=1e-5, atol=1e-5)
    assert torch.equal(model.head[0].weight, before), "capture must not edit the user's model"
    assert not any(n.target in ("permute", torch.permute) for n in gm.graph.nodes)
    groups = channel_groups(gm, x[:1])
    assert "enc.2" in {g.name for g in groups}
    assert check_groups(gm, x[:1], groups).refused == {}
    # pruning two channels of the last conv removes exactly their 2 x 5 x 6 features from the Linear
    import copy

    pruned = copy.deepcopy(gm)
    next(g for g in groups if g.name == "enc.2").prune(pruned, [1, 4], example=x[:1])
    assert pruned.get_submodule("head.0").in_features == 4 * 5 * 6
    assert pruned(x)["cls"].shape == (4, 4)
