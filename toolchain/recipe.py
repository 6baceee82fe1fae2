"""Recipes: a YAML file that names each task, its kind, metric and allowed drop, and the data.

A full example: toolchain/zoo/recipes/fashion-mt.yaml; `outputs` and the user data kinds (`images`,
`arrays`, `python`): docs/byo.md, "What the recipe can say about your data"; the optional `recovery`
section: docs/pruning.md, "Algorithm as built", step 6.

`allowed_drop` is in the metric's own unit (points for accuracy/mIoU, dB for PSNR); for a metric
where lower is better it bounds the rise. A task's `metric` may be a user's function
(`package.module:function`, with `higher_is_better`), and `unit_scale: S` makes the label-free
fidelity of a depth/regression/keypoints output an RMSE in S times the raw unit (e.g. pixels).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolchain.bundle.files import read_document
from toolchain.errors import SpecError
from toolchain.imports import import_callable
from toolchain.metrics import FIDELITY_METRIC, is_known_metric, make_metric, register_user_metric

TASK_KINDS = ("classification", "segmentation", "depth", "regression", "keypoints", "reconstruction")
DATA_KINDS = ("fashion-mnist", "photos", "random", "images", "arrays", "python")
# kinds whose label-free fidelity can be stated in a user's unit (`unit_scale`)
SCALAR_KINDS = ("depth", "regression", "keypoints")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    metric: str
    allowed_drop: float
    higher_is_better: bool
    # pruning: the most the oracle may relax this task's budget before fine-tuning, as a multiple
    # of allowed_drop (None: as far as the global goal needs). For a task that fine-tuning recovers
    # poorly -- a reconstruction held to a tight dB bound -- so its capacity is not spent on FLOPs.
    max_relax: float | None = None
    unit_scale: float | None = None  # label-free fidelity as RMSE x unit_scale (e.g. pixels), not scale-free


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"


@dataclass(frozen=True)
class DataSpec:
    kind: str
    val_count: int = 2000
    calibration_count: int = 300
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecoverySpec:
    """How fine-tuning after pruning recovers (bench/recovery.py measured each choice)."""

    reestimate_bn: bool = True  # batch-norm statistics recomputed on the train images before fine-tuning
    feature_weight: float = 0.0  # weight of trunk-feature distillation next to output distillation
    freeze_bn: str = "auto"  # "auto": frozen when label-free, updated with labels; "true"; "false"


@dataclass(frozen=True)
class Recipe:
    name: str
    input: InputSpec
    data: DataSpec
    tasks: dict[str, TaskSpec]
    model: str | None = None
    source: str | None = None  # the file it came from
    hooks: dict[str, str] = field(default_factory=dict)  # e.g. {finetune: "package.module:function"}
    outputs: tuple[str | None, ...] | None = None  # names of the model's positional outputs, in order
    recovery: RecoverySpec = field(default_factory=RecoverySpec)

    def hook(self, name: str) -> Callable[..., Any] | None:
        """The callable the recipe names under ``hooks.<name>`` (``package.module:function``), or
        None when it names none. Hooks: ``finetune`` (pruning recovery), ``slim_train`` (slimmable
        training)."""
        spec = self.hooks.get(name)
        return import_callable(spec, f"recipe hook {name}", "'package.module:function'") if spec else None

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: `parse_recipe(r.to_dict())` gives back an equal recipe."""
        i = self.input
        return {
            "name": self.name, "model": self.model,
            "input": {"shape": list(i.shape), "layout": i.layout,
                      "normalization": {"scale": i.scale, "mean": list(i.mean), "std": list(i.std)}},
            "data": {"kind": self.data.kind, "val_count": self.data.val_count,
                     "calibration_count": self.data.calibration_count, **self.data.options},
            "tasks": {n: {"kind": t.kind, "metric": t.metric, "allowed_drop": t.allowed_drop,
                          **({"higher_is_better": t.higher_is_better} if ":" in t.metric else {}),
                          **({"max_relax": t.max_relax} if t.max_relax is not None else {}),
                          **({"unit_scale": t.unit_scale} if t.unit_scale is not None else {})}
                      for n, t in self.tasks.items()},
            **({"hooks": dict(self.hooks)} if self.hooks else {}),
            **({"outputs": list(self.outputs)} if self.outputs is not None else {}),
            **({"recovery": asdict(self.recovery)} if self.recovery != RecoverySpec() else {}),
        }

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise SpecError(f"unknown task {name!r}; recipe {self.name!r} has tasks: {', '.join(self.tasks)}")
        return self.tasks[name]


def _require(d: dict, key: str, where: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SpecError(f"recipe: missing '{where}.{key}'" if where else f"recipe: missing '{key}'")
    value = d[key]
    if not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise SpecError(f"recipe: '{where + '.' if where else ''}{key}' must be {names}, got {value!r}")
    return value


def _number(value: Any, where: str, minimum: float | None = None, integer: bool = False) -> float:
    """A finite number (bools are not numbers here), at least `minimum`; SpecError naming `where`."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        what = "an integer" if integer else "a finite number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise SpecError(f"recipe: '{where}' must be{bound} ({what}), got {value!r}")
    return int(value) if integer else float(value)


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise SpecError(f"recipe: '{where}' must be a list of numbers, got {value!r}")
    return tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))


def parse_recipe(doc: dict[str, Any], source: str | None = None) -> Recipe:
    """A typed Recipe from a YAML document; any malformed document raises SpecError naming the field."""
    try:
        return _parse_recipe(doc, source)
    except SpecError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a check the parser does not have yet
        raise SpecError(f"recipe {source or ''}: malformed document ({type(e).__name__}: {e}); "
                        "see docs/byo.md and toolchain/zoo/recipes/ for the expected keys") from None


def _parse_recipe(doc: dict[str, Any], source: str | None = None) -> Recipe:
    if not isinstance(doc, dict):
        raise SpecError(f"recipe {source or ''}: expected a YAML mapping at the top level, got {type(doc).__name__}")
    name = str(doc.get("name", Path(source).stem if source else "model"))
    inp = _require(doc, "input", "", dict)
    shape = _require(inp, "shape", "input", list)
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise SpecError(f"recipe: 'input.shape' must be 4 positive ints [N, C, H, W], got {shape}")
    norm = inp.get("normalization", {}) or {}
    if not isinstance(norm, dict):
        raise SpecError(f"recipe: 'input.normalization' must be a mapping {{scale, mean, std}}, got {norm!r}")
    mean = _numbers(norm.get("mean", [0.0] * shape[1]), "input.normalization.mean")
    std = _numbers(norm.get("std", [1.0] * shape[1]), "input.normalization.std")
    if len(mean) not in (1, shape[1]) or len(std) not in (1, shape[1]) or any(s <= 0 for s in std):
        raise SpecError(f"recipe: 'input.normalization' mean/std need 1 or {shape[1]} values (std > 0), "
                        f"got mean={mean} std={std}")
    layout = inp.get("layout", "NCHW")
    if not isinstance(layout, str):
        raise SpecError(f"recipe: 'input.layout' must be a string such as NCHW, got {layout!r}")
    scale = _number(norm.get("scale", 1.0 / 255.0), "input.normalization.scale")
    input_spec = InputSpec(tuple(shape), scale, mean, std, layout)

    data = _require(doc, "data", "", dict)
    kind = _require(data, "kind", "data", str)
    if kind not in DATA_KINDS:
        raise SpecError(f"recipe: 'data.kind' is {kind!r}; expected one of {', '.join(DATA_KINDS)}")
    extra = {k: v for k, v in data.items() if k not in ("kind", "val_count", "calibration_count")}
    _check_data(kind, extra)
    data_spec = DataSpec(kind, _number(data.get("val_count", 2000), "data.val_count", 1, integer=True),
                         _number(data.get("calibration_count", 300), "data.calibration_count", 1, integer=True), extra)

    tasks_doc = _require(doc, "tasks", "", dict)
    if not tasks_doc:
        raise SpecError("recipe: 'tasks' is empty; name at least one task")
    tasks = {str(tname): _parse_task(str(tname), t) for tname, t in tasks_doc.items()}
    hooks = doc.get("hooks") or {}
    if not isinstance(hooks, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in hooks.items()):
        raise SpecError(f"recipe: 'hooks' must map hook names to 'package.module:function' strings, got {hooks!r}")
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(o is None or isinstance(o, str) for o in outputs):
            raise SpecError(f"recipe: 'outputs' must be a list of names (null drops an output), got {outputs!r}")
        unnamed = [t for t in tasks if t not in outputs]
        if unnamed:
            raise SpecError(f"recipe: task(s) {', '.join(unnamed)} are not among 'outputs' {outputs}; "
                            "each task is one of the model's outputs")
        outputs = tuple(outputs)
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise SpecError(f"recipe: 'model' must be a model spec string (zoo:NAME, package.module:factory), got {model!r}")
    return Recipe(name, input_spec, data_spec, tasks, model, source, dict(hooks), outputs,
                  _parse_recovery(doc.get("recovery")))


def _parse_recovery(doc: Any) -> RecoverySpec:
    default, doc = RecoverySpec(), {} if doc is None else doc
    if not isinstance(doc, dict) or set(doc) - set(asdict(default)):
        raise SpecError(f"recipe: 'recovery' must be a mapping with keys {', '.join(asdict(default))}, got {doc!r}")
    reestimate = doc.get("reestimate_bn", default.reestimate_bn)
    if not isinstance(reestimate, bool):
        raise SpecError(f"recipe: 'recovery.reestimate_bn' must be true or false, got {reestimate!r}")
    freeze = doc.get("freeze_bn", default.freeze_bn)
    freeze = str(freeze).lower() if isinstance(freeze, bool) else freeze  # YAML reads true/false as booleans
    if freeze not in ("auto", "true", "false"):
        raise SpecError(f"recipe: 'recovery.freeze_bn' is {freeze!r}; expected auto (frozen when label-free), true or false")
    return RecoverySpec(reestimate, _number(doc.get("feature_weight", default.feature_weight), "recovery.feature_weight", 0),
                        freeze)


def _parse_task(tname: str, t: Any) -> TaskSpec:
    where = f"tasks.{tname}"
    tkind = _require(t, "kind", where, str)
    if tkind not in TASK_KINDS:
        raise SpecError(f"recipe: '{where}.kind' is {tkind!r}; expected one of {', '.join(TASK_KINDS)}")
    metric = t.get("metric", FIDELITY_METRIC[tkind])
    if not isinstance(metric, str) or not is_known_metric(metric):
        raise SpecError(f"recipe: '{where}.metric' is {metric!r}; known metrics: "
                        "accuracy, miou, nrmse, psnr, rel_error, rmse, rmse*SCALE, or 'package.module:function'")
    hib = t.get("higher_is_better")
    if hib is not None and not isinstance(hib, bool):
        raise SpecError(f"recipe: '{where}.higher_is_better' must be true or false, got {hib!r}")
    if ":" in metric:
        register_user_metric(metric, True if hib is None else hib)
    elif hib is not None and hib != make_metric(metric).higher_is_better:
        raise SpecError(f"recipe: '{where}.higher_is_better' is {hib} but {metric} is "
                        f"{'higher' if not hib else 'lower'}-is-better; drop the key")
    drop = _number(_require(t, "allowed_drop", where, (int, float)), f"{where}.allowed_drop", 0)
    max_relax = t.get("max_relax")
    if max_relax is not None and (not isinstance(max_relax, (int, float)) or isinstance(max_relax, bool)
                                  or not math.isfinite(max_relax) or max_relax < 1):
        raise SpecError(f"recipe: '{where}.max_relax' must be a number >= 1 (a multiple of allowed_drop), got {max_relax!r}")
    unit_scale = t.get("unit_scale")
    if unit_scale is not None:
        if tkind not in SCALAR_KINDS:
            raise SpecError(f"recipe: '{where}.unit_scale' applies to {', '.join(SCALAR_KINDS)} tasks, not {tkind}")
        if isinstance(unit_scale, bool) or not isinstance(unit_scale, (int, float)) or not math.isfinite(unit_scale) \
                or unit_scale <= 0:
            raise SpecError(f"recipe: '{where}.unit_scale' must be a number > 0 (e.g. 48: outputs in crop units "
                            f"-> pixels), got {unit_scale!r}")
    return TaskSpec(tname, tkind, metric, float(drop), make_metric(metric).higher_is_better,
                    None if max_relax is None else float(max_relax), None if unit_scale is None else float(unit_scale))


def _check_data(kind: str, opts: dict[str, Any]) -> None:
    """The keys each data kind needs; the loaders check the files themselves."""
    for key in {"images": ("path",), "arrays": ("path",), "python": ("source",)}.get(kind, ()):
        if not isinstance(opts.get(key), str) or not opts[key]:
            raise SpecError(f"recipe: data kind {kind!r} needs 'data.{key}' (a string), got {opts.get(key)!r}")
    if kind == "python" and ":" not in opts["source"]:
        raise SpecError(f"recipe: 'data.source' is {opts['source']!r}; expected 'package.module:function'")
    color = opts.get("color", "rgb")
    if color not in ("rgb", "bgr", "gray"):
        raise SpecError(f"recipe: 'data.color' is {color!r}; expected rgb, bgr or gray")
    resize = opts.get("resize")
    if resize is not None and not (isinstance(resize, list) and len(resize) == 2
                                   and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resize)):
        raise SpecError(f"recipe: 'data.resize' must be [H, W] (positive ints), got {resize!r}")
    _check_augment(kind, opts.get("augment"))
    splits = opts.get("splits")
    if splits is None:
        return
    if not isinstance(splits, dict) or not splits:
        raise SpecError(f"recipe: 'data.splits' must map split names to fractions or folders, got {splits!r}")
    for name, v in splits.items():
        if name not in ("train", "val", "test", "calib"):
            raise SpecError(f"recipe: 'data.splits.{name}' is not a split; expected val, test, calib (or train)")
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise SpecError(f"recipe: 'data.splits.{name}' must be a fraction or a folder, got {v!r}")
    fractions = [v for v in splits.values() if isinstance(v, (int, float))]
    if fractions and (any(not 0 < v < 1 for v in fractions) or sum(fractions) >= 1):
        raise SpecError(f"recipe: 'data.splits' fractions must each be in (0, 1) and leave some for train, got {splits}")


def _check_augment(kind: str, augment: Any) -> None:
    """`data.augment: {crop: [lo, hi], flip: bool}`: random views of the train images for training
    and recovery (images only: the crop is taken from the decoded file, before the resize)."""
    if augment is None:
        return
    if kind != "images":
        raise SpecError(f"recipe: 'data.augment' applies to data kind 'images' (a folder of files), not {kind!r}")
    if not isinstance(augment, dict) or set(augment) - {"crop", "flip"}:
        raise SpecError(f"recipe: 'data.augment' must be a mapping with keys crop and/or flip, got {augment!r}; "
                        "e.g. {crop: [0.35, 1.0], flip: true}")
    crop = augment.get("crop", [1.0, 1.0])
    if not (isinstance(crop, list) and len(crop) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                             for v in crop) and 0 < crop[0] <= crop[1] <= 1):
        raise SpecError(f"recipe: 'data.augment.crop' must be [lo, hi] with 0 < lo <= hi <= 1 (the crop's share of the "
                        f"image area), got {crop!r}")
    if not isinstance(augment.get("flip", False), bool):
        raise SpecError(f"recipe: 'data.augment.flip' must be true or false, got {augment['flip']!r}")


def load_recipe(path: str | Path) -> Recipe:
    doc = read_document(path, SpecError, f"recipe file {path} not found", lambda why: f"recipe {path} is not valid YAML: {why}")
    return parse_recipe(doc, str(path))
