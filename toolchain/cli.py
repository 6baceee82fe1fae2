"""The `mtedge` command. Each subcommand lives in toolchain/commands/<name>.py."""

from __future__ import annotations

import importlib
import sys

import click

from toolchain.errors import MtedgeError

# (module, attribute) of every subcommand, in the order `mtedge --help` lists them.
_COMMANDS = [
    ("toolchain.commands.doctor", "doctor"),
    ("toolchain.commands.train", "train"),
    ("toolchain.commands.recipe", "recipe"),
    ("toolchain.commands.inspect", "inspect"),
    ("toolchain.commands.export", "export"),
    ("toolchain.commands.export", "verify"),
    ("toolchain.commands.quantize", "quantize"),
    ("toolchain.commands.runtime", "run"),
    ("toolchain.commands.runtime", "bench"),
    ("toolchain.commands.demo", "demo"),
    ("toolchain.commands.targets", "targets"),
    ("toolchain.commands.targets", "build"),
    ("toolchain.commands.targets", "profile"),
    ("toolchain.commands.compress", "compress"),
    ("toolchain.commands.slim", "slim"),
    ("toolchain.commands.sweep", "sweep"),
]


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs: `mtedge --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for _, name in _COMMANDS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = next((m for m, attr in _COMMANDS if attr == name), None)
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
    except click.UsageError as e:
        if e.ctx is not None:
            click.echo(f"{e.ctx.get_usage()}\nTry '{e.ctx.command_path} --help' for help.", err=True)
        return _error(e.format_message(), e.exit_code)
    except click.ClickException as e:
        return _error(e.format_message(), e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except MtedgeError as e:
        return _error(str(e), 2)
    except FileExistsError as e:  # an output that is already there (bundle/files.staged_directory)
        return _error(str(e) if e.filename is None else f"{e.filename} exists; pass --force to replace it", 2)
    except SystemExit as e:  # a command chose its exit code
        if isinstance(e.code, str):
            return _error(e.code, 1)
        return int(e.code or 0)
    return 0


def _error(message: str, code: int) -> int:
    """Every user error ends the same way: one `error:` line on stderr, a non-zero exit status."""
    click.secho(f"error: {message}", fg="red", err=True)
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
