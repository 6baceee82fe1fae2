"""`mtedge sweep`: goals x targets x precisions from one recipe, cached per unit, Pareto front per target.

Each point (goal, target, precision) is made of three cached units (prune, bundle, target), so work shared by
points is done once; the units, their cache keys and the atomic ``.partial`` publishing: docs/scale-out.md,
"`mtedge sweep`". The units of a stage are independent and go through one evaluator (toolchain.scale): in-process
or on Ray workers (which must see OUT: a local instance, or a shared file system).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from toolchain.bundle.files import sha256_file, write_bytes_atomic, write_json_atomic
from toolchain.errors import SpecError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Goal:
    """A global compression goal: keep a fraction of the FLOPs, or reach a host latency."""

    kind: str  # "flops" | "latency_ms"
    value: float

    @property
    def label(self) -> str:
        return f"flops{self.value:g}" if self.kind == "flops" else f"ms{self.value:g}"


def parse_goals(text: str) -> list[Goal]:
    """``"0.7,0.5,2.5ms"`` -> FLOPs fractions (0 < f <= 1) and host latencies in ms."""
    goals = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        ms = part.endswith("ms")
        try:
            value = float(part[:-2] if ms else part)
        except ValueError:
            raise SpecError(f"goal {part!r} must be a FLOPs fraction (0.5) or a host latency (2.5ms)") from None
        if ms and value <= 0 or not ms and not 0 < value <= 1:
            raise SpecError(f"goal {part!r} out of range: a FLOPs fraction is in (0, 1], a latency > 0 ms")
        goals.append(Goal("latency_ms" if ms else "flops", value))
    if not goals:
        raise SpecError("--goals is empty; give e.g. 0.7,0.5,0.35 (FLOPs fractions) or 2.5ms")
    return goals


@dataclass
class SweepConfig:
    model: str
    goals: list[Goal]
    targets: list[str]
    precisions: list[str]
    out: str
    checkpoint: str | None = None
    recipe: str | None = None
    val_count: int = 256  # pruning oracle subset and quantization val split
    test_count: int = 2000  # test images every point is scored on
    finetune_epochs: float = 0.0
    round_to: int | None = None  # default: lcm of the targets' channel multiples per precision
    runs: int = 20  # host latency runs per segment
    relax: bool = False  # prune with relaxed budgets (toolchain.compress(relax=True)); points say if bounds held

    def check(self) -> None:
        from toolchain.targets.profile import load_profile

        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise SpecError(f"precision(s) {', '.join(bad) or '(none)'}: expected some of {', '.join(PRECISIONS)}")
        if not self.targets:
            raise SpecError("--targets is empty; give e.g. host-cpu,jetson-orin-nano-8gb (see `mtedge targets`)")
        for t in self.targets:
            load_profile(t)  # names the unknown target and lists the known ones


# -- cache ----------------------------------------------------------------------------------------

def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_unit(root: Path, kind: str, label: str, key: dict[str, Any], make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The unit's record: from ``root/<kind>-<label>-<hash>/unit.json`` when it is complete, else
    built by ``make(partial_dir)`` and published by one rename. ``done_now`` says which."""
    final = root / f"{kind}-{label}-{_digest(key)}"
    record = final / "unit.json"
    if record.exists():
        return {**json.loads(record.read_text()), "dir": str(final), "done_now": False}
    partial = root / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        doc = {"kind": kind, "label": label, "key": key, **make(partial)}
        write_json_atomic(partial / "unit.json", doc)  # last: its presence marks the unit complete
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return {**doc, "dir": str(final), "done_now": True}


# -- units (module-level: Ray workers run them) ----------------------------------------------------

def _load(cfg: SweepConfig):
    from toolchain.model import load_with_recipe

    return load_with_recipe(cfg.model, cfg.checkpoint, cfg.recipe)


def _test_metrics(module, rec, cfg: SweepConfig, score: Callable | None = None) -> dict[str, float]:
    """Every task's metric on the first cfg.test_count test images (``score``: toolchain.evaluate's)."""
    from toolchain.data.loaders import batches
    from toolchain.evaluate import evaluate

    return (score or evaluate)(module, rec, list(batches(rec, "test", count=cfg.test_count, batch_size=500)))


def _base_key(cfg: SweepConfig) -> dict[str, Any]:
    from toolchain.version import __version__

    return {"model": cfg.model, "checkpoint": cfg.checkpoint and sha256_file(cfg.checkpoint),
            "recipe": cfg.recipe and sha256_file(cfg.recipe),
            "val_count": cfg.val_count, "test_count": cfg.test_count, "version": __version__}


def _reference_unit(cfg: SweepConfig, _item: Any = None) -> dict[str, Any]:
    def make(d: Path) -> dict[str, Any]:
        from toolchain.chance import chance_metrics
        from toolchain.data.loaders import example_input
        from toolchain.prune.cost import model_flops

        loaded, rec = _load(cfg)
        return {"metrics": _test_metrics(loaded.module.eval(), rec, cfg),
                "chance": _test_metrics(loaded.module, rec, cfg, chance_metrics),
                "flops": model_flops(loaded.module, example_input(rec))}

    # "chance": records made before the chance level was part of a reference are made again
    return cached_unit(Path(cfg.out) / "cache", "reference", "unpruned", {**_base_key(cfg), "chance": 1}, make)


def _prune_key(cfg: SweepConfig, goal: Goal, round_to: int) -> dict[str, Any]:
    return {**_base_key(cfg), "goal": asdict(goal), "round_to": round_to, "finetune_epochs": cfg.finetune_epochs,
            "bounds": "relaxed" if cfg.relax else "contract"}  # pruned within the recipe's bounds (units pruned with relaxed budgets differ)


def _prune_unit(cfg: SweepConfig, item: tuple[Goal, int]) -> dict[str, Any]:
    goal, round_to = item

    def make(d: Path) -> dict[str, Any]:
        from toolchain.model import save_checkpoint
        from toolchain.pipeline import compress_stage

        loaded, rec = _load(cfg)
        # PAGCP within the recipe's bounds, recovery that keeps its best state, the held-out check
        # (a goal the bounds do not allow is reported, not forced)
        result = compress_stage(loaded.module.eval(), rec, dict(
            keep_flops=goal.value if goal.kind == "flops" else None, round_to=round_to, val_count=cfg.val_count,
            target_latency_ms=goal.value if goal.kind == "latency_ms" else None, finetune_epochs=cfg.finetune_epochs,
            distill=True, test_count=cfg.test_count, relax=cfg.relax, allow_exceed=True))
        save_checkpoint(d / "model.pt", result.model, loaded.origin, rec)
        return {"flops_before": result.prune.flops_before, "flops_after": result.prune.flops_after,
                "oracle_evaluations": result.prune.oracle_evaluations, "goal_reached": result.goal_reached,
                "bounds": result.bounds.as_dict(), "model": "model.pt"}

    return cached_unit(Path(cfg.out) / "cache", "prune", f"{goal.label}-r{round_to}", _prune_key(cfg, goal, round_to), make)


def _bundle_unit(cfg: SweepConfig, item: tuple[Goal, int, str]) -> dict[str, Any]:
    goal, round_to, precision = item
    pruned = _prune_unit(cfg, (goal, round_to))  # cached: only the record is read

    def make(d: Path) -> dict[str, Any]:
        from toolchain.model import load
        from toolchain.pipeline import export_stage, quantize_stage

        _, rec = _load(cfg)
        model = load(str(Path(pruned["dir"]) / pruned["model"])).module.eval()
        bundle = export_stage(model, rec, d / "model.mtb")
        if precision == "fp32":
            return {"bundle": bundle.name, "variant": precision, "ok": True, "metrics": _test_metrics(model, rec, cfg)}
        from toolchain.quantize import QuantizeOptions

        q = quantize_stage(bundle, rec, [precision], options=QuantizeOptions(
            val_count=cfg.val_count, test_count=cfg.test_count, latency_runs=0))
        return {"bundle": bundle.name, "variant": precision, "ok": not q.missing, "notes": q.report.notes,
                "metrics": {t: s["value"] for t, s in q.report.variants[precision].scores["test"].items()}}

    return cached_unit(Path(cfg.out) / "cache", "bundle", f"{goal.label}-r{round_to}-{precision}",
                       {**_prune_key(cfg, goal, round_to), "precision": precision}, make)


def _target_unit(cfg: SweepConfig, item: tuple[Goal, int, str, str]) -> dict[str, Any]:
    goal, round_to, precision, target = item
    bundle = _bundle_unit(cfg, (goal, round_to, precision))

    def make(d: Path) -> dict[str, Any]:
        from toolchain.bundle import Bundle
        from toolchain.targets import build as b
        from toolchain.targets.latency import profile_bundle
        from toolchain.targets.plan import BuildOptions
        from toolchain.targets.profile import load_profile

        profile = load_profile(target)
        copy = d / "model.mtb"  # a copy per target: engines are recorded in the bundle's manifest
        shutil.copytree(Path(bundle["dir"]) / bundle["bundle"], copy)
        options = BuildOptions(variants=(precision,))
        if profile.backend == "openvino":
            result = b.build(copy, profile, options, verify=True)
            built = {"engines": f"model.mtb/engines/{profile.name}", "via": result.via}
        else:
            b.emit_script(copy, profile, options, d / f"build-{profile.name}.sh")
            built = {"script": f"build-{profile.name}.sh",
                     "device_steps": f"bash build-{profile.name}.sh model.mtb on the device, then "
                                     f"`mtedge build model.mtb --target {profile.name} --import-engines`"}
        opened = Bundle.open(copy)
        table = profile_bundle(opened.root, opened.manifest, profile, precision, runs=cfg.runs)
        return {"latency_ms": float(sum(table.segments.values())), "latency_source": table.source,
                "segments_ms": table.segments, **built}

    return cached_unit(Path(cfg.out) / "cache", "target", f"{goal.label}-r{round_to}-{precision}-{target}",
                       {**_prune_key(cfg, goal, round_to), "precision": precision, "target": target}, make)


# -- the sweep --------------------------------------------------------------------------------------

def round_to_for(cfg: SweepConfig, precision: str) -> int:
    """Channel multiple of a precision's pruned model: --round-to, else the lcm of every swept
    target's multiple (a count that suits each of them), so one model serves all targets."""
    if cfg.round_to:
        return cfg.round_to
    from toolchain.targets.profile import load_profile

    return math.lcm(*(load_profile(t).channel_multiple(precision) for t in cfg.targets))


@dataclass
class SweepResult:
    points: list[dict[str, Any]]
    reference: dict[str, Any]
    pareto: dict[str, list[dict[str, Any]]]
    chosen: dict[str, dict[str, Any] | None]
    done_now: int
    cached: int
    files: dict[str, str] = field(default_factory=dict)


def run_sweep(cfg: SweepConfig, evaluator=None) -> SweepResult:
    """Every point of the grid (cached units), the Pareto front and the chosen point per target;
    writes sweep.json, pareto.md, pareto.png and chosen/<target>.json under cfg.out."""
    from toolchain.chance import refuse_chance_level
    from toolchain.evaluate import drops as task_drops, higher_is_better
    from toolchain.workers import SerialEvaluator

    cfg.check()
    ev = evaluator or SerialEvaluator()
    out = Path(cfg.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    _, rec = _load(cfg)
    rt = {p: round_to_for(cfg, p) for p in cfg.precisions}
    prune_items = list(dict.fromkeys((g, rt[p]) for g in cfg.goals for p in cfg.precisions))
    bundle_items = [(g, rt[p], p) for g in cfg.goals for p in cfg.precisions]
    reference = ev.map(_reference_unit, [None], state=cfg, description="sweep: unpruned reference")[0]
    # a reference at chance makes every point "within bounds" of a constant: refuse before pruning it (the
    # unpruned model must beat a constant predictor on every task by more than the task's allowed drop)
    refuse_chance_level(reference["metrics"], reference["chance"], rec, f"the sweep's reference {cfg.model}"
                        + (f" ({cfg.checkpoint})" if cfg.checkpoint else " (no --checkpoint)"))
    prunes = ev.map(_prune_unit, prune_items, state=cfg, description="sweep: pruning")
    bundles = ev.map(_bundle_unit, bundle_items, state=cfg, description="sweep: export + quantize")
    target_items = [(g, r, p, t) for (g, r, p), bu in zip(bundle_items, bundles) if bu["ok"] for t in cfg.targets]
    targets = ev.map(_target_unit, target_items, state=cfg, description="sweep: build + profile")
    units = [reference, *prunes, *bundles, *targets]
    pruned_of, by_item = dict(zip(prune_items, prunes)), dict(zip(target_items, targets))
    points = []
    for (g, r, p), bu in zip(bundle_items, bundles):
        pruned, drops = pruned_of[(g, r)], task_drops(reference["metrics"], bu["metrics"], rec)
        for t in cfg.targets:
            tu = by_item.get((g, r, p, t))
            points.append({
                "id": f"{g.label}-{p}-{t}", "goal": asdict(g), "precision": p, "target": t, "round_to": r,
                "flops": pruned["flops_after"], "flops_fraction": pruned["flops_after"] / reference["flops"],
                "goal_reached": pruned.get("goal_reached"), "metrics": bu["metrics"], "drops": drops,
                "within_bounds": all(drops[k] <= rec.task(k).allowed_drop + 1e-9 for k in drops),
                "quantized_within_bounds": bu["ok"],
                "latency_ms": tu["latency_ms"] if tu else None, "latency_source": tu["latency_source"] if tu else None,
                "bundle": str(Path(tu["dir"]) / "model.mtb") if tu else str(Path(bu["dir"]) / bu["bundle"]),
                "build": ({k: str(Path(tu["dir"]) / tu[k]) for k in ("engines", "script") if k in tu} if tu else {}),
                "notes": ([] if bu["ok"] else [f"{p} could not keep every task within its bound; not built"])
                + bu.get("notes", []),
            })
    hib = {t: higher_is_better(rec, t) for t in rec.tasks}
    pareto = {t: pareto_front([p for p in points if p["target"] == t and p["latency_ms"] is not None], hib)
              for t in cfg.targets}
    chosen = {t: choose(pareto[t]) for t in cfg.targets}
    done_now = sum(1 for u in units if u["done_now"])
    result = SweepResult(points, {k: reference[k] for k in ("metrics", "chance", "flops")}, pareto, chosen,
                         done_now, len(units) - done_now)
    result.files = write_outputs(cfg, rec, result, hib)
    return result


def dominates(a: dict[str, Any], b: dict[str, Any], hib: dict[str, bool]) -> bool:
    """a is at least as fast and as good on every task as b, and better somewhere."""
    def better_or_equal(t: str) -> bool:
        return a["metrics"][t] >= b["metrics"][t] if hib[t] else a["metrics"][t] <= b["metrics"][t]

    if a["latency_ms"] > b["latency_ms"] or not all(better_or_equal(t) for t in hib):
        return False
    return a["latency_ms"] < b["latency_ms"] or any(a["metrics"][t] != b["metrics"][t] for t in hib)


def pareto_front(points: Sequence[dict[str, Any]], hib: dict[str, bool]) -> list[dict[str, Any]]:
    """Points no other point dominates (latency down, every task metric in its good direction), fastest first."""
    front = [p for p in points if not any(dominates(q, p, hib) for q in points if q is not p)]
    return sorted(front, key=lambda p: (p["latency_ms"], p["id"]))


def choose(front: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What to ship on a target: the fastest front point that keeps every task within its allowed drop."""
    ok = [p for p in front if p["within_bounds"]]
    return min(ok, key=lambda p: (p["latency_ms"], p["id"])) if ok else None


def write_outputs(cfg: SweepConfig, rec, result: SweepResult, hib: dict[str, bool]) -> dict[str, str]:
    out = Path(cfg.out)
    tasks = list(rec.tasks)
    ref = result.reference["metrics"]
    # the worst value a task may reach and stay within its bound: the reference moved by its allowed drop
    bound = {t: ref[t] - rec.task(t).allowed_drop if hib[t] else ref[t] + rec.task(t).allowed_drop for t in tasks}
    doc = {"model": cfg.model, "checkpoint": cfg.checkpoint,
           "config": {**asdict(cfg), "goals": [asdict(g) for g in cfg.goals]},
           "reference": result.reference, "points": result.points, "pareto": result.pareto, "chosen": result.chosen,
           "allowed_drop": {t: rec.task(t).allowed_drop for t in tasks}, "bound": bound,
           "run": {"done_now": result.done_now, "cached": result.cached}}
    write_json_atomic(out / "sweep.json", doc)
    for t, c in result.chosen.items():
        write_json_atomic(out / "chosen" / f"{t}.json", c or {"target": t, "chosen": None,
                                                                "why": "no point keeps every task within its allowed drop"})
    md = [f"# sweep {cfg.model}: Pareto front per target (test metrics on {cfg.test_count} images)", "",
          f"Reference: {cfg.model}" + (f" with {cfg.checkpoint}" if cfg.checkpoint else "") + ", unpruned fp32; "
          "chance: a constant predictor (most frequent class, mean target) on the same images.", ""]
    chance = result.reference.get("chance") or {}
    for t, front in result.pareto.items():
        md += [f"## {t}", "", "| point | FLOPs | latency ms | " + " | ".join(tasks) + " | within bounds |",
               "|---|---|---|" + "---|" * len(tasks) + "---|",
               "| reference (unpruned fp32) | 100% | - | " + " | ".join(f"{ref[k]:.2f}" for k in tasks) + " | - |",
               "| bound (allowed drop) | - | - | "
               + " | ".join(f"{bound[k]:.2f} ({rec.task(k).allowed_drop:g})" for k in tasks) + " | - |"]
        if chance:
            md.append("| chance (constant predictor) | - | - | " + " | ".join(f"{chance[k]:.2f}" for k in tasks) + " | - |")
        for p in front:
            star = " (chosen)" if result.chosen.get(t) is p else ""
            # a value within the task's allowed drop of chance is marked: the refusal's rule, per point
            md.append(f"| {p['id']}{star} | {p['flops_fraction']:.0%} | {p['latency_ms']:.3f} ({p['latency_source']}) | "
                      + " | ".join(f"{p['metrics'][k]:.2f}" + (" (at chance)" if chance and (
                          (p['metrics'][k] - chance[k]) if hib[k] else (chance[k] - p['metrics'][k]))
                          <= rec.task(k).allowed_drop else "") for k in tasks) + f" | {p['within_bounds']} |")
        md.append("")
    write_bytes_atomic(out / "pareto.md", "\n".join(md).encode())
    plot = plot_pareto(result, tasks, hib, out / "pareto.png", bound)
    return {"json": str(out / "sweep.json"), "table": str(out / "pareto.md"), "plot": str(plot),
            "chosen": str(out / "chosen")}


def plot_pareto(result: SweepResult, tasks: list[str], hib: dict[str, bool], path: Path,
                bound: dict[str, float]) -> Path:
    """Metric per task (rows) vs latency, one column per target; the front joined, the chosen point starred,
    the reference's metric, each task's bound and the chance level as horizontal lines."""
    from toolchain.plots import save_png, subplots

    targets = list(result.pareto)
    fig, axes = subplots(len(tasks), len(targets), figsize=(4.2 * len(targets), 2.6 * len(tasks)), squeeze=False)
    for j, target in enumerate(targets):
        pts = [p for p in result.points if p["target"] == target and p["latency_ms"] is not None]
        front = result.pareto[target]
        for i, task in enumerate(tasks):
            ax = axes[i][j]
            for prec, marker in (("fp32", "o"), ("fp16", "s"), ("int8", "^")):
                sel = [p for p in pts if p["precision"] == prec]
                if sel:
                    ax.scatter([p["latency_ms"] for p in sel], [p["metrics"][task] for p in sel], marker=marker,
                               label=prec, alpha=0.7)
            ax.plot([p["latency_ms"] for p in front], [p["metrics"][task] for p in front], "k--", lw=0.8, label="front")
            if c := result.chosen.get(target):
                ax.scatter([c["latency_ms"]], [c["metrics"][task]], marker="*", s=160, c="red", label="chosen")
            ax.axhline(result.reference["metrics"][task], color="green", lw=0.8, label="reference (fp32)")
            ax.axhline(bound[task], color="red", lw=0.8, ls="--", label="bound")  # reference moved by its allowed drop
            # chance as text, not a line: a line far below would squeeze the points into one row
            chance = result.reference.get("chance", {}).get(task)
            ax.set_title(f"{target}: {task}" + ("" if hib[task] else " (lower is better)")
                         + ("" if chance is None else f", chance {chance:.2f}"), fontsize=9)
            ax.set_xlabel("latency ms" + (f" ({pts[0]['latency_source']})" if pts else ""), fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path, dpi=90)
