"""Recovery for data-scarce users (issue 25): what each recovery option buys after a fixed prune.

zoo:fashion-mt (the trained bench checkpoint) is pruned once by the filter-L1 baseline to a fixed
share of its FLOPs (no search, so only recovery differs), then recovered by
`toolchain.prune.recovery.recover` from a few labeled train images (each budget) under each option:

    none          the pruned model as it is
    bn            batch-norm statistics re-estimated on the images, no training
    labels        fine-tuning on the labels only (no teacher)
    out           labels + output distillation from the unpruned model
    out+feat      labels + output + trunk-feature distillation (feature_weight)
    ...+bn        the same after batch-norm re-estimation;  +frozen: batch norm frozen while fine-tuning

recover() keeps the best state on the val split (or the unrecovered one), as `mtedge compress` does;
the figures are every task's drop on the held-out test split against its bound, medians over seeds.

    python bench/recovery.py            # or make bench-recovery;  --table: print the saved results
Environment: BENCH_RECOVERY_KEEP (FLOPs kept, 0.7), BENCH_RECOVERY_BUDGETS (64,512),
BENCH_RECOVERY_EPOCHS (3), BENCH_RECOVERY_BATCH (32), BENCH_RECOVERY_SEEDS (0,1), BENCH_RECOVERY_VAL (256),
BENCH_RECOVERY_TEST (1000), BENCH_RECOVERY_FEATURE_WEIGHT (1), BENCH_RECOVERY_OPTIONS (all),
BENCH_RECOVERY_ENTRY (the results key, fashion-mt).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "recovery.json"
ENTRY = os.environ.get("BENCH_RECOVERY_ENTRY", "fashion-mt")  # another name keeps a second grid beside the first

# option -> (fine-tune?, teacher?, finetune() keyword arguments)
OPTIONS = {
    "none": (False, False, {"reestimate_bn": False}),
    "bn": (False, False, {"reestimate_bn": True}),
    "labels": (True, False, {"reestimate_bn": False}),
    "out": (True, True, {"reestimate_bn": False}),
    "out+bn": (True, True, {"reestimate_bn": True}),
    "out+bn+frozen": (True, True, {"reestimate_bn": True, "freeze_bn": True}),
    "out+feat": (True, True, {"reestimate_bn": False, "feature_weight": None}),
    "out+feat+bn": (True, True, {"reestimate_bn": True, "feature_weight": None}),
}


def env_list(name: str, default: str, kind=float) -> list:
    return [kind(v) for v in os.environ.get(name, default).split(",") if v]


def judge_on(model, recipe, data: list, split: str):
    """check_bounds(model, candidate, ...) with the unpruned model measured once, not per candidate."""
    from toolchain.bounds import bounds_from_metrics
    from toolchain.evaluate import evaluate

    before, images = evaluate(model, recipe, data), sum(len(x) for x, _ in data)
    return lambda m: bounds_from_metrics(before, evaluate(m, recipe, data), recipe, False, split, images)


def run_cell(option: str, pruned, model, recipe, judge, test_judge, budget: int, epochs: float, seed: int,
             feature_weight: float, batch_size: int) -> dict:
    from toolchain.prune.recovery import recover

    tune, use_teacher, kwargs = OPTIONS[option]
    kwargs = {k: (feature_weight if k == "feature_weight" else v) for k, v in kwargs.items()}
    candidate = copy.deepcopy(pruned)
    t0 = time.perf_counter()
    if option == "none":
        kept, result = "unrecovered", candidate.eval()
    else:
        # without fine-tuning recover() still judges the re-estimated model against the unrecovered one
        rec = recover(candidate, recipe, epochs if tune else 0.0, judge, teacher=model if use_teacher else None,
                      limit=budget, seed=seed, batch_size=batch_size, **({} if use_teacher else {"distill_weight": 0.0}), **kwargs)
        kept, result = rec.kept, rec.model
    seconds = time.perf_counter() - t0
    test = test_judge(result)
    return {"kept": kept, "seconds": seconds, "within": test.within,
            "drop": {t: b.drop for t, b in test.tasks.items()}, "after": {t: b.after for t, b in test.tasks.items()}}


def summarize(cells: dict, recipe) -> dict:
    """Per option and budget: median drop per task over seeds, within (every seed), median seconds."""
    out: dict = {}
    for key, runs in cells.items():
        option, budget = key.split("@")
        out.setdefault(option, {})[budget] = {
            "drop": {t: statistics.median(r["drop"][t] for r in runs) for t in recipe.tasks},
            "within": all(r["within"] for r in runs), "within_seeds": sum(r["within"] for r in runs),
            "seeds": len(runs), "seconds": statistics.median(r["seconds"] for r in runs),
            "kept": [r["kept"] for r in runs]}
    return out


def print_table(entry: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    tasks = list(entry["allowed_drop"])
    table = Table(title=f"fashion-mt, L1-pruned to {100 * entry['flops_kept']:.0f} % FLOPs: test drop per task "
                        f"(median over the seeds run; bound in header), {entry['epochs']:g} epochs; "
                        "within: seeds within every bound / seeds run")
    for col in ["option", "images", *[f"{t} (<= {entry['allowed_drop'][t]:g})" for t in tasks], "within", "s"]:
        table.add_column(col)
    for option, by_budget in entry["summary"].items():
        for budget, r in by_budget.items():
            table.add_row(option, budget, *[f"{r['drop'][t]:.3f}" for t in tasks],
                          f"{r['within_seeds']}/{r['seeds']}", f"{r['seconds']:.0f}")
    Console(width=140).print(table)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from common import trained_fashion

    from toolchain.bundle.files import write_json_atomic
    from toolchain.data.loaders import batches, example_input
    from toolchain.model import load
    from toolchain.prune import cost
    from toolchain.prune.baseline import l1_prune

    os.environ.setdefault("MTEDGE_NO_PROGRESS", "1")
    keep = float(os.environ.get("BENCH_RECOVERY_KEEP", "0.7"))
    batch_size = int(os.environ.get("BENCH_RECOVERY_BATCH", "32"))
    budgets = env_list("BENCH_RECOVERY_BUDGETS", "64,512", int)
    epochs = float(os.environ.get("BENCH_RECOVERY_EPOCHS", "3"))
    seeds = env_list("BENCH_RECOVERY_SEEDS", "0,1", int)
    val_count = int(os.environ.get("BENCH_RECOVERY_VAL", "256"))
    test_count = int(os.environ.get("BENCH_RECOVERY_TEST", "1000"))
    feature_weight = float(os.environ.get("BENCH_RECOVERY_FEATURE_WEIGHT", "1"))
    options = os.environ.get("BENCH_RECOVERY_OPTIONS", ",".join(OPTIONS)).split(",")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise SystemExit(f"BENCH_RECOVERY_OPTIONS: unknown {unknown}; expected some of {', '.join(OPTIONS)}")

    ckpt = str(trained_fashion())
    model = load(ckpt).module.eval()
    recipe = load("zoo:fashion-mt").recipe
    example = example_input(recipe)
    pruned = l1_prune(model, example, int(keep * cost.model_flops(model, example)), round_to=4)
    judge = judge_on(model, recipe, list(batches(recipe, "val", count=val_count, batch_size=128)), "val")
    test_judge = judge_on(model, recipe, list(batches(recipe, "test", count=test_count, batch_size=250)), "test")
    before = test_judge(pruned.model)
    print(f"L1 prune to {100 * keep:.0f} % FLOPs ({100 * pruned.flops_removed:.1f} % removed); test drops "
          + ", ".join(f"{t} {b.drop:.3f}/{b.allowed:g}" for t, b in before.tasks.items())
          + f"; within: {before.within}", flush=True)
    cells: dict[str, list] = {}
    entry = {"checkpoint": ckpt, "flops_kept": keep, "flops_removed_pct": 100 * pruned.flops_removed,
             "pruned_test": before.as_dict(), "budgets": budgets, "epochs": epochs, "seeds": seeds,
             "val_images": val_count, "batch_size": batch_size, "test_images": test_count, "feature_weight": feature_weight,
             "allowed_drop": {t: s.allowed_drop for t, s in recipe.tasks.items()}, "precision": "fp32",
             "torch_threads": torch.get_num_threads(), "options": {o: OPTIONS[o][2] for o in options}}
    for seed in seeds:  # a whole seed first: a stopped run still compares every option
        for budget in budgets:
            for option in options:
                if option == "none" and (budget != budgets[0] or seed != seeds[0]):  # no training: one run
                    cells.setdefault(f"none@{budget}", []).append(cells["none@" + str(budgets[0])][0])
                    continue
                r = run_cell(option, pruned.model, model, recipe, judge, test_judge, budget, epochs, seed,
                             feature_weight, batch_size)
                cells.setdefault(f"{option}@{budget}", []).append({**r, "seed": seed})
                print(f"{option:>14} {budget:>5} images seed {seed}: "
                      + " ".join(f"{t} {d:+.3f}" for t, d in r["drop"].items())
                      + f" within {r['within']} kept {r['kept']} {r['seconds']:.0f} s", flush=True)
                entry.update(cells=cells, summary=summarize(cells, recipe), complete=False)
                results = json.loads(OUT.read_text()) if OUT.exists() else {}
                write_json_atomic(OUT, {**results, ENTRY: entry})
    entry["complete"] = True
    write_json_atomic(OUT, {**(json.loads(OUT.read_text()) if OUT.exists() else {}), ENTRY: entry})
    print_table(entry)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:  # the saved results' table, without running anything
        for name, saved in json.loads(OUT.read_text()).items():
            print(name, "(complete)" if saved.get("complete") else "(partial: the run did not finish)")
            print_table(saved)
    else:
        main()
