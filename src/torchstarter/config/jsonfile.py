"""Reading JSON that a user (or a damaged disk) may have made hostile.

Python's json module recurses once per level of nesting, so a file nested a few
thousand levels deep ends in a RecursionError with a traceback thousands of lines long.
No file torchstarter reads needs more than a handful of levels: the depth is counted in
one linear pass first, and anything deeper than MAX_DEPTH is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchstarter.errors import UserError

MAX_DEPTH = 100


def nesting_depth(text: str | bytes) -> int:
    """The deepest level of [ and { in JSON text, not counting brackets inside strings."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_depth(text: str | bytes, source: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH before a parser recurses into it."""
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise UserError(f"{source}: JSON nested {depth} levels deep (at most {MAX_DEPTH}); "
                        f"nothing torchstarter reads needs that: fix or replace it")


def loads(text: str | bytes, source: str) -> Any:
    """json.loads after the depth check; malformed JSON still raises json.JSONDecodeError."""
    check_depth(text, source)
    return json.loads(text)


def read_json(path: Path, encoding: str = "utf-8-sig") -> Any:
    """A JSON file's value; a file too deep is a UserError naming it. OSError,
    UnicodeDecodeError and JSONDecodeError reach the caller, which knows what to advise."""
    return loads(Path(path).read_text(encoding=encoding), str(path))
