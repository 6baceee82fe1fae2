"""Latency-aware pruning from a latency table written by `mtedge profile`."""

import copy

import pytest
import torch

from cli_helpers import mtedge
from toolchain.errors import SpecError
from toolchain.model import load
from toolchain.prune import cost
from toolchain.prune.groups import channel_groups
from toolchain.targets.latency import load_table


def _table(tmp_path, bundle):
    out = tmp_path / "lat.json"
    mtedge("profile", bundle, "--target", "host-cpu", "-o", out)
    return out


def test_table_prices_every_prunable_layer_and_pruning_lowers_the_estimate(tmp_path, fashion_bundle, tiny_trained_fashion):
    model = tiny_trained_fashion[1].module
    x = torch.zeros(1, 1, 28, 28)
    table = cost.TableLatency.from_table(load_table(_table(tmp_path, fashion_bundle)), model, x)
    assert set(table.names) == set(table.flops0)  # every Conv/Linear found by its module path
    assert abs(table.estimate_ms(model) - table.total_ms) < 1e-9
    group = next(g for g in channel_groups(model, x) if g.name == "encoder.stage1.1.0")
    assert table.cost_per_channel(model, group) > 0
    cut = copy.deepcopy(model)
    group.prune(cut, list(range(16)), example=x)
    assert table.estimate_ms(cut) < table.estimate_ms(model)


def test_compress_reaches_a_latency_goal_judged_by_the_table(tmp_path, fashion_bundle, tiny_trained_fashion):
    ckpt = tiny_trained_fashion[0]
    path = _table(tmp_path, fashion_bundle)
    table = load_table(path)
    total = sum(table.segments.values())
    goal = 0.9 * total
    out = tmp_path / "p.pt"
    proc = mtedge("compress", ckpt, "--prune", "pagcp", "--target-latency-ms", f"{goal:.6f}", "--latency-table", path,
                  "--val-count", "64", "--label-free", "--relax", "--allow-exceed", "-o", out)  # the goal, not bounds
    assert "prunable layers matched by name" in proc.stderr
    pruned = load(str(out)).module
    estimate = cost.TableLatency.from_table(table, tiny_trained_fashion[1].module, torch.zeros(1, 1, 28, 28)).estimate_ms(pruned)
    assert estimate < total
    assert estimate <= goal * 1.001, f"table estimate {estimate:.3f} ms > goal {goal:.3f} ms"


def test_openvino_node_names_map_to_the_modules_that_made_them():
    modules = {"encoder.stage8.1.block.0.0", "encoder.stem.0", "cls_head.3", "dn_fuse.0"}
    assert cost._module_of_ov_node("/model/encoder/stage8/stage8.1/block/block.0/block.0.0/Conv/WithoutBiases",
                                   modules) == "encoder.stage8.1.block.0.0"
    assert cost._module_of_ov_node("/model/encoder/stem/stem.0/Conv", modules) == "encoder.stem.0"
    assert cost._module_of_ov_node("/model/cls_head/cls_head.3/Gemm", modules) == "cls_head.3"
    assert cost._module_of_ov_node("/model/dn_fuse/dn_fuse.0/Conv", modules) == "dn_fuse.0"
    # nodes of no Conv/Linear module (input reorders, resizes) are nobody's
    assert cost._module_of_ov_node("input_abcd_acdb_/model/encoder/stem/stem.0/Conv", modules) is None
    assert cost._module_of_ov_node("/model/Resize", modules) is None


def test_host_counters_time_every_prunable_layer_of_fashion_mt(tiny_trained_fashion):
    model = tiny_trained_fashion[1].module
    x = torch.zeros(1, 1, 28, 28)
    table = cost.TableLatency.measured_on_host(model, x, runs=5)
    timed = {n for n, ms in table.ms0.items() if ms > 0}
    # every conv is timed; the two-output linear heads may be fused into one node by OpenVINO
    assert {n for n in table.flops0 if "fc" not in n} <= timed, set(table.flops0) - timed
    assert table.fixed_ms >= 0 and table.total_ms > 0
    assert abs(table.estimate_ms(model) - table.fixed_ms - sum(table.ms0[n] for n in table.names)) < 1e-9
    group = next(g for g in channel_groups(model, x) if g.name == "encoder.stage1.1.0")
    assert table.cost_per_channel(model, group) > 0


def test_latency_per_flop_order_visits_layers_slow_for_their_flops_first(tiny_trained_fashion):
    from toolchain.prune.pagcp import PruneConfig
    from toolchain.prune.sequential import _priority

    model = tiny_trained_fashion[1].module
    x = torch.zeros(1, 1, 28, 28)
    groups = {g.name: g for g in channel_groups(model, x)}
    a, b = groups["encoder.stage1.1.0"], groups["dn_fuse.0"]
    per_flop = {a.name: 100.0, b.name: 10.0}  # ms per channel
    flops = {a.name: 1e6, b.name: 1e4}  # FLOPs per channel: b is 100x cheaper in FLOPs, 10x in ms
    by_ms = PruneConfig(order="latency", round_to=4)
    by_eff = PruneConfig(order="latency-per-flop", round_to=4)
    assert _priority(by_ms, a, flops[a.name], per_flop) > _priority(by_ms, b, flops[b.name], per_flop)
    assert _priority(by_eff, b, flops[b.name], per_flop) > _priority(by_eff, a, flops[a.name], per_flop)
    with pytest.raises(SpecError, match="latency-per-flop"):
        PruneConfig(order="fastest").check()
    with pytest.raises(SpecError, match="max_step"):
        PruneConfig(max_step=1.5).check()


def test_compress_orders_by_host_latency_per_flop_without_a_table(tmp_path, tiny_trained_fashion):
    ckpt, lm = tiny_trained_fashion
    out = tmp_path / "p.pt"
    proc = mtedge("compress", ckpt, "--prune", "pagcp", "--keep-flops", "0.8", "--order", "latency-per-flop",
                  "--max-step", "0.75", "--round-to", "4", "--val-count", "64", "--label-free", "--relax",
                  "--allow-exceed", "-o", out)  # tests the order at a goal, not the bounds
    assert "host per-layer latency (OpenVINO CPU counters)" in proc.stderr + proc.stdout
    x = torch.zeros(1, 1, 28, 28)
    before, after = cost.model_flops(lm.module, x), cost.model_flops(load(str(out)).module, x)
    # the order pruned something; the goal is met, or the output says it was not (max_relax caps a
    # task's budget even with --relax, and the per-layer times are measured on a loaded host)
    assert after < before
    assert after <= 0.8 * before or "goal not reached" in proc.stdout + proc.stderr
