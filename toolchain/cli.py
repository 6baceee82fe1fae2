"""The `mtedge` command. Each subcommand lives in toolchain/commands/<name>.py."""

from __future__ import annotations

import importlib
import sys

import click

from toolchain.errors import MtedgeError

# subcommand -> the module that defines it (under that name), in the order `mtedge --help` lists them
_COMMANDS = {
    "doctor": "toolchain.commands.doctor", "train": "toolchain.commands.train", "recipe": "toolchain.commands.recipe",
    "inspect": "toolchain.commands.inspect", "export": "toolchain.commands.export",
    "verify": "toolchain.commands.export", "quantize": "toolchain.commands.quantize",
    "run": "toolchain.commands.runtime", "bench": "toolchain.commands.runtime", "demo": "toolchain.commands.demo",
    "targets": "toolchain.commands.targets", "build": "toolchain.commands.targets",
    "profile": "toolchain.commands.targets", "compress": "toolchain.commands.compress",
    "slim": "toolchain.commands.slim", "sweep": "toolchain.commands.sweep",
}


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs: `mtedge --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _COMMANDS.get(name)
        return getattr(importlib.import_module(module), name) if module else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtedge")
def cli() -> None:
    """mtedge: put multitask networks on Jetson-class edge devices."""


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="mtedge", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        if isinstance(e, click.UsageError) and e.ctx is not None:
            click.echo(f"{e.ctx.get_usage()}\nTry '{e.ctx.command_path} --help' for help.", err=True)
        return _error(e.format_message(), e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except MtedgeError as e:
        return _error(str(e), 2)
    except FileExistsError as e:  # an output that is already there (bundle/files.staged_directory)
        return _error(str(e) if e.filename is None else f"{e.filename} exists; pass --force to replace it", 2)
    except SystemExit as e:  # a command chose its exit code
        return _error(e.code, 1) if isinstance(e.code, str) else int(e.code or 0)
    return 0


def _error(message: str, code: int) -> int:
    """Every user error ends the same way: one `error:` line on stderr, a non-zero exit status."""
    click.secho(f"error: {message}", fg="red", err=True)
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
