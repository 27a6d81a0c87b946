"""`torchstarter search`: hyper-parameter search over child experiments of a parent folder.

Work in progress: the command is registered so the CLI contract is fixed.
"""

from __future__ import annotations

import argparse

from torchstarter.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("search", help="hyper-parameter search over child experiments")


def run(args: argparse.Namespace) -> int:
    raise UserError("`torchstarter search` is not implemented yet")
