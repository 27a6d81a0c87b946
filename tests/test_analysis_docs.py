"""docs/analysis.md works as written: its commands run, word for word and in order, in a
fresh folder, and write what the page says they write."""

import csv
import os
import re
import subprocess

from conftest import REPO
from test_guide import bash_commands

DOC = REPO / "docs" / "analysis.md"


def test_every_command_of_the_analysis_page_runs_and_writes_what_it_shows(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    commands = bash_commands(text)
    assert any(c.startswith("torchstarter compare") for c in commands)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outputs = {}
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs[command] = done.stdout
    runs = tmp_path / "runs"
    for name in ("narrow", "wide"):
        for written in ("predictions_test_best.jsonl", "analysis_test_best.md",
                        "confusion_test_best.png", "top_losses_test_best.png"):
            assert (runs / name / written).is_file(), (name, written)
    compared = outputs["torchstarter compare runs/narrow runs/wide"]
    assert "95% CI of B - A" in compared and "McNemar (exact binomial)" in compared
    with open(runs / "seeds" / "results_by_seed.csv") as fh:
        assert [row["n"] for row in csv.DictReader(fh)] == ["3"]
    grid = (runs / "grid" / "results.md").read_text()
    assert "Hyper-parameter importance (Optuna's fANOVA" in grid
    assert (runs / "grid" / "param_importances.png").is_file()
    for picture in re.findall(r"\]\((images/[^)]+)\)", text):
        assert (DOC.parent / picture).is_file(), picture
