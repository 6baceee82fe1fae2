"""Options and helpers shared by subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toolchain.bundle.files import write_json_atomic
from toolchain.model import LoadedModel, load_with_recipe
from toolchain.recipe import Recipe

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


def model_options(fn):
    """MODEL, --checkpoint (with --trust-pickle) and --recipe: what load_model_and_recipe reads."""
    return model_argument(checkpoint_option(recipe_option(fn)))


def load_model_and_recipe(model: str, checkpoint: str | None, recipe: str | None) -> tuple[LoadedModel, Recipe]:
    """:func:`toolchain.model.load_with_recipe`, trusting pickles when --trust-pickle was given."""
    ctx = click.get_current_context(silent=True)
    return load_with_recipe(model, checkpoint, recipe, trust_pickle=bool(ctx and ctx.meta.get(_TRUST_KEY)))


def torch_threads(threads: int | None) -> None:
    """--threads: torch's CPU threads for this command (None leaves torch's default)."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def write_json(path: str | Path | None, doc: Any) -> None:
    if path:
        write_json_atomic(path, doc)
        click.echo(f"wrote {path}", err=True)


def scale_options(f):
    """--workers / --ray-address / --worker-threads: where independent evaluations run (docs/scale-out.md)."""
    f = click.option("--worker-threads", type=int, default=1, show_default=True,
                     help="torch threads in each Ray worker")(f)
    f = click.option("--ray-address", default=None,
                     help="join an existing Ray cluster (auto, ray://HOST:10001, HOST:6379) for the evaluations")(f)
    f = click.option("--workers", type=int, default=None,
                     help="evaluate candidates on N local Ray workers (default: in this process, no Ray)")(f)
    return f


def evaluator_from(workers: int | None, ray_address: str | None, worker_threads: int | None):
    """The evaluator the scale options ask for; a context manager (closes Ray if it started it)."""
    from toolchain.workers import make_evaluator

    return make_evaluator(workers=workers, ray_address=ray_address, threads=worker_threads)
