import math

import pytest
import torch

from toolchain.errors import SpecError
from toolchain.metrics import PSNR, Accuracy, MeanIoU, RelativeError, make_metric


def test_accuracy_against_labels_and_reference_logits():
    m = Accuracy()
    pred = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    m.update(pred, torch.tensor([0, 1, 1]))
    assert m.value() == pytest.approx(200 / 3)
    f = Accuracy()
    f.update(pred, pred.clone())
    assert f.value() == 100.0


def test_miou_known_value():
    m = MeanIoU()
    pred = torch.zeros(1, 2, 1, 4)
    pred[0, 1, 0, :2] = 1  # predicts class 1 on the first two pixels
    target = torch.tensor([[[1, 0, 0, 0]]])
    m.update(pred, target)
    # class 0: inter 2 (pixels 2,3), union 3; class 1: inter 1, union 2
    assert m.value() == pytest.approx((2 / 3 + 1 / 2) / 2 * 100)


def test_psnr_and_relative_error():
    p = PSNR()
    p.update(torch.full((4,), 0.5), torch.full((4,), 0.6))
    assert p.value() == pytest.approx(20.0)
    r = RelativeError()
    r.update(torch.tensor([1.1, 2.0]), torch.tensor([1.0, 2.0]))
    assert r.value() == pytest.approx(5.0) and not r.higher_is_better
    assert math.isfinite(PSNR().value())


def test_unknown_metric():
    with pytest.raises(SpecError, match="unknown metric 'f1'; known metrics: accuracy, miou"):
        make_metric("f1")
