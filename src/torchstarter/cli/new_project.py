"""`torchstarter new`: create a ready project folder from a built-in task.

Work in progress: the command is registered so the CLI contract is fixed.
"""

from __future__ import annotations

import argparse

from torchstarter.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("new", help="create a ready project folder from a built-in task")


def run(args: argparse.Namespace) -> int:
    raise UserError("`torchstarter new` is not implemented yet")
