"""Model intake: turn a user's model spec into an `nn.Module` whose forward returns {task: tensor}.

Accepted specs: ``zoo:NAME``, a reference model (``--checkpoint`` loads trained weights);
``package.module:factory``, a callable returning the module (``--checkpoint`` gives weights);
``path/to/file.pt``, a checkpoint written by ``mtedge train`` / ``compress`` / ``slim``
(toolchain/checkpoint.py: tensors + origin spec + plan, loaded without unpickling code), or a whole
pickled ``nn.Module`` (only with ``trust_pickle=True`` / ``--trust-pickle``). State dicts given with
``--checkpoint`` load with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toolchain import checkpoint as ckpt
from toolchain import zoo
from toolchain.bundle.files import write_bytes_atomic
from toolchain.checkpoint import CHECKPOINT_FORMAT
from toolchain.errors import SpecError
from toolchain.graph.capture import multitask
from toolchain.imports import import_callable
from toolchain.recipe import Recipe, load_recipe, parse_recipe


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


def _is_mtedge(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def _from_mtedge(obj: dict, where: str) -> nn.Module:
    if "model" in obj:  # format 1 pickled the module; weights_only loading only got here if trusted
        if not isinstance(obj["model"], nn.Module):
            raise SpecError(f"{where} is a damaged mtedge checkpoint (its model is a {type(obj['model']).__name__})")
        return obj["model"]
    return ckpt.rebuild(obj, lambda origin: _build(origin)[0], where)


def _apply_checkpoint(module: nn.Module, checkpoint: str | Path, trust_pickle: bool = False) -> nn.Module:
    obj = ckpt.torch_load(Path(checkpoint), trust_pickle)
    if _is_mtedge(obj):
        return _from_mtedge(obj, str(checkpoint))
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


def _build(spec: str) -> tuple[nn.Module, Recipe | None]:
    """A fresh module (and its built-in recipe) from ``zoo:NAME`` or ``package.module:factory``."""
    if spec.startswith("zoo:"):
        entry = zoo.get(spec[4:])
        return entry.factory(), load_recipe(entry.recipe_path)
    if ":" in spec and not spec.endswith((".pt", ".pth")) and not os.path.exists(spec):
        module = import_callable(spec, "factory", "package.module:factory")()
        if not isinstance(module, nn.Module):
            raise SpecError(f"factory {spec} returned {type(module).__name__}; expected a torch.nn.Module")
        return module, None
    raise SpecError(f"model spec {spec!r} is not zoo:NAME, package.module:factory, or an existing file; "
                    f"known zoo models: {', '.join('zoo:' + n for n in zoo.ZOO)}")


def load(spec: str, checkpoint: str | Path | None = None, *, trust_pickle: bool = False) -> LoadedModel:
    """Build the model named by `spec` (see module docstring), in eval mode, on the CPU.

    `trust_pickle`: allow files that hold pickled code (a whole module, a format-1 mtedge
    checkpoint); unpickling runs code from the file, so it is off by default."""
    if checkpoint is not None and not Path(checkpoint).exists():
        raise SpecError(f"checkpoint file {checkpoint} not found")
    recipe: Recipe | None = None
    meta: dict[str, Any] = {}
    origin = spec
    if os.path.exists(spec) and not spec.startswith("zoo:"):
        obj = ckpt.torch_load(Path(spec), trust_pickle)
        if _is_mtedge(obj):
            module = _from_mtedge(obj, spec)
            origin = obj.get("origin", spec)
            meta = {k: v for k, v in obj.items() if k not in ("model", "format", "state_dict", "plan", "probe")}
            if obj.get("recipe"):
                recipe = parse_recipe(obj["recipe"], f"{spec}:recipe")
        elif isinstance(obj, nn.Module):
            module = obj
        else:
            raise SpecError(f"{spec} holds {type(obj).__name__}, not a model; a bare state dict needs its architecture: "
                            f"`mtedge ... package.module:factory --checkpoint {spec}`")
    else:
        module, recipe = _build(spec)
        if checkpoint is not None:
            module = _apply_checkpoint(module, checkpoint, trust_pickle)
    return LoadedModel(module.cpu().eval(), spec, recipe, origin, meta)


def load_with_recipe(spec: str, checkpoint: str | Path | None = None, recipe: str | Path | Recipe | None = None, *,
                     trust_pickle: bool = False) -> tuple[LoadedModel, Recipe]:
    """The model captured as {task: tensor} (toolchain.graph.capture) with its recipe: ``recipe``
    (a file or a Recipe) or, for zoo models and mtedge checkpoints, their own."""
    loaded = load(spec, checkpoint, trust_pickle=trust_pickle)
    if recipe is None and loaded.recipe is None:
        raise SpecError(f"{spec} has no built-in recipe; pass --recipe FILE (see docs/byo.md; "
                        f"`mtedge recipe init {spec}` writes one)")
    rec = loaded.recipe if recipe is None else recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    loaded.module = multitask(loaded.module, rec)
    return loaded, rec


def save_checkpoint(path: str | Path, model: nn.Module, origin: str, recipe: Recipe | None, *,
                    input_shape: tuple[int, ...] | None = None, **meta: Any) -> None:
    """Write an mtedge checkpoint atomically (temp file + rename): tensors, the origin spec, the
    structural plan, a probe of the outputs and provenance; see toolchain/checkpoint.py.

    `origin` must rebuild the model (``zoo:NAME`` or ``package.module:factory``). The probe input
    is `input_shape`, else the recipe's input shape (batch 1); `meta` must be plain data."""
    if input_shape is None and recipe is not None:
        input_shape = (1, *tuple(recipe.input.shape)[1:])
    try:
        _build(origin)
        payload = ckpt.payload(model, origin, recipe.to_dict() if recipe else None, input_shape, meta)
    except SpecError:
        if origin.startswith("zoo:") or not os.path.exists(origin):
            raise
        # The model came from a trusted pickled module: no spec rebuilds it, so the module itself
        # is stored (format 1), and loading it again needs trust_pickle / --trust-pickle.
        payload = {"format": CHECKPOINT_FORMAT, "version": 1, "model": model, "origin": origin,
                   "recipe": recipe.to_dict() if recipe else None, **meta}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())
