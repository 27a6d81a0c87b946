"""The two READMEs of a new project: the project's own and the data folder's.

They show the commands that work right after `torchstarter new`, with the project's
real package and folder names, so a student can copy them as they are.
"""

from __future__ import annotations

from torchstarter.scaffold.blueprints import Blueprint

PROJECT_README = """\
# {name}

A torchstarter project made by `torchstarter new` from the `{template}` template. Run
every command from this folder.

## Train, evaluate, predict

```bash
torchstarter train --model-dir experiments/base_model --data-dir data/{data}
torchstarter evaluate --model-dir experiments/base_model --data-dir data/{data}
torchstarter predict --model-dir experiments/base_model {predict}
```

`train` writes everything into `experiments/base_model/`: the log, the `last` and `best`
checkpoints, the metrics of the best and last weights, one row per epoch in
`history.json`. `evaluate` adds `metrics_test_best.json`.

## What is here

| path | what it is for |
|---|---|
| `{task}/net.py` | {net_role} |
| `{task}/data.py` | {data_role} |
| `{task}/__init__.py` | the params schema, the metric that picks `best`, the glue |
| `experiments/base_model/` | one experiment: its `params.json` (`"task": "{task}"`) |
| `data/raw/` | raw data (the built-in sample); see `data/README.md` |
| `data/{data}/` | the data set built from it: what `train` reads |

## Your own data

Put it in `data/raw/` in the same layout (`data/README.md`), then rebuild:

```bash
{rebuild}
```

For another layout, change `load_split` in `{task}/data.py` (and the data building, which
comes from the built-in task until you copy it into `{task}/`).

## Another experiment

Make a folder `experiments/<name>`, copy only `experiments/base_model/params.json` into
it (not the run's other files), change that `params.json`, and train with
`--model-dir experiments/<name>`. Try a grid of values with
`torchstarter search` and compare every experiment with `torchstarter synthesize`.
torchstarter's guide (`docs/guide.md`) walks through all of it.
"""

DATA_README = """\
# Data

`raw/`: the data as it comes. {raw_layout}

`{data}/`: built from `raw/` by the commands below (run from the project folder), and
what `train`, `evaluate` and `search` read. {built_layout}

```bash
{rebuild}
```

Keep large data sets out of version control (list `data/` in `.gitignore`).
"""


def project_readme(blueprint: Blueprint, name: str, task: str) -> str:
    return PROJECT_README.format(
        name=name, template=blueprint.template, data=blueprint.data_name, task=task,
        predict=blueprint.predict_inputs, net_role=blueprint.net_role,
        data_role=blueprint.data_role, rebuild=_rebuild(blueprint, task))


def data_readme(blueprint: Blueprint, task: str) -> str:
    return DATA_README.format(raw_layout=blueprint.raw_layout, data=blueprint.data_name,
                              built_layout=blueprint.built_layout,
                              rebuild=_rebuild(blueprint, task))


def _rebuild(blueprint: Blueprint, task: str) -> str:
    return "\n".join(line.format(task=task) for line in blueprint.rebuild_commands)
