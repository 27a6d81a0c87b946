"""Replacing a whole output folder without ever leaving it half-written."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from torchstarter.errors import UserError
from torchstarter.utils.atomic import disk_errors_as_user_errors, new_temp_folder

T = TypeVar("T")


def replace_folder(out: Path, fill: Callable[[Path], T], overwrite: bool = False) -> T:
    """Let `fill` write into a temp folder beside `out`, then move it into place.

    An existing non-empty `out` is kept unless `overwrite`; even then it is only removed
    after the new folder is complete, so an error midway leaves the old one intact.
    """
    out = Path(out)
    with disk_errors_as_user_errors(out):
        return _replace_folder(out, fill, overwrite)


def _replace_folder(out: Path, fill: Callable[[Path], T], overwrite: bool) -> T:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; pick another --output-dir")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: folder exists and is not empty; pass --overwrite to replace "
                        f"it or pick another --output-dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_folder(out.parent, f".{out.name}.")
    try:
        result = fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
    return result


def check_apart(out: Path, source: Path, what: str, may_lie_inside: bool = False) -> None:
    """Refuse an output folder that is or holds the data it is built from, or lies inside
    it (unless `may_lie_inside`, for a folder that merely contains the data): replacing it
    would delete that data."""
    out_abs, source_abs = Path(out).resolve(), Path(source).resolve()
    inside = source_abs in out_abs.parents and not may_lie_inside
    if out_abs == source_abs or out_abs in source_abs.parents or inside:
        raise UserError(f"--output-dir {out} overlaps {what} {source}; pick an output folder "
                        f"outside it, so that building never touches the raw data")
