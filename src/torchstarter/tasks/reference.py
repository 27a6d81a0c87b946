"""The params reference in docs/params.md, generated from the schemas so it cannot drift.

Regenerate with: python -m torchstarter.tasks.reference > docs/params.md
"""

from __future__ import annotations

import json

from torchstarter.config.schema import COMMON_SCHEMA, Field
from torchstarter.tasks.registry import BUILTIN_TASKS, load_task


def _row(key: str, field: Field) -> str:
    default = "required" if field.required else json.dumps(field.default)
    kind = field.type.__name__ + (" or null" if field.nullable else "")
    return f"| `{key}` | {kind} | {default} | {field.describe_range()} | {field.help} |"


def _table(schema: dict[str, Field]) -> list[str]:
    return ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|",
            *(_row(k, f) for k, f in schema.items())]


def params_markdown() -> str:
    lines = ["# params.json reference", "",
             "Generated from the schemas in the code (`python -m torchstarter.tasks.reference"
             " > docs/params.md`); a test fails when this file and the code disagree.",
             "Unknown keys, wrong types and out-of-range values stop `train` with exit code 2.",
             "", "## Engine keys (every task)", "", *_table(COMMON_SCHEMA)]
    for name in BUILTIN_TASKS:
        task = load_task(name)
        lines += ["", f"## Task `{name}`", "",
                  f"Metrics: {', '.join(task.metric_names)}; `best` is chosen by "
                  f"`{task.default_metric}` unless `metric` says otherwise.", "",
                  *_table(task.schema)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(params_markdown(), end="")
