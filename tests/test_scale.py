"""Scale-out (toolchain/scale, docs/scale-out.md): one evaluation interface, serial or Ray workers.

One local Ray instance (2 CPUs) serves the whole module and is shut down at its end."""

from __future__ import annotations

import dataclasses

import os
import subprocess
import sys
import time

import pytest
import torch

from toolchain.errors import MtedgeError

# --- evaluation functions: module-level, so Ray ships them by reference ---------------------------

_LOADS = 0  # per process: how many times a _CountedState was deserialized there


class _CountedState:
    """State whose deserializations are counted in the process that unpickles it."""

    def __init__(self, payload):
        self.payload = payload

    def __getstate__(self):
        return {"payload": self.payload}

    def __setstate__(self, d):
        global _LOADS
        _LOADS += 1
        self.payload = d["payload"]


def _slow_square(state, item):
    time.sleep(0.02 * (item % 3))  # later items often finish first
    return item * item + state.payload, os.getpid(), _LOADS


def _die_once(state, item):
    marker = os.path.join(state, f"died-{item}")
    if item == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker process dies: Ray reports the actor lost
    return item


def _always_fails(state, item):
    if item == 2:
        raise ValueError("bad candidate")
    return item


@pytest.fixture(scope="module")
def pool():
    from toolchain.workers import RayEvaluator

    ev = RayEvaluator(workers=2, threads=1, retries=2, object_store_mb=128)
    yield ev
    ev.close()
    import ray

    assert not ray.is_initialized()  # no Ray left running after the tests


def test_without_workers_evaluation_stays_in_process_and_never_imports_ray():
    code = ("import sys; from toolchain.workers import make_evaluator, SerialEvaluator\n"
            "ev = make_evaluator()\n"
            "assert isinstance(ev, SerialEvaluator)\n"
            "assert ev.map(lambda s, i: s + i, [1, 2, 3], state=10) == [11, 12, 13]\n"
            "import toolchain.slim.search, toolchain.commands.slim\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MTEDGE_NO_PROGRESS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_results_come_back_in_item_order_and_state_is_shipped_once_per_worker(pool):
    items = list(range(12))
    results = pool.map(_slow_square, items, state=_CountedState(5))
    assert [r[0] for r in results] == [i * i + 5 for i in items]
    pids = {r[1] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers took part, none of it ran here
    assert {r[2] for r in results} == {1}  # each worker deserialized the state once, not per task
    again = pool.map(_slow_square, items, state=_CountedState(7))  # a new state: once more per worker
    assert [r[0] for r in again] == [i * i + 7 for i in items]
    assert {r[2] for r in again} == {2}


def test_a_lost_worker_is_replaced_and_its_item_retried_and_reported(pool, tmp_path):
    pool.incidents.clear()
    assert pool.map(_die_once, list(range(6)), state=str(tmp_path)) == list(range(6))
    assert len(pool.incidents) == 1 and "lost" in pool.incidents[0] and "item 3" in pool.incidents[0]
    assert pool.map(_slow_square, [1, 2], state=_CountedState(0))[1][0] == 4  # the pool still has 2 workers


def test_an_evaluation_that_keeps_failing_stops_the_map_naming_the_item(pool):
    pool.incidents.clear()
    with pytest.raises(MtedgeError, match=r"item 2 \(2\) failed 3 times.*ValueError: bad candidate"):
        pool.map(_always_fails, list(range(4)))
    assert len(pool.incidents) == 3  # two reported retries, then the failure


def test_slim_grid_is_identical_serial_and_on_workers(pool, fashion_recipe):
    from toolchain.data.loaders import batches
    from toolchain.slim.convert import convert
    from toolchain.slim.search import evaluate_grid, search
    from toolchain.slim.train import recalibrate
    from toolchain.zoo.fashion_mt import FashionMT

    torch.manual_seed(0)
    x, _ = next(batches(fashion_recipe, "val", count=8, batch_size=8))
    s = convert(FashionMT().eval(), list(fashion_recipe.tasks), x[:1], widths=(1.0, 0.5), round_to=4)
    recalibrate(s, fashion_recipe, images=32)
    data = list(batches(fashion_recipe, "val", count=64, batch_size=32))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: bit-identical arithmetic
    try:
        serial = evaluate_grid(s, fashion_recipe, data, x[:1])
    finally:
        torch.set_num_threads(before)
    parallel = evaluate_grid(s, fashion_recipe, data, x[:1], evaluator=pool)
    assert parallel.to_dict() == serial.to_dict()
    prefs = {t: 1.0 for t in fashion_recipe.tasks}
    assert search(parallel, prefs, budget_flops=0.6).config == search(serial, prefs, budget_flops=0.6).config


def test_pruning_oracle_on_workers_finds_the_serial_result(pool, fashion_recipe):
    from toolchain.model import load
    from toolchain.prune.pagcp import PruneConfig, prune

    model = load("zoo:fashion-mt").module.eval()
    config = PruneConfig(keep_flops=0.5, round_to=4, val_count=64, batch_size=32, screen_count=32, max_rounds=4,
                         label_free=True, exactness_fractions=(), points_per_probe=2, relax_bounds=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: bit-identical arithmetic
    try:
        serial = prune(model, fashion_recipe, config)
    finally:
        torch.set_num_threads(before)
    parallel = prune(model, fashion_recipe, dataclasses.replace(config, evaluator=pool))
    assert parallel.channels == serial.channels
    assert [p.drops for p in parallel.path] == [p.drops for p in serial.path]
    assert parallel.oracle_evaluations == serial.oracle_evaluations and serial.path


# --- mtedge sweep ----------------------------------------------------------------------------------

def test_a_cached_unit_is_published_whole_and_never_redone(tmp_path):
    from toolchain.scale.sweep import cached_unit

    calls = []

    def failing(d):
        (d / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt  # the sweep is interrupted inside the unit

    def make(d):
        calls.append(d)
        (d / "artifact.bin").write_bytes(b"done")
        return {"value": 42}

    with pytest.raises(KeyboardInterrupt):
        cached_unit(tmp_path, "prune", "flops0.5", {"goal": 0.5}, failing)
    assert list(tmp_path.iterdir()) == []  # nothing half-written stays behind
    first = cached_unit(tmp_path, "prune", "flops0.5", {"goal": 0.5}, make)
    again = cached_unit(tmp_path, "prune", "flops0.5", {"goal": 0.5}, make)
    assert first["done_now"] and not again["done_now"] and again["value"] == 42 and len(calls) == 1
    assert (tmp_path / again["dir"] / "artifact.bin").read_bytes() == b"done"
    other = cached_unit(tmp_path, "prune", "flops0.5", {"goal": 0.5, "val_count": 64}, make)  # another key
    assert other["done_now"] and other["dir"] != first["dir"]


def test_pareto_front_keeps_undominated_points_and_chooses_the_fastest_within_bounds():
    from toolchain.scale.sweep import choose, pareto_front

    def p(i, ms, acc, err, ok=True):
        return {"id": i, "latency_ms": ms, "metrics": {"acc": acc, "err": err}, "within_bounds": ok}

    hib = {"acc": True, "err": False}
    pts = [p("a", 1.0, 80, 5, ok=False), p("b", 2.0, 90, 4), p("c", 2.5, 85, 6), p("d", 3.0, 95, 3), p("e", 3.0, 95, 3.5)]
    front = pareto_front(pts, hib)
    assert [q["id"] for q in front] == ["a", "b", "d"]  # c is slower and worse than b; e is d with more error
    assert choose(front)["id"] == "b"  # a is faster but out of bounds
    assert choose([p("x", 1.0, 1, 1, ok=False)]) is None


def test_pareto_table_and_plot_show_the_reference_its_bounds_and_chance(fashion_recipe, tmp_path):
    import json

    from toolchain.evaluate import higher_is_better
    from toolchain.scale.sweep import SweepConfig, SweepResult, choose, pareto_front, parse_goals, write_outputs

    tasks = list(fashion_recipe.tasks)
    ref = {t: 80.0 + i for i, t in enumerate(tasks)}
    points = [{"id": f"p{d}", "target": "host-cpu", "precision": "fp32", "latency_ms": 1.0 - d / 10,
               "latency_source": "measured", "flops_fraction": 1.0 - d / 10, "metrics": {t: v - d for t, v in ref.items()},
               "within_bounds": d <= min(fashion_recipe.task(t).allowed_drop for t in tasks)} for d in (0.1, 2.0)]
    hib = {t: higher_is_better(fashion_recipe, t) for t in tasks}
    front = pareto_front(points, hib)
    result = SweepResult(points, {"metrics": ref, "chance": {t: 10.0 for t in tasks}, "flops": 1.0},
                         {"host-cpu": front}, {"host-cpu": choose(front)}, 0, 0)
    cfg = SweepConfig(model="zoo:fashion-mt", goals=parse_goals("0.5"), targets=["host-cpu"], precisions=["fp32"],
                      out=str(tmp_path))
    files = write_outputs(cfg, fashion_recipe, result, hib)
    table = (tmp_path / "pareto.md").read_text()
    assert "| reference (unpruned fp32) | 100% | - | " + " | ".join(f"{ref[t]:.2f}" for t in tasks) in table
    allowed = {t: fashion_recipe.task(t).allowed_drop for t in tasks}
    assert "| bound (allowed drop) | - | - | " + " | ".join(f"{ref[t] - allowed[t]:.2f} ({allowed[t]:g})" for t in tasks) in table
    assert "| chance (constant predictor) | - | - | 10.00 |" in table
    assert "| p0.1 (chosen) |" in table and "| p2.0 |" in table  # both on the front, the one within bounds chosen
    assert "(at chance)" not in table
    result.points[1]["metrics"][tasks[0]] = 10.5  # within the task's allowed drop of chance (10.0)
    write_outputs(cfg, fashion_recipe, result, hib)
    assert (tmp_path / "pareto.md").read_text().count("10.50 (at chance)") == 1
    assert json.loads((tmp_path / "sweep.json").read_text())["bound"] == {t: ref[t] - allowed[t] for t in tasks}
    assert os.path.getsize(files["plot"]) > 0


def test_sweep_goals_and_precisions_are_checked():
    from toolchain.errors import SpecError
    from toolchain.scale.sweep import Goal, parse_goals

    assert parse_goals("0.7, 0.5,2.5ms") == [Goal("flops", 0.7), Goal("flops", 0.5), Goal("latency_ms", 2.5)]
    for bad in ("1.5", "fast", "", "-1ms"):
        with pytest.raises(SpecError, match="goal|--goals"):
            parse_goals(bad)
    from cli_helpers import mtedge

    r = mtedge("sweep", "zoo:fashion-mt", "--goals", "0.5", "--precisions", "int4", "-o", "unused", check=False)
    assert r.returncode == 2 and "int4" in r.stderr and "fp32, fp16, int8" in r.stderr


def test_sweep_on_workers_then_served_from_the_cache(pool, tiny_trained_fashion, tmp_path):
    import json

    from toolchain.workers import SerialEvaluator
    from toolchain.scale.sweep import SweepConfig, parse_goals, run_sweep

    cfg = SweepConfig(model=str(tiny_trained_fashion[0]), goals=parse_goals("0.8"),
                      targets=["host-cpu", "jetson-orin-nano-8gb"], precisions=["fp32"], out=str(tmp_path / "sw"),
                      val_count=64, test_count=128, runs=2, relax=True)  # reach the goal: this tests the cache
    first = run_sweep(cfg, pool)
    assert first.done_now == 5 and first.cached == 0  # reference, prune, bundle, 2 targets
    assert {p["target"] for p in first.points} == {"host-cpu", "jetson-orin-nano-8gb"}
    host = next(p for p in first.points if p["target"] == "host-cpu")
    jetson = next(p for p in first.points if p["target"] == "jetson-orin-nano-8gb")
    assert host["latency_source"] == "measured" and jetson["latency_source"] == "estimate"
    assert 0.6 < host["flops_fraction"] <= 0.8 and os.path.exists(jetson["build"]["script"])
    assert os.path.isdir(host["build"]["engines"])
    for f in ("sweep.json", "pareto.md", "pareto.png", "chosen/host-cpu.json", "chosen/jetson-orin-nano-8gb.json"):
        assert (tmp_path / "sw" / f).stat().st_size > 0
    table = (tmp_path / "sw" / "pareto.md").read_text()
    ref = first.reference["metrics"]["garment"]
    assert f"| reference (unpruned fp32) | 100% | - | {ref:.2f} |" in table and "| chance (constant predictor) |" in table
    second = run_sweep(cfg, SerialEvaluator())  # in-process now: every unit from the cache
    assert second.done_now == 0 and second.cached == 5
    assert second.points == first.points
    doc = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert doc["run"] == {"done_now": 0, "cached": 5} and set(doc["pareto"]) == set(cfg.targets)


def test_accuracy_control_trials_on_workers_give_the_serial_report(pool, tmp_path, monkeypatch):
    import functools
    import shutil

    import toolchain.quantize.api as api
    from toolchain.export import export_bundle
    from toolchain.quantize import QuantizeOptions, quantize_bundle
    from toolchain.quantize.accuracy_control import control
    from toolchain.recipe import parse_recipe
    from support.architectures import ResNetFPNTwoHeads, recipe_for

    torch.manual_seed(3)
    model = ResNetFPNTwoHeads().eval()
    doc = recipe_for(model).to_dict()
    for t in doc["tasks"]:
        doc["tasks"][t]["allowed_drop"] = 100.0
    doc["tasks"]["depth"]["allowed_drop"] = 0.0  # out of bounds after int8: the loop tries layers in float
    recipe = parse_recipe(doc)
    path = tmp_path / "fpn.mtb"
    export_bundle(model, recipe, path, golden_samples=2)
    shutil.copytree(path, tmp_path / "workers.mtb")
    monkeypatch.setattr(api, "control", functools.partial(control, max_rounds=1))  # one round: 2 trials, one batch
    opts = QuantizeOptions(latency_runs=0, test_count=0, margin=0.0, top_k=2, val_count=32)
    serial = quantize_bundle(path, recipe, ("int8",), calibration_count=8, options=opts).variants["int8"]
    parallel = quantize_bundle(tmp_path / "workers.mtb", recipe, ("int8",), calibration_count=8, options=opts,
                               evaluator=pool).variants["int8"]
    assert serial.decisions, "the zero bound must make the loop keep a layer in float"
    assert parallel.decisions == serial.decisions and parallel.float_layers == serial.float_layers
    assert parallel.scores == serial.scores
    assert (parallel.calibration["accuracy_control"]["quantize_calls"]
            == serial.calibration["accuracy_control"]["quantize_calls"])  # a worker's trials are counted alike
