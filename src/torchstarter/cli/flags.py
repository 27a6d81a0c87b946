"""Flag helpers shared by every subcommand: --some-name with the alias --some_name."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes end like every other mistake: one line, exit 2.

    argparse prints the whole usage block first; the line names the command's --help
    instead. Subparsers are made of the same class, so every subcommand behaves alike.
    """

    def error(self, message: str) -> NoReturn:
        message = message.replace("\r", "\\r").replace("\n", "\\n")  # one line, always
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Add --some-name with the alias --some_name."""
    dashed = "--" + name.replace("_", "-")
    names = [dashed] if "-" not in name and "_" not in name else [dashed, "--" + name]
    parser.add_argument(*names, dest=name, **kwargs)


def restore_flag(parser: argparse.ArgumentParser, default: str | None, help_: str) -> None:
    parser.add_argument("--restore", "--restore-file", "--restore_file", dest="restore",
                        default=default, metavar="last|best|PATH", help=help_)


def set_flag(parser: argparse.ArgumentParser, help_: str | None = None) -> None:
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help=help_ or "override params.json keys for this run, e.g. --set "
                                      "learning_rate=0.01 num_epochs=3 (values are read "
                                      "as JSON)")
