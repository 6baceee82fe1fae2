"""`mtedge inspect`: the task tree with FLOPs and parameters per shared segment and task branch."""

from __future__ import annotations

import json

import click

from toolchain.commands.common import load_model_and_recipe, model_options


@click.command()
@model_options
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def inspect(model, checkpoint, recipe, as_json):
    """Show which layers each task shares, where each task branches off, and what each part costs."""
    import torch

    from toolchain.inspection import inspect_model, render

    loaded, rec = load_model_and_recipe(model, checkpoint, recipe)
    report, _ = inspect_model(loaded.module, torch.zeros((1, *rec.input.shape[1:])))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render(report)
