"""Finding a task from params.json's `task`: a built-in name, a module path or a .py file.

A module that defines TASK (an engine Task) is that task; a module of functions is
adapted by module_task.ModuleTask. Importing a user's task has two effects on the
process, both deliberate: the module is registered in sys.modules (under its own name
for a package, so its absolute imports work; under a name derived from its path for a
.py file, the same in every process), and a project folder is appended to sys.path, so
that DataLoader workers started by spawn (macOS, Windows) can import it too.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torchstarter.config import COMMON_SCHEMA, Params, validate_params
from torchstarter.config.params import read_params_file
from torchstarter.config.schema import combination_problem
from torchstarter.engine.task import Task
from torchstarter.errors import UserError
from torchstarter.tasks.module_task import ModuleTask, as_metrics, check_task

BUILTIN_TASKS = {"signs": "torchstarter.tasks.signs", "ner": "torchstarter.tasks.ner",
                 "images": "torchstarter.tasks.images"}

# Top-level packages this module imported from a project folder, and from which folder:
# a second project with a task package of the same name replaces them (tests, notebooks).
_LOCAL_PACKAGES: dict[str, Path] = {}


def load_task(spec: str, base_dir: Path | None = None) -> Task:
    """Import the task named by `spec`: a built-in name, a module path or a .py file.

    A relative file path, and the first part of a module path, are looked for in
    `base_dir` (the folder of params.json), then in each folder above it, then in the
    current folder. So a project's task is found from any experiment folder under the
    project, however deep (search children included), without installing it and without
    the project being on sys.path (the `torchstarter` console script does not add it).
    """
    if spec in BUILTIN_TASKS:
        module = importlib.import_module(BUILTIN_TASKS[spec])
    elif spec.endswith(".py"):
        module = _import_file(spec, base_dir)
    else:
        module = _import_module_path(spec, base_dir)
    return task_of_module(spec, module)


def task_of_module(spec: str, module: ModuleType) -> Task:
    """The module's TASK, named `spec`; or the module itself adapted, for a module of
    functions (a TASK that is not a Task, such as a string, is one of its names)."""
    where = f"task '{spec}' ({getattr(module, '__file__', None) or module.__name__})"
    declared = getattr(module, "TASK", None)
    if isinstance(declared, type) and issubclass(declared, Task):
        raise UserError(f"{where}: TASK is the class {declared.__name__}; make it an "
                        f"instance: TASK = {declared.__name__}()")
    if not isinstance(declared, Task):
        task: Task = ModuleTask(spec, module)
        check_task(task, where)
        return task
    task = copy.copy(declared)  # the module's own object keeps its name
    object.__setattr__(task, "name", spec)  # works for a frozen dataclass too
    missing = [hook for hook in ("load_split", "build_model", "loss")
               if not task.provides(hook)]
    if missing:
        raise UserError(f"{where}: {type(task).__name__} lacks {', '.join(missing)}; see "
                        f"torchstarter.engine.task for what a task defines")
    object.__setattr__(task, "metrics", as_metrics(task.metrics))
    check_task(task, where)
    return task


def user_module_name(path: Path) -> str:
    """The name a task file is imported under: from its path, so the same in every process."""
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.parent.name if path.name == "__init__.py" else path.stem,
                  flags=re.ASCII)
    return f"torchstarter_user_task_{stem}_{digest}"


def search_folders(base_dir: Path | None) -> list[Path]:
    """Where a task is looked for, nearest first: base_dir, its parents, the current folder."""
    folders: list[Path] = []
    if base_dir is not None:
        base = Path(base_dir).resolve()
        folders += [base, *base.parents]
    cwd = Path.cwd().resolve()
    if cwd not in folders:
        folders.append(cwd)
    return folders


def _import_file(spec: str, base_dir: Path | None) -> ModuleType:
    path = Path(spec)
    if not path.is_absolute():
        found = next((folder / path for folder in search_folders(base_dir)
                      if (folder / path).is_file()), None)
        path = found if found is not None else path
    if not path.is_file():
        where = f"in {Path(base_dir)} and the folders above it, " if base_dir is not None else ""
        raise UserError(f"task file {spec} not found (looked {where}in the current folder); "
                        f"give a built-in task ({', '.join(BUILTIN_TASKS)}), a module path or "
                        f"a .py file")
    path = path.resolve()
    module_name = user_module_name(path)
    # A package's __init__.py is imported as a package, so its relative imports
    # (`from .net import Net`) work.
    locations = [str(path.parent)] if path.name == "__init__.py" else None
    module_spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=locations)
    module = importlib.util.module_from_spec(module_spec)
    _execute(spec, module, module_spec)
    return module


def _import_module_path(spec: str, base_dir: Path | None) -> ModuleType:
    top = spec.split(".", 1)[0]
    if not all(part.isidentifier() for part in spec.split(".")):
        raise UserError(f"unknown task '{spec}': not a built-in task ({', '.join(BUILTIN_TASKS)}),"
                        f" a module path (dotted names) or a .py file")
    root = next((folder for folder in search_folders(base_dir)
                 if (folder / top / "__init__.py").is_file() or (folder / f"{top}.py").is_file()),
                None)
    if root is not None:
        _import_local_top_level(spec, top, root)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise UserError(f"unknown task '{spec}' ({exc}); use a built-in task "
                            f"({', '.join(BUILTIN_TASKS)}), a module path (looked for "
                            f"{top}/ in the folder of params.json, the folders above it and "
                            f"the current folder) or a .py file") from None
        raise _import_failure(spec, exc) from None
    except (ImportError, SyntaxError) as exc:
        raise _import_failure(spec, exc) from None


def _import_local_top_level(spec: str, top: str, root: Path) -> None:
    """Import the package or module `top` from the project folder `root`."""
    location = root / top if (root / top / "__init__.py").is_file() else root / f"{top}.py"
    loaded = sys.modules.get(top)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)  # None for a namespace package
        origin = Path(file).resolve() if file else None
        if origin is not None and (origin == location.resolve()
                                   or location.resolve() in origin.parents):
            return  # already this one
        if top not in _LOCAL_PACKAGES:
            raise UserError(f"task '{spec}': {location} has the name of a module that is "
                            f"already imported ({origin or 'a namespace package'}); rename your "
                            f"task package")
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]  # the same name from another project folder
    module_spec = importlib.machinery.PathFinder.find_spec(top, [str(root)])
    module = importlib.util.module_from_spec(module_spec)
    _execute(spec, module, module_spec)
    _LOCAL_PACKAGES[top] = root
    if str(root) not in sys.path:
        sys.path.append(str(root))  # worker processes and the task's own imports find it too


def _execute(spec: str, module: ModuleType, module_spec: Any) -> None:
    """Run a task module's code; a broken import is the user's to fix, in one line."""
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    except (ImportError, SyntaxError) as exc:
        del sys.modules[module_spec.name]
        raise _import_failure(spec, exc) from None
    except BaseException:
        del sys.modules[module_spec.name]
        raise


def _import_failure(spec: str, exc: ImportError | SyntaxError) -> UserError:
    """Name the file and line of the task's code where importing it failed."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        user_frames = [f for f in frames if not f.filename.startswith("<frozen")]
        where = f"{user_frames[-1].filename}:{user_frames[-1].lineno}" if user_frames else "?"
    return UserError(f"task '{spec}' cannot be imported: {exc.__class__.__name__} at {where}: "
                     f"{exc}")


def full_schema(task: Task) -> dict[str, Any]:
    clash = set(task.schema) & set(COMMON_SCHEMA)
    if clash:
        raise UserError(f"task '{task.name}' redefines engine keys: {', '.join(sorted(clash))}")
    return {**COMMON_SCHEMA, **task.schema}


def resolve_params(raw: Mapping[str, Any], source: str, base_dir: Path | None = None
                   ) -> tuple[Task, Params]:
    """Validate raw params for the task they name; fill metric and metric_mode defaults."""
    spec = raw.get("task")
    if "task" not in raw:
        raise UserError(f"{source}: missing required key 'task' (a built-in task such as "
                        f"'signs', or your own task module)")
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{source}: key 'task': expected a task name in quotes, e.g. \"signs\", "
                        f"or your own task module, got {json.dumps(spec)}")
    task = load_task(spec, base_dir)
    params = validate_params(raw, full_schema(task), source)
    problem = combination_problem(params)
    if problem:
        raise UserError(f"{source}: {problem}")
    metric = params.metric or task.default_metric
    if metric not in task.metric_names:
        raise UserError(f"{source}: key 'metric': '{metric}' is not one of "
                        f"{', '.join(task.metric_names)}")
    mode = params.metric_mode or ("min" if metric == "loss" else "max")
    return task, params.replace(metric=metric, metric_mode=mode)


def load_experiment(params_path: Path, overrides: Mapping[str, Any] | None = None
                    ) -> tuple[Task, Params]:
    raw = read_params_file(params_path)
    for key, value in (overrides or {}).items():
        raw[key] = value
    source = str(params_path) + (" (with --set)" if overrides else "")
    return resolve_params(raw, source, base_dir=Path(params_path).parent)
