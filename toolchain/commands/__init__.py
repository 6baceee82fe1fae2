"""One module per `mtedge` subcommand; registered in toolchain/cli.py."""
