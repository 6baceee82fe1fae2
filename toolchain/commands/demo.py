"""`mtedge demo`: the main job end to end on the built-in default, zoo:fashion-mt (toolchain.demo)."""

from __future__ import annotations

import click


@click.command()
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False), help="working directory")
@click.option("--epochs", default=4.0, show_default=True, help="training epochs for zoo:fashion-mt")
@click.option("--limit", type=int, default=None, help="train on at most N images (quick runs)")
@click.option("--bench-iters", default=200, show_default=True, help="timed calls per bench measurement")
@click.option("--reuse", is_flag=True, help="reuse out/fashion-mt.pt if it exists instead of training again")
@click.option("--keep-flops", default=0.5, show_default=True, help="PAGCP goal for the pruning step")
@click.option("--val-count", default=512, show_default=True, help="PAGCP oracle subset")
@click.option("--finetune-epochs", default=0.5, show_default=True, help="recovery fine-tuning after pruning")
@click.option("--slim-epochs", default=0.5, show_default=True, help="sandwich-rule training of the slimmable network")
def demo(out, epochs, limit, bench_iters, reuse, keep_flops, val_count, finetune_epochs, slim_epochs):
    """Train, inspect, export, verify, run and bench zoo:fashion-mt."""
    from toolchain.demo import run_demo

    run_demo(out, epochs=epochs, limit=limit, bench_iters=bench_iters, reuse=reuse, keep_flops=keep_flops,
             val_count=val_count, finetune_epochs=finetune_epochs, slim_epochs=slim_epochs)
