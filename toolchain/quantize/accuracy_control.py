"""Per-task accuracy control: keep the layers most responsible for a task's drop in float.

NNCF's own accuracy control optimizes one scalar metric. Here every task has its own bound
(recipe `allowed_drop`, tightened by a safety margin because the final check runs on other
data). The loop, on the `val` split:

1. quantize every segment (nothing ignored) and score every task through the chain;
2. while a task is out of bounds, take the worst one (largest excess relative to its bound);
   its candidates are the still-quantized layers of *the segments that task runs* -- a shared
   segment answers to every task that uses it, a head only to its own task;
3. rank the candidates by the quantization error each layer adds (`int8.layer_errors`, on
   calibration inputs), re-quantize with each of the `top_k` best as an NNCF IgnoredScope (the
   next `top_k` if none of them lowers the drop, at most 3 * top_k trials), keep the one that
   helps that task most, and go back to 1 (every task that shares the changed segment is
   scored again);
4. stop when every task is within its bound, the task has no candidate left or none of the
   tried ones lowers its drop, or after
   `max_rounds` layers (each round costs up to `top_k` NNCF runs); what is left is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from toolchain.bundle.executor import DatasetRunner, Samples, SegmentModel
from toolchain.quantize.evaluation import TaskEvaluator
from toolchain.quantize.int8 import QDQ_OPS, Int8Settings, layer_errors, quantize_segment, quantized_layers
from toolchain.workers import Evaluator, SerialEvaluator

Progress = Callable[[str], None]


@dataclass
class ControlResult:
    """The int8 models chosen per segment, what stayed float and why, the tasks still out of bounds
    and the layers left quantized."""

    models: dict[str, SegmentModel]
    float_layers: dict[str, list[str]]
    decisions: list[dict[str, Any]]
    unresolved: list[str] = field(default_factory=list)
    quantized: dict[str, list[str]] = field(default_factory=dict)


class Int8Quantizer:
    """Quantizes segments on their calibration samples, caching by (segment, float layers)."""

    def __init__(self, fp32: dict[str, SegmentModel], calibration: dict[str, Samples], settings: Int8Settings) -> None:
        self.fp32, self.calibration, self.settings = fp32, calibration, settings
        self._cache: dict[tuple[str, frozenset[str]], SegmentModel] = {}
        self.calls = 0

    def __call__(self, segment: str, float_layers: frozenset[str] = frozenset()) -> SegmentModel:
        key = (segment, float_layers)
        if key not in self._cache:
            self.calls += 1
            q = quantize_segment(self.fp32[segment].model, self.calibration[segment], float_layers, self.settings, segment)
            # nothing to quantize: identical to fp32
            self._cache[key] = (SegmentModel(q, "int8|" + ",".join(sorted(float_layers)))
                                if any(n.op_type in QDQ_OPS for n in q.graph.node) else self.fp32[segment])
        return self._cache[key]

    def adopt(self, segment: str, float_layers: frozenset[str], model: SegmentModel) -> None:
        """Cache a model quantized elsewhere (a worker) as if this quantizer had made it."""
        if (segment, float_layers) not in self._cache:
            self.calls += 1
            self._cache[(segment, float_layers)] = model


def _trial(state: tuple, candidate: tuple[str, str]) -> tuple[float, SegmentModel]:
    """One trial: `candidate`'s segment re-quantized with that layer in float, and the task's drop."""
    runner, evaluator, baseline, quantizer, models, ignored, task = state
    s, name = candidate
    trial = quantizer(s, ignored[s] | {name})
    values = evaluator.score(runner.task_outputs({**models, s: trial}, [task]))
    return evaluator.drops({task: baseline[task]}, values)[task], trial


def control(
    runner: DatasetRunner,
    evaluator: TaskEvaluator,
    baseline: dict[str, float],
    bounds: dict[str, float],
    quantizer: Int8Quantizer,
    top_k: int = 3,
    proxy_samples: int = 32,
    max_rounds: int = 16,
    progress: Progress | None = None,
    pool: Evaluator | None = None,
) -> ControlResult:
    """Run the loop in the module docstring; `bounds` are the effective (margin-applied) drops.
    `pool` (toolchain.scale) runs each round's trials on workers; the result is the same."""
    graph = runner.manifest
    say = progress or (lambda msg: None)
    tasks = list(bounds)
    ignored: dict[str, frozenset[str]] = {s: frozenset() for s in graph.segments}
    models = {s: quantizer(s) for s in graph.segments}
    decisions: list[dict[str, Any]] = []
    stuck: list[str] = []

    def score() -> dict[str, float]:
        """Every task's drop with the current models."""
        return evaluator.drops(baseline, evaluator.score(runner.task_outputs(models, tasks)))

    drops = score()
    for _ in range(max_rounds):
        if not (failing := [t for t in tasks if drops[t] > bounds[t] and t not in stuck]):
            break
        task = max(failing, key=lambda t: (drops[t] - bounds[t]) / max(bounds[t], 1e-6))
        candidates = [(s, name) for s in graph.tasks[task].segments
                      for name in quantized_layers(models[s].model) if name not in ignored[s]]
        if not candidates:
            stuck.append(task)
            say(f"{task}: no quantized layer left to keep in float")
            continue
        proxy: dict[tuple[str, str], float] = {}
        for s in {s for s, _ in candidates}:
            names = [n for seg, n in candidates if seg == s]
            errs = layer_errors(quantizer.fp32[s].model, models[s].model, quantizer.calibration[s][:proxy_samples], names)
            proxy.update({(s, n): errs.get(n, 0.0) for n in names})
        order = sorted(candidates, key=lambda c: -proxy[c])
        best: tuple[float, tuple[str, str], SegmentModel, float] | None = None
        ranked: list[tuple[str, str]] = []
        # top_k at a time by the proxy; go further down the ranking (at most 3 * top_k trials)
        # only while none of those tried lowers the task's drop
        for start in range(0, min(len(order), 3 * top_k), top_k):
            # the chunk's trials are independent: one batch through the evaluator, reduced in rank order
            chunk = order[start : start + top_k]
            trials = (pool or SerialEvaluator()).map(
                _trial, chunk, state=(runner, evaluator, baseline, quantizer, models, ignored, task),
                description=f"accuracy control: {task}")
            for (s, name), (drop, trial) in zip(chunk, trials):
                ranked.append((s, name))
                quantizer.adopt(s, ignored[s] | {name}, trial)  # a worker's result joins this process's cache
                say(f"{task}: trying {s}:{name} in float -> drop {drop:.3f}")
                if best is None or drop < best[0]:
                    best = (drop, (s, name), trial, proxy[(s, name)])
            if best is not None and best[0] < drops[task]:
                break
        assert best is not None
        if best[0] >= drops[task]:  # no layer in float helps: more of them will not either
            stuck.append(task)
            say(f"{task}: no candidate layer lowers its drop ({drops[task]:.3f}); giving up on it")
            continue
        (s, name), before = best[1], drops[task]
        ignored[s] = ignored[s] | {name}
        models[s] = best[2]
        drops = score()
        decisions.append({
            "segment": s, "layer": name, "task": task, "shared": graph.segments[s].shared,
            "drop_before": before, "drop_after": drops[task], "bound": bounds[task],
            "added_error_nmse": best[3], "candidates_tried": [f"{c[0]}:{c[1]}" for c in ranked],
            "reason": (f"{task} dropped {before:.3f} (bound {bounds[task]:.3f}); of {len(ranked)} candidates "
                       f"tried, keeping {name} in float helped most ({drops[task]:.3f})"),
        })
        say(decisions[-1]["reason"])
    return ControlResult(models=models, float_layers={s: sorted(v) for s, v in ignored.items() if v},
                         decisions=decisions, unresolved=[t for t in tasks if not drops[t] <= bounds[t]],
                         quantized={s: quantized_layers(m.model) for s, m in models.items()})
