"""The short version of tools/kill_stress.py: SIGKILL train a few times, resume, compare."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from kill_stress import run_stress  # noqa: E402


def test_killed_and_resumed_training_ends_with_the_uninterrupted_weights(tmp_path):
    counts = run_stress(kills=4, epochs=2, seed=1, workdir=tmp_path)
    assert counts["kills"] == 4
    assert counts["identical_weights"] is True
    assert counts["leftover_temp_files"] == 0
