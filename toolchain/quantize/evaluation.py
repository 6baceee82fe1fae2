"""Per-task metrics of a chain's outputs, against labels or (label-free) against the fp32 chain.

Drops are in each metric's own unit, positive = worse (toolchain.evaluate semantics). In
label-free mode the fp32 chain is the reference: its fidelity to itself is the metric's ideal
value (100 % agreement, 100 % mIoU, 0 % relative error, 0 RMSE), so the drop of a variant is
ideal - fidelity. PSNR against an identical reference is unbounded; label-free PSNR is therefore
scored against LABEL_FREE_PSNR_DB (a variant must reach 40 dB - allowed_drop of fidelity PSNR).
"""

from __future__ import annotations

import numpy as np
import torch

from toolchain.evaluate import drops, task_metric_name
from toolchain.metrics import make_metric
from toolchain.recipe import Recipe

LABEL_FREE_PSNR_DB = 40.0
_IDEAL = {"accuracy": 100.0, "miou": 100.0, "rel_error": 0.0, "rmse": 0.0, "psnr": LABEL_FREE_PSNR_DB}


class TaskEvaluator:
    """Scores task outputs ([N, ...] arrays, one row per sample) on one fixed data split."""

    def __init__(self, recipe: Recipe, tasks: list[str], targets: dict[str, torch.Tensor] | None,
                 reference: dict[str, np.ndarray] | None, label_free: bool, chunk: int = 256) -> None:
        if label_free and reference is None:
            raise ValueError("label-free evaluation needs the fp32 reference outputs")
        if not label_free and targets is None:
            raise ValueError("labelled evaluation needs targets; this data has none (use label_free=True)")
        self.recipe, self.tasks, self.targets, self.reference = recipe, tasks, targets, reference
        self.label_free, self.chunk = label_free, chunk

    def metric_name(self, task: str) -> str:
        return task_metric_name(self.recipe, task, self.label_free)

    def score(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Metric per task in `outputs`."""
        result = {}
        for task, pred in outputs.items():
            metric = make_metric(self.metric_name(task))
            target = self.reference[task] if self.label_free else self.targets[task]
            for i in range(0, len(pred), self.chunk):
                p = torch.from_numpy(np.asarray(pred[i : i + self.chunk], dtype=np.float32))
                tgt = target[i : i + self.chunk]
                tgt = torch.from_numpy(np.asarray(tgt, dtype=np.float32)) if isinstance(tgt, np.ndarray) else tgt
                metric.update(p, tgt)
            result[task] = float(metric.value())
        return result

    def baseline(self, fp32_outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """The fp32 chain's value per task: measured with labels, the ideal value label-free."""
        if self.label_free:
            return {t: _IDEAL[self.metric_name(t)] for t in fp32_outputs}
        return self.score(fp32_outputs)

    def drops(self, baseline: dict[str, float], values: dict[str, float]) -> dict[str, float]:
        """How much worse each task is than the baseline (metric units, positive = worse)."""
        return drops(baseline, values, self.recipe, self.label_free)


def max_abs_errors(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest absolute difference per task over all samples (exact shapes: mtedge_runtime/tolerance.py)."""
    from mtedge_runtime.tolerance import compare

    return {t: compare(t, got[t].astype(np.float32), ref[t].astype(np.float32), float("inf")).max_abs_err
            for t in got}
