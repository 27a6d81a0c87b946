"""The one lock of torchstarter: an flock on a file, with its holder written in the file.

Used for a model dir (one `train` at a time) and for a search's trial folders. The
kernel drops an flock when the last descriptor that holds it is closed, so a killed
process never leaves a stale lock behind, and a child process started with the
descriptor keeps the lock for as long as it lives. The holder ("host pid") is only for
messages: who holds a lock is decided by the kernel, never by reading the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path

_POLL_SECONDS = 0.02


class FileLock:
    """An exclusive flock on `path`, created when missing.

    With `remove_on_release`, the holder deletes the file before it lets the lock go; a
    process that locked the file in the meantime finds its name gone or pointing to a new
    file and tries again, so two processes never hold locks on two different files.
    Leave it off when the descriptor is handed to a child that may outlive the holder.
    A `private` lock is not kept by forked children (DataLoader workers): once this
    process dies, its lock is free at once, whatever its workers are still doing.
    """

    def __init__(self, path: Path, remove_on_release: bool = False, private: bool = False):
        self.path = Path(path)
        self.remove_on_release = remove_on_release
        self.private = private
        self._fd: int | None = None

    def fileno(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"{self.path}: lock not held")
        return self._fd

    def acquire(self, wait: float | None = 0.0) -> bool:
        """Take the lock; False when another process still holds it after `wait` seconds
        (None waits as long as it takes). The holder is then written into the file.

        Raises LockUnsupported where the file system has no flock (some network mounts).
        """
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait is None else fcntl.LOCK_NB))
                mine = _same_file(fd, self.path)
            except BlockingIOError:
                os.close(fd)
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL_SECONDS)
                continue
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    raise LockUnsupported(self.path, exc) from exc
                raise
            except BaseException:
                os.close(fd)
                raise
            if not mine:
                os.close(fd)  # the holder before us removed this file: lock the new one
                continue
            self._fd = fd
            if self.private:
                _keep_from_forks(fd)
            with contextlib.suppress(OSError):  # who holds it is for messages only
                self.note_holder(os.getpid())
            return True

    def note_holder(self, pid: int) -> None:
        """Record who holds the lock (a child the descriptor was handed to, say)."""
        fd = self.fileno()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {pid}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _PRIVATE.discard(fd)
        try:
            if self.remove_on_release and _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # a file left behind is harmless: it is the flock that locks
        finally:
            os.close(fd)  # closing drops the lock (a child given the fd keeps it)

    def __enter__(self) -> FileLock:
        self.acquire(wait=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockUnsupported(OSError):
    """The file system refuses flock (some network and FUSE mounts)."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, f"file locks are not supported here ({cause.strerror})",
                         str(path))


_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_PRIVATE: set[int] = set()  # descriptors of private locks held by this process
_fork_hook = False


def _keep_from_forks(fd: int) -> None:
    """Close `fd` in every child forked from now on (the parent's lock stays held)."""
    global _fork_hook
    _PRIVATE.add(fd)
    if not _fork_hook:
        os.register_at_fork(after_in_child=_close_private)
        _fork_hook = True


def _close_private() -> None:
    for fd in list(_PRIVATE):
        with contextlib.suppress(OSError):
            os.close(fd)
    _PRIVATE.clear()


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def lock_holder(path: Path) -> str | None:
    """Who the lock file says holds it: "pid N", with " on HOST" when not this machine."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    host, _, pid = text.rpartition(" ")
    if not pid.isdigit():
        return None
    return f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"


def is_locked(path: Path) -> bool:
    """Whether some process holds the lock now. Asks the kernel with a shared lock taken
    and dropped at once; a holder that polls (FileLock.acquire with a wait) never notices."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return False
