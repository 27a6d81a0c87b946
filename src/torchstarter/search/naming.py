"""Trial folder names read like their params: learning_rate_0.001-num_channels_16.

A name is one path component made of [A-Za-z0-9._=-] only: no separator, no '..', no
leading dot, at most MAX_LENGTH characters. Whenever the readable form could lose
information (a character had to be replaced, the name had to be cut, or a string value
would read like a number), a hash of the exact values is appended, so two different
settings of the same keys never share a folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_LENGTH = 80
HASH_CHARS = 10
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.=]*")
_PLAIN_STRING = re.compile(r"[A-Za-z0-9_.=]+")  # no '-': it separates the settings
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")


def _value_text(value: Any) -> tuple[str, bool]:
    """The text of a value and whether it can be read back unambiguously."""
    if value is None or isinstance(value, bool):
        return json.dumps(value), True
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float; it always has a
        # '.' or an 'e', so it never reads like an int. '1e+16' becomes '1e16'.
        return repr(value).replace("e+", "e"), math.isfinite(value)
    text = str(value)
    try:
        reads_as = json.loads(text)
    except (ValueError, RecursionError):
        reads_as = text
    plain = (isinstance(reads_as, str) and bool(_PLAIN_STRING.fullmatch(text))
             and ".." not in text)
    return text, plain


def values_digest(values: Mapping[str, Any]) -> str:
    """A short hash of the exact values (types included: 1, 1.0, true and "1" differ)."""
    canonical = json.dumps(dict(values), sort_keys=True, allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_CHARS]


def _sanitize(text: str) -> str:
    text = _UNSAFE.sub("_", text)
    while ".." in text:
        text = text.replace("..", "._")
    return text


def trial_folder_name(values: Mapping[str, Any]) -> str:
    """The folder of a trial under the parent: one safe path component, unique per values."""
    parts, exact = [], True
    for key, value in values.items():
        text, value_exact = _value_text(value)
        exact = exact and value_exact and bool(_KEY.fullmatch(key)) and ".." not in key
        parts.append(f"{key}_{text}")
    readable = "-".join(parts)
    if exact and readable and len(readable) <= MAX_LENGTH:
        return readable
    # The hash part starts with 'h' and has no '_', so it can never end an exact name.
    suffix = f"h{values_digest(values)}"
    head = _sanitize(readable)[:MAX_LENGTH - len(suffix) - 1].rstrip(".-")
    head = head.lstrip(".-")
    return f"{head}-{suffix}" if head else suffix
