"""`mtedge train`: train a zoo model on its real data and print per-task test metrics."""

from __future__ import annotations

import time

import click

from toolchain.commands.common import load_model_and_recipe, model_options, torch_threads, write_json


@click.command()
@model_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="checkpoint to write (.pt)")
@click.option("--epochs", default=4.0, show_default=True, help="epochs over the training split (fractions allowed)")
@click.option("--limit", type=int, default=None, help="train on at most this many images (quick runs)")
@click.option("--test-count", type=int, default=None, help="evaluate on the first N test images (default: all 10,000)")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="also write the metrics as JSON")
def train(model, checkpoint, recipe, output, epochs, limit, test_count, threads, json_path):
    """Train MODEL (e.g. zoo:fashion-mt) and write a checkpoint that `mtedge` commands load."""
    from rich.console import Console

    from toolchain.metrics import metrics_table
    from toolchain.model import save_checkpoint
    from toolchain.train import TrainConfig, evaluate_on_test
    from toolchain.train import train as run_training

    torch_threads(threads)
    loaded, rec = load_model_and_recipe(model, checkpoint, recipe)
    t0 = time.perf_counter()
    run_training(loaded.module, rec, TrainConfig(epochs=epochs, limit=limit), description=f"training {model}")
    seconds = time.perf_counter() - t0
    metrics = evaluate_on_test(loaded.module, rec, count=test_count)
    save_checkpoint(output, loaded.module, loaded.origin, rec, metrics=metrics, train_seconds=seconds)
    Console().print(metrics_table(rec, metrics, title=f"{model} test metrics after {seconds:.0f} s of training"))
    write_json(json_path, {"model": model, "checkpoint": str(output), "train_seconds": seconds, "test_metrics": metrics})

