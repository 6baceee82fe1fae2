"""Model intake: turn a user's model spec into an `nn.Module` whose forward returns {task: tensor}.

Accepted specs:

- ``zoo:NAME``                         a reference model (``--checkpoint`` loads trained weights),
- ``package.module:factory``           a callable returning the module; ``--checkpoint`` gives weights,
- ``path/to/file.pt``                  a whole pickled ``nn.Module``, or a checkpoint written by
                                        ``mtedge train`` / ``mtedge compress`` (it carries the module).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toolchain import zoo
from toolchain.errors import SpecError
from toolchain.recipe import Recipe, load_recipe

CHECKPOINT_FORMAT = "mtedge-checkpoint"


@dataclass
class LoadedModel:
    module: nn.Module
    spec: str
    recipe: Recipe | None  # the model's default recipe (zoo models, checkpoints that carry one)
    origin: str  # the spec it was first built from: `zoo:fashion-mt`, `pkg.mod:factory`
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return state_sha256(self.module)


def state_sha256(module: nn.Module) -> str:
    """Hash of the parameters and buffers (names, shapes, values): identifies the weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _torch_load(path: Path) -> Any:
    try:
        # Whole pickled modules need full unpickling; only load files you trust.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise SpecError(f"cannot read {path} as a torch file ({type(e).__name__}: {e})") from None


def _apply_checkpoint(module: nn.Module, checkpoint: str | Path) -> nn.Module:
    obj = _torch_load(Path(checkpoint))
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj["model"]
    if isinstance(obj, nn.Module):
        return obj
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise SpecError(f"checkpoint {checkpoint} holds {type(obj).__name__}; expected a state dict or a module")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise SpecError(f"checkpoint {checkpoint} does not fit the model: {str(e).splitlines()[0]}") from None
    return module


def load(spec: str, checkpoint: str | Path | None = None) -> LoadedModel:
    """Build the model named by `spec` (see module docstring), in eval mode, on the CPU."""
    if checkpoint is not None and not Path(checkpoint).exists():
        raise SpecError(f"checkpoint file {checkpoint} not found")
    recipe: Recipe | None = None
    meta: dict[str, Any] = {}
    origin = spec
    if spec.startswith("zoo:"):
        entry = zoo.get(spec[4:])
        module = entry.factory()
        recipe = load_recipe(entry.recipe_path)
        if checkpoint is not None:
            module = _apply_checkpoint(module, checkpoint)
    elif os.path.exists(spec):
        obj = _torch_load(Path(spec))
        if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
            module = obj["model"]
            origin = obj.get("origin", spec)
            meta = {k: v for k, v in obj.items() if k not in ("model", "format")}
            if obj.get("recipe"):
                from toolchain.recipe import parse_recipe

                recipe = parse_recipe(obj["recipe"], f"{spec}:recipe")
        elif isinstance(obj, nn.Module):
            module = obj
        else:
            raise SpecError(
                f"{spec} holds {type(obj).__name__}, not a model; a bare state dict needs its architecture: "
                f"`mtedge ... package.module:factory --checkpoint {spec}`"
            )
    elif ":" in spec and not spec.endswith((".pt", ".pth")):
        mod_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise SpecError(f"cannot import factory {spec!r} ({e}); expected package.module:callable") from None
        if not callable(factory):
            raise SpecError(f"{spec} is a {type(factory).__name__}, not a callable; expected package.module:factory")
        module = factory()
        if not isinstance(module, nn.Module):
            raise SpecError(f"factory {spec} returned {type(module).__name__}; expected a torch.nn.Module")
        if checkpoint is not None:
            module = _apply_checkpoint(module, checkpoint)
    else:
        raise SpecError(
            f"model spec {spec!r} is not zoo:NAME, package.module:factory, or an existing file; "
            f"known zoo models: {', '.join('zoo:' + n for n in zoo.ZOO)}"
        )
    module = module.cpu().eval()
    return LoadedModel(module, spec, recipe, origin, meta)


def check_outputs(module: nn.Module, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run one forward and check it returns a non-empty dict of task name -> tensor."""
    with torch.no_grad():
        out = module(example)
    if not isinstance(out, dict) or not out:
        raise SpecError(
            f"model forward returned {type(out).__name__}; a multitask model must return a dict task-name -> tensor"
        )
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise SpecError(f"model output {k!r} is {type(v).__name__}; expected str -> torch.Tensor")
    return out


def save_checkpoint(path: str | Path, model: nn.Module, origin: str, recipe: Recipe | None, **meta: Any) -> None:
    """Write a checkpoint atomically (temp file + rename): a whole module plus provenance."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "model": model, "origin": origin,
               "recipe": recipe.to_dict() if recipe else None, **meta}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
