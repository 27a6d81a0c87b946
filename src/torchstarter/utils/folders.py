"""Replacing a whole output folder without ever leaving it half-written."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from torchstarter.errors import UserError
from torchstarter.utils.atomic import NAME_KEPT, disk_errors_as_user_errors, new_temp_folder
from torchstarter.utils.locking import FileLock, LockUnsupported

T = TypeVar("T")


def replace_folder(out: Path, fill: Callable[[Path], T], overwrite: bool = False,
                   mark: str | None = None) -> T:
    """Let `fill` write into a temp folder beside `out`, then move it into place.

    An existing non-empty `out` is kept unless `overwrite`; even then it is replaced only
    when it holds `mark` (the file that only this command writes, e.g. build_report.json),
    so that --overwrite never deletes a folder some other command made, and only after the
    new folder is complete, so that an error midway leaves the old one intact.
    """
    out = Path(out)
    with disk_errors_as_user_errors(out):
        return _replace_folder(out, fill, overwrite, mark)


def _replace_folder(given: Path, fill: Callable[[Path], T], overwrite: bool,
                    mark: str | None) -> T:
    out = creatable_folder(given)  # '.', './', 'a/..' and a link get a real name
    _existing(given, out, overwrite, mark)  # refused before anything is created
    out.parent.mkdir(parents=True, exist_ok=True)
    # Two commands writing one output folder take turns: the second looks again once the
    # first is done, and then finds a folder that needs --overwrite, in one line.
    with take_turns(out.parent / f".{out.name[:NAME_KEPT]}.lock"):
        held = _existing(given, out, overwrite, mark)
        tmp = new_temp_folder(out.parent, f".{out.name[:NAME_KEPT]}.", ".new")
        try:
            result = fill(tmp)
            if held:
                _swap(tmp, out)
            elif out.is_dir():  # an empty folder, maybe the one the user is in: keep it
                _move_children(tmp, out, last=mark)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return result


def _existing(given: Path, out: Path, overwrite: bool, mark: str | None) -> list[str]:
    """What `out` holds, refused in one line when this command may not replace it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{given}: exists and is not a folder; pick another --output-dir")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not overwrite:
        raise UserError(f"{given}: folder exists and is not empty; pass --overwrite to replace "
                        f"it or pick another --output-dir")
    if held and mark is not None and not (out / mark).is_file():
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise UserError(f"{given}: holds {shown} but no {mark}, so this command did not make "
                        f"it; --overwrite replaces only its own output: pick another "
                        f"--output-dir, or empty the folder yourself")
    cwd = Path.cwd().resolve()
    if held and (out == cwd or out in cwd.parents):
        raise UserError(f"{given}: is the folder you are in (or holds it); --overwrite would "
                        f"replace it under you: run the command from outside it")
    if out.parent == out:
        raise UserError(f"{given}: is the root folder; pick another --output-dir")
    return held


@contextlib.contextmanager
def take_turns(path: Path) -> Iterator[None]:
    """Hold the lock file `path` (removed afterwards); without flock (some network mounts)
    go on unlocked, as before."""
    lock = FileLock(path, remove_on_release=True)
    try:
        lock.acquire(wait=None)
    except LockUnsupported:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _swap(new: Path, out: Path) -> None:
    """Put `new` in the place of `out`; the old folder goes only once the new one is there."""
    old = new_temp_folder(out.parent, f".{out.name[:NAME_KEPT]}.", ".old")
    out.rename(old)  # onto an empty folder of a fresh name: never replaces anything else
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _move_children(new: Path, out: Path, last: str | None) -> None:
    """Move what `new` holds into the empty folder `out`, the mark file last, so that a
    crash midway leaves a folder without it (which --overwrite may replace)."""
    entries = sorted(new.iterdir(), key=lambda p: p.name == last)
    for entry in entries:
        entry.rename(out / entry.name)
    new.rmdir()


def real_path(path: Path) -> Path:
    """The absolute path with links followed; a loop of links is the user's to fix."""
    try:
        return Path(path).resolve()
    except RuntimeError:  # Python 3.11 reports a loop of links this way
        raise UserError(f"{path}: symbolic link loop (following it never reaches a folder); "
                        f"fix the link or pick another path") from None


def creatable_folder(path: Path) -> Path:
    """The real path of an output folder, refused in one line when it cannot be a folder:
    a file (or a link to nothing) in its place or on the way to it."""
    real = real_path(path)
    for part in [real, *real.parents]:
        if part.is_dir():
            break
        if part.exists() or part.is_symlink():
            if part == real:
                raise UserError(f"{path}: exists and is not a folder; pick another "
                                f"--output-dir")
            raise UserError(f"{path}: passes through {part}, which is a file, not a folder; "
                            f"pick another --output-dir")
    return real


def check_apart(out: Path, source: Path, what: str, may_lie_inside: bool = False) -> None:
    """Refuse an output folder that is or holds the data it is built from, or lies inside
    it (unless `may_lie_inside`, for a folder that merely contains the data): replacing it
    would delete that data."""
    out_abs, source_abs = real_path(out), real_path(source)
    inside = source_abs in out_abs.parents and not may_lie_inside
    if out_abs == source_abs or out_abs in source_abs.parents or inside:
        raise UserError(f"--output-dir {out} overlaps {what} {source}; pick an output folder "
                        f"outside it, so that building never touches the raw data")
