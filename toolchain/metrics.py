"""Task metrics, accumulated over batches. Each metric knows whether higher is better.

Supervised metrics compare against labels; label-free (fidelity) metrics compare a model's
outputs with a reference model's outputs on the same inputs, for users without labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from toolchain.errors import SpecError


@dataclass
class Metric:
    """Accumulates a metric over batches: update(pred, target) many times, then value()."""

    name: str
    higher_is_better: bool = True
    unit: str = ""
    _num: float = 0.0
    _den: float = 0.0
    _inter: torch.Tensor | None = field(default=None, repr=False)
    _union: torch.Tensor | None = field(default=None, repr=False)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def value(self) -> float:
        return self._num / max(self._den, 1e-12)


class Accuracy(Metric):
    """Top-1 accuracy in percent. `target` is class indices [B] or reference logits [B, C]."""

    def __init__(self) -> None:
        super().__init__("accuracy", True, "%")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if target.dim() == pred.dim():  # fidelity: agreement with the reference's top-1
            target = target.argmax(1)
        self._num += (pred.argmax(1) == target).sum().item() * 100.0
        self._den += target.numel()


class MeanIoU(Metric):
    """Mean intersection-over-union in percent over classes present in prediction or target."""

    def __init__(self) -> None:
        super().__init__("miou", True, "%")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        c = pred.shape[1]
        if target.dim() == pred.dim():  # fidelity: mIoU against the reference's argmax
            target = target.argmax(1)
        p = pred.argmax(1).flatten()
        t = target.flatten()
        inter = torch.bincount(t[p == t], minlength=c)[:c].double()
        area_p = torch.bincount(p, minlength=c)[:c].double()
        area_t = torch.bincount(t, minlength=c)[:c].double()
        if self._inter is None:
            self._inter = torch.zeros(c, dtype=torch.float64)
            self._union = torch.zeros(c, dtype=torch.float64)
        self._inter += inter
        self._union += area_p + area_t - inter

    def value(self) -> float:
        if self._inter is None:
            return 0.0
        present = self._union > 0
        return float((self._inter[present] / self._union[present]).mean() * 100.0)


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB for images in [0, 1], from the mean squared error."""

    def __init__(self) -> None:
        super().__init__("psnr", True, "dB")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._num += torch.sum((pred.double() - target.double()) ** 2).item()
        self._den += target.numel()

    def value(self) -> float:
        mse = self._num / max(self._den, 1)
        return 10.0 * math.log10(1.0 / max(mse, 1e-12))


class RelativeError(Metric):
    """Mean absolute relative error in percent (depth/regression; lower is better)."""

    def __init__(self) -> None:
        super().__init__("rel_error", False, "%")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        err = (pred.double() - target.double()).abs() / target.double().abs().clamp_min(1e-3)
        self._num += err.sum().item() * 100.0
        self._den += target.numel()


class RMSE(Metric):
    def __init__(self) -> None:
        super().__init__("rmse", False, "")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._num += torch.sum((pred.double() - target.double()) ** 2).item()
        self._den += target.numel()

    def value(self) -> float:
        return math.sqrt(self._num / max(self._den, 1))


METRICS = {"accuracy": Accuracy, "miou": MeanIoU, "psnr": PSNR, "rel_error": RelativeError, "rmse": RMSE}

# label-free mode: which fidelity metric stands in for each task kind
FIDELITY_METRIC = {
    "classification": "accuracy",  # top-1 agreement with the reference
    "segmentation": "miou",  # mIoU against the reference's argmax
    "depth": "rel_error",
    "regression": "rel_error",
    "keypoints": "rmse",
    "reconstruction": "psnr",
}


def make_metric(name: str) -> Metric:
    try:
        return METRICS[name]()
    except KeyError:
        raise SpecError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}") from None
