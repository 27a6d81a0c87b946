"""`torchstarter synthesize`: results table of every experiment under a parent folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchstarter.cli.flags import flag


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synthesize", help="results table of every experiment under a parent folder",
        description="Walk --parent-dir and write results.md and results.csv there: one row "
                    "per experiment (a folder holding params.json, at any depth), the "
                    "hyper-parameters that differ, best validation metrics, test metrics, "
                    "epochs and status, best first by the selection metric. For a search it "
                    "also writes search_<param>.png and learning_curves.png. Prints the "
                    "table.")
    flag(p, "parent_dir", required=True, type=Path,
         help="folder to walk, e.g. experiments/ or the parent folder of a search")


def run(args: argparse.Namespace) -> int:
    from torchstarter.report.synthesize import synthesize_report

    report = synthesize_report(args.parent_dir)
    print(report.text)
    print()
    for path in report.written:
        print(f"wrote {path}")
    return 0
