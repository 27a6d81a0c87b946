"""Writing a new project folder: the task package, a first experiment and ready data.

The folder works at once: `torchstarter train` in it finds the task package through
params.json's `task` (a module path the registry looks up from the experiment folder
upwards), and the sample data is already built.
"""

from __future__ import annotations

import keyword
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.scaffold.blueprints import BLUEPRINTS
from torchstarter.scaffold.readme import data_readme, project_readme
from torchstarter.utils.atomic import atomic_open, write_json

TEMPLATES = tuple(BLUEPRINTS)
BASE_EXPERIMENT = Path("experiments") / "base_model"


@dataclass(frozen=True)
class Project:
    folder: Path
    name: str  # a Python identifier derived from the folder's name
    task_package: str  # the folder of the task code, and params.json's `task`
    template: str
    data_dir: Path  # relative to `folder`
    notes: list[str]


def project_name(folder: Path) -> str:
    """The folder's name made a Python identifier: 'My Project-2' -> 'my_project_2', '2048' ->
    'project_2048', 'if' -> 'project_if'. Only ASCII letters, digits and _ are kept."""
    name = re.sub(r"\W+", "_", Path(folder).resolve().name.lower(), flags=re.ASCII).strip("_")
    if not name:
        return "project"
    return f"project_{name}" if name[0].isdigit() or keyword.iskeyword(name) else name


def create_project(folder: Path, template: str = "signs") -> Project:
    """Write a ready project into `folder`, which must be new or empty.

    On any failure the files written so far are removed again, so a rerun is not refused.
    """
    if template not in BLUEPRINTS:
        raise UserError(f"unknown template '{template}'; choose one of {', '.join(TEMPLATES)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; pick a new folder name")
    # Hidden entries (.git from `git init`, .gitkeep) may be there already: new never
    # writes hidden names, so they are neither overwritten nor removed on a failure.
    if folder.is_dir() and any(not item.name.startswith(".") for item in folder.iterdir()):
        raise UserError(f"{folder}: folder exists and is not empty; `torchstarter new` only "
                        f"writes into a new or empty folder: pick another name")
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create this folder ({exc.strerror}); pick a path "
                        f"whose parent folders exist as folders and are writable") from None
    try:
        return _write_project(folder, template)
    except BaseException:
        _remove_contents(folder, remove_folder=not existed)
        raise


def _write_project(folder: Path, template: str) -> Project:
    blueprint = BLUEPRINTS[template]
    name = project_name(folder)
    package = f"{name}_task"
    _copy_template(template, folder / package)

    experiment = folder / BASE_EXPERIMENT
    experiment.mkdir(parents=True)
    write_json(experiment / files.PARAMS, {"task": package, **blueprint.base_params})

    data = folder / "data"
    data.mkdir()
    notes = blueprint.prepare_data(data)
    _write_text(data / "README.md", data_readme(blueprint, package))
    _write_text(folder / "README.md", project_readme(blueprint, name, package))
    return Project(folder, name, package, template, Path("data") / blueprint.data_name, notes)


def _copy_template(template: str, target: Path) -> None:
    """Copy the template package's modules (never its bytecode cache)."""
    target.mkdir()
    source = resources.files("torchstarter.scaffold.templates") / template
    for item in sorted(source.iterdir(), key=lambda t: t.name):
        if item.is_file() and item.name.endswith(".py"):
            _write_text(target / item.name, item.read_text(encoding="utf-8"))


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _remove_contents(folder: Path, remove_folder: bool) -> None:
    """Undo a failed `new`: the folder was new or held only hidden entries, which stay."""
    if remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for item in folder.iterdir():
        if item.name.startswith("."):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
