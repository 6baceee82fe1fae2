"""`mtedge doctor`: what the runtime was built against and what it can run on."""

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def doctor(as_json: bool) -> None:
    """Self-check of the C++ runtime: OpenVINO version, devices, TensorRT support."""
    from mtedge_runtime import _runtime

    info = _runtime.self_check()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("item", "value", title="mtedge runtime self-check")
    for key, value in info.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    Console().print(table)
