"""Latency-aware pruning from a latency table written by `mtedge profile` (issue 7 -> issue 5)."""

import copy

import torch

from cli_helpers import mtedge
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
    table = cost.TableLatency(load_table(_table(tmp_path, fashion_bundle)), model, x)
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
                  "--val-count", "64", "--label-free", "-o", out)
    assert "prunable layers matched by name" in proc.stderr
    pruned = load(str(out)).module
    estimate = cost.TableLatency(table, tiny_trained_fashion[1].module, torch.zeros(1, 1, 28, 28)).estimate_ms(pruned)
    assert estimate < total
    assert estimate <= goal * 1.001, f"table estimate {estimate:.3f} ms > goal {goal:.3f} ms"
