"""The docs say what the code does: the params reference and the CI command."""

import json

from conftest import REPO

from torchstarter.tasks.reference import params_markdown
from torchstarter.tasks.registry import load_experiment


def test_params_reference_matches_the_schemas():
    assert (REPO / "docs" / "params.md").read_text() == params_markdown(), \
        "regenerate: python -m torchstarter.tasks.reference > docs/params.md"


def test_ci_runs_the_test_command_written_in_the_readme():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = 'pip install torch==2.13.0 -e ".[dev]" && python -m pytest -q -n 2'
    assert command in readme
    assert command.replace("pip install ", "pip install -q ") in ci
    assert "pip install torch==2.13.0 -e . && torchstarter demo" in readme


def test_shipped_experiments_are_valid_and_base_model_is_the_reference():
    for params_file in sorted((REPO / "experiments").glob("*/*/params.json")):
        load_experiment(params_file)
    base = json.loads((REPO / "experiments/signs/base_model/params.json").read_text())
    reference = {"learning_rate": 1e-3, "batch_size": 32, "num_epochs": 10,
                 "dropout_rate": 0.8, "num_channels": 32}
    assert {k: base[k] for k in reference} == reference
    assert base.get("optimizer", "adam") == "adam"


def test_the_demo_params_are_the_shipped_experiments():
    from torchstarter.cli.demo import DEMO_PARAMS

    for task, folder in (("signs", "experiments/signs/base_model"),
                         ("images", "experiments/images/sample_demo"),
                         ("ner", "experiments/ner/sample_demo")):
        assert DEMO_PARAMS[task] == json.loads((REPO / folder / "params.json").read_text())
