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


def test_nrmse_is_scale_free_and_per_channel():
    from toolchain.metrics import NormalizedRMSE

    g = torch.Generator().manual_seed(0)
    target = torch.randn(64, 4, generator=g) * torch.tensor([1.0, 10.0, 0.01, 1000.0])
    pred = target + 0.1 * target.std(0) * torch.randn(64, 4, generator=g)
    a, b = NormalizedRMSE(), NormalizedRMSE()
    a.update(pred, target)
    b.update(pred * 48.0, target * 48.0)  # the same outputs in another unit
    assert a.value() == pytest.approx(b.value(), rel=1e-6)
    assert 5.0 < a.value() < 20.0  # ~10 % of each channel's spread, whatever its scale
    assert not a.higher_is_better


def test_rmse_in_a_user_unit_and_user_metrics_from_a_recipe():
    from toolchain.evaluate import task_metric_name
    from toolchain.recipe import parse_recipe

    m = make_metric("rmse*48")
    m.update(torch.tensor([[0.5]]), torch.tensor([[0.25]]))
    assert m.value() == pytest.approx(12.0)
    doc = {"name": "u", "input": {"shape": [1, 3, 8, 8]}, "data": {"kind": "random"},
           "tasks": {"box": {"kind": "regression", "allowed_drop": 2.0, "unit_scale": 48},
                     "score": {"kind": "classification", "allowed_drop": 1.0,
                               "metric": "test_metrics:mean_abs_error", "higher_is_better": False}}}
    recipe = parse_recipe(doc)
    assert task_metric_name(recipe, "box", label_free=True) == "rmse*48"
    assert task_metric_name(recipe, "box", label_free=False) == "nrmse"
    user = make_metric(task_metric_name(recipe, "score", label_free=False))
    assert not user.higher_is_better and not recipe.tasks["score"].higher_is_better
    user.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
    user.update(torch.tensor([0.0]), torch.tensor([3.0]))
    assert user.value() == pytest.approx((0 + 2 + 3) / 3)  # the whole split at once
    assert parse_recipe(recipe.to_dict()).tasks == recipe.tasks
    for bad, match in [({"metric": "nope.mod:f"}, "cannot import metric"), ({"unit_scale": -1}, "unit_scale' must be a number > 0"),
                       ({"metric": "f1"}, "known metrics"), ({"higher_is_better": True, "metric": "rmse"}, "drop the key")]:
        task = {"kind": "regression", "allowed_drop": 1.0, **bad}
        with pytest.raises(SpecError, match=match):
            parse_recipe({**doc, "tasks": {"t": task}})


def mean_abs_error(pred, target):
    return float((pred - target).abs().mean())


def test_one_class_iou_and_a_class_absent_from_both():
    m = MeanIoU()
    pred = torch.tensor([[[0, 1], [1, 1]]])  # labels, as logits below
    target = torch.tensor([[[0, 1], [1, 0]]])
    m.update(torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float(), target)
    assert m.class_iou(1) == pytest.approx(2 / 3) and m.class_iou(0) == pytest.approx(1 / 2)
    assert m.class_iou(2) == 1.0  # in neither prediction nor target


def test_summarize_output_names_the_top_class_and_pixel_shares():
    import numpy as np

    from toolchain.output_summary import summarize_output

    assert summarize_output("classification", np.array([[0.0, 5.0, 1.0]])).startswith("top: class 1 (0.98)")
    seg = np.zeros((1, 2, 2, 2), np.float32)
    seg[0, 1, 0, :] = 1.0  # half the pixels are class 1
    assert summarize_output("segmentation", seg) == "pixels: class 0 50%, class 1 50%"
    assert summarize_output("depth", np.array([1.0, 3.0])) == "min 1  mean 2  max 3"
