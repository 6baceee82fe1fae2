"""A user's own data, named by the recipe: a folder of images, an .npz of arrays, or Python.

Keys (``kind: images`` folders + labels, ``arrays`` .npz, ``python`` ``pkg.mod:fn(split)``, ``splits``, ``augment``):
docs/byo.md, "What the recipe can say about your data".

Paths are relative to the recipe file. Split assignment by fraction is a function of the file name (or the array
index) alone, so it never changes when files are added elsewhere. Splits that the recipe leaves out: ``test``
falls back to ``val`` and ``calib`` to ``train``; the rest of the data is ``train``. Labels (CSV or JSON, a
``file`` column plus one column per task): a class index or name for classification (names are numbered in
sorted order; without a labels file a single classification task takes its class from the sub-folder name), a
mask image for segmentation, a number, a list of numbers, an ``.npy`` file or an image for
regression/keypoints/depth, an image for reconstruction.
"""

from __future__ import annotations

import csv
import functools
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from toolchain.data.images import (IMAGE_SUFFIXES, View, image_as_target, normalize_for, random_view, read_image,
                                   read_mask)
from toolchain.errors import SpecError
from toolchain.imports import import_callable
from toolchain.recipe import Recipe

SPLITS = ("train", "val", "test", "calib")
DEFAULT_FRACTIONS = {"val": 0.2, "test": 0.2}
FALLBACK = {"test": "val", "calib": "train"}

Batch = tuple[torch.Tensor, dict[str, torch.Tensor] | None]


def data_path(recipe: Recipe, value: str) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute() and recipe.source:
        p = Path(recipe.source).parent / p
    return p


def fraction_bucket(key: str, fractions: dict[str, float]) -> str:
    """The split of one item: a fixed point in [0, 1) from its name, then cumulative fractions."""
    u = zlib.crc32(key.encode()) / 2**32
    edge = 0.0
    for name in ("val", "test", "calib"):
        edge += fractions.get(name, 0.0)
        if u < edge:
            return name
    return "train"


# -- images --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    path: Path
    labels: tuple[tuple[str, Any], ...] | None  # (task, raw label value), from the labels file


def images_batches(recipe: Recipe, split: str, count: int | None, batch_size: int, shuffle: bool = False,
                   seed: int = 0, augment: bool = False) -> Iterator[Batch]:
    """`augment` draws a random view of each image (``data.augment``; a new one per `seed`) where the
    recipe asks for one: training and recovery pass it, evaluation never does."""
    items = _image_split(recipe, split)
    if shuffle:
        items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    items = items[:count]
    opts = recipe.data.options
    size = tuple(opts["resize"]) if opts.get("resize") else tuple(recipe.input.shape[2:])
    color, c = opts.get("color", "rgb"), recipe.input.shape[1]
    views = _views(recipe, items, seed) if augment and opts.get("augment") else [None] * len(items)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pix = np.stack([read_image(it.path, color, size, view) for it, view in zip(chunk, views[start:])])
        if pix.shape[-1] != c:
            raise SpecError(f"{chunk[0].path} decodes to {pix.shape[-1]} channel(s) but the model input has {c}; "
                            f"set data.color: {'gray' if c == 1 else 'rgb'}")
        x = torch.from_numpy(normalize_for(pix, recipe.input))
        yield x, None if chunk[0].labels is None else _label_tensors(recipe, chunk, size)


def _views(recipe: Recipe, items: list[_Item], seed: int) -> list[View]:
    """One random view per item; refused where labels would move with the pixels (masks, points,
    boxes, depth): only class labels are unchanged by a crop and a flip."""
    moving = [t for t, spec in recipe.tasks.items() if spec.kind != "classification"]
    if items and items[0].labels is not None and moving:
        raise SpecError(f"data.augment crops and flips the images, but the labels of {', '.join(moving)} would not "
                        "follow them; augment unlabeled images (label-free distillation) or class labels only, or "
                        "remove data.augment")
    aug = recipe.data.options["augment"]
    rng = np.random.default_rng([seed, 0xA06])
    return [random_view(rng, tuple(aug.get("crop", (1.0, 1.0))), aug.get("flip", False)) for _ in items]


def _image_split(recipe: Recipe, split: str) -> list[_Item]:
    if split not in SPLITS:
        raise SpecError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    splits = _image_splits(recipe)[0]
    items = splits.get(split) or splits.get(FALLBACK.get(split, ""), [])
    if not items:
        raise SpecError(f"split {split!r} of {recipe.data.options['path']} is empty; give it images "
                        f"(data.splits.{split}: a fraction or a folder)")
    return items


_FOLDERS: dict[str, tuple[dict[str, list[_Item]], dict | None]] = {}


def _image_splits(recipe: Recipe) -> tuple[dict[str, list[_Item]], dict | None]:
    """Items per split and the parsed labels file, listed once per recipe data section."""
    key = json.dumps({"src": recipe.source, "data": recipe.data.options, "tasks": list(recipe.tasks),
                      "kinds": [t.kind for t in recipe.tasks.values()]}, sort_keys=True, default=str)
    if key not in _FOLDERS:
        _FOLDERS[key] = _list_images(recipe)
    return _FOLDERS[key]


def _list_images(recipe: Recipe) -> tuple[dict[str, list[_Item]], dict | None]:
    opts = recipe.data.options
    root = data_path(recipe, opts["path"])
    if not root.is_dir():
        raise SpecError(f"data.path {root} is not a folder of images")
    splits_opt = opts.get("splits") or DEFAULT_FRACTIONS
    folders = {s: data_path(recipe, v) for s, v in splits_opt.items() if isinstance(v, str)}
    fractions = {s: float(v) for s, v in splits_opt.items() if not isinstance(v, str)}
    labels = _read_labels(recipe, root) if opts.get("labels") else None
    cls = [t for t, spec in recipe.tasks.items() if spec.kind == "classification"]
    folder_task = cls[0] if labels is None and len(cls) == 1 and len(recipe.tasks) == 1 else None
    out: dict[str, list[_Item]] = {s: [] for s in SPLITS}
    for split, folder in [("train", root), *folders.items()]:
        if not folder.is_dir():
            raise SpecError(f"data folder {folder} does not exist")
        for p in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            rel = p.relative_to(folder).as_posix()
            name = split if split != "train" or not fractions else fraction_bucket(rel, fractions)
            out[name].append(_Item(p, _labels_of(p, rel, labels, folder_task)))
    if labels is not None:
        listed = {it.path.resolve() for items in out.values() for it in items}
        if missing := [row for path, row in labels["rows"].items() if path not in listed]:
            raise SpecError(f"labels file {labels['file']} row {missing[0]['_row']} names image "
                            f"{missing[0]['file']!r}, which is not under {root}")
    return out, labels


def _labels_of(p: Path, rel: str, labels: dict | None, folder_task: str | None) -> tuple | None:
    if labels is not None:
        row = labels["rows"].get(p.resolve())
        if row is None:
            raise SpecError(f"image {p} has no row in labels file {labels['file']}; add a row with file={rel!r} "
                            "or move the image out of the data folder")
        return tuple((t, row[t]) for t in labels["task_columns"])
    return ((folder_task, rel.split("/")[0]),) if folder_task is not None and "/" in rel else None


def _read_labels(recipe: Recipe, root: Path) -> dict:
    path = data_path(recipe, recipe.data.options["labels"])
    if not path.is_file():
        raise SpecError(f"labels file {path} not found")
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text())
            rows = doc if isinstance(doc, list) else doc.get("rows") if isinstance(doc, dict) else None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise SpecError(f"labels file {path}: expected a JSON list of objects with a 'file' key")
        else:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise SpecError(f"cannot read labels file {path} ({type(e).__name__}: {e}); expected CSV or JSON") from None
    if not rows:
        raise SpecError(f"labels file {path} has no rows")
    columns = set(rows[0])
    if "file" not in columns:
        raise SpecError(f"labels file {path} has no 'file' column (columns: {', '.join(sorted(columns))})")
    if missing := [t for t in recipe.tasks if t not in columns]:
        raise SpecError(f"labels file {path} has no column for task(s) {', '.join(missing)} "
                        f"(columns: {', '.join(sorted(columns))}); add them, or drop data.labels for label-free use")
    by_path: dict[Path, dict] = {}
    for i, row in enumerate(rows, start=2 if path.suffix.lower() != ".json" else 0):
        rel = str(row.get("file") or "")
        img = (root / rel) if (root / rel).exists() else (path.parent / rel)
        by_path[img.resolve()] = {**row, "_row": i, "_base": path.parent}
    return {"file": path, "rows": by_path, "task_columns": list(recipe.tasks),
            "classes": {t: _class_names(rows, t) for t, s in recipe.tasks.items() if s.kind == "classification"}}


def _class_names(rows: list[dict], task: str) -> list[str]:
    values = {str(r[task]).strip() for r in rows}
    return [] if all(_is_int(v) for v in values) else sorted(values)


def _is_int(v: str) -> bool:
    try:
        int(v)
        return True
    except ValueError:
        return False


def _label_tensors(recipe: Recipe, chunk: list[_Item], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    labels = _image_splits(recipe)[1]  # the parsed labels file, or None
    out: dict[str, torch.Tensor] = {}
    for j, (task, _) in enumerate(chunk[0].labels):
        values = [_one_label(recipe, recipe.tasks[task].kind, task, it.labels[j][1], it, labels, size) for it in chunk]
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise SpecError(f"task {task!r}: labels have different shapes {sorted(shapes)} within one batch "
                            f"(e.g. {chunk[0].path.name}); every sample needs the same shape")
        out[task] = torch.from_numpy(np.stack(values))
    return out


def _one_label(recipe: Recipe, kind: str, task: str, value: Any, item: _Item, labels: dict | None,
               size: tuple[int, int]) -> np.ndarray:
    where = f"{item.path.name}, task {task!r}"
    base = Path(labels["rows"][item.path.resolve()]["_base"]) if labels else item.path.parent
    text = str(value).strip()
    if kind == "classification":
        names = labels["classes"][task] if labels else _folder_classes(recipe)
        if names:
            if text not in names:
                raise SpecError(f"{where}: class {text!r} is not among {names}")
            return np.asarray(names.index(text), np.int64)
        if not _is_int(text):
            raise SpecError(f"{where}: class label {text!r} is neither an index nor a class name")
        return np.asarray(int(text), np.int64)
    if kind == "segmentation":
        return read_mask(_existing(base, text, where), size)
    if kind == "reconstruction":
        return image_as_target(_existing(base, text, where), size, recipe.data.options.get("color", "rgb"))
    # regression / keypoints / depth: numbers inline, an .npy file, or an image
    if text.lower().endswith(".npy"):
        try:
            return np.load(_existing(base, text, where), allow_pickle=False).astype(np.float32)
        except ValueError as e:
            raise SpecError(f"{where}: cannot read {text} as a numeric .npy array ({e})") from None
    if Path(text).suffix.lower() in IMAGE_SUFFIXES:
        return image_as_target(_existing(base, text, where), size, "gray")
    try:
        nums = json.loads(text) if text.startswith("[") else [float(v) for v in text.replace(";", " ").replace(",", " ").split()]
        return np.asarray(nums, np.float32).reshape(-1)
    except (ValueError, json.JSONDecodeError):
        raise SpecError(f"{where}: {text!r} is not a number, a list of numbers, an .npy file or an image") from None


def _existing(base: Path, rel: str, where: str) -> Path:
    p = base / rel
    if not p.is_file():
        raise SpecError(f"{where}: label file {p} not found")
    return p


def _folder_classes(recipe: Recipe) -> list[str]:
    root = data_path(recipe, recipe.data.options["path"])
    return sorted(d.name for d in root.iterdir() if d.is_dir())


# -- arrays --------------------------------------------------------------------------------------

def arrays_batches(recipe: Recipe, split: str, count: int | None, batch_size: int, shuffle: bool = False,
                   seed: int = 0) -> Iterator[Batch]:
    x, targets, idx = _array_split(recipe, split)
    if shuffle:
        idx = idx[np.random.default_rng(seed).permutation(len(idx))]
    idx = idx[:count]
    for start in range(0, len(idx), batch_size):
        sel = idx[start : start + batch_size]
        xb = normalize_for(x[sel], recipe.input) if x.dtype in (np.uint8, np.uint16) else x[sel].astype(np.float32)
        yield torch.from_numpy(np.ascontiguousarray(xb)), ({t: torch.from_numpy(np.ascontiguousarray(v[sel]))
                                                            for t, v in targets.items()} if targets else None)


def _array_split(recipe: Recipe, split: str) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    if split not in SPLITS:
        raise SpecError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    opts = recipe.data.options
    splits_opt = opts.get("splits") or DEFAULT_FRACTIONS
    if isinstance(splits_opt.get(split), str):
        x, targets = _load_npz(str(data_path(recipe, splits_opt[split])), tuple(recipe.tasks), tuple(recipe.input.shape))
        return x, targets, np.arange(len(x))
    x, targets = _load_npz(str(data_path(recipe, opts["path"])), tuple(recipe.tasks), tuple(recipe.input.shape))
    fractions = {s: float(v) for s, v in splits_opt.items() if not isinstance(v, str)}
    names = np.array([fraction_bucket(str(i), fractions) for i in range(len(x))])
    idx = np.nonzero(names == split)[0]
    if len(idx) == 0 and split in FALLBACK:
        idx = np.nonzero(names == FALLBACK[split])[0]
    if len(idx) == 0:
        raise SpecError(f"split {split!r} of {opts['path']} is empty ({len(x)} samples, splits {splits_opt})")
    return x, targets, idx


@functools.lru_cache(maxsize=4)
def _load_npz(path: str, tasks: tuple[str, ...], shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise SpecError(f"cannot read {path} as an .npz of arrays ({type(e).__name__}: {e})") from None
    if "x" not in arrays:
        raise SpecError(f"{path} has no array 'x' (found: {', '.join(sorted(arrays)) or 'none'}); store the inputs as x")
    x = arrays["x"]
    _, c, h, w = shape
    images = x.dtype in (np.uint8, np.uint16) and x.shape[1:] == (h, w, c)  # shape[1:] of 3 dims: x is 4-D
    inputs = x.dtype.kind == "f" and x.shape[1:] == (c, h, w)
    if not (images or inputs):
        raise SpecError(f"{path}: x has shape {list(x.shape)} dtype {x.dtype}; expected [N, {h}, {w}, {c}] uint8 images "
                        f"(normalized by the recipe) or [N, {c}, {h}, {w}] float32 model inputs")
    targets = {t: arrays[t] for t in tasks if t in arrays}
    if targets and len(targets) != len(tasks):
        missing = [t for t in tasks if t not in arrays]
        raise SpecError(f"{path} has targets for some tasks but not {', '.join(missing)}; store one array per task or none")
    for t, v in targets.items():
        if len(v) != len(x):
            raise SpecError(f"{path}: target {t!r} has {len(v)} rows but x has {len(x)}")
    return x, targets


# -- python --------------------------------------------------------------------------------------

def python_batches(recipe: Recipe, split: str, count: int | None) -> Iterator[Batch]:
    spec = recipe.data.options["source"]
    fn = import_callable(spec, "data.source", "'package.module:function'")
    seen = 0
    for i, item in enumerate(fn(split)):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SpecError(f"{spec}({split!r}) batch {i} is {type(item).__name__}; expected (inputs, targets or None)")
        x, y = item
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        if y is not None:
            if not isinstance(y, dict):
                raise SpecError(f"{spec}({split!r}) batch {i}: targets are {type(y).__name__}; expected a dict task -> array")
            y = {t: torch.as_tensor(v) for t, v in y.items()}
        if count is not None and seen + len(x) > count:
            x = x[: count - seen]
            y = {t: v[: len(x)] for t, v in y.items()} if y is not None else None
        if len(x):
            yield x, y
        seen += len(x)
        if count is not None and seen >= count:
            break
    if not seen:
        raise SpecError(f"split {split!r} from {spec} is empty; the function returned no batches")


def has_user_labels(recipe: Recipe) -> bool:
    kind = recipe.data.kind
    if kind == "images":
        return _image_split(recipe, "val")[0].labels is not None
    if kind == "arrays":
        return bool(_array_split(recipe, "val")[1])
    if kind == "python":
        return next(python_batches(recipe, "val", 1))[1] is not None
    return False
