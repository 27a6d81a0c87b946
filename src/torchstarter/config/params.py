"""Reading, overriding and validating params.json against a schema."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from torchstarter.config.jsonfile import check_depth
from torchstarter.config.schema import Field
from torchstarter.errors import UserError


class Params(Mapping[str, Any]):
    """Validated hyper-parameters, readable as params.learning_rate or params["learning_rate"]."""

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params are read-only; use replace(**changes)")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def replace(self, **changes: Any) -> Params:
        return Params({**self._values, **changes})

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def read_params_file(path: Path) -> dict[str, Any]:
    """Parse a params.json into a dict, with errors that point at the line and column."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file; params must be a JSON file (see "
                        f"experiments/ for examples)")
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path}: a link to {os.readlink(path)}, which does not exist; fix the "
                        f"link or put the file in its place")
    if not path.exists():
        raise UserError(f"{path}: params file not found; create it (see experiments/ for examples)")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file; params must be a JSON file")
    try:
        # utf-8-sig: editors such as Notepad start UTF-8 files with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8 JSON") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror}); make it readable "
                        f"(chmod u+r)") from None
    check_depth(text, str(path))
    try:
        raw = _StrictDecoder(text).decode(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg}); fix the file"
        ) from None
    except _DuplicateKey as exc:
        raise UserError(f"{path}:{exc.line}: key {exc.key!r} is given twice (JSON would "
                        f"silently keep the last); keep one") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object {{...}} of key/value pairs")
    return raw


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key, self.line = key, line


class _StrictDecoder(json.JSONDecoder):
    """A JSON decoder that refuses a key given twice in one object, knowing its line.

    It runs the pure-Python scanner, so that each object's start is seen: the second
    occurrence of the key is then searched from there, not from the top of the file.
    """

    def __init__(self, text: str):
        super().__init__(object_pairs_hook=self._pairs)
        self.text, self.starts = text, [0]
        self.parse_object = self._object
        self.scan_once = json.scanner.py_make_scanner(self)

    def _object(self, s_and_end, *args):  # noqa: ANN001, ANN202 (json's own signature)
        self.starts.append(s_and_end[1])
        try:
            return json.decoder.JSONObject(s_and_end, *args)
        finally:
            self.starts.pop()

    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise _DuplicateKey(key, self._line_of_second(key))
            out[key] = value
        return out

    def _line_of_second(self, key: str) -> int:
        """Line of the key's second occurrence among this object's own keys."""
        text, i, depth, seen = self.text, self.starts[-1], 0, 0
        while i < len(text):
            char = text[i]
            if char == '"':
                end = _STRING.match(text, i).end()
                after = text[end:end + 80].lstrip()
                if depth == 0 and after.startswith(":") and json.loads(text[i:end]) == key:
                    seen += 1
                    if seen == 2:
                        return text.count("\n", 0, i) + 1
                i = end
                continue
            if char in "{[":
                depth += 1
            elif char in "}]":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        return 1


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ["lr=0.1", "optimizer=sgd"] into a dict; values are JSON when they parse as JSON."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value, e.g. --set learning_rate=0.01")
        if key in out:
            raise UserError(f"--set {key}: given twice ({key}={given[key]} and {pair}); keep "
                            f"one")
        given[key] = text
        check_depth(text, f"--set {key}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _check_type(value: Any, field: Field) -> Any:
    """Return the value coerced to the field type, or raise ValueError with the reason."""
    if value is None:
        if field.nullable:
            return None
        raise ValueError("must not be null")
    if field.type is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"expected {field.type.__name__}, got {str(value).lower()}")
    if field.type is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"expected an integer, got {value!r}")
    if field.type is float:
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value!r}")
            return float(value)
        raise ValueError(f"expected a number, got {value!r}")
    if field.type is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {value!r}")
    raise TypeError(f"unsupported field type {field.type}")


def _check_range(value: Any, field: Field) -> None:
    if value is None:
        return
    if field.choices is not None and value not in field.choices:
        raise ValueError(f"{value!r} is not {field.describe_range()}")
    too_low = field.min is not None and (
        value <= field.min if field.min_exclusive else value < field.min
    )
    too_high = field.max is not None and value > field.max
    if too_low or too_high:
        raise ValueError(f"{value!r} is out of range (must be {field.describe_range()})")


def validate_params(raw: Mapping[str, Any], schema: Mapping[str, Field], source: str) -> Params:
    """Check every key against the schema, fill defaults, and return Params.

    `source` names where the values came from (a file path) for error messages.
    """
    for key in raw:
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it"
            raise UserError(f"{source}: unknown key '{key}' ({hint})")
    values: dict[str, Any] = {}
    for key, field in schema.items():
        if key not in raw:
            if field.required:
                raise UserError(f"{source}: missing required key '{key}' ({field.help})")
            values[key] = field.default
            continue
        try:
            value = _check_type(raw[key], field)
            _check_range(value, field)
        except ValueError as exc:
            raise UserError(f"{source}: key '{key}': {exc}") from None
        values[key] = value
    return Params(values)


def load_params(path: Path, schema: Mapping[str, Field],
                overrides: Mapping[str, Any] | None = None) -> Params:
    raw = read_params_file(path)
    raw.update(overrides or {})
    return validate_params(raw, schema, str(path))
