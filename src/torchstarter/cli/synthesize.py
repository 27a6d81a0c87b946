"""`torchstarter synthesize`: results table of every experiment under a parent folder.

Work in progress: the command is registered so the CLI contract is fixed.
"""

from __future__ import annotations

import argparse

from torchstarter.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("synthesize", help="results table of every experiment under a parent folder")


def run(args: argparse.Namespace) -> int:
    raise UserError("`torchstarter synthesize` is not implemented yet")
