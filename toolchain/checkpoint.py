"""The mtedge checkpoint (format 2): tensors and plain data only, loadable without unpickling code.

It holds what rebuilds the module, not the module: ``origin`` (the spec), a ``plan`` (structural
attributes by module name, and a slimmable model's ``slim`` state), the ``state_dict``, a ``probe``
(outputs on a fixed input, checked after rebuilding), the ``recipe`` and provenance. A pickled
module loads only with ``trust_pickle=True``. In full: docs/reliability.md, "Safe loading".
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from toolchain.errors import SpecError
from toolchain.graph.capture import is_captured, multitask
from toolchain.recipe import parse_recipe
from toolchain.slimmable import SlimmableModel, WidthConfig

CHECKPOINT_FORMAT = "mtedge-checkpoint"
VERSION = 2
# Integer (or int-tuple) attributes that fix a module's tensor shapes; pruning rewrites them.
STRUCTURAL_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                    "num_groups", "num_channels", "normalized_shape", "num_parameters", "num_embeddings",
                    "embedding_dim", "embed_dim", "num_heads")
PROBE_TOL = 1e-4  # relative to the probe output's largest magnitude

UNTRUSTED_HINT = ("unpickling it runs code stored in the file, so mtedge does not do it by default. If you "
                  "trust the file, pass --trust-pickle (Python: trust_pickle=True); better, load it once that "
                  "way and save it as an mtedge checkpoint (toolchain.model.save_checkpoint), which loads "
                  "without running code")


def torch_load(path: Path, trust_pickle: bool = False) -> Any:
    """``torch.load`` that never unpickles code unless `trust_pickle`; errors name the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        # "Unsupported global": the pickle names a class or function, i.e. it would run code.
        if not trust_pickle and "unsupported global" in str(e).lower():
            raise SpecError(f"{path} holds pickled Python objects (a whole module, or an mtedge checkpoint "
                            f"from before format {VERSION}); {UNTRUSTED_HINT}") from None
        raise SpecError(f"cannot read {path} as a torch file ({type(e).__name__}: {e})") from None
    except Exception as e:  # torch raises many types for corrupt files
        raise SpecError(f"cannot read {path} as a torch file ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def plain(value: Any, where: str) -> Any:
    """`value` as data ``weights_only`` loading accepts (dicts, lists, numbers, strings, tensors);
    numpy scalars become Python numbers. Anything else is refused, naming where it sits."""
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return value
    if isinstance(value, numbers.Number) and hasattr(value, "item"):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value), where)
    raise SpecError(f"checkpoint field {where} is a {type(value).__name__}; checkpoints hold plain data only "
                    "(dict, list, str, number, tensor): convert it (e.g. .to_dict()) before saving")


def structure(module: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module name, its structural attributes (see STRUCTURAL_ATTRS)."""
    out: dict[str, dict[str, Any]] = {}
    for name, mod in module.named_modules():
        attrs = {}
        for a in STRUCTURAL_ATTRS:
            v = getattr(mod, a, None)
            if isinstance(v, int) and not isinstance(v, bool):
                attrs[a] = v
            elif isinstance(v, tuple) and v and all(isinstance(x, int) for x in v):
                attrs[a] = list(v)
        if attrs:
            out[name] = attrs
    return out


def apply_plan(module: nn.Module, modules: dict[str, dict[str, Any]], state: dict[str, torch.Tensor]) -> None:
    """Give `module` the structure the plan and the state dict describe, by module name."""
    named = dict(module.named_modules())
    for name, attrs in modules.items():
        mod = named.get(name)
        if mod is None:
            raise SpecError(f"checkpoint plan names module {name!r}, which the rebuilt model does not have; "
                            "the checkpoint was saved from another architecture than its origin builds")
        for a, v in attrs.items():
            if not hasattr(mod, a):
                raise SpecError(f"checkpoint plan sets {name}.{a}, which the rebuilt {type(mod).__name__} lacks")
            setattr(mod, a, tuple(v) if isinstance(v, list) else v)
    # Parameters and buffers take the stored shapes; load_state_dict then fills the values.
    for key, t in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = named.get(owner_name)
        cur = getattr(owner, attr, None) if owner is not None else None
        if not isinstance(cur, torch.Tensor) or cur.shape == t.shape:
            continue
        if isinstance(cur, nn.Parameter):
            setattr(owner, attr, nn.Parameter(torch.empty_like(t), requires_grad=cur.requires_grad))
        else:
            owner._buffers[attr] = torch.empty_like(t)


def probe_input(input_shape: tuple[int, ...]) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, math.prod(int(d) for d in input_shape)).reshape(input_shape)


def run_probe(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(probe_input(input_shape))
    module.train(was_training)
    return {k: v.detach().clone() for k, v in out.items()} if isinstance(out, dict) else {}


def check_probe(module: nn.Module, probe: dict[str, Any], where: str, origin: str) -> None:
    try:
        got = run_probe(module, tuple(probe["input_shape"]))
    except Exception as e:  # a state dict the plan reshaped into something that cannot run
        raise SpecError(f"{where}: the model rebuilt from {origin!r} and the checkpoint's plan cannot run "
                        f"({type(e).__name__}: {str(e).splitlines()[0]}); the checkpoint and its origin "
                        "disagree: rebuild the checkpoint") from None
    for task, want in probe["outputs"].items():
        have = got.get(task)
        scale = float(want.abs().max()) if want.numel() else 0.0
        if have is None or have.shape != want.shape or \
                float((have - want).abs().max()) > PROBE_TOL * max(scale, 1.0):
            raise SpecError(f"{where}: the model rebuilt from its origin and plan does not reproduce the saved "
                            f"output {task!r}; the checkpoint's plan does not describe a structural change "
                            "(or the origin's code changed since it was saved): rebuild the checkpoint")


def payload(model: nn.Module, origin: str, recipe: dict | None, input_shape: tuple[int, ...] | None,
            meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict for `model` (see module docstring)."""
    inner, slim = (model.model, model.checkpoint_plan()) if isinstance(model, SlimmableModel) else (model, None)
    out = {"format": CHECKPOINT_FORMAT, "version": VERSION, "origin": origin,
           "plan": {"modules": structure(inner), "slim": plain(slim, "plan.slim"), "captured": is_captured(inner)},
           "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
           "recipe": plain(recipe, "recipe"),
           "probe": None if input_shape is None else {"input_shape": list(input_shape),
                                                      "outputs": run_probe(model, tuple(input_shape))}}
    for k, v in meta.items():
        if k in out:
            raise SpecError(f"checkpoint metadata key {k!r} is reserved; use another name")
        out[k] = plain(v, k)
    return out


def rebuild(obj: dict[str, Any], build: Callable[[str], nn.Module], where: str) -> nn.Module:
    """The module a format-2 checkpoint describes, built by `build(origin)` plus its plan."""
    try:
        origin, plan, state = obj["origin"], obj["plan"], obj["state_dict"]
        modules, slim = plan["modules"], plan.get("slim")
    except (KeyError, TypeError):
        raise SpecError(f"{where} is an mtedge checkpoint without origin/plan/state_dict; it is damaged: "
                        "save it again") from None
    inner = build(origin)
    if plan.get("captured"):
        # saved from the captured graph (toolchain/graph/capture.py): capture the rebuilt model the
        # same way -- same output names, same folded layouts -- before the plan and the tensors
        inner = multitask(inner, parse_recipe(obj["recipe"], f"{where}:recipe") if obj.get("recipe") else None)
    prefix = "model." if slim else ""
    inner_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    apply_plan(inner, modules, inner_state)
    module = SlimmableModel.from_checkpoint_plan(inner, slim) if slim else inner
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SpecError(f"{where}: its state dict does not fit the model rebuilt from {origin!r} "
                        f"({str(e).splitlines()[0]}); the checkpoint and its origin disagree") from None
    if slim:
        module.set_config(WidthConfig.from_dict(slim["config"]), load_stats=False)
    if obj.get("probe"):
        check_probe(module, obj["probe"], where, origin)
    return module
