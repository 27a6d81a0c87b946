"""Replacing a whole output folder without ever leaving it half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from torchstarter.errors import UserError
from torchstarter.utils.atomic import disk_errors_as_user_errors

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
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result is an ordinary folder
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
