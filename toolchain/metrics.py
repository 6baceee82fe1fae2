"""Task metrics, accumulated over batches. Each metric knows whether higher is better.

Supervised metrics compare against labels; label-free (fidelity) metrics compare a model's
outputs with a reference model's outputs on the same inputs, for users without labels.
"""

from __future__ import annotations

import math
import torch

from toolchain.errors import SpecError
from toolchain.imports import import_callable


class Metric:
    """Accumulates a metric over batches: update(pred, target) many times, then value()."""

    name, higher_is_better, unit = "", True, ""

    def __init__(self) -> None:
        self._num = self._den = 0.0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def value(self) -> float:
        return self._num / max(self._den, 1e-12)


class Accuracy(Metric):
    """Top-1 accuracy in percent. `target` is class indices [B] or reference logits [B, C]."""

    name, higher_is_better, unit = "accuracy", True, "%"

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if target.dim() == pred.dim():  # fidelity: agreement with the reference's top-1
            target = target.argmax(1)
        self._num += (pred.argmax(1) == target).sum().item() * 100.0
        self._den += target.numel()


class MeanIoU(Metric):
    """Mean intersection-over-union in percent over classes present in prediction or target."""

    name, higher_is_better, unit = "miou", True, "%"
    _inter: torch.Tensor | None = None  # per class, accumulated
    _union: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        c = pred.shape[1]
        if target.dim() == pred.dim():  # fidelity: mIoU against the reference's argmax
            target = target.argmax(1)
        if target.shape[-2:] != pred.shape[-2:]:  # masks stored at image size, head at its own resolution
            target = torch.nn.functional.interpolate(target[:, None].float(), size=pred.shape[-2:], mode="nearest")[:, 0].long()
        p = pred.argmax(1).flatten()
        t = target.flatten()
        inter = torch.bincount(t[p == t], minlength=c)[:c].double()
        area_p = torch.bincount(p, minlength=c)[:c].double()
        area_t = torch.bincount(t, minlength=c)[:c].double()
        if self._inter is None:
            self._inter, self._union = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
        self._inter += inter
        self._union += area_p + area_t - inter

    def value(self) -> float:
        if self._inter is None:
            return 0.0
        present = self._union > 0
        return float((self._inter[present] / self._union[present]).mean() * 100.0)

    def class_iou(self, c: int) -> float:
        """IoU of class `c` alone, as a fraction; a class absent from prediction and target scores 1."""
        if self._inter is None or c >= len(self._union) or self._union[c] == 0:
            return 1.0
        return float(self._inter[c] / self._union[c])


class _SquaredError(Metric):
    """Accumulates the squared error and the element count (PSNR and RMSE derive from the mean)."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._num += torch.sum((pred.double() - target.double()) ** 2).item()
        self._den += target.numel()


class PSNR(_SquaredError):
    """Peak signal-to-noise ratio in dB for images in [0, 1], from the mean squared error."""

    name, higher_is_better, unit = "psnr", True, "dB"

    def value(self) -> float:
        return 10.0 * math.log10(1.0 / max(self._num / max(self._den, 1), 1e-12))


class RelativeError(Metric):
    """Mean absolute relative error in percent (depth/regression; lower is better)."""

    name, higher_is_better, unit = "rel_error", False, "%"

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        err = (pred.double() - target.double()).abs() / target.double().abs().clamp_min(1e-3)
        self._num += err.sum().item() * 100.0
        self._den += target.numel()


class RMSE(_SquaredError):
    name, higher_is_better, unit = "rmse", False, ""

    def value(self) -> float:
        return math.sqrt(self._num / max(self._den, 1))


class NormalizedRMSE(Metric):
    """RMSE as a percentage of the target's spread, per output channel (lower is better).

    Scale-free: a box regressor whose outputs are offsets near zero and a landmark head in pixels are
    judged alike, so an allowed drop can be written without knowing the raw output scale."""

    name, higher_is_better, unit = "nrmse", False, "%"

    def __init__(self) -> None:
        super().__init__()
        self._sq = self._sum = self._sum2 = None  # per channel: squared error, target sum, target sum of squares
        self._n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = _channels_last_2d(pred.double()), _channels_last_2d(target.double())
        if self._sq is None:
            self._sq, self._sum, self._sum2 = (torch.zeros(t.shape[1], dtype=torch.float64) for _ in range(3))
        self._sq += ((p - t) ** 2).sum(0)
        self._sum += t.sum(0)
        self._sum2 += (t**2).sum(0)
        self._n += t.shape[0]

    def value(self) -> float:
        if self._sq is None or self._n == 0:
            return 0.0
        mean = self._sum / self._n
        var = (self._sum2 / self._n - mean**2).clamp_min(0.0)
        # a constant channel has no spread: judge it against its magnitude instead
        scale = torch.where(var > 1e-12, var, (mean**2).clamp_min(1e-12))
        return float(torch.sqrt((self._sq / self._n / scale).mean()) * 100.0)


class ScaledRMSE(RMSE):
    """RMSE times a unit scale (``unit_scale: 48`` on outputs normalized by the crop size reports pixels)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.name, self.scale, self.unit = f"rmse*{scale:g}", scale, "unit"

    def value(self) -> float:
        return super().value() * self.scale


class UserMetric(Metric):
    """A user's ``package.module:function(preds, targets) -> float``, called once on the whole split
    (every batch's predictions and targets concatenated along the batch dimension)."""

    def __init__(self, spec: str, fn, higher_is_better: bool) -> None:
        super().__init__()
        self.name, self.fn, self.higher_is_better = spec, fn, higher_is_better
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._preds.append(pred.detach())
        self._targets.append(target.detach())

    def value(self) -> float:
        if not self._preds:
            return 0.0
        try:
            return float(self.fn(torch.cat(self._preds), torch.cat(self._targets)))
        except Exception as e:
            raise SpecError(f"metric {self.name} raised {type(e).__name__}: {e}") from None


def _channels_last_2d(x: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [B * ..., C]: one column per output channel."""
    return x[:, None] if x.dim() == 1 else x.movedim(1, -1).reshape(-1, x.shape[1])


def metrics_table(recipe, metrics: dict[str, float], title: str):
    """A rich table of per-task metric values (`mtedge train`, the demo)."""
    from rich.table import Column, Table

    table = Table("task", "kind", "metric", Column("value", justify="right"), title=title)
    for t, v in metrics.items():
        spec = recipe.tasks[t]
        table.add_row(t, spec.kind, spec.metric, f"{v:.2f} {'dB' if spec.metric == 'psnr' else '%'}")
    return table


METRICS = {"accuracy": Accuracy, "miou": MeanIoU, "psnr": PSNR, "rel_error": RelativeError, "rmse": RMSE,
           "nrmse": NormalizedRMSE}

# label-free mode: which fidelity metric stands in for each task kind
FIDELITY_METRIC = {
    "classification": "accuracy",  # top-1 agreement with the reference
    "segmentation": "miou",  # mIoU against the reference's argmax
    "depth": "rel_error",
    "regression": "nrmse",  # scale-free: box offsets near zero would blow up a relative error
    "keypoints": "nrmse",
    "reconstruction": "psnr",
}

# user metrics named in recipes (`metric: package.module:function`) -> whether higher is better
_USER_METRICS: dict[str, bool] = {}


def register_user_metric(spec: str, higher_is_better: bool) -> None:
    """Check that `spec` imports and remember its direction (recipes call this when parsed)."""
    _resolve(spec)
    _USER_METRICS[spec] = higher_is_better


def is_known_metric(name: str) -> bool:
    return name in METRICS or ":" in name or (name.startswith("rmse*") and _float(name[5:]) is not None)


def make_metric(name: str) -> Metric:
    """A fresh accumulator for `name`: a built-in metric, ``rmse*S`` (RMSE in a unit S times the
    raw one), or a user metric ``package.module:function``."""
    if name in METRICS:
        return METRICS[name]()
    if name.startswith("rmse*") and _float(name[5:]) is not None:
        return ScaledRMSE(_float(name[5:]))
    if ":" in name:
        return UserMetric(name, _resolve(name), _USER_METRICS.get(name, True))
    raise SpecError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}, "
                    "or a function of yours as 'package.module:function'")


def _resolve(spec: str):
    return import_callable(spec, "metric", "'package.module:function' taking (predictions, targets) and returning a float")


def _float(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if v > 0 else None
