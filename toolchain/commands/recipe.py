"""`mtedge recipe init`: draft a commented recipe for a user's model."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.commands.common import checkpoint_option, model_argument


@click.group()
def recipe() -> None:
    """Recipes: which tasks a model has, how they are judged, and the data."""


@recipe.command("init")
@model_argument
@checkpoint_option
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="folder of your images: the data section points at it, the input shape comes from its first image")
@click.option("--input-shape", default=None, help="model input as 1,C,H,W (default: from --data)")
@click.option("--name", default=None, help="recipe name (default: the output file's stem)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="write here (default: print)")
@click.option("--force", is_flag=True, help="replace an existing output file")
def init(model, checkpoint, data_dir, input_shape, name, output, force):
    """Draft a recipe for MODEL: tasks from its outputs (kinds guessed from their shapes), input, data."""
    from toolchain.bundle.files import write_bytes_atomic
    from toolchain.errors import SpecError
    from toolchain.model import load
    from toolchain.recipe_init import draft_recipe

    shape = None
    if input_shape:
        try:
            shape = [int(v) for v in input_shape.replace("x", ",").split(",")]
        except ValueError:
            raise SpecError(f"--input-shape {input_shape!r} must be 4 integers like 1,3,224,224") from None
    if output and Path(output).exists() and not force:
        raise SpecError(f"{output} exists; pass --force to replace it")
    loaded = load(model, checkpoint)
    text = draft_recipe(loaded.module, name or (Path(output).stem if output else "my-model"), shape, data_dir, model)
    if output:
        write_bytes_atomic(output, text.encode())
        click.echo(f"wrote {output}: check the lines marked CHECK", err=True)
    else:
        click.echo(text, nl=False)
