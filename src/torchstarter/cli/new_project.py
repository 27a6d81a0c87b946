"""`torchstarter new`: create a ready project folder from a built-in task.

The folder holds an editable copy of the task (network, data loading, params schema),
a first experiment and the built-in sample data already built, so `torchstarter train`
runs in it at once.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from torchstarter.scaffold import TEMPLATES, create_project
from torchstarter.scaffold.project import BASE_EXPERIMENT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "new", help="create a ready project folder from a built-in task",
        description="Create DIR with an editable copy of a built-in task (network with loss "
                    "and metrics, data loading, params schema), experiments/base_model/"
                    "params.json and the task's sample data already built. DIR must be new "
                    "or empty.")
    p.add_argument("dir", type=Path, metavar="DIR",
                   help="project folder to create; its name gives the task package's "
                        "(my-project -> my_project_task)")
    p.add_argument("--from", dest="template", choices=TEMPLATES, default="signs",
                   help="built-in task to start from: signs (images, 6 classes) or ner "
                        "(tagging tokens of sentences); default: signs")


def run(args: argparse.Namespace) -> int:
    project = create_project(args.dir, args.template)
    print(f"created {project.folder} from the {project.template} template: task package "
          f"{project.task_package}/")
    for note in project.notes:
        print(note)
    print("next:")
    if project.folder.resolve() != Path.cwd().resolve():
        print(f"  cd {shlex.quote(str(project.folder))}")
    print(f"  torchstarter train --model-dir {BASE_EXPERIMENT.as_posix()} "
          f"--data-dir {project.data_dir.as_posix()}")
    return 0
