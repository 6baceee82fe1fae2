"""A user's data named by a recipe: image folders with labels, .npz arrays, Python sources."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain.data.images import normalize, read_image
from toolchain.data.loaders import batches, has_labels
from toolchain.errors import SpecError
from toolchain.evaluate import evaluate
from toolchain.model import load
from toolchain.recipe import parse_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _recipe(tmp: Path, data: dict, tasks: dict | None = None, shape=(1, 3, 12, 10)) -> object:
    doc = {"name": "user", "input": {"shape": list(shape), "normalization": {"scale": 1 / 255, "mean": [0.5], "std": [0.25]}},
           "data": data, "tasks": tasks or {"kind_of": {"kind": "classification", "allowed_drop": 1.0}}}
    path = tmp / "recipe.yaml"
    path.write_text(json.dumps(doc))
    from toolchain.recipe import load_recipe

    return load_recipe(path)


def _folder(tmp: Path, n: int = 30, labels: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (tmp / "imgs" / "sub").mkdir(parents=True)
    (tmp / "masks").mkdir()
    rows = []
    for i in range(n):
        rel = f"sub/p{i:02d}.png" if i % 2 else f"p{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp / "imgs" / rel)
        Image.fromarray((rng.random((12, 10)) > 0.5).astype(np.uint8)).save(tmp / "masks" / f"m{i}.png")
        np.save(tmp / f"kp{i}.npy", np.full(4, i, np.float32))
        rows.append({"file": rel, "kind_of": ["cat", "dog"][i % 2], "mask": f"masks/m{i}.png",
                     "box": f"{i} {i + 1}", "points": f"kp{i}.npy"})
    if labels:
        with open(tmp / "labels.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return tmp / "imgs"


TASKS = {"kind_of": {"kind": "classification", "allowed_drop": 1.0}, "mask": {"kind": "segmentation", "allowed_drop": 1.0},
         "box": {"kind": "regression", "allowed_drop": 5.0}, "points": {"kind": "keypoints", "allowed_drop": 5.0}}


def test_image_folder_with_labels_splits_by_name_and_reads_every_label_kind(tmp_path):
    _folder(tmp_path)
    rec = _recipe(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.csv",
                             "splits": {"val": 0.3, "test": 0.2}}, TASKS)
    assert has_labels(rec)
    seen = {}
    for split in ("train", "val", "test"):
        xs, ys = zip(*batches(rec, split, batch_size=4))
        seen[split] = torch.cat(xs)
        y = {t: torch.cat([b[t] for b in ys]) for t in TASKS}
        assert y["kind_of"].dtype == torch.int64 and set(y["kind_of"].tolist()) <= {0, 1}
        assert y["mask"].shape[1:] == (12, 10) and y["box"].shape[1:] == (2,) and y["points"].shape[1:] == (4,)
        assert torch.equal(y["box"][:, 1] - y["box"][:, 0], torch.ones(len(y["box"])))
    assert sum(len(v) for v in seen.values()) == 30 and all(len(v) for v in seen.values())
    # deterministic by file name: the same recipe gives the same split
    again = torch.cat([x for x, _ in batches(rec, "val", batch_size=64)])
    assert torch.equal(again, seen["val"])
    # calib falls back to train; count limits
    assert len(torch.cat([x for x, _ in batches(rec, "calib", count=3)])) == 3


def test_one_normalization_for_folder_arrays_and_the_runtime_input(tmp_path):
    from mtedge_runtime.manifest import InputSpec

    from toolchain.data.images import read_input

    _folder(tmp_path, labels=False)
    img = tmp_path / "imgs" / "p00.png"
    pix = read_image(img)
    want = (pix.astype(np.float32)[None] / 255 - 0.5) / 0.25
    np.testing.assert_allclose(normalize(pix[None], 1 / 255, [0.5], [0.25]), want.transpose(0, 3, 1, 2), atol=1e-6)
    spec = InputSpec.parse({"name": "image", "shape": [1, 3, 12, 10], "dtype": "float32", "layout": "NCHW",
                            "normalization": {"scale": 1 / 255, "mean": [0.5], "std": [0.25]}}, "input")
    assert np.array_equal(read_input(img, spec), normalize(pix[None], 1 / 255, [0.5], [0.25]))
    np.savez(tmp_path / "d.npz", x=np.stack([read_image(p) for p in sorted((tmp_path / "imgs").rglob("*.png"))]))
    rec = _recipe(tmp_path, {"kind": "arrays", "path": "d.npz", "splits": {"val": 0.5}})
    x, y = next(batches(rec, "val", batch_size=100))
    assert y is None and x.dtype == torch.float32 and x.shape[1:] == (3, 12, 10)
    assert not has_labels(rec)


def test_arrays_take_float_inputs_as_they_are_and_targets_by_task(tmp_path):
    x = np.random.default_rng(1).normal(size=(40, 3, 12, 10)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, kind_of=np.arange(40) % 3)
    rec = _recipe(tmp_path, {"kind": "arrays", "path": "d.npz", "splits": {"val": 0.25, "test": 0.25}})
    got = [(xb, yb) for split in ("train", "val", "test") for xb, yb in batches(rec, split, batch_size=7)]
    allx = torch.cat([g[0] for g in got])
    assert len(allx) == 40 and sorted(allx[:, 0, 0, 0].tolist()) == sorted(x[:, 0, 0, 0].tolist())
    for xb, yb in got:  # every target row belongs to its input row
        idx = [int(np.nonzero(x[:, 0, 0, 0] == v)[0][0]) for v in xb[:, 0, 0, 0].tolist()]
        assert yb["kind_of"].tolist() == [i % 3 for i in idx]


def user_source(split):
    g = torch.Generator().manual_seed({"val": 1, "test": 2}.get(split, 3))
    for _ in range(3):
        yield torch.randn(4, 3, 12, 10, generator=g), None


def test_python_source_yields_its_batches_up_to_count(tmp_path):
    rec = _recipe(tmp_path, {"kind": "python", "source": "test_user_data:user_source"})
    xs = [x for x, _ in batches(rec, "val", count=10)]
    assert [len(x) for x in xs] == [4, 4, 2] and not has_labels(rec)


@pytest.mark.parametrize("case, match", [
    ("undecodable", r"cannot decode image .*p03.png"),
    ("missing_image", r"labels file .*labels.csv row \d+ names image 'gone.png'"),
    ("missing_column", r"no column for task\(s\) mask"),
    ("empty_split", r"split 'val' of imgs is empty"),
    ("bad_number", r"'abc' is not a number, a list of numbers, an .npy file or an image"),
])
def test_bad_data_names_the_file_row_column_or_split(tmp_path, case, match):
    root = _folder(tmp_path, n=6)
    tasks = dict(TASKS)
    data = {"kind": "images", "path": "imgs", "labels": "labels.csv", "splits": {"val": 0.5}}
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    if case == "undecodable":
        (root / "sub" / "p03.png").write_bytes(b"not a png")
    elif case == "missing_image":
        rows.append({**rows[0], "file": "gone.png"})
    elif case == "missing_column":
        rows = [{k: v for k, v in r.items() if k != "mask"} for r in rows]
    elif case == "empty_split":
        data["splits"] = {"val": "empty_dir"}
        (tmp_path / "empty_dir").mkdir()
    elif case == "bad_number":
        rows[1]["box"] = "abc"
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rec = _recipe(tmp_path, data, tasks)
    with pytest.raises(SpecError, match=match):
        for split in ("train", "val"):
            list(batches(rec, split))


def test_recipe_data_keys_are_checked():
    base = {"name": "r", "input": {"shape": [1, 3, 8, 8]}, "tasks": {"a": {"kind": "classification", "allowed_drop": 1}}}
    for data, match in [({"kind": "images"}, "needs 'data.path'"), ({"kind": "python", "source": "nocolon"}, "package.module:function"),
                        ({"kind": "images", "path": "x", "color": "cmyk"}, "rgb, bgr or gray"),
                        ({"kind": "images", "path": "x", "splits": {"val": 0.7, "test": 0.4}}, "leave some for train"),
                        ({"kind": "images", "path": "x", "splits": {"holdout": 0.1}}, "is not a split"),
                        ({"kind": "images", "path": "x", "augment": {"crop": [0.5, 1.5]}}, r"0 < lo <= hi <= 1"),
                        ({"kind": "images", "path": "x", "augment": {"rotate": 10}}, "keys crop and/or flip"),
                        ({"kind": "arrays", "path": "x.npz", "augment": {"flip": True}}, "applies to data kind 'images'")]:
        with pytest.raises(SpecError, match=match):
            parse_recipe({**base, "data": data})


def test_augment_draws_new_views_of_train_images_for_training_only(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    # a horizontal ramp: a flip reverses it, a crop narrows its range
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], (30, 1, 3))
    for i in range(6):
        Image.fromarray(ramp).save(root / f"r{i}.png")
    plain = _recipe(tmp_path, {"kind": "images", "path": "imgs", "splits": {"val": 0.3}})
    rec = _recipe(tmp_path, {"kind": "images", "path": "imgs", "splits": {"val": 0.3},
                             "augment": {"crop": [0.2, 0.4], "flip": True}})
    fixed = torch.cat([x for x, _ in batches(plain, "train", batch_size=8)])
    # without augment=True (evaluation, calibration, the oracle) the recipe's augment changes nothing
    assert torch.equal(torch.cat([x for x, _ in batches(rec, "train", batch_size=8)]), fixed)
    views = [torch.cat([x for x, _ in batches(rec, "train", batch_size=8, seed=s, augment=True)]) for s in (0, 0, 1)]
    assert views[0].shape == fixed.shape
    assert torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2])  # a function of the seed
    span = lambda x: (x[:, 0, :, -1] - x[:, 0, :, 0]).mean(1)  # right edge minus left edge, per image
    assert (span(fixed) > 0).all()
    both = torch.cat([views[0], views[2]])
    assert (span(both).abs() < 0.7 * span(fixed)[0]).all()  # a crop of at most 40 % of the area is narrower
    assert (span(both) < 0).any() and (span(both) > 0).any()  # and some views are flipped
    # class labels survive a crop; masks, points, boxes would not follow it
    _folder(tmp_path / "lab")
    labeled = _recipe(tmp_path / "lab", {"kind": "images", "path": "imgs", "labels": "labels.csv",
                                         "augment": {"crop": [0.5, 1.0]}}, TASKS)
    with pytest.raises(SpecError, match="labels of mask, box, points would not follow"):
        next(batches(labeled, "train", batch_size=4, augment=True))


def test_fashion_mt_as_an_image_folder_gives_the_builtin_loaders_metrics(tmp_path):
    from byo import write_fashion_folder

    loaded = load("zoo:fashion-mt")
    builtin = loaded.recipe
    recipe = write_fashion_folder(tmp_path, count=64)
    torch.manual_seed(0)
    a = evaluate(loaded.module, builtin, batches(builtin, "test", count=64))
    b = evaluate(loaded.module, recipe, batches(recipe, "test"))
    assert set(a) == set(b)
    for t in a:
        assert f"{a[t]:.2f}" == f"{b[t]:.2f}", (t, a[t], b[t])
