"""Pruning must be exact -- dead-channel invariance through every layout-changing op.

Property: make a set of a group's channels provably dead, prune exactly those channels through the
group, and every task output stays the same (<= 1e-5, fp32), in torch and in onnxruntime. The
check (toolchain/prune/exactness.py) must prove every group of every test model the pruner is
willing to prune, refuse -- by name -- the groups whose Torch-Pruning index mapping is wrong, and
`mtedge compress` (PAGCP) must never prune a refused group.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from toolchain.prune.exactness import (
    ATOL,
    ExactnessResult,
    check_groups,
    dead_counts,
    dead_set,
    probe_input,
    verify_exact,
)
from toolchain.prune.groups import ChannelGroup, channel_groups, dependency_graph
from support import layout_models as lm
from support.architectures import EXPORT_SHAPES, recipe_for

try:
    from support.encoders import ENCODERS
except ImportError:  # written by the pruning engineer; the property covers it once it exists
    ENCODERS = {}

# Groups Torch-Pruning maps wrongly (found by this check; docs/pruning-exactness.md): case -> root
# of the refused group -> the layer the refusal names (where it goes wrong, at one dead channel).
EXPECTED_REFUSED = {
    "flatten_channels_last": {"s2.0": "fc"},  # permute(0,2,3,1) then flatten: TP assumes NCHW order
    "channel_shuffle": {"s1.0": "s1"},  # view-transpose-view right after s1 fails: TP maps 1:1
    "pixel_shuffle": {"up": "ps"},  # 4 input channels per output channel: TP maps 1:1
    "split_concat_reordered": {"s2.0": "s2.0"},  # chunk/split + cat: TP maps to channel 16 of 11
}


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: the checks are many tiny forwards, threads only add contention
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _groups(model: nn.Module, x: torch.Tensor) -> list[ChannelGroup]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return channel_groups(model, x)


def _assert_all_proven(result: ExactnessResult, groups: list[ChannelGroup], where: str) -> None:
    assert not result.refused, f"{where}: refused {{{', '.join(f'{k}: {v}' for k, v in result.refused.items())}}}"
    assert set(result.proven) == {g.name for g in groups}, where
    for g in groups:
        cases = result.proven[g.name]
        assert [len(c.dead) for c in cases] == dead_counts(g.channels)  # every size ran
        assert all(c.ok and c.max_abs_diff <= ATOL * 10 for c in cases)


# --- the check itself -----------------------------------------------------------------------------

def test_dead_sets_are_scattered_reproducible_and_sized():
    assert dead_counts(9) == [1, 4, 8]  # one, about half, all but one
    assert dead_counts(2) == [1] and dead_counts(1) == []
    s = dead_set(40, 5, seed=0, salt="a.b")
    assert s == dead_set(40, 5, seed=0, salt="a.b") and len(set(s)) == 5
    assert s != list(range(s[0], s[0] + 5))  # not a contiguous block
    x = probe_input(torch.zeros(8, 3, 5, 7))
    assert x.shape == (2, 3, 5, 7) and x.abs().sum() > 0  # a blank example would hide bad mappings


def test_check_leaves_the_model_untouched_and_catches_a_deliberately_wrong_mapping():
    torch.manual_seed(0)  # the size of the wrong mapping's damage depends on the weights
    model = lm.FlattenChannelMajor().eval()
    x = torch.randn(model.input_shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = _groups(model, x)
    assert check_groups(model, x, groups).ok
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    class OffByOne(ChannelGroup):  # prunes the channel next to each dead one
        def prune(self, m, idxs, example=None, graph=None):
            super().prune(m, [(i + 1) % self.channels for i in idxs], example, graph)

    g = next(g for g in groups if g.name == "s2.0")
    bad = OffByOne(g.name, g.root_module, g.channels, g.tp_group, g.layers, g.out_layers, g.in_layers)
    result = check_groups(model, x, [bad])
    assert "s2.0" in result.refused and "fc" in result.refused["s2.0"].reason
    assert result.refused["s2.0"].max_abs_diff > 1e-3


# --- layout models (deliverable 3, verdicts: deliverable 4) ---------------------------------------

@pytest.mark.parametrize("case", sorted(lm.LAYOUT_MODELS))
def test_layout_models_are_proven_or_refused_by_name(case):
    cls = lm.LAYOUT_MODELS[case]
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.randn(cls.input_shape)
    groups = _groups(model, x)
    result = check_groups(model, x, groups, onnx=True)  # torch and onnxruntime
    expected = EXPECTED_REFUSED.get(case, {})
    assert set(result.refused) == set(expected), {k: str(v) for k, v in result.refused.items()}
    for root, layer in expected.items():
        refusal = result.refused[root]
        assert refusal.layer == layer and f"layer {layer}" in str(refusal) and root in str(refusal)
    assert set(result.proven) | set(result.refused) == {g.name for g in groups}
    for cases in result.proven.values():
        for c in cases:
            assert c.max_abs_diff <= ATOL and c.onnx_max_abs_diff is not None and c.onnx_max_abs_diff <= ATOL
    if case == "sigmoid_between":  # f(0) != 0: only saturated dead channels are dead where consumed
        assert {c.kill for c in result.proven["s1"]} == {"saturate"}


def _naive_prune_diff(model: nn.Module, x: torch.Tensor, root: str, idxs: list[int]) -> float:
    """Kill `idxs` at every producer and prune them with Torch-Pruning's own mapping, no check."""
    from toolchain.prune.exactness import kill_channels

    dead = copy.deepcopy(model).eval()
    graph = dependency_graph(dead, x)
    g = next(g for g in _groups(model, x) if g.name == root)
    kill_channels(dead, graph, g, idxs)
    with torch.no_grad():
        ref = dead(x)
    g.prune(dead, idxs, graph=graph)
    with torch.no_grad():
        out = dead(x)  # runs fine: the model is silently wrong, not broken
    return max((ref[t] - out[t]).abs().max().item() for t in ref)


@pytest.mark.parametrize("case,root,idxs,layer", [
    ("flatten_channels_last", "s2.0", [1, 3], "fc"),
    ("channel_shuffle", "s1.0", [0, 5, 10], "s2.0"),  # 3 channels: the shuffle's view still works
    ("pixel_shuffle", "up", [4, 5, 6, 7], "refine.0"),  # one whole block of r^2 channels
])
def test_naive_torch_pruning_is_silently_wrong_and_the_check_refuses_it(case, root, idxs, layer):
    cls = lm.LAYOUT_MODELS[case]
    model = cls().eval()
    x = probe_input(torch.zeros(cls.input_shape))
    assert _naive_prune_diff(model, x, root, idxs) > 1e-3
    g = next(g for g in _groups(model, x) if g.name == root)
    verdict = verify_exact(model, x, g, idxs)
    assert not verdict.ok and verdict.layer == layer and layer in verdict.reason
    assert verdict.max_abs_diff > 1e-3 and verdict.task is not None


def test_channel_major_flatten_is_mapped_right():
    # the control for the channels-last case: same network without the permute is exact
    model = lm.FlattenChannelMajor().eval()
    x = probe_input(torch.zeros(model.input_shape))
    assert _naive_prune_diff(model, x, "s2.0", [1, 3]) <= ATOL


def test_grouped_conv_groups_are_refused_by_the_check_too():
    # channel_groups leaves groups through grouped convs out; the check agrees independently
    model = lm.GroupedDepthwise().eval()
    x = torch.randn(model.input_shape)
    graph = dependency_graph(model, x)
    names = {m: n for n, m in model.named_modules()}
    raw = []
    for g in graph.get_all_groups(root_module_types=(nn.Conv2d,)):
        root = g[0].dep.target.module
        if names[root] in ("s1.0", "dw.0"):
            mods = [(names[d.target.module], graph.is_out_channel_pruning_fn(d.handler)) for d, _ in g if d.target.module in names]
            outs = [n for n, o in mods if o]
            ins = [n for n, o in mods if not o]
            raw.append(ChannelGroup(names[root], root, graph.get_out_channels(root), g, [names[root], *outs, *ins], outs, ins))
    assert {g.name for g in raw} == {"s1.0", "dw.0"}
    assert {g.name for g in _groups(model, x)} == {"pw.0"}
    result = check_groups(model, x, raw)
    assert set(result.refused) == {"s1.0", "dw.0"} and "grouped" in str(result.refused["s1.0"])


# --- zoo, architecture-shape and encoder-family models ----------------------------------------------

def _zoo_cases():
    from toolchain.zoo.fashion_mt import FashionMT
    from toolchain.zoo.mobilenetv2_mt import MobileNetV2MT

    return {"zoo:fashion-mt": (FashionMT, (1, 1, 28, 28)),
            "zoo:mobilenetv2-mt@64": (lambda: MobileNetV2MT(image_size=64), (1, 3, 64, 64))}


MODEL_CASES = {**_zoo_cases(), **{f"arch:{n}": (c, (1, 3, 37, 45)) for n, c in EXPORT_SHAPES.items()},
               **{f"encoder:{n}": (c, (1, 3, 37, 45)) for n, c in ENCODERS.items()}}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_every_group_of_every_test_model_is_proven(case):
    factory, shape = MODEL_CASES[case]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(shape)
    groups = _groups(model, x)
    assert groups, case
    # ONNX on the small ones; mobilenetv2's 33 groups x 3 sizes stay torch-only to fit the budget
    result = check_groups(model, x, groups, onnx=case.startswith("arch:"))
    _assert_all_proven(result, groups, case)


# --- random small multitask architectures -----------------------------------------------------------

@st.composite
def random_specs(draw):
    n = draw(st.integers(1, 3))
    blocks = []
    for _ in range(n):
        kind = draw(st.sampled_from(["plain", "residual", "concat"]))
        # residual chains use f(0) = 0 activations: a group mixing sigmoid with PReLU is refused
        # on purpose (docs/pruning-exactness.md), which is not what this property is about
        act = draw(st.sampled_from(("relu", "hardswish", "silu", "prelu") if kind == "residual" else lm.ACTIVATIONS))
        # width >= 4: the 3-channel image never feeds an identity shortcut (see the groups.py xfail below)
        blocks.append(lm.RandomBlock(kind, draw(st.integers(4, 11)), draw(st.sampled_from([1, 3, 5])),
                                     draw(st.sampled_from([1, 2])), act, draw(st.booleans())))
    heads = []
    for i in range(draw(st.integers(2, 3))):
        kind = draw(st.sampled_from(["cls", "dense", "fuse"]))
        # the first head reads the last block: a block no output depends on is invisible to the
        # dependency trace (the check refuses such groups; see the groups.py xfail below)
        tap = n - 1 if i == 0 else draw(st.integers(0, n - 1))
        heads.append(lm.RandomHead(kind, tap, draw(st.integers(0, n - 1)), draw(st.integers(1, 4))))
    return blocks, heads


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), seed=st.integers(0, 2**16))
def test_random_architectures_every_group_is_proven(spec, seed):
    blocks, heads = spec
    torch.manual_seed(seed)
    model = lm.RandomMT(blocks, heads).eval()
    x = torch.randn(1, 3, 17, 19)
    groups = _groups(model, x)
    result = check_groups(model, x, groups, seed=seed)
    _assert_all_proven(result, groups, f"{blocks} {heads}")


# --- integration: PAGCP (what `mtedge compress --prune pagcp` runs) -----------------------------------

def test_pagcp_runs_the_check_and_never_prunes_a_refused_group():
    from toolchain.prune.pagcp import PruneConfig, prune

    torch.manual_seed(0)
    model = lm.ChannelShuffle().eval()
    shape = (1, *model.input_shape[1:])
    recipe = recipe_for(model, shape)
    config = PruneConfig(keep_flops=0.6, round_to=1, val_count=8, batch_size=8, max_rounds=2, label_free=True,
                         use_taylor=False, budget_fraction=100.0, relax_bounds=True)  # generous budget: prune wherever allowed
    with pytest.warns(UserWarning, match=r"pruning group s1\.0 skipped"):
        result = prune(model, recipe, config, example=torch.randn(shape))
    assert "s1.0" in result.refused
    assert result.channels["s1.0"] == (15, 15)  # refused: untouched
    assert result.model.get_submodule("s1.0").out_channels == 15
    assert any(after < before for before, after in result.channels.values())  # the others were pruned


def test_pagcp_prunes_through_a_channels_last_flatten_that_capture_folds():
    """The raw model's s2.0 is refused (Torch-Pruning maps NCHW); captured, the flatten is NCHW."""
    from toolchain.graph.capture import multitask
    from toolchain.prune.pagcp import PruneConfig, prune

    torch.manual_seed(0)
    model = lm.FlattenChannelsLast().eval()
    shape = (1, *model.input_shape[1:])
    assert "s2.0" in check_groups(model, torch.randn(shape), channel_groups(model, torch.randn(shape))).refused
    config = PruneConfig(keep_flops=0.6, round_to=1, val_count=8, batch_size=8, max_rounds=2, label_free=True,
                         use_taylor=False, budget_fraction=100.0, relax_bounds=True)
    recipe = recipe_for(model, shape)
    result = prune(model, recipe, config, example=torch.randn(shape))
    assert "s2.0" in result.channels and "s2.0" not in result.refused
    assert result.model.fc.in_features == result.channels["s2.0"][1] * 9
    captured = multitask(model, recipe)
    x = torch.randn(shape)
    assert check_groups(captured, x, channel_groups(captured, x)).refused == {}


def test_compress_cli_reports_refused_groups(tmp_path):
    import yaml

    from cli_helpers import mtedge

    recipe = {"name": "shuffle", "input": {"shape": [1, 3, 13, 11]},
              "data": {"kind": "random", "val_count": 8, "calibration_count": 8, "test_count": 8},
              "tasks": {"cls": {"kind": "classification", "allowed_drop": 50.0},
                        "seg": {"kind": "segmentation", "allowed_drop": 50.0}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    proc = mtedge("compress", "support.layout_models:ChannelShuffle", "--recipe", tmp_path / "r.yaml",
                  "--prune", "pagcp", "--keep-flops", "0.7", "--round-to", "1", "--val-count", "8", "--label-free",
                  "--test-count", "8", "-o", tmp_path / "p.pt", "--report", tmp_path / "rep", "--threads", "1",
                  "--relax", "--allow-exceed")  # about refused groups, not bounds: reach the goal
    assert "s1.0" in proc.stderr and "skipped" in proc.stderr  # the warning names the group
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "refused" in report and "s1.0" in report


# --- groups.py findings (toolchain/prune/groups.py is the pruning engineer's; reported to the lead) ---

class _InputResidual(nn.Module):
    """conv(3 -> 3) + the image itself: the add couples the conv's channels to the network input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), nn.BatchNorm2d(3))
        self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 1, 1)

    def forward(self, x):
        y = torch.relu(self.conv(x) + x)
        return {"a": self.a(y), "b": self.b(y)}


class _UnusedLayer(nn.Module):
    """`side` runs in forward but reaches no output: the autograd trace never sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 5, 1), nn.ReLU())
        self.side = nn.Conv2d(5, 4, 1)
        self.a, self.b = nn.Conv2d(5, 2, 1), nn.Conv2d(5, 1, 1)

    def forward(self, x):
        f = self.enc(x)
        self.side(f)
        return {"a": self.a(f), "b": self.b(f)}


@pytest.mark.parametrize("factory,root", [(_InputResidual, "conv.0"), (_UnusedLayer, "enc.0")])
def test_check_refuses_groups_that_channel_groups_should_not_offer(factory, root):
    """The exactness check is the second line of defence: given such a group anyway (here from the
    unprotected listing, which skips the fx checks), it refuses it."""
    model = factory().eval()
    x = torch.randn(1, 3, 7, 9)
    groups = {g.name: g for g in channel_groups(model, x, protect_outputs=False)}
    result = check_groups(model, x, [groups[root]])
    assert root in result.refused and "fails to run" in str(result.refused[root])


@pytest.mark.parametrize("factory,root,reason", [(_InputResidual, "conv.0", "meet the network input"),
                                                 (_UnusedLayer, "enc.0", "feeds side, which no task output depends on")])
def test_channel_groups_offers_only_groups_that_can_be_pruned(factory, root, reason):
    model = factory().eval()
    x = torch.randn(1, 3, 7, 9)
    skipped: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = channel_groups(model, x, skipped=skipped)
    assert root not in {g.name for g in groups} and reason in skipped[root]
    for g in groups:  # whatever is offered prunes to a model that still runs
        m = copy.deepcopy(model)
        g.prune(m, [0], example=x)
        with torch.no_grad():
            m(x)
