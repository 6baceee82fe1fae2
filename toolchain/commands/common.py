"""Options and helpers shared by subcommands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from toolchain.bundle.files import write_json_atomic
from toolchain.errors import SpecError
from toolchain.model import LoadedModel, load
from toolchain.recipe import Recipe, load_recipe

model_argument = click.argument("model", metavar="MODEL")
_TRUST_KEY = "mtedge.trust_pickle"


def _remember_trust(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[_TRUST_KEY] = value
    return value


def checkpoint_option(fn):
    """--checkpoint, plus --trust-pickle (read by load_model_and_recipe, not passed to the command)."""
    fn = click.option("--trust-pickle", is_flag=True, expose_value=False, callback=_remember_trust,
                      help="allow MODEL/--checkpoint files that hold pickled code (a whole nn.Module, a "
                           "pre-format-2 mtedge checkpoint): unpickling runs code from the file, so only "
                           "for files you trust")(fn)
    return click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                        help="weights for MODEL (a state dict or an mtedge checkpoint)")(fn)
recipe_option = click.option("--recipe", type=click.Path(dir_okay=False), default=None,
                             help="recipe YAML (default: the model's own recipe, for zoo models and mtedge checkpoints)")


def load_model_and_recipe(model: str, checkpoint: str | None, recipe: str | None,
                          trust_pickle: bool | None = None) -> tuple[LoadedModel, Recipe]:
    if trust_pickle is None:
        ctx = click.get_current_context(silent=True)
        trust_pickle = bool(ctx and ctx.meta.get(_TRUST_KEY))
    loaded = load(model, checkpoint, trust_pickle=trust_pickle)
    if recipe is not None:
        return loaded, load_recipe(recipe)
    if loaded.recipe is None:
        raise SpecError(f"{model} has no built-in recipe; pass --recipe FILE (see docs/recipes.md)")
    return loaded, loaded.recipe


def write_json(path: str | Path | None, doc: Any) -> None:
    if path:
        write_json_atomic(path, doc)
        click.echo(f"wrote {path}", err=True)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2)
