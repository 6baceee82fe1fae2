"""Comparisons at equal bounds (issue 25): the FLOPs each method removes while every task stays within
the same bounds, judged on the val split and reported on the held-out test split.

Methods: PAGCP (`toolchain.compress`, bounds as the contract, no relaxation) and global pruning by
Torch-Pruning's importance criteria (l1 = the repo's filter-L1 baseline, magnitude, taylor, lamp:
toolchain/prune/baseline.py), every one with the same channel rounding and the same recovery
(`toolchain.prune.recovery.recover`: the best val state, or the unrecovered model). A baseline has
no oracle, so its largest reduction within bounds is found by bisection over its FLOPs goal: a goal
is feasible when the model, after recovery, is within every bound on the val split. The baselines
are judged by the plain val drop; PAGCP's confirmed steps also keep a confidence margin (z = 1.645
standard errors) inside each bound, so the comparison leans towards the baselines; the test-split
check says which results held.

Bound levels: the recipe's allowed drops x each of BENCH_BOUNDS_LEVELS (default 0.5,1,2), a curve of
FLOPs removed vs bound per method.

    python bench/prune_bounds.py            # or BENCH_PRUNE_ONLY=bounds make bench-prune
Environment: BENCH_BOUNDS_LEVELS, BENCH_BOUNDS_METHODS (pagcp,l1,magnitude,taylor,lamp),
BENCH_BOUNDS_EPOCHS (recovery epochs, default 0), BENCH_BOUNDS_STEPS (bisection steps, default 6),
BENCH_BOUNDS_VAL (512), BENCH_BOUNDS_TEST (all), BENCH_ROUND_TO (4).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def scaled(recipe, level: float):
    """The recipe with every allowed drop x `level` and no max_relax (the bounds are the contract here)."""
    tasks = {t: dataclasses.replace(s, allowed_drop=s.allowed_drop * level, max_relax=None) for t, s in recipe.tasks.items()}
    return dataclasses.replace(recipe, tasks=tasks)


def run_method(method: str, model, recipe, val, example, round_to: int, epochs: float, steps: int,
               test_count: int | None, label_free: bool) -> dict:
    from toolchain.bounds import check_bounds
    from toolchain.compression import compress, held_out_bounds
    from toolchain.prune import cost
    from toolchain.prune.baseline import l1_prune
    from toolchain.prune.recovery import recover

    t0 = time.perf_counter()
    flops0 = cost.model_flops(model, example)
    judge = lambda m: check_bounds(model, m, recipe, val, label_free, "val")  # noqa: E731
    if method == "pagcp":
        r = compress(model, recipe, keep_flops=0.05, round_to=round_to, val_count=sum(len(x) for x, _ in val),
                     finetune_epochs=epochs, distill=True, label_free=label_free, test_count=test_count)
        return {"flops_removed_pct": 100 * r.prune.flops_removed, "goal_reached": r.goal_reached,
                "oracle_evaluations": r.prune.oracle_evaluations, "kept": r.recovery.kept if r.recovery else None,
                "test": r.bounds.as_dict(), "seconds": time.perf_counter() - t0}

    def attempt(keep: float):
        pruned = l1_prune(model, example, int(keep * flops0), round_to=round_to, importance=method, recipe=recipe,
                          data=val[:2], iterations=16)
        m = pruned.model
        kept = None
        if epochs > 0:
            rec = recover(m, recipe, epochs, judge, teacher=model)
            m, kept = rec.model, rec.kept
        return m, judge(m), kept, pruned.flops_removed

    lo, hi, best = 1.0, 0.0, None  # keep fractions: lo feasible (nothing removed), hi infeasible
    for _ in range(steps):
        mid = (lo + hi) / 2
        m, check, kept, removed = attempt(mid)
        if check.within:
            lo, best = mid, (m, kept, removed)
        else:
            hi = mid
    if best is None:
        return {"flops_removed_pct": 0.0, "goal_reached": None, "kept": None, "test": None, "bisection_steps": steps,
                "seconds": time.perf_counter() - t0}
    m, kept, removed = best
    test = held_out_bounds(model, m, recipe, label_free, test_count)
    return {"flops_removed_pct": 100 * removed, "kept": kept, "test": test.as_dict(), "bisection_steps": steps,
            "keep_bracket": [lo, hi], "seconds": time.perf_counter() - t0}


def equal_bounds(name: str, model, recipe, label_free: bool = False, save=lambda entry: None) -> dict:
    """The grid (bound levels x methods); `save(entry)` after every cell, so a stopped run keeps what it measured."""
    from toolchain.data.loaders import batches, example_input

    levels = [float(v) for v in os.environ.get("BENCH_BOUNDS_LEVELS", "0.5,1,2").split(",")]
    methods = os.environ.get("BENCH_BOUNDS_METHODS", "pagcp,l1,magnitude,taylor,lamp").split(",")
    epochs = float(os.environ.get("BENCH_BOUNDS_EPOCHS", "0"))
    steps = int(os.environ.get("BENCH_BOUNDS_STEPS", "6"))
    val_count = int(os.environ.get("BENCH_BOUNDS_VAL", "512"))
    test_count = int(os.environ["BENCH_BOUNDS_TEST"]) if os.environ.get("BENCH_BOUNDS_TEST") else None
    round_to = int(os.environ.get("BENCH_ROUND_TO", "4"))
    example = example_input(recipe)
    curve: dict[str, dict[str, dict]] = {}
    for level in levels:
        rec = scaled(recipe, level)
        val = list(batches(rec, "val", count=val_count, batch_size=128))
        for method in methods:
            r = run_method(method, model.eval(), rec, val, example, round_to, epochs, steps, test_count, label_free)
            curve.setdefault(method, {})[f"{level:g}"] = r
            print(f"{name} bounds x{level:g} {method}: {r['flops_removed_pct']:.1f} % removed within bounds (val), "
                  f"test within: {r['test']['within'] if r['test'] else '-'}, {r['seconds']:.0f} s", flush=True)
            save(_summary(curve, levels, methods, epochs, steps, val_count, round_to))
    return _summary(curve, levels, methods, epochs, steps, val_count, round_to)


def _summary(curve: dict, levels: list, methods: list, epochs: float, steps: int, val_count: int, round_to: int) -> dict:
    at_recipe = {m: v["1"]["flops_removed_pct"] for m, v in curve.items() if "1" in v}
    return {"levels": levels, "methods": methods, "recovery_epochs": epochs,
            "criterion": {"pagcp": "val drop + 1.645 standard errors <= bound (oracle margin)",
                          "baselines": "val drop <= bound (no margin)", "reported": "test split"}, "bisection_steps": steps,
            "val_images": val_count, "round_to": round_to, "torch_threads": torch.get_num_threads(),
            "precision": "fp32", "curve": curve, "flops_removed_pct_at_recipe_bounds": at_recipe,
            "pagcp_over_l1": (at_recipe["pagcp"] / at_recipe["l1"]) if at_recipe.get("l1") else None,
            "pagcp_ge_every_baseline": all(at_recipe["pagcp"] >= v for m, v in at_recipe.items() if m != "pagcp")
            if "pagcp" in at_recipe else None,
            "median_seconds_per_cell": statistics.median(r["seconds"] for v in curve.values() for r in v.values()),
            "cells_run": [f"{m} x{lv}" for m, v in curve.items() for lv in v]}


def print_table(name: str, entry: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: FLOPs removed (%) with every task within bounds x level (val-judged; test-checked)")
    table.add_column("method")
    for level in entry["levels"]:
        table.add_column(f"x{level:g}")
    for method, by_level in entry["curve"].items():
        cells = []
        for level in entry["levels"]:
            r = by_level.get(f"{level:g}")
            if r is None:
                cells.append("not run")
                continue
            held = "" if r["test"] is None else (" ok" if r["test"]["within"] else " (test: past)")
            cells.append(f"{r['flops_removed_pct']:.1f}{held}")
        table.add_row(method, *cells)
    Console(width=120).print(table)


def fashion_equal_bounds(save=lambda entry: None) -> dict:
    from common import trained_fashion

    from toolchain.model import load

    ckpt = str(trained_fashion())
    lm = load(ckpt)
    recipe = load("zoo:fashion-mt").recipe  # the zoo's current bounds
    weights = {"checkpoint": ckpt, "weights": "zoo:fashion-mt trained on Fashion-MNIST (Debian package data): "
               "bench/common.py, or MTEDGE_FASHION_CHECKPOINT"}
    entry = equal_bounds("zoo:fashion-mt", lm.module, recipe, save=lambda e: save({**e, **weights}))
    return {**entry, **weights}


if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from toolchain.bundle.files import write_json_atomic

    os.environ.setdefault("MTEDGE_NO_PROGRESS", "1")
    out = ROOT / "bench" / "results" / "prune.json"
    def save(entry: dict) -> None:  # read again before each write: other benches' entries stay
        results = json.loads(out.read_text()) if out.exists() else {}
        results.setdefault("equal_bounds", {})["zoo:fashion-mt"] = entry
        write_json_atomic(out, results)

    entry = fashion_equal_bounds(save)
    save(entry)
    print_table("zoo:fashion-mt", entry)
    print(f"wrote {out}")
