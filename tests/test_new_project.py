"""`torchstarter new` makes a project that trains at once, and tasks are found from it."""

from __future__ import annotations

import base64
import dataclasses
import json
import keyword
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_guide import bash_commands
from test_third_task import torchstarter_env

from torchstarter.cli.main import main
from torchstarter.errors import UserError
from torchstarter.experiment.evaluation import load_trained
from torchstarter.experiment.training import train
from torchstarter.scaffold import blueprints, create_project, project_name
from torchstarter.scaffold.templates.signs import net as signs_template_net
from torchstarter.tasks import load_task
from torchstarter.tasks.module_task import REQUIRED as REQUIRED_PARTS
from torchstarter.tasks.registry import load_experiment
from torchstarter.tasks.signs import net as signs_builtin_net

ONE_EPOCH = ["--set", "num_epochs=1"]


def run_readme_commands(project: Path, monkeypatch) -> list[str]:
    """Run every command of the project's README in the project, as a user would.

    `train` runs as the console script runs it, in a new process without the project
    on sys.path; the others run in this process (also without it), which is quicker.
    """
    monkeypatch.chdir(project)
    ran = []
    for command in bash_commands((project / "README.md").read_text()):
        words = shlex.split(command)
        assert words[0] == "torchstarter", command
        if words[1] == "train":
            result = subprocess.run([sys.executable, "-m", *words, *ONE_EPOCH], cwd=project,
                                    env=torchstarter_env(), capture_output=True, text=True)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        else:
            assert main(words[1:]) == 0, command
        ran.append(words[1])
    return ran


@pytest.mark.parametrize("template", ["signs", "images", "ner"])
def test_a_new_project_trains_evaluates_and_predicts_without_any_edit(tmp_path, monkeypatch,
                                                                      template):
    monkeypatch.chdir(tmp_path)
    assert main(["new", "My Project", "--from", template]) == 0
    project = tmp_path / "My Project"
    params = json.loads((project / "experiments/base_model/params.json").read_text())
    assert params["task"] == "my_project_task"
    assert {p.name for p in (project / "my_project_task").iterdir()} == {
        "__init__.py", "net.py", "data.py"}
    assert (project / "data/README.md").is_file()

    ran = run_readme_commands(project, monkeypatch)
    assert ran[:3] == ["train", "evaluate", "predict"]
    assert "build-dataset" in ran  # the README's rebuild step works too
    model_dir = project / "experiments/base_model"
    assert len(json.loads((model_dir / "history.json").read_text())) == 1
    test = json.loads((model_dir / "metrics_test_best.json").read_text())
    assert test["examples"] > 0 and 0 <= test["accuracy"] <= 1

    # The project's own network ships too: export checks it against the eager model, and
    # serve's hooks answer a request (the template inherits them from the built-in task).
    train_words = shlex.split(next(c for c in bash_commands((project / "README.md")
                                                             .read_text()) if " train " in c))
    data_dir = train_words[train_words.index("--data-dir") + 1]
    assert main(["export", "--model-dir", str(model_dir), "--data-dir", data_dir,
                 "--format", "torch-export"]) == 0
    assert (model_dir / "export/best.pt2.json").is_file()
    trained = load_trained(model_dir)
    body = {"sentence": "John lives in Paris ."} if template == "ner" else \
        {"image": base64.b64encode(next(f for f in sorted(Path(data_dir).rglob("*"))
                                        if f.suffix in (".png", ".jpg")).read_bytes()).decode()}
    inputs = trained.task.serve_inputs(body, [], {"max_items": 4, "max_tokens": 50,
                                                  "max_pixels": 10**6},
                                       trained.data_info)
    rows = trained.task.predict_inputs(trained.model, trained.params, inputs, trained.device,
                                       trained.data_info)
    assert len(rows) == 1 and "probabilities" in rows[0]


def test_new_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["new", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and str(folder) in err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"


def test_new_writes_into_an_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    project = create_project(folder, "ner")
    assert project.task_package == "empty_task"
    assert (folder / "data/ner/words.txt").is_file()
    assert (folder / "data/raw/ner_dataset.csv").is_file()
    assert load_experiment(folder / "experiments/base_model/params.json")[0].name == \
        "empty_task"


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_new_leaves_no_partial_project(tmp_path, monkeypatch, existed):
    def fail(data: Path) -> list[str]:
        (data / "half-written").write_text("")
        raise OSError("disk full")

    broken = dataclasses.replace(blueprints.BLUEPRINTS["ner"], prepare_data=fail)
    monkeypatch.setitem(blueprints.BLUEPRINTS, "ner", broken)
    folder = tmp_path / "proj"
    if existed:
        folder.mkdir()
    with pytest.raises(OSError):
        create_project(folder, "ner")
    assert folder.is_dir() == existed
    assert not existed or not any(folder.iterdir())


def test_new_writes_beside_hidden_entries_and_a_failure_keeps_them(tmp_path, monkeypatch):
    """`git init` first, then `new`: .git is neither refused nor touched."""
    folder = tmp_path / "repo"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    def fail(data: Path) -> list[str]:
        raise OSError("disk full")

    broken = dataclasses.replace(blueprints.BLUEPRINTS["signs"], prepare_data=fail)
    monkeypatch.setitem(blueprints.BLUEPRINTS, "signs", broken)
    with pytest.raises(OSError):
        create_project(folder, "signs")
    assert [p.name for p in folder.iterdir()] == [".git"]
    monkeypatch.undo()
    create_project(folder, "signs")
    assert (folder / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (folder / "experiments/base_model/params.json").is_file()


def test_new_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["new", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create this folder" in err


@pytest.mark.parametrize("folder, name", [
    ("my_project", "my_project"), ("My Project-2", "my_project_2"), ("2048", "project_2048"),
    ("---", "project"), ("café au lait", "caf_au_lait"), ("If", "project_if")])
def test_the_project_name_comes_from_the_folder(tmp_path, folder, name):
    assert project_name(tmp_path / folder) == name


@given(st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and "\0" not in s
                                                and s not in (".", "..")))
def test_any_folder_name_gives_an_importable_package_name(folder):
    name = project_name(Path("/projects") / folder)
    assert name.isidentifier() and name.isascii() and not keyword.iskeyword(name)
    assert project_name(Path("/projects") / name) == name  # a valid name stays as it is


def test_the_signs_template_is_the_reference_network():
    """The template is a copy a student edits; it starts as the built-in task."""
    template = signs_template_net.Net(8, 0.5, 6).state_dict()
    builtin = signs_builtin_net.Net(8, 0.5, 6).state_dict()
    assert {k: v.shape for k, v in template.items()} == {k: v.shape for k, v in builtin.items()}
    assert load_task("torchstarter.scaffold.templates.signs").schema == \
        load_task("signs").schema
    ner_template = load_task("torchstarter.scaffold.templates.ner")
    ner = load_task("ner")
    assert all(dataclasses.replace(ner.schema[key], help="") ==
               dataclasses.replace(field, help="") for key, field in ner_template.schema.items())
    assert ner_template.metric_names == ner.metric_names
    logits = torch.randn(5, 6)
    labels = torch.tensor([0, 1, 2, 3, 4])
    template_loss = signs_template_net.loss_fn(logits, labels)
    builtin_loss = signs_builtin_net.loss_fn(logits, labels)
    assert torch.equal(template_loss.value, builtin_loss.value)
    assert template_loss.count == builtin_loss.count


# --- finding a project's task from params.json --------------------------------------------


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Path:
    """A NER project (the quicker template to write), made once for the tests below."""
    return create_project(tmp_path_factory.mktemp("projects") / "tagger", "ner").folder


def nested_experiment(project: Path, task: str, depth: int) -> Path:
    """An experiment `depth` folders below experiments/, like a search's children."""
    folder = project / "experiments" / Path(*[f"level{i}" for i in range(depth)])
    folder.mkdir(parents=True, exist_ok=True)
    params = json.loads((project / "experiments/base_model/params.json").read_text())
    (folder / "params.json").write_text(json.dumps({**params, "task": task}))
    return folder


@pytest.mark.parametrize("task", ["tagger_task", "../../tagger_task/__init__.py"])
@pytest.mark.parametrize("depth", [1, 3])
def test_the_task_is_found_from_any_experiment_of_the_project(tagger, tmp_path, monkeypatch,
                                                              task, depth):
    monkeypatch.chdir(tmp_path)  # elsewhere: only the params file's folders can lead to it
    experiment = nested_experiment(tagger, task, depth)
    found, params = load_experiment(experiment / "params.json")
    assert found.name == task and found.provides("describe_data")
    assert str(tagger) not in sys.path[:1]  # not by putting the project first on sys.path


def test_a_module_path_task_is_found_from_the_current_folder(tagger, monkeypatch):
    monkeypatch.chdir(tagger)
    assert load_task("tagger_task").name == "tagger_task"


def test_a_task_given_as_a_file_path_trains_and_evaluates(tagger, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiment = nested_experiment(tagger, "../../tagger_task/__init__.py", 1)
    data = tagger / "data/ner"
    train(experiment, data, overrides={"num_epochs": 1}, console=False)
    assert main(["evaluate", "--model-dir", str(experiment), "--data-dir", str(data)]) == 0
    assert (experiment / "metrics_test_best.json").is_file()


def write_package(root: Path, name: str, body: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(body)
    return root / name


SIGNS_PARTS = "from torchstarter.tasks.signs import {}\n"


@pytest.mark.parametrize("missing", REQUIRED_PARTS)
@pytest.mark.parametrize("form", ["module", "file"])
def test_a_task_missing_a_required_part_names_it(tmp_path, missing, form):
    parts = ", ".join(p for p in REQUIRED_PARTS if p != missing)
    package = write_package(tmp_path, "partial_task", SIGNS_PARTS.format(parts))
    spec = "partial_task" if form == "module" else str(package / "__init__.py")
    with pytest.raises(UserError, match=f"lacks {missing} ") as error:
        load_task(spec, base_dir=tmp_path)
    assert "\n" not in str(error.value)


def test_a_task_part_of_the_wrong_kind_is_named(tmp_path):
    parts = ", ".join(p for p in REQUIRED_PARTS if p != "loss_fn")
    write_package(tmp_path, "odd_task", SIGNS_PARTS.format(parts) + "loss_fn = 3\n")
    with pytest.raises(UserError, match="loss_fn must be a function"):
        load_task("odd_task", base_dir=tmp_path)


def test_a_task_that_cannot_be_imported_is_one_line_naming_the_place(tmp_path, capsys):
    package = write_package(tmp_path, "typo_task", "from .net import Nett\n")
    (package / "net.py").write_text("Net = 1\n")
    (tmp_path / "params.json").write_text(json.dumps({
        "task": "typo_task", "learning_rate": 0.1, "batch_size": 2, "num_epochs": 1}))
    assert main(["train", "--model-dir", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot import name 'Nett'" in err and f"{package / '__init__.py'}:1" in err


def test_a_task_named_like_an_imported_module_is_refused(tmp_path):
    write_package(tmp_path, "json", "")
    with pytest.raises(UserError, match="rename your task package"):
        load_task("json", base_dir=tmp_path)


def test_two_projects_with_the_same_package_name_each_get_their_own(tmp_path):
    for label in ("first", "second"):
        write_package(tmp_path / label, "same_task",
                      SIGNS_PARTS.format(", ".join(REQUIRED_PARTS)) + f"LABEL = '{label}'\n")
    for label in ("first", "second", "first"):
        task = load_task("same_task", base_dir=tmp_path / label)
        assert label == sys.modules["same_task"].LABEL and task.name == "same_task"


def test_a_dotted_module_path_is_found_from_the_params_folder(tmp_path, monkeypatch):
    package = write_package(tmp_path, "lab_tasks", "")
    (package / "digits.py").write_text(SIGNS_PARTS.format(", ".join(REQUIRED_PARTS)))
    experiment = tmp_path / "experiments" / "base_model"
    experiment.mkdir(parents=True)
    (experiment / "params.json").write_text(json.dumps({
        "task": "lab_tasks.digits", "learning_rate": 0.1, "batch_size": 2, "num_epochs": 1}))
    monkeypatch.chdir(experiment.parent)
    task, params = load_experiment(experiment / "params.json")
    assert task.name == "lab_tasks.digits" and params.num_channels == 32
