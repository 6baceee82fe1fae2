"""Slimmable widths (toolchain/slim, docs/slimmable.md): conversion, training, search, export, runtime."""

from __future__ import annotations

import json
import random
from functools import partial

import numpy as np
import pytest
import torch

from toolchain.errors import SpecError
from toolchain.slim.convert import WidthConfig, convert, keep_channels, materialize, parse_config_name
from toolchain.slim.search import SlimTable, parse_preferences, search

TASKS = ["garment", "group", "silhouette", "denoise"]
WIDTHS = (1.0, 0.5)


def _randomized_fashion(seed: int = 0) -> torch.nn.Module:
    """zoo:fashion-mt with random weights and random (non-trivial) batch-norm statistics."""
    from toolchain.zoo.fashion_mt import FashionMT

    torch.manual_seed(seed)
    m = FashionMT()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: several times faster than two on busy shared cores; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(fashion_recipe):
    from toolchain.data.loaders import batches

    x, _ = next(batches(fashion_recipe, "val", count=32, batch_size=32))
    return x


@pytest.fixture(scope="module")
def slim(fashion_recipe, data):
    """A converted, briefly sandwich-trained and recalibrated fashion-mt (widths 1.0 and 0.5)."""
    from toolchain.slim.train import SlimTrainConfig, train_slimmable

    s = convert(_randomized_fashion(), TASKS, data[:1], widths=WIDTHS, round_to=4)
    train_slimmable(s, fashion_recipe, SlimTrainConfig(epochs=1.0, limit=192, batch_size=64, calib_images=64))
    return s


def test_keep_channels_rounds_to_multiple():
    assert keep_channels(16, 0.35, 4) == 8  # ceil(5.6) = 6 -> 8
    assert keep_channels(8, 0.35, 4) == 4
    assert keep_channels(64, 0.75, 4) == 48
    assert keep_channels(10, 1.0, 4) == 10  # never more than C
    with pytest.raises(SpecError, match="width"):
        keep_channels(16, 1.5, 4)


def test_conversion_preserves_full_width_function(data):
    model = _randomized_fashion(1)
    s = convert(model, TASKS, data[:1], widths=(1.0, 0.75, 0.5, 0.35))
    with torch.no_grad():
        ref, got = model(data), s(data)
    assert max(float((ref[t] - got[t]).abs().max()) for t in TASKS) <= 1e-5
    # the importance permutation really moved channels (else the check above proves nothing)
    w0 = model.get_submodule("encoder.stage1.0.0").weight
    w1 = s.model.get_submodule("encoder.stage1.0.0").weight
    assert not torch.equal(w0, w1)
    # most important first: group magnitude is non-increasing along the permuted root
    norms = s.model.get_submodule("encoder.stage2.1.0").weight.flatten(1).norm(dim=1)
    assert norms[:8].mean() > norms[-8:].mean()
    # units: encoder groups and one decoder per task that has a slimmable layer
    units = {g.name: g.unit for g in s.spec.groups}
    assert units["encoder.stage1.0.0"] == "encoder" and units["sil_fuse.0"] == "silhouette"
    assert units["dn_reduce.0"] == "denoise"


def test_masked_configuration_equals_materialized_dense_model(slim, data):
    cfg = WidthConfig.make(0.5, {"garment": 1.0, "group": 0.5, "silhouette": 1.0, "denoise": 0.5})
    slim.set_config(cfg)
    with torch.no_grad():
        masked = slim(data)
    dense = materialize(slim, cfg, data[:1])
    slim.set_config(WidthConfig.uniform(1.0, TASKS))
    with torch.no_grad():
        out = dense(data)
    assert max(float((masked[t] - out[t]).abs().max()) for t in TASKS) <= 1e-4
    assert dense.get_submodule("encoder.stage2.1.0").out_channels == 32
    assert dense.get_submodule("sil_fuse.0").out_channels == 16  # silhouette decoder at full width
    assert sum(p.numel() for p in dense.parameters()) < sum(p.numel() for p in slim.model.parameters())


def test_fashion_encoder_slims_per_stage_by_resolution(fashion_recipe, data, tmp_path):
    """Stem (28x28), stage1 (14x14) and stage2 (7x7) each get a width: a configuration that halves
    only stage2 keeps stem and stage1 whole, masked == materialized, and the grid, the BN statistics
    and the search cover every stage assignment."""
    from toolchain.data.loaders import batches
    from toolchain.slim.search import evaluate_grid, search
    from toolchain.slim.train import recalibrate

    s = convert(_randomized_fashion(3), TASKS, data[:1], widths=WIDTHS, round_to=4, encoder_stages=True)
    stage = {g.name: g.stage for g in s.spec.groups if g.unit == "encoder"}
    assert s.spec.stages == 3
    assert stage == {"encoder.stem.0": 0, "encoder.stage1.0.0": 1, "encoder.stage1.1.0": 1,
                     "encoder.stage2.0.0": 2, "encoder.stage2.1.0": 2}
    recalibrate(s, fashion_recipe, images=64)
    assert {"encoder@100-100-50", "encoder@50-100-100", "denoise@100-100-50/50"} <= set(s.bn_stats)
    cfg = WidthConfig.make([1.0, 1.0, 0.5], {t: 1.0 for t in TASKS})
    s.set_config(cfg)
    with torch.no_grad():
        masked = s(data)
    dense = materialize(s, cfg, data[:1])
    with torch.no_grad():
        out = dense(data)
    assert max(float((masked[t] - out[t]).abs().max()) for t in TASKS) <= 1e-4
    assert dense.get_submodule("encoder.stem.0").out_channels == 16
    assert dense.get_submodule("encoder.stage1.1.0").out_channels == 32
    assert dense.get_submodule("encoder.stage2.1.0").out_channels == 32
    with pytest.raises(SpecError, match="3 encoder stage"):
        s.set_config(WidthConfig.make([1.0, 0.5], {t: 1.0 for t in TASKS}))
    table = evaluate_grid(s, fashion_recipe, list(batches(fashion_recipe, "val", count=32, batch_size=32)), data[:1])
    assert table.stages == 3 and len(table.metrics) == 2 ** 3 * 2 and "100-100-50/100" in table.metrics
    assert table.flops(cfg) < table.full_flops
    r = search(table, {t: 1.0 for t in TASKS}, budget_flops=0.7)
    assert r.flops <= 0.7 * table.full_flops and r.candidates > 2 ** 4  # more than the one-width encoders
    s.set_config(WidthConfig.uniform(1.0, TASKS))
    # a per-stage configuration exports as a variant and verifies against its own golden outputs
    from toolchain.slim.export import export_slim_bundle
    from toolchain.verify import verify_bundle

    out = tmp_path / "staged.mtb"
    export_slim_bundle(s, fashion_recipe, out, [WidthConfig.uniform(1.0, TASKS), cfg], data[:1])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variants"][cfg.name]["config"]["encoder"] == [1.0, 1.0, 0.5]
    assert verify_bundle(out).ok


def test_widest_configuration_also_distills_from_the_original_model(fashion_recipe, data):
    from toolchain.data.loaders import batches
    from toolchain.slim.train import SlimTrainConfig, sandwich_step

    s = convert(_randomized_fashion(5), TASKS, data[:1], widths=WIDTHS)
    x, targets = next(batches(fashion_recipe, "train", count=16, batch_size=16))
    kinds = {t: fashion_recipe.tasks[t].kind for t in TASKS}
    same, other = _randomized_fashion(5), _randomized_fashion(6)  # the original / an unrelated model
    cfg = SlimTrainConfig(teacher_weight=1.0)
    plain = sandwich_step(s, x, targets, kinds, random.Random(0), SlimTrainConfig(teacher_weight=0.0), other)["widest"]
    anchored_same = sandwich_step(s, x, targets, kinds, random.Random(0), cfg, same)["widest"]
    anchored_other = sandwich_step(s, x, targets, kinds, random.Random(0), cfg, other)["widest"]
    assert anchored_same == pytest.approx(plain, rel=1e-4)  # full width == the original: nothing to add
    assert anchored_other > plain + 1e-3  # a teacher that disagrees adds a distillation term


def test_slim_train_hook_runs_the_users_loop_then_recalibrates(monkeypatch, fashion_recipe, data):
    """A user's loop from the recipe (`hooks: {slim_train: ...}`) drives sandwich_step itself."""
    import dataclasses
    import sys
    import types

    from toolchain.data.loaders import batches
    from toolchain.slim.train import SlimTrainConfig, sandwich_step, train_slimmable

    seen = []

    def loop(slim, recipe, config):
        opt = torch.optim.SGD(slim.parameters(), lr=1e-3)
        kinds = {t: recipe.tasks[t].kind for t in slim.tasks}
        for x, y in batches(recipe, "train", count=64, batch_size=32):
            opt.zero_grad()
            seen.append(sandwich_step(slim, x, y, kinds, random.Random(0), config))
            opt.step()

    mod = types.ModuleType("user_slim_loop")
    mod.loop = loop
    monkeypatch.setitem(sys.modules, "user_slim_loop", mod)
    recipe = dataclasses.replace(fashion_recipe, hooks={"slim_train": "user_slim_loop:loop"})
    s = convert(_randomized_fashion(4), TASKS, data[:1], widths=WIDTHS)
    assert train_slimmable(s, recipe, SlimTrainConfig(calib_images=32)) is s
    assert len(seen) == 2 and set(seen[0]) == {"widest", "narrowest", "random1"}
    assert {"encoder@100", "encoder@50"} <= set(s.bn_stats) and not s.training  # recalibrated, eval mode
    with pytest.raises(SpecError, match="slim_train"):
        train_slimmable(s, dataclasses.replace(fashion_recipe, data=dataclasses.replace(fashion_recipe.data, kind="photos")))


def test_recalibration_stores_statistics_per_width(slim):
    assert {"encoder@100", "encoder@50", "denoise@50/100", "denoise@50/50"} <= set(slim.bn_stats)
    a = slim.bn_stats["encoder@100"]["encoder.stem.1"]["running_mean"]
    b = slim.bn_stats["encoder@50"]["encoder.stem.1"]["running_mean"]
    assert not torch.allclose(a, b)  # narrower inputs downstream -> different statistics
    slim.set_config(WidthConfig.uniform(0.5, TASKS))
    assert torch.equal(slim.model.get_submodule("encoder.stem.1").running_mean, b)
    slim.set_config(WidthConfig.uniform(1.0, TASKS))
    assert torch.equal(slim.model.get_submodule("encoder.stem.1").running_mean, a)


def test_sandwich_step_trains_every_configuration(fashion_recipe, data):
    from toolchain.data.loaders import batches
    from toolchain.slim.train import SlimTrainConfig, sandwich_step

    s = convert(_randomized_fashion(2), TASKS, data[:1], widths=WIDTHS).train()
    x, targets = next(batches(fashion_recipe, "train", count=32, batch_size=32))
    kinds = {t: fashion_recipe.tasks[t].kind for t in TASKS}
    losses = sandwich_step(s, x, targets, kinds, random.Random(0), SlimTrainConfig(random_configs=1))
    assert set(losses) == {"widest", "narrowest", "random1"}
    # a decoder-only layer outside the narrowest prefix still gets gradient from the widest
    g = s.model.get_submodule("sil_fuse.0").weight.grad
    assert g is not None and float(g[-1].abs().sum()) > 0
    with pytest.raises(SpecError, match="teacher"):
        sandwich_step(s, x, None, kinds, random.Random(0))


def _synthetic_table() -> SlimTable:
    """Two decoders that cost the same; metrics rise with width."""
    widths = [1.0, 0.5]
    metrics, dec = {}, {}
    for e in (100, 50):
        for d in (100, 50):
            metrics[f"{e}/{d}"] = {"a": 60 + e / 10 + d / 5, "b": 20 + e / 50 + d / 25}
            dec[f"{e}/{d}"] = {"a": 10 * e * d, "b": 10 * e * d}
    return SlimTable(widths, ["a", "b"], {"a": True, "b": True}, metrics, {"100": 100_000, "50": 40_000}, dec)


def test_search_respects_budget_and_preferences():
    table = _synthetic_table()
    full = table.full_flops
    assert full == 100_000 + 2 * 100_000
    r = search(table, {"a": 1, "b": 1}, budget_flops=full)
    assert r.config == WidthConfig.uniform(1.0, ["a", "b"])
    budget = 100_000 + 100_000 + 50_000  # one decoder at full width, the other at half
    ra = search(table, {"a": 3, "b": 1}, budget_flops=budget)
    rb = search(table, {"a": 1, "b": 3}, budget_flops=budget)
    assert ra.flops <= budget and rb.flops <= budget
    assert ra.config.decoder("a") > ra.config.decoder("b")
    assert rb.config.decoder("b") > rb.config.decoder("a")
    assert ra.metrics["a"] > rb.metrics["a"] and rb.metrics["b"] > ra.metrics["b"]
    assert search(table, {"a": 1, "b": 1}, budget_flops=budget / full).flops <= budget  # fraction form
    with pytest.raises(SpecError, match="narrowest costs"):
        search(table, {"a": 1, "b": 1}, budget_flops=1000)
    with pytest.raises(SpecError, match="give one budget"):
        search(table, {"a": 1, "b": 1})
    with pytest.raises(SpecError, match="give one budget"):
        search(table, {"a": 1, "b": 1}, budget_flops=budget, budget_latency_ms=1.0)


def test_search_keeps_tasks_within_their_max_drop():
    from toolchain.slim.search import drop_from_full, parse_task_values

    table = _synthetic_table()
    budget = 100_000 + 100_000 + 50_000
    free = search(table, {"a": 3, "b": 1}, budget_flops=budget)
    assert drop_from_full(table, free.config, "b") == pytest.approx(2.0)  # b's decoder halved
    kept = search(table, {"a": 3, "b": 1}, budget_flops=budget, max_drop={"b": 1.0})
    assert kept.flops <= budget and kept.config != free.config
    assert drop_from_full(table, kept.config, "b") <= 1.0
    assert kept.candidates < free.candidates and kept.budget["max_drop"] == {"b": 1.0}
    with pytest.raises(SpecError, match=r"none of the \d+ configurations within the budget.*a 5 > 0"):
        search(table, {"a": 1, "b": 1}, budget_flops=budget / 2, max_drop={"a": 0.0, "b": 0.0})
    with pytest.raises(SpecError, match="unknown task"):
        search(table, {"a": 1, "b": 1}, budget_flops=budget, max_drop={"c": 1.0})
    assert parse_task_values("a=2, b=0.5", ["a", "b"], "max drop") == {"a": 2.0, "b": 0.5}
    with pytest.raises(SpecError, match="max drop 'x' for a is not a number"):
        parse_task_values("a=x", ["a", "b"], "max drop")


def test_search_with_only_max_drop_returns_the_cheapest_configuration_within_it():
    from toolchain.slim.search import drop_from_full

    table = _synthetic_table()
    # halving the encoder costs a 5 and b 1, halving a decoder costs a 10 and b 2 (see _synthetic_table)
    bound = {"a": 10.0, "b": 1.0}
    r = search(table, {"a": 1, "b": 1}, max_drop=bound)
    configs = [WidthConfig.make(e, {"a": da, "b": db}) for e in (1.0, 0.5) for da in (1.0, 0.5) for db in (1.0, 0.5)]
    within = [c for c in configs if all(drop_from_full(table, c, t) <= d for t, d in bound.items())]
    assert r.flops == min(table.flops(c) for c in within)  # brute force over all 8 configurations
    assert r.config == WidthConfig.make(0.5, {"a": 1.0, "b": 1.0}) and r.candidates == len(within) == 3
    assert r.budget["flops"] is None and r.budget["max_drop"] == bound
    # within the FLOPs slack (here half the full model) the preferred task's configuration wins
    slack = search(table, {"a": 1, "b": 3}, max_drop=bound, flops_slack=0.5)
    assert slack.config == WidthConfig.make(1.0, {"a": 0.5, "b": 1.0}) and slack.flops > r.flops
    with pytest.raises(SpecError, match=r"none of the 8 configurations keeps .*loosen --max-drop"):
        search(table, {"a": 1, "b": 1}, max_drop={"a": -1.0})


def test_parse_preferences_and_config_names():
    assert parse_preferences("silhouette=2,denoise=0.5", TASKS) == {"garment": 1.0, "group": 1.0, "silhouette": 2.0,
                                                                    "denoise": 0.5}
    with pytest.raises(SpecError, match="seg=2"):
        parse_preferences("seg=2", TASKS)
    c = parse_config_name("e50_silhouette100_denoise35", TASKS)
    assert c.encoder == (0.5,) and c.decoder("silhouette") == 1.0 and c.decoder("garment") == 0.5
    assert parse_config_name(c.name, TASKS) == c
    staged = parse_config_name("e100-75-50_denoise35", TASKS)
    assert staged.encoder == (1.0, 0.75, 0.5) and staged.decoder("garment") == 0.5 and staged.decoder("denoise") == 0.35
    assert staged.name == "e100-75-50_denoise35_garment50_group50_silhouette50"
    assert parse_config_name(staged.name, TASKS) == staged
    assert WidthConfig.from_dict(staged.to_dict()) == staged and staged.to_dict()["encoder"] == [1.0, 0.75, 0.5]
    assert WidthConfig.make([0.5, 0.5, 0.5], {t: 0.5 for t in TASKS}) == WidthConfig.uniform(0.5, TASKS)  # collapses
    with pytest.raises(SpecError, match="one width per encoder stage"):
        WidthConfig.from_dict({"encoder": [], "decoders": {}})
    assert parse_config_name("c75", TASKS) == WidthConfig.uniform(0.75, TASKS)
    with pytest.raises(SpecError, match="cNN"):
        parse_config_name("wide", TASKS)


@pytest.fixture(scope="module")
def table(slim, fashion_recipe, data):
    from toolchain.data.loaders import batches
    from toolchain.slim.search import evaluate_grid

    return evaluate_grid(slim, fashion_recipe, list(batches(fashion_recipe, "val", count=64, batch_size=64)), data[:1])


def test_grid_table_search_on_real_model(slim, table, data):
    from toolchain.prune.cost import model_flops

    assert set(table.metrics) == {"100/100", "100/50", "50/100", "50/50"}
    half = WidthConfig.uniform(0.5, TASKS)
    assert table.flops(half) < 0.4 * table.full_flops
    assert table.flops(half) == model_flops(materialize(slim, half, data[:1]), data[:1])  # unit FLOPs add up exactly
    r = search(table, {t: 1.0 for t in TASKS}, budget_flops=0.5)
    assert r.flops <= 0.5 * table.full_flops


@pytest.fixture(scope="module")
def slim_bundle(slim, fashion_recipe, data, tmp_path_factory):
    from toolchain.slim.export import export_slim_bundle

    configs = [WidthConfig.uniform(1.0, TASKS), WidthConfig.uniform(0.5, TASKS),
               WidthConfig.make(1.0, {"garment": 1.0, "group": 1.0, "silhouette": 0.5, "denoise": 0.5})]
    out = tmp_path_factory.mktemp("slim") / "fashion-slim.mtb"
    from toolchain.bench_runtime import measure_variant_latency

    res = export_slim_bundle(slim, fashion_recipe, out, configs, data[:1], latency=partial(measure_variant_latency, iters=5),
                             metrics={"c50": {t: 1.0 for t in TASKS}})
    return out, res, configs


def test_export_stores_identical_segments_once_and_verifies(slim_bundle):
    from toolchain.verify import verify_bundle

    out, res, configs = slim_bundle
    m = json.loads((out / "manifest.json").read_text())
    assert m["default_variant"] == "c100"
    assert list(m["variants"]) == [c.name for c in configs]
    segs = len(m["segments"])
    files = {e["file"] for v in m["variants"].values() for e in v["segments"].values()}
    assert res.segment_refs == 3 * segs and len(files) == res.files < 3 * segs
    mixed = m["variants"][configs[2].name]
    assert mixed["segments"]["trunk"]["file"] == m["variants"]["c100"]["segments"]["trunk"]["file"]
    assert mixed["segments"]["denoise"]["file"] != m["variants"]["c100"]["segments"]["denoise"]["file"]
    assert mixed["config"] == {"encoder": 1.0, "decoders": {"denoise": 0.5, "garment": 1.0, "group": 1.0, "silhouette": 0.5}}
    assert m["variants"]["c50"]["flops"] < mixed["flops"] < m["variants"]["c100"]["flops"]
    assert all(v["latency_ms"] > 0 for v in m["variants"].values())
    assert m["variants"]["c50"]["metrics"] == {t: 1.0 for t in TASKS}
    report = verify_bundle(out)
    assert report.ok, report
    assert max(r.max_abs_error for r in report.variants["c50"].values()) <= 1e-4


def test_a_width_variants_own_golden_outputs_are_checksummed(slim_bundle, tmp_path):
    import shutil

    from toolchain.errors import BundleError
    from toolchain.verify import verify_bundle

    out = tmp_path / "copy.mtb"
    shutil.copytree(slim_bundle[0], out)
    m = json.loads((out / "manifest.json").read_text())
    own = m["variants"]["c50"]["golden"]["outputs"]["denoise"]["file"]
    path = out / own
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=own):
        verify_bundle(out)


def test_narrow_variant_matches_onnxruntime_and_torch(slim, slim_bundle):
    from toolchain.bundle.manifest import Bundle
    from toolchain.bundle.executor import ReferenceExecutor

    out, _, configs = slim_bundle
    bundle = Bundle.open(out)
    x, _ = bundle.golden()
    got = ReferenceExecutor(bundle, "c50").run(x[:1])
    slim.set_config(configs[1])
    with torch.no_grad():
        ref = slim(torch.from_numpy(x[:1]))
    slim.set_config(configs[0])
    assert max(float(np.abs(got[t] - ref[t].numpy()).max()) for t in TASKS) <= 1e-4
    assert got["silhouette"].shape == ref["silhouette"].shape


def test_runtime_switching_configurations_matches_each_alone(slim_bundle):
    from toolchain.runtime import Runtime

    out, _, configs = slim_bundle
    names = [c.name for c in configs]
    rt = Runtime(out, backend="openvino", threads=1, variant=names)
    x = np.ascontiguousarray(np.load(out / "golden" / "input.npy")[:1])
    alone = {n: Runtime(out, backend="openvino", threads=1, variant=n).run(x) for n in names}
    for _ in range(2):
        for n in names:
            got = rt.run(x, variant=n, tasks=["silhouette", "denoise"])
            for t in ("silhouette", "denoise"):
                np.testing.assert_allclose(got[t], alone[n][t], rtol=0, atol=1e-5)
    assert not np.allclose(alone["c50"]["denoise"], alone["c100"]["denoise"])  # configs really differ


def test_config_switch_benchmark_reports_overhead(slim_bundle):
    from toolchain.bench_runtime import bench_config_switch

    out, _, configs = slim_bundle
    r = bench_config_switch(out, iters=8, rounds=2, threads=1)
    assert r["variants"] == [c.name for c in configs]
    assert np.isfinite(r["config_switch_overhead_pct"])
    assert all(v["n"] == 8 for v in r["configs"].values())
    # the C++-side split: the runtime's own work per call is small next to the segments' time
    assert 0 <= r["runtime_bookkeeping_us"]["repeated"] < r["segment_time_us"]["repeated"]
    assert np.isfinite(r["runtime_switch_cost_pct"])
    # raw OpenVINO on the same segment files ran the same schedule, and the ratio is consistent
    assert all(v["raw_openvino_median_ms"] > 0 for v in r["configs"].values())
    ours, raw = r["config_switch_overhead_pct"], r["raw_openvino_config_switch_overhead_pct"]
    assert r["runtime_added_switch_overhead_pct"] == pytest.approx(100 * ((1 + ours / 100) / (1 + raw / 100) - 1))


def test_config_switch_every_n_calls_weights_the_call_after_each_switch(slim_bundle):
    from toolchain.bench_runtime import bench_config_switch

    out, _, configs = slim_bundle
    r = bench_config_switch(out, iters=16, rounds=2, threads=1, block=4, variants=[configs[0].name, configs[1].name])
    for v in r["configs"].values():
        # a plain median of the alternating calls would ignore the one call in four after a switch
        assert v["alternating_median_ms"] == pytest.approx((v["after_switch_median_ms"] + 3 * v["within_block_median_ms"]) / 4)
    assert r["switch_cost_us"] == pytest.approx(
        1e3 * np.mean([v["after_switch_median_ms"] - v["median_ms"] for v in r["configs"].values()]))


def test_cli_search_and_errors(slim, table, fashion_recipe, tmp_path):
    from cli_helpers import mtedge

    from toolchain.slim import load_slimmable, save_slimmable

    ckpt = tmp_path / "slim.pt"
    save_slimmable(ckpt, slim, "zoo:fashion-mt", fashion_recipe, table)
    res = tmp_path / "search.json"
    mtedge("slim", "search", ckpt, "--budget-flops", "0.6", "--prefer", "silhouette=3", "--json", res)
    doc = json.loads(res.read_text())
    assert doc["flops"] <= 0.6 * doc["full_flops"]
    assert doc["config"]["decoders"]["silhouette"] >= doc["config"]["decoders"]["denoise"]
    mtedge("slim", "search", ckpt, "--max-drop", "garment=3,group=3,silhouette=3,denoise=1", "--json", res)
    cheap = json.loads(res.read_text())
    assert cheap["budget"]["max_drop"]["denoise"] == 1.0 and cheap["flops"] < cheap["full_flops"]
    bad = mtedge("slim", "search", ckpt, "--budget-flops", "0.6", "--prefer", "seg=2", check=False)
    assert bad.returncode == 2 and "seg=2" in bad.stderr
    with pytest.raises(SpecError, match="mtedge slim convert"):
        load_slimmable("zoo:fashion-mt")


def test_cli_convert_then_export_records_runtime_latency(tiny_trained_fashion, tmp_path):
    """`mtedge slim convert` (library make_slimmable) then `slim export`, whose latency comes from
    the runtime through the function the command passes in (the front end never loads it)."""
    from cli_helpers import mtedge

    from toolchain.verify import verify_bundle

    ckpt, slim_ckpt, out = tiny_trained_fashion[0], tmp_path / "slim.pt", tmp_path / "slim.mtb"
    mtedge("slim", "convert", ckpt, "-o", slim_ckpt, "--epochs", "0", "--magnitude", "--no-latency",
           "--calib-images", "64", "--val-count", "64", "--threads", "1")
    mtedge("slim", "export", slim_ckpt, "-o", out, "--configs", "c100,c50", "--threads", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["variants"]) == ["c100", "c50"]
    assert all(v["latency_ms"] > 0 and v["metrics"] for v in manifest["variants"].values())
    assert verify_bundle(out).ok
