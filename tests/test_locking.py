"""The one lock: held by the kernel, never stale, never two holders on two files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

from torchstarter.utils.atomic import new_temp_file, new_temp_folder
from torchstarter.utils.locking import FileLock, is_locked, lock_holder


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first = FileLock(tmp_path / "x.lock")
    assert first.acquire()
    assert lock_holder(tmp_path / "x.lock") == f"pid {os.getpid()}"
    second = FileLock(tmp_path / "x.lock")
    assert not second.acquire(wait=0.1)
    assert is_locked(tmp_path / "x.lock")
    first.release()
    assert not is_locked(tmp_path / "x.lock")
    assert second.acquire()
    second.release()
    assert (tmp_path / "x.lock").exists()  # kept unless asked: a child may hold it


def test_a_lock_removed_on_release_is_never_held_twice(tmp_path):
    """Many threads take and give back a lock whose file is deleted on each release; the
    holder count must never exceed one (a lock on a deleted file would let two in)."""
    path = tmp_path / "run.lock"
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(60):
                lock = FileLock(path, remove_on_release=True)
                lock.acquire(wait=None)
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                with guard:
                    inside[0] -= 1
                lock.release()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and most[0] == 1
    assert not path.exists()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    path = tmp_path / "x.lock"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from torchstarter.utils.locking import FileLock
        FileLock({str(path)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert lock_holder(path) == f"pid {child.pid}" and is_locked(path)
    finally:
        child.kill()
        child.wait()
    assert not is_locked(path)
    lock = FileLock(path)
    assert lock.acquire()
    lock.release()


def test_temp_files_and_folders_get_the_permissions_of_any_new_entry(tmp_path):
    umask = os.umask(0o027)
    try:
        fd, name = new_temp_file(tmp_path, ".a.", ".tmp")
        os.close(fd)
        folder = new_temp_folder(tmp_path, ".b.")
    finally:
        os.umask(umask)
    assert os.stat(name).st_mode & 0o777 == 0o640
    assert folder.stat().st_mode & 0o777 == 0o750
    assert os.path.basename(name).startswith(".a.") and name.endswith(".tmp")


def test_a_private_lock_is_not_kept_by_forked_children(tmp_path):
    """A DataLoader worker forked by a run must not hold the run's lock after the run."""
    path = tmp_path / "run.lock"
    lock = FileLock(path, private=True)
    assert lock.acquire()
    read, write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: say it runs, wait until the parent has let go, then leave
        os.close(write)
        os.write(ready_write, b"x")
        os.read(read, 1)
        os._exit(0)
    try:
        os.close(read)
        assert os.read(ready_read, 1) == b"x"  # the child's fork handlers have run
        lock.release()  # the child is still alive and was forked while the lock was held
        other = FileLock(path)
        assert other.acquire(), "the forked child kept the lock"
        other.release()
    finally:
        os.close(write)
        os.waitpid(pid, 0)
        os.close(ready_read)
        os.close(ready_write)


def test_a_shared_lock_is_kept_by_the_child_it_is_handed_to(tmp_path):
    path = tmp_path / "claim.lock"
    lock = FileLock(path)
    assert lock.acquire()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, pass_fds=(lock.fileno(),))
    try:
        lock.release()
        assert is_locked(path)  # the child holds the descriptor, so the folder stays claimed
    finally:
        child.stdin.close()
        child.wait()
    assert not is_locked(path)


def test_a_file_system_without_flock_trains_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from torchstarter.experiment.lock import LOCK, run_lock

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with caplog.at_level("WARNING", logger="torchstarter"), run_lock(tmp_path):
        pass
    assert "file locks are not supported here" in caplog.text
    assert not (tmp_path / LOCK).exists()


def test_a_failed_holder_note_still_gives_a_held_lock_that_releases(tmp_path, monkeypatch):
    def full(fd, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "ftruncate", full)
    lock = FileLock(tmp_path / "x.lock")
    assert lock.acquire()
    monkeypatch.undo()
    assert is_locked(tmp_path / "x.lock")
    lock.release()
    assert not is_locked(tmp_path / "x.lock")
