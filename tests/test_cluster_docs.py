"""Every sbatch script of docs/cluster.md, run by bash under a fake SLURM: sbatch options
read from its #SBATCH lines, and `srun`, `scontrol`, `torchrun` and `torchstarter` replaced
by stubs that record their arguments. The recorded command lines must parse with
torchrun's and torchstarter's own parsers and carry the flags the page says they rely on."""

import json
import os
import re
import shlex
import subprocess

import pytest
from conftest import REPO

from torchstarter.cli.main import build_parser

DOC = REPO / "docs" / "cluster.md"
STUB = """#!/usr/bin/env python3
import json, os, sys
name = os.path.basename(sys.argv[0])
if name == "scontrol" and sys.argv[1:3] == ["show", "hostnames"]:
    print("node17"); print("node18"); sys.exit(0)
with open(os.environ["STUB_LOG"], "a") as fh:
    fh.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if name == "srun":
    os.execvp(sys.argv[1], sys.argv[1:])
"""
FAKE_SLURM = {"SLURM_JOB_ID": "777", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node[17-18]",
              "OPTUNA_DB_PASSWORD": "from-the-environment"}


def scripts() -> dict[str, str]:
    """Heading -> script, for every ```bash block that starts with a shebang."""
    found, heading = {}, None
    for block in re.split(r"^```", DOC.read_text(encoding="utf-8"), flags=re.M):
        if block.startswith("bash\n#!/bin/bash"):
            found[heading] = block.removeprefix("bash\n")
        else:
            headings = re.findall(r"^## (.+)$", block, flags=re.M)
            heading = headings[-1] if headings else heading
    return found


SCRIPTS = scripts()


def sbatch_options(script: str) -> dict[str, str]:
    options = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            key, _, value = line.removeprefix("#SBATCH ").partition("=")
            options[key] = value
    return options


def run_under_fake_slurm(script: str, tmp_path) -> list[list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("srun", "scontrol", "torchrun", "torchstarter"):
        (bindir / name).write_text(STUB)
        (bindir / name).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, **FAKE_SLURM, "STUB_LOG": str(log),
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_page_has_the_four_scripts_the_issue_asks_for():
    assert len(SCRIPTS) == 4, list(SCRIPTS)
    assert all(subprocess.run(["bash", "-n", "-c", s]).returncode == 0 for s in SCRIPTS.values())


@pytest.mark.parametrize("heading", list(SCRIPTS))
def test_each_script_requeues_itself_and_continues(heading, tmp_path):
    script = SCRIPTS[heading]
    options = sbatch_options(script)
    calls = run_under_fake_slurm(script, tmp_path)
    assert "--requeue" in options and options["--open-mode"] == "append"
    signal_name, _, seconds = options["--signal"].removeprefix("B:").partition("@")
    assert signal_name in ("USR1", "TERM") and int(seconds) >= 60
    launcher = calls[0][0]
    if options["--signal"].startswith("B:"):  # only the batch shell gets it: it must be us
        assert re.search(rf"^exec {launcher} ", script, flags=re.M), "B: needs exec"

    torchrun = next((c[1:] for c in calls if c[0] == "torchrun"), None)
    if torchrun is not None:
        from torch.distributed.run import get_args_parser

        assert signal_name == "TERM", "torchrun dies on SIGUSR1"
        run_args = get_args_parser().parse_args(torchrun)
        assert int(run_args.shutdown_timeout) >= int(seconds) - 15, "time to save"
        assert run_args.module and run_args.training_script == "torchstarter"
        ours = run_args.training_script_args
    else:
        ours = next(c[1:] for c in calls if c[0] == "torchstarter")
    args = build_parser().parse_args(ours)  # every flag is one of ours (else SystemExit)
    assert args.requeue
    if args.command == "train":
        assert args.restore == "auto"
    check_kind(heading, options, calls, args, torchrun)


def check_kind(heading, options, calls, args, torchrun):
    if heading == "One GPU":
        assert options["--gres"] == "gpu:1" and torchrun is None
    elif heading.startswith("One node"):
        from torch.distributed.run import get_args_parser

        run_args = get_args_parser().parse_args(torchrun)
        assert run_args.standalone and options["--gres"] == f"gpu:{run_args.nproc_per_node}"
    elif heading.startswith("Several nodes"):
        from torch.distributed.run import get_args_parser

        assert int(options["--nodes"]) >= 2 and calls[0][0] == "srun"
        assert not options["--signal"].startswith("B:"), "the torchrun of every node"
        run_args = get_args_parser().parse_args(torchrun)
        assert run_args.nnodes == FAKE_SLURM["SLURM_NNODES"]
        assert run_args.rdzv_backend == "c10d" and run_args.rdzv_endpoint == "node17:29500"
        assert run_args.rdzv_id == FAKE_SLURM["SLURM_JOB_ID"]
    elif heading.startswith("A search"):
        assert options["--array"] and args.command == "search" and args.jobs == 1
        url = args.storage
        assert url.startswith("postgresql://")
        assert FAKE_SLURM["OPTUNA_DB_PASSWORD"] in url  # from the environment, not the page
        assert FAKE_SLURM["OPTUNA_DB_PASSWORD"] not in DOC.read_text()
        assert args.heartbeat and args.study_name
    else:
        raise AssertionError(f"a script under an unexpected heading: {heading}")


def test_the_commands_are_quoted_as_a_user_would_copy_them():
    for heading, script in SCRIPTS.items():
        body = script.replace("\\\n", " ")
        for line in body.splitlines():
            if "torchstarter" in line and not line.startswith("#"):
                shlex.split(line)  # balanced quotes
        assert "\r" not in script, heading
