"""docs/data.md works as written: its commands run, word for word and in order, in an
empty folder, and build what the page says each layout gives."""

import json
import os
import shlex
import subprocess
import sys

from conftest import REPO
from test_guide import bash_commands

from torchstarter.cli.main import main

DOC = REPO / "docs" / "data.md"


def report(folder):
    return json.loads((folder / "build_report.json").read_text())


def test_every_command_of_the_data_page_runs_and_builds_what_it_says(tmp_path, monkeypatch):
    commands = bash_commands(DOC.read_text(encoding="utf-8"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        words = shlex.split(command)
        if words[0] == "torchstarter" and words[1] not in ("train", "predict"):
            assert main(words[1:]) == 0, command  # in-process: no torch import per command
            continue
        if words[0] == "torchstarter":  # train and predict: a process of their own
            command = shlex.join([sys.executable, "-m", *words])
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    data = tmp_path / "data"
    assert report(data / "pets")["splits_from"] == "split_by_fractions"
    assert report(data / "digits")["splits_from"] == "val_carved_from_train"
    assert report(data / "digits_mixed")["splits_from"] == "resplit"
    assert report(data / "photos")["classes"] == ["FIVE", "FOUR", "ONE", "THREE", "TWO",
                                                  "ZERO"]
    assert report(data / "conll")["splits_from"] == "kept"
    assert report(data / "shared_task")["splits_from"] == "val_carved_from_train"
    assert report(data / "pooled")["splits_from"] == "resplit"
    # the kept split files hold the sentences of the corpus's own files, in order
    kept = (data / "conll" / "test" / "sentences.txt").read_text().split("\n")[0]
    given = (tmp_path / "conll" / "test.txt").read_text().split("\n\n")
    assert kept.split() == [line.split()[0] for line in given[1].splitlines()]
    assert (tmp_path / "experiments" / "digits" / "metrics_test_best.json").is_file()
