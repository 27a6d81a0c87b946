"""Write files so that a crash leaves either the old file or the new one, never half of one.

A write the user can fix (full disk, quota, no permission, read-only disk) ends as a
WriteError naming the file; any other OSError stays what it was, since it is not the
user's to fix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from torchstarter.errors import UserError

T = TypeVar("T")

# Temp names start with the target's name, cut so that a long name plus the random part
# stays under the 255 bytes a file name may have.
NAME_KEPT = 60

_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_NOT_ALLOWED = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EROFS: "read-only file system"}


class WriteError(UserError, OSError):
    """A write refused by the disk. Still an OSError, so handlers written for those keep
    working; a UserError, so the CLI prints one line and exits 2."""


def _within(filename: Any, folder: Path) -> bool:
    if filename is None:
        return True  # a write on an open file: its name is the caller's target
    try:
        return Path(os.fsdecode(filename)).resolve().is_relative_to(folder.resolve())
    except (TypeError, ValueError, OSError):
        return False


def user_fixable_os_error(exc: BaseException, folder: Path) -> OSError | None:
    """The full-disk or permission error behind `exc` that concerns a file in `folder`.

    Looks through chained exceptions: torch.save reports a failed write as a RuntimeError
    whose context is the OSError.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and \
                (current.errno in _DISK_FULL or current.errno in _NOT_ALLOWED) and \
                _within(current.filename, folder):
            return current
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    return None


def write_error_message(path: Path, error: OSError) -> str:
    """One line: which file, why the disk refused it, and what to do."""
    path = Path(path)
    if error.errno in _DISK_FULL:
        return (f"{path}: cannot write it: {_DISK_FULL[error.errno]}; nothing earlier was "
                f"replaced: free some space, then run the command again (train: with "
                f"--restore last)")
    if error.errno == errno.EROFS:
        return f"{path}: cannot write it: read-only file system; use a folder on a writable disk"
    return (f"{path}: cannot write it: {_NOT_ALLOWED[error.errno]}; make {path.parent} "
            f"writable (chmod u+w) or use another folder")


@contextlib.contextmanager
def disk_errors_as_user_errors(path: Path) -> Iterator[None]:
    """Turn a full-disk or permission failure while writing `path` into a WriteError.

    Only errors about `path`'s folder (or an open file's write) are converted, so a
    permission problem reading some other input keeps its own message.
    """
    try:
        yield
    except UserError:
        raise  # already says what to do
    except Exception as exc:
        cause = user_fixable_os_error(exc, Path(path).parent)
        if cause is None:
            raise
        error = WriteError(write_error_message(path, cause))
        error.errno = cause.errno
        raise error from exc


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", also: Iterable[Path] = ()) -> Iterator[IO[Any]]:
    """Yield a temp file beside `path`; on success flush, fsync and rename it over `path`.

    Each path in `also` gets the same content first (a hard link to the finished temp
    file, renamed into place; a copy where links are not supported), so one write can
    serve several names. On any exception the temp file is removed and every target is
    left untouched.
    """
    path = Path(path)
    with disk_errors_as_user_errors(path):
        if path.is_dir():
            raise UserError(f"{path}: is a folder where this command writes a file; move "
                            f"the folder away, then run the command again")
        fd, tmp = new_temp_file(path.parent, f".{path.name[:NAME_KEPT]}.", ".tmp")
        try:
            with os.fdopen(fd, mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            for other in also:
                _place_copy(Path(tmp), Path(other))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(path.parent)


def _new_entry(folder: Path, prefix: str, suffix: str, create: Callable[[str], T]) -> T:
    """Call create(path) on random names in `folder` until one does not exist yet."""
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            return create(name)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.path.join(folder, prefix))


def new_temp_file(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new file with a random name, open for writing, with the permissions any new file
    gets (0666 less the umask, which the kernel applies: nobody has to read the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    return _new_entry(folder, prefix, suffix, lambda name: (os.open(name, flags, 0o666), name))


def new_temp_folder(folder: Path, prefix: str, suffix: str = "") -> Path:
    """A new folder with a random name and the permissions of any new folder."""
    def create(name: str) -> Path:
        os.mkdir(name, 0o777)
        return Path(name)
    return _new_entry(folder, prefix, suffix, create)


def _place_copy(source: Path, target: Path) -> None:
    staged = target.with_name(f".{target.name[:NAME_KEPT]}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged)
    try:
        try:
            os.link(source, staged)
        except OSError:
            shutil.copyfile(source, staged)
        os.replace(staged, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise


def _fsync_dir(folder: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], also: Iterable[Path] = ()
                 ) -> None:
    with atomic_open(path, "wb", also) as fh:
        write(fh)


def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))
